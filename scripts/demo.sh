#!/usr/bin/env bash
# The README demo: build the example modules, install the pinned Envoy (version lives in
# e2e/src/install.rs, ENVOY_VERSION) into target/, then run the examples in Envoy in front of
# an echo upstream and print each request and answer. Extra args go to the demo binary,
# e.g. `scripts/demo.sh --serve 120` keeps Envoy up for two minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
# The same build as the e2e harness runs on first use (examples and test fixtures), so the
# demo's own build finds it fresh.
cargo build --examples -p jisr -p jisr-fixtures
exec cargo run --quiet -p jisr-e2e --bin demo -- "$@"
