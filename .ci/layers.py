#!/usr/bin/env python3
"""Checks the structure the crate docs state (`jisr::architecture`).

1. The layer stack: each folder of src/ uses (`crate::...`) only itself and the layers below
   it. Bottom to top: abi, executor, host, filter, api, entry; testing sits on top.
2. One shape per kind: inside a layer, a kind's module (`<layer>/<kind>/` or
   `<layer>/<kind>.rs`) uses only its own kind and the shared (root) modules of any layer at or
   below it, never another kind. Shared modules use no kind, except the few places that
   dispatch to every kind (listed in MEETING_POINTS with the reason).
3. No import circle inside a folder: the modules of one folder (files and sub-folders) form no
   cycle through their `use` of each other.

Imports through the crate root (`crate::Request`, `crate::raw::RawFilter`, a `pub use` in
src/lib.rs) are resolved to the module they re-export, so they count like direct paths.
Comments are skipped: doc text may name any module.
"""
import os
import re
import sys

SRC = os.environ.get("LAYERS_SRC", "src")
STACK = ["abi", "executor", "host", "filter", "api", "entry", "testing"]
KINDS = ["http", "server", "network", "listener", "udp"]
# Shared modules allowed to name kinds, and why.
MEETING_POINTS = {
    "api/registry.rs": "the registry is where a module registers extensions of every kind",
    "entry/mod.rs": "`export!` generates every kind's hooks",
    "entry/introspection.rs": "jisr's own admin endpoints report on filters and servers alike",
    "testing/mod.rs": "re-exports each kind's test doubles under `jisr::testing`",
}
LAYER_RE = "|".join(STACK)


def strip_comments(text):
    out = []
    for line in text.split("\n"):
        s = line.lstrip()
        if s.startswith("//"):
            out.append("")
            continue
        # Drop a trailing `// ...` (not inside a string: good enough for this code base).
        i = line.find("//")
        if i >= 0 and line.count('"', 0, i) % 2 == 0:
            line = line[:i]
        out.append(line)
    return "\n".join(out)


def module_of(path):
    """src/host/http/sim.rs -> ['host', 'http', 'sim']; src/host/mod.rs -> ['host']."""
    rel = os.path.relpath(path, SRC)[:-3].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    return rel


def expand_use_paths(text):
    """Every `crate::a::b` path in code, with `use crate::a::{b, c::d}` groups expanded."""
    paths = []
    # Grouped imports: expand one level of braces (nested groups are expanded recursively).
    def expand(prefix, body):
        depth, cur, items = 0, "", []
        for ch in body:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                items.append(cur)
                cur = ""
            else:
                cur += ch
        items.append(cur)
        for it in items:
            it = re.sub(r"\s+", "", it)
            if not it or it == "self":
                if it == "self":
                    paths.append(prefix.rstrip(":"))
                continue
            m = re.match(r"^([A-Za-z0-9_:]*?)::\{(.*)\}$", it)
            if m:
                expand(prefix + m.group(1) + "::", m.group(2))
            else:
                paths.append(prefix + re.sub(r"\bas\b.*$", "", it))

    for m in re.finditer(r"\b(crate|super)((?:::[A-Za-z0-9_]+)*)::\{", text):
        start = m.end()
        depth, i = 1, start
        while i < len(text) and depth:
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
            i += 1
        expand(m.group(1) + m.group(2) + "::", text[start:i - 1])
    for m in re.finditer(r"\b((?:crate|super)(?:::[A-Za-z0-9_]+)+)", text):
        paths.append(m.group(1))
    return paths


def root_reexports():
    """Names the crate root re-exports -> the internal module path they come from."""
    text = strip_comments(open(os.path.join(SRC, "lib.rs")).read())
    table = {}
    # `pub use api::http::request::Request;` and `pub use api::http::wire;`
    for m in re.finditer(r"pub use ((?:api|filter|host|entry)(?:::[A-Za-z0-9_]+)+)(?:::\{([^}]*)\})?;", text):
        base = m.group(1).split("::")
        if m.group(2):
            for name in m.group(2).split(","):
                name = name.strip()
                if name:
                    table[name] = base
        else:
            table[base[-1]] = base[:-1] if base[-1][0].isupper() else base
    # `pub mod raw { pub use crate::api::http::raw::{...}; }`
    for m in re.finditer(r"pub mod ([a-z_]+) \{(.*?)\n\}", text, re.S):
        for p in expand_use_paths(m.group(2)):
            parts = p.split("::")[1:]
            table[m.group(1) + "::" + parts[-1]] = parts[:-1]
    return table


def resolve(path, here):
    """A `crate::`/`super::` path -> the internal module path it names (list), or None."""
    parts = path.split("::")
    if parts[0] == "super":
        base = here[:-1] if not here_is_dir(here) else here[:-1]
        n = 0
        while n < len(parts) and parts[n] == "super":
            n += 1
        base = here[: len(here) - n]
        return base + parts[n:]
    parts = parts[1:]
    if not parts:
        return None
    if parts[0] in STACK:
        return parts
    key2 = "::".join(parts[:2])
    if key2 in REEXPORTS:
        return REEXPORTS[key2]
    if parts[0] in REEXPORTS:
        return REEXPORTS[parts[0]]
    return None


def here_is_dir(here):
    return os.path.isdir(os.path.join(SRC, *here))


def kind_of(mod):
    """The kind a module belongs to (its second path element), or None when shared."""
    if len(mod) >= 2 and mod[1] in KINDS:
        return mod[1]
    return None


REEXPORTS = {}
BROKEN = []


