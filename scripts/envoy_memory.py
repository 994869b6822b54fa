#!/usr/bin/env python3
"""Real Envoy: memory per live HTTP/2 stream, no filter against jisr and its raw twin.

Run through `scripts/envoy_instructions.sh --memory`, which installs and builds what this needs;
see its header. Standard library only (h2load from nghttp2-client opens the streams).

For each variant, one Envoy 1.40 (`--concurrency 1`) with one listener whose filter chain is
Envoy's fault filter, then the variant's module filter (none for `none`), then the router
(a direct 200). The fault filter delays a request by the milliseconds of its
`x-envoy-fault-delay-request` header (`header_delay`), so:

- warm-up requests (no header) pass at once;
- held requests carry the header and wait in the fault filter. Envoy creates every filter of
  the chain when a stream's request headers arrive, before the first filter runs, so the
  module's per-stream filter (a jisr stream slot, or the raw filter) exists for the whole hold,
  while its request-headers hook has not run yet: what is measured is the filter's cost at
  rest, before its handler does anything.

With `--after`, the fault filter comes after the module filter instead: the handler runs on
the request headers (the auth handler reads `x-api-key`, the noop handler returns), then the
stream waits in the fault filter: the cost of a stream whose handler ran and is done.

Per variant: start Envoy, send warm-up requests, read Envoy's RSS (/proc) and tcmalloc's
allocated bytes (admin `/memory`), open N streams at once with h2load (C connections of N/C
streams each), wait until Envoy reports N active requests and its RSS stops growing (the
plateau), read both again, let the delay end (every stream must answer 200), stop Envoy.
Per stream = (plateau - before) / N. Every variant runs `--rounds` times (default 3, the
variants interleaved); the table gives the medians. tcmalloc's allocated bytes move by a few
bytes per stream between rounds; RSS moves by up to about 0.7 KiB per stream (what the
allocator has mapped, and the warm-up's pages, differ from one Envoy to the next).
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from envoy_instructions import (  # noqa: E402
    KEYS, bootstrap, dm_filter, free_port, listener, log, stop, wait_ready,
)

FAULT = (
    "          - name: envoy.filters.http.fault\n"
    "            typed_config:\n"
    "              \"@type\": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault\n"
    "              delay:\n"
    "                header_delay: {}\n"
    "                percentage: { numerator: 100, denominator: HUNDRED }\n"
)

# Variants: name -> (module filter, label).
VARIANTS = {
    "none": ("", "no module filter"),
    "auth_raw": (dm_filter("auth", "raw_auth", KEYS), "raw twin (`auth.raw_auth`)"),
    "noop_jisr": (dm_filter("bench_fixture", "noop"), "jisr handler that does nothing"),
    "auth_jisr": (dm_filter("auth", "auth", KEYS), "jisr auth handler (`auth.auth`)"),
}


def admin_get(port, path):
    """Status and body of a GET on Envoy's admin interface."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.status, r.read()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for Envoy")


def allocated(admin):
    """tcmalloc's bytes in use by the application (admin `/memory`)."""
    st, body = admin_get(admin, "/memory")
    if st != 200:
        raise RuntimeError(f"/memory answered {st}")
    return int(json.loads(body)["allocated"])


def active(admin):
    """Requests Envoy has open on the listener (`downstream_rq_active`)."""
    st, body = admin_get(admin, "/stats?filter=downstream_rq_active")
    if st != 200:
        raise RuntimeError(f"/stats answered {st}")
    m = re.search(rb"http\.mem\.downstream_rq_active: (\d+)", body)
    return int(m.group(1)) if m else 0


