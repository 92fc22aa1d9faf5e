#!/usr/bin/env bash
# Command 2 of the README: install what is missing, build, run every test through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build
# mpirun refuses root unless told; the MPI tests run as root on CI machines.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cd build && ctest --output-on-failure -j"$(nproc)" "$@"
