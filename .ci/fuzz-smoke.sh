#!/usr/bin/env bash
# Fuzz smoke test: build every cargo-fuzz target in fuzz/ and run each one for a short time,
# starting from the seed corpus committed under fuzz/corpus/<target>/.
#
# Uses nightly with AddressSanitizer when a nightly toolchain is installed, otherwise stable
# without a sanitizer. Exits non-zero on the first finding; libFuzzer leaves the crashing input
# in fuzz/artifacts/<target>/.
#
#   FUZZ_SECONDS=30   seconds per target (default 30)
#   FUZZ_TARGETS="sse ring"   run only these targets
set -euo pipefail

cd "$(dirname "$0")/../fuzz"
seconds="${FUZZ_SECONDS:-30}"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain=(+nightly)
    sanitizer=address
else
    toolchain=()
    sanitizer=none
fi

targets="${FUZZ_TARGETS:-$(cargo "${toolchain[@]}" fuzz list)}"
echo "fuzz-smoke: toolchain=${toolchain[*]:-stable} sanitizer=$sanitizer ${seconds}s each: $targets"

cargo "${toolchain[@]}" fuzz build -s "$sanitizer"

# New inputs go to a scratch directory so the committed seed corpus stays small.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

for target in $targets; do
    mkdir -p "$scratch/$target"
    dict=()
    if [ -f "dict/$target.dict" ]; then
        dict=(-dict="dict/$target.dict")
    fi
    echo "fuzz-smoke: running $target"
    cargo "${toolchain[@]}" fuzz run -s "$sanitizer" "$target" "$scratch/$target" "corpus/$target" \
        -- -max_total_time="$seconds" -print_final_stats=1 "${dict[@]}"
done
echo "fuzz-smoke: no findings"
