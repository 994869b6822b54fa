#!/usr/bin/env bash
# Checks the layer stack stated in src/lib.rs: each folder of src/ may only use (`crate::…`)
# itself and the layers below it. Bottom to top: abi, executor, host, filter, api, entry and
# testing. The buffer code is the crate jisr-buffer, re-exported as `crate::buffer`: it cannot
# use jisr at all, which the compiler checks, so any layer may use it.
set -euo pipefail
cd "$(dirname "$0")/.."

declare -A allowed=(
    [abi]="abi"
    [executor]="executor"
    [host]="host abi executor"
    [filter]="filter abi executor host"
    [api]="api abi executor host filter"
    [entry]="entry abi executor host filter api"
    [testing]="testing entry abi executor host filter api"
)

bad=0
for layer in "${!allowed[@]}"; do
    dir="src/$layer"
    [ -d "$dir" ] || { echo "layers: $dir is missing" >&2; bad=1; continue; }
    # Code only: doc comments may name other layers.
    used=$(grep -rhE 'crate::(abi|executor|host|filter|api|entry|testing)\b' "$dir" |
        grep -vE '^\s*//' |
        grep -oE 'crate::(abi|executor|host|filter|api|entry|testing)\b' |
        sed "s/crate:://" | sort -u || true)
    for u in $used; do
        if ! grep -qw "$u" <<<"${allowed[$layer]}"; then
            echo "layers: src/$layer uses crate::$u (a layer above it):" >&2
            grep -rnE "crate::$u\b" "$dir" | grep -vE '^[^:]*:[0-9]+:\s*//' | sed 's/^/    /' >&2
            bad=1
        fi
    done
done
# Every folder of src/ has a place in the stack.
for dir in src/*/; do
    layer=$(basename "$dir")
    [ -n "${allowed[$layer]+x}" ] || { echo "layers: src/$layer has no place in the stack" >&2; bad=1; }
done
if [ "$bad" -ne 0 ]; then
    echo "layers: the stack is broken (see above)" >&2
    exit 1
fi
echo "layers: ok (abi < executor < host < filter < api < entry, testing; buffer is the crate jisr-buffer)"
