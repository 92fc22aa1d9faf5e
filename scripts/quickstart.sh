#!/usr/bin/env bash
# Command 1 of the README: install what is missing, build, run the quickstart search.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build
./build/hwnas search examples/quickstart.json "$@"
