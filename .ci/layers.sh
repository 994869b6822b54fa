#!/usr/bin/env bash
# Checks the structure the crate docs state (`jisr::architecture`): the layer stack, one shape
# per extension kind, and no import circle inside a folder. The rules are in .ci/layers.py.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 .ci/layers.py
