#!/usr/bin/env bash
# Model checks (loom) of the state threads share without locks: the `Published` generation
# protocol, `Budgets` (charges, slots taken over, reservations against settlements and new
# windows), the timer set's arming, the wake state and the `jisr_*` stats flush gate. The models live next to the code (those
# of `Budgets` in the jisr-buffer crate), in `loom_tests` modules compiled only with
# `--cfg loom` (own target dir, release: loom runs every interleaving, and an optimised build
# keeps that to seconds). The bound on preemptions keeps each model's run time bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg loom ${RUSTFLAGS:-}"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
CARGO_TARGET_DIR=target/loom timeout 1200 cargo test -p jisr -p jisr-buffer --lib --release loom_tests
