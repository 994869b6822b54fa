#!/usr/bin/env bash
# The `compile_fail` doctests prove the borrow and thread rules (a header view cannot cross a
# reply or a header change, handles cannot cross threads, ...). Stable rustdoc only checks that
# such a test fails to compile, for any reason; nightly rustdoc also checks the error code each
# one names (E0502 for a borrow conflict, E0277 for a missing Send/Sync, ...), so a test that
# fails for a wrong reason (a typo, a renamed item) fails here. Needs the nightly toolchain that
# .ci/miri.sh installs; fails loudly without it.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly-'; then
    echo "compile-fail: no nightly toolchain (run .ci/miri.sh first, which installs it)" >&2
    exit 1
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/nightly-doc"
cargo +nightly test -p jisr --doc