def main():
    global REEXPORTS
    REEXPORTS = root_reexports()
    bad = []
    edges = {}  # folder -> {child: set(children it uses)}
    for dirpath, _, files in os.walk(SRC):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            here = module_of(path)
            if here == ["lib"] or here[0] not in STACK:
                continue
            rel = os.path.relpath(path, SRC)
            text = strip_comments(open(path).read())
            layer = here[0]
            mykind = kind_of(here)
            for p in expand_use_paths(text):
                target = resolve(p, here)
                if not target or target[0] not in STACK:
                    continue
                tl = target[0]
                if STACK.index(tl) > STACK.index(layer) and not (layer == "testing"):
                    bad.append(f"{rel}: uses {p} (layer {tl} is above {layer})")
                    continue
                tk = kind_of(target)
                if tk and mykind and tk != mykind:
                    bad.append(f"{rel}: the {mykind} kind uses {p} (kind {tk})")
                elif tk and not mykind and rel not in MEETING_POINTS and layer != "testing":
                    bad.append(f"{rel}: shared module uses {p} (kind {tk}); shared code names no kind")
                # Folder-internal edges for the circle check.
                common = 0
                while common < min(len(here), len(target)) and here[common] == target[common]:
                    common += 1
                folder = here[:common]
                if common < len(here) and common < len(target) and len(folder) >= 1:
                    a, b = here[common], target[common]
                    if a != b:
                        edges.setdefault("/".join(folder), {}).setdefault(a, set()).add(b)
    # Circles inside a folder (Tarjan's strongly connected components).
    for folder, g in sorted(edges.items()):
        index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

        def strong(v):
            index[v] = low[v] = counter[0]
            counter[0] += 1
            stack.append(v)
            on.add(v)
            for w in g.get(v, ()):
                if w not in index:
                    strong(w)
                    low[v] = min(low[v], low[w])
                elif w in on:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    sccs.append(sorted(comp))

        for v in sorted(g):
            if v not in index:
                strong(v)
        for c in sccs:
            bad.append(f"src/{folder}: import circle between {{{', '.join(c)}}}")
    if bad:
        for b in sorted(set(bad)):
            print("layers: " + b, file=sys.stderr)
        BROKEN.extend(sorted(set(bad)))
        print("layers: the structure is broken (see above; rules in .ci/layers.py)", file=sys.stderr)
        return 1
    # Every folder of src/ has a place.
    print("layers: ok (abi < executor < host < filter < api < entry, testing; kinds: "
          + ", ".join(KINDS) + "; no circles)")
    return 0


def self_test():
    """Each rule must catch its violation: small trees, each broken one way."""
    import tempfile
    base = {
        "lib.rs": "mod api;\npub use api::http::req::Request;\npub mod raw {\n    pub use crate::api::http::raw::Raw;\n}\n",
        "abi/mod.rs": "",
        "executor/mod.rs": "",
        "host/mod.rs": "pub(crate) mod http;\npub(crate) mod server;\n",
        "host/http/mod.rs": "",
        "host/server.rs": "",
        "filter/mod.rs": "",
        "api/mod.rs": "",
        "api/http/req.rs": "use crate::host::http::X;\n",
        "api/http/raw.rs": "",
        "entry/mod.rs": "",
    }
    cases = {
        "ok": ({}, None),
        "upward": ({"host/http/mod.rs": "use crate::api::config::C;\n"}, "is above"),
        "upward through a root re-export": ({"filter/mod.rs": "use crate::Request;\n"}, "is above"),
        "upward through a root module": ({"host/server.rs": "use crate::raw::Raw;\n"}, "is above"),
        "another kind": ({"host/server.rs": "use crate::host::http::Y;\n"}, "(kind http)"),
        "network uses udp": ({"abi/network.rs": "use super::udp::UdpFilterEnvoyPtr;\n"}, "(kind udp)"),
        "shared names listener": ({"abi/late.rs": "use crate::abi::listener::X;\n"}, "shared module uses"),
        "shared names a kind": ({"host/mod.rs": "pub(crate) mod http;\nuse crate::host::http::Y;\n"}, "shared module uses"),
        "circle": ({"api/a.rs": "use crate::api::b::B;\n", "api/b.rs": "use super::c::C;\n", "api/c.rs": "use crate::api::{a::A, x};\n"}, "import circle"),
        "comments are not code": ({"host/http/mod.rs": "// use crate::api::config::C;\n/// [`crate::api::X`]\n"}, None),
    }
    failed = []
    global SRC, BROKEN
    for name, (files, expect) in cases.items():
        with tempfile.TemporaryDirectory() as d:
            tree = dict(base)
            tree.update(files)
            for rel, text in tree.items():
                path = os.path.join(d, rel)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as f:
                    f.write(text)
            SRC, BROKEN = d, []
            saved = sys.stdout, sys.stderr
            sys.stdout = sys.stderr = open(os.devnull, "w")
            try:
                rc = main()
            finally:
                sys.stdout.close()
                sys.stdout, sys.stderr = saved
            got = "\n".join(BROKEN)
            if expect is None and rc != 0:
                failed.append(f"{name}: flagged a good tree: {got}")
            if expect is not None and (rc == 0 or expect not in got):
                failed.append(f"{name}: not caught (wanted '{expect}', got '{got}')")
    SRC = os.environ.get("LAYERS_SRC", "src")
    for f in failed:
        print("layers self-test: " + f, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    if self_test() != 0:
        print("layers: the checker itself is broken", file=sys.stderr)
        sys.exit(1)
    sys.exit(main())
