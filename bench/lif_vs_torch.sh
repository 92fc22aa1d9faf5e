#!/usr/bin/env bash
# Times the LIF neuron loop (forward + backward over T steps) in hwnas (fused lif op) and in
# PyTorch (bench/lif_vs_torch.py), both on 2 threads, and prints torch_ms / hwnas_ms.
#
#   bench/lif_vs_torch.sh [build-dir]          (default: build)
# Environment: BATCH (64), STEPS (16), NEURONS (1024), ITERS (20), WARMUP (3), THREADS (2).
# PyTorch setup: bench/torch_env.sh (Debian's /usr/bin/python3 torch).  The LIF loop uses no
# BLAS, so only the plain torch variant is run.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${1:-build}"
BATCH="${BATCH:-64}" STEPS="${STEPS:-16}" NEURONS="${NEURONS:-1024}"
ITERS="${ITERS:-20}" WARMUP="${WARMUP:-3}" THREADS="${THREADS:-2}"
source bench/torch_env.sh
torch_build_bench "$BUILD_DIR" bench_lif_vs_torch "$THREADS"
OPENBLAS=0 torch_env_setup "$BUILD_DIR" "$THREADS"
args=(--batch "$BATCH" --steps "$STEPS" --neurons "$NEURONS" --iters "$ITERS" --warmup "$WARMUP"
      --threads "$THREADS")
echo "[bench] load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
h=$("$BUILD_DIR/bench/bench_lif_vs_torch" "${args[@]}")
echo "$h"
t=$($PY bench/lif_vs_torch.py "${args[@]}")
echo "$t"
hm=$(echo "$h" | awk '/hwnas_ms_per_iter/ {print $2}')
tm=$(echo "$t" | awk '/torch_ms_per_iter/ {print $2}')
echo "[bench] LIF loop fwd+bwd: hwnas ${hm} ms, torch ${tm} ms, torch/hwnas = $(awk -v a="$tm" -v b="$hm" 'BEGIN {printf "%.2f", a / b}')x"
