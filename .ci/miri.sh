#!/usr/bin/env bash
# Miri over the unsafe layers: the executor (waker, task cells, slots, pool, callouts) through
# the simulated-stream tests, and the buffer unit tests. Runs only where a nightly toolchain is
# installed (Miri needs nightly); elsewhere it says so and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "miri: no nightly toolchain here; skipped"
    exit 0
fi
rustup component add --toolchain nightly miri rust-src >/dev/null
export MIRIFLAGS="${MIRIFLAGS:--Zmiri-disable-isolation}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/miri-target"
cargo +nightly miri setup >/dev/null
cargo +nightly miri test -p jisr \
    --test request_phase --test response_phase --test callouts --test routing --test raw_and_attrs
# The buffer module has no `unsafe`; its quick tests still run under Miri (the SSE and usage
# tests are too slow under the interpreter and are covered by fuzzing instead).
cargo +nightly miri test -p jisr --lib -- buffer::ring buffer::head_tail buffer::logfmt
