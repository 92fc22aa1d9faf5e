#!/usr/bin/env bash
# hwnas's fused CfC sized like an LSTM (bench/cfc_vs_torch.cpp) against torch.nn.LSTM of the same
# size (bench/cfc_vs_torch.py): batch 32, T = 256, 128 features, hidden 128, 2 threads each,
# best of REPEATS runs; prints both and the samples/s ratio (against the faster torch variant:
# Debian's reference BLAS or OpenBLAS, see bench/torch_env.sh).
#
#   bench/cfc_vs_torch.sh [build-dir]     Environment: BATCH SEQ INPUT HIDDEN ITERS WARMUP
#                                         THREADS REPEATS (3), OPENBLAS=0, BENCH_BIN
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${1:-build}"
THREADS="${THREADS:-2}"
REPEATS="${REPEATS:-3}"
source bench/torch_env.sh
if [ -n "${BENCH_BIN:-}" ]; then
  BENCH="$BENCH_BIN"
else
  torch_build_bench "$BUILD_DIR" bench_cfc_vs_torch "$THREADS"
  BENCH="$BUILD_DIR/bench/bench_cfc_vs_torch"
fi
torch_env_setup "$BUILD_DIR" "$THREADS"
args=(--batch "${BATCH:-32}" --seq "${SEQ:-256}" --input "${INPUT:-128}" --hidden "${HIDDEN:-128}"
      --iters "${ITERS:-20}" --warmup "${WARMUP:-3}" --threads "$THREADS")
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for ((r = 0; r < REPEATS; ++r)); do
  "$BENCH" "${args[@]}" | grep '^RESULT' >>"$results"
  $PY bench/cfc_vs_torch.py "${args[@]}" | grep '^RESULT' | sed 's/impl=torch-lstm/impl=torch-lstm-refblas/' >>"$results"
  if [ -n "$OPENBLAS_LIB" ]; then
    torch_run_openblas $PY bench/cfc_vs_torch.py "${args[@]}" | grep '^RESULT' |
      sed 's/impl=torch-lstm/impl=torch-lstm-openblas/' >>"$results"
  fi
done
$PY - "$results" <<'PYEOF'
import sys
best = {}
for line in open(sys.argv[1]):
    kv = dict(f.split("=", 1) for f in line.split()[1:])
    if kv["impl"] not in best or float(kv["samples_per_s"]) > float(best[kv["impl"]]["samples_per_s"]):
        best[kv["impl"]] = kv
for impl, kv in best.items():
    print(f"{impl:24} params={kv['params']:>7} ms/iter={float(kv['ms_per_iter']):9.2f} samples/s={float(kv['samples_per_s']):9.1f}")
h = best.get("hwnas-cfc")
t = max((v for k, v in best.items() if k.startswith("torch")), key=lambda v: float(v["samples_per_s"]), default=None)
if h and t:
    print(f"hwnas CfC / fastest torch LSTM ({t['impl']}): {float(h['samples_per_s']) / float(t['samples_per_s']):.2f}x samples/s")
PYEOF
