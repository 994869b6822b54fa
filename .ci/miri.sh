#!/usr/bin/env bash
# Miri over the unsafe layers: the executor (waker, task cells, slots, pool, header arena)
# through the simulated-stream tests (the soundness tests among them), and unit tests. Miri
# needs a nightly toolchain with the
# `miri` and `rust-src` components; whatever is missing is installed through rustup. If Miri
# cannot run, the script says why and fails: a skipped Miri run would pass without checking
# anything.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
    echo "miri: Miri could not run: $*" >&2
    exit 1
}

command -v rustup >/dev/null 2>&1 ||
    fail "rustup is not installed; it is needed to get a nightly toolchain with miri and rust-src"

install_nightly() {
    # Also updates an existing nightly; rustup picks the newest nightly that ships Miri.
    rustup toolchain install nightly --profile minimal --component miri,rust-src
}

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly-'; then
    echo "miri: no nightly toolchain; installing one with miri and rust-src"
    install_nightly || fail "'rustup toolchain install nightly' failed (see rustup's output above)"
fi

missing=()
installed=$(rustup component list --toolchain nightly --installed) ||
    fail "cannot list the components of the nightly toolchain"
for c in miri rust-src; do
    grep -Eq "^$c(-|$)" <<<"$installed" || missing+=("$c")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "miri: adding ${missing[*]} to the nightly toolchain"
    if ! rustup component add --toolchain nightly "${missing[@]}"; then
        # This nightly may not ship Miri: move to the newest one that does.
        echo "miri: this nightly cannot get ${missing[*]}; updating nightly"
        install_nightly ||
            fail "the nightly toolchain has no ${missing[*]} and updating it failed (see rustup's output above)"
    fi
fi

export MIRIFLAGS="${MIRIFLAGS:--Zmiri-disable-isolation}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/miri-target"
cargo +nightly miri setup >/dev/null ||
    fail "'cargo +nightly miri setup' could not build Miri's standard library (see its output above)"
cargo +nightly miri test -p jisr \
    --test request_phase --test response_phase --test callouts --test routing --test raw_and_attrs \
    --test wire_safety --test network --test network_raw --test udp
# The listener tests forget a boxed future on purpose (to show forgetting one is harmless),
# which Miri's leak check reports as the leak it is.
MIRIFLAGS="$MIRIFLAGS -Zmiri-ignore-leaks" cargo +nightly miri test -p jisr --test listener
# The soundness tests leak on purpose (`mem::forget` of a callout future, the payload of a
# panic raised by a panic payload's `Drop`), so they run without Miri's leak check; every
# other check (use-after-free, aliasing, data races) applies.
MIRIFLAGS="$MIRIFLAGS -Zmiri-ignore-leaks" cargo +nightly miri test -p jisr --test soundness
# Library unit tests of the unsafe pieces (the header-copy arena; host bytes copied before the
# host changes them; the thread-local scratch handed to Envoy), and the quick buffer tests: the
# buffer module has no `unsafe`, and the SSE and usage tests are too slow under the interpreter
# and are covered by fuzzing instead.
cargo +nightly miri test -p jisr --lib -- executor::arena host::envoy::tests host::tests \
    buffer::ring buffer::head_tail buffer::logfmt