def h2load(port, n, conns, extra):
    return ["h2load", "-n", str(n), "-c", str(conns), "-m", str(-(-n // conns)),
            "-H", "x-api-key: key-1", *extra, f"http://127.0.0.1:{port}/"]


def check_h2load(out, n, what):
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded", out)
    codes = re.search(r"status codes: (\d+) 2xx", out)
    if not m or int(m.group(4)) != n or not codes or int(codes.group(1)) != n:
        raise RuntimeError(f"{what}: not every request answered 200:\n{out}")


def measure(a, variant):
    module, _ = VARIANTS[variant]
    filters = module + FAULT if a.after else FAULT + module
    out = os.path.join(a.out, variant)
    os.makedirs(out, exist_ok=True)
    port, admin = free_port(), free_port()
    cfg = os.path.join(out, "envoy.yaml")
    with open(cfg, "w") as f:
        # No upstream is used (direct responses); the cluster needs a port anyway.
        f.write(bootstrap(admin, [listener("mem", port, filters)], free_port()))
    logf = os.path.join(out, "envoy.log")
    cmd = [a.envoy, "-c", cfg, "--concurrency", "1", "-l", "warn", "--disable-hot-restart",
           "--base-id", str(os.getpid() % 100000 + 11)]
    env = dict(os.environ, ENVOY_DYNAMIC_MODULES_SEARCH_PATH=a.modules)
    with open(logf, "w") as lf:
        proc = subprocess.Popen(cmd, stdout=lf, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL)
    try:
        wait_ready(proc, admin, 120, logf)
        # Warm-up: the same connections and streams, no delay.
        w = subprocess.run(h2load(port, a.warmup, a.connections, []), capture_output=True,
                           text=True, timeout=120)
        check_h2load(w.stdout, a.warmup, f"{variant} warm-up")
        time.sleep(1)
        rss0, heap0 = rss_kib(proc.pid), allocated(admin)
        hold = subprocess.Popen(
            h2load(port, a.streams, a.connections,
                   ["-H", f"x-envoy-fault-delay-request: {a.hold * 1000}"]),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + a.hold - 2
        last, stable = -1, 0
        while True:
            if time.time() > deadline:
                raise RuntimeError(f"{variant}: no plateau within the hold "
                                   f"({active(admin)} of {a.streams} streams active)")
            time.sleep(0.5)
            n, rss = active(admin), rss_kib(proc.pid)
            stable = stable + 1 if n == a.streams and rss == last else 0
            last = rss
            if stable >= 3:
                break
        rss1, heap1, n1 = rss_kib(proc.pid), allocated(admin), active(admin)
        if n1 != a.streams:
            raise RuntimeError(f"{variant}: {n1} streams active at the plateau, want {a.streams}")
        held_out, _ = hold.communicate(timeout=a.hold + 120)
        check_h2load(held_out, a.streams, f"{variant} hold")
    finally:
        stop(proc, admin)
    per_rss = (rss1 - rss0) * 1024 / a.streams
    per_heap = (heap1 - heap0) / a.streams
    log(f"   {variant:10s} RSS {rss0 / 1024:7.1f} -> {rss1 / 1024:7.1f} MiB,"
        f" heap {heap0 / 2**20:7.1f} -> {heap1 / 2**20:7.1f} MiB:"
        f" {per_rss / 1024:6.2f} KiB RSS, {per_heap / 1024:6.2f} KiB heap per stream")
    return {"rss0": rss0, "rss1": rss1, "heap0": heap0, "heap1": heap1,
            "rss": per_rss, "heap": per_heap}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--envoy", required=True)
    p.add_argument("--envoy-version", default="1.40.0")
    p.add_argument("--modules", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--streams", type=int, default=8000)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--warmup", type=int, default=800)
    p.add_argument("--hold", type=int, default=20, help="seconds each stream is held")
    p.add_argument("--after", action="store_true",
                   help="fault filter after the module: the handler runs before the hold")
    p.add_argument("--rounds", type=int, default=3,
                   help="runs of every variant (interleaved); the median is reported")
    p.add_argument("--variants", nargs="*", default=[])
    a = p.parse_args()
    if not shutil.which("h2load"):
        raise SystemExit("envoy_memory.py: h2load not found (apt package nghttp2-client)")
    names = [v for v in VARIANTS if not a.variants or v in a.variants]
    os.makedirs(a.out, exist_ok=True)
    where = "after" if a.after else "in front of"
    log(f"== {a.streams} streams over {a.connections} HTTP/2 connections, held {a.hold} s by"
        f" the fault filter {where} the module filter")
    runs = {v: [] for v in names}
    for i in range(a.rounds):
        if a.rounds > 1:
            log(f"== round {i + 1} of {a.rounds}")
        for v in names:
            runs[v].append(measure(a, v))
    # Per variant, the median of the rounds (RSS and heap each); the range goes to stderr.
    r = {}
    for v in names:
        r[v] = {k: statistics.median(x[k] for x in runs[v]) for k in ("rss", "heap")}
        if a.rounds > 1:
            log(f"   {v:10s} RSS per stream {min(x['rss'] for x in runs[v]) / 1024:.2f}"
                f"..{max(x['rss'] for x in runs[v]) / 1024:.2f} KiB, heap"
                f" {min(x['heap'] for x in runs[v]) / 1024:.2f}"
                f"..{max(x['heap'] for x in runs[v]) / 1024:.2f} KiB over {a.rounds} rounds")
    print(f"Envoy {a.envoy_version}, --concurrency 1, one Envoy per variant; {a.streams}"
          f" concurrent HTTP/2 streams on {a.connections} connections (h2load), held by Envoy's"
          f" fault filter {where} the module filter; growth from before the streams to the"
          f" plateau, per stream; median of {a.rounds} rounds. Heap: tcmalloc's allocated"
          " bytes (admin /memory).")
    print()
    print("| variant | RSS per stream | − no filter | − raw | heap per stream | − no filter"
          " | − raw |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    kib = lambda b: f"{b / 1024:.2f} KiB"  # noqa: E731
    dkib = lambda b: f"{b / 1024:+.2f} KiB"  # noqa: E731
    for v in names:
        x = r[v]
        cols = [kib(x["rss"])]
        cols.append(dkib(x["rss"] - r["none"]["rss"]) if "none" in r else "—")
        cols.append(dkib(x["rss"] - r["auth_raw"]["rss"]) if "auth_raw" in r else "—")
        cols.append(kib(x["heap"]))
        cols.append(dkib(x["heap"] - r["none"]["heap"]) if "none" in r else "—")
        cols.append(dkib(x["heap"] - r["auth_raw"]["heap"]) if "auth_raw" in r else "—")
        print(f"| {VARIANTS[v][1]} | " + " | ".join(cols) + " |")


if __name__ == "__main__":
    main()
