#!/usr/bin/env bash
# hwnas's hyena block (bench/hyena_vs_torch.cpp) against the same Hyena operator in PyTorch
# (bench/hyena_vs_torch.py, torch.fft.rfft long convolutions): batch 8, L = 1024, width 64,
# order 2, filter FFN width 64 depth 2, 2 threads each, best of REPEATS runs; prints both and
# the samples/s ratio (against the faster torch variant: reference BLAS or OpenBLAS, see
# bench/torch_env.sh).
#
#   bench/hyena_vs_torch.sh [build-dir]    Environment: BATCH SEQ WIDTH ORDER FW ITERS WARMUP
#                                          THREADS REPEATS (3), OPENBLAS=0, BENCH_BIN
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${1:-build}"
THREADS="${THREADS:-2}"
REPEATS="${REPEATS:-3}"
source bench/torch_env.sh
if [ -n "${BENCH_BIN:-}" ]; then
  BENCH="$BENCH_BIN"
else
  torch_build_bench "$BUILD_DIR" bench_hyena_vs_torch "$THREADS"
  BENCH="$BUILD_DIR/bench/bench_hyena_vs_torch"
fi
torch_env_setup "$BUILD_DIR" "$THREADS"
args=(--batch "${BATCH:-8}" --seq "${SEQ:-1024}" --width "${WIDTH:-64}" --order "${ORDER:-2}"
      --filter-width "${FW:-64}" --iters "${ITERS:-10}" --warmup "${WARMUP:-2}" --threads "$THREADS")
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for ((r = 0; r < REPEATS; ++r)); do
  "$BENCH" "${args[@]}" | grep '^RESULT' >>"$results"
  $PY bench/hyena_vs_torch.py "${args[@]}" | grep '^RESULT' | sed 's/impl=torch-hyena/impl=torch-hyena-refblas/' >>"$results"
  if [ -n "$OPENBLAS_LIB" ]; then
    torch_run_openblas $PY bench/hyena_vs_torch.py "${args[@]}" | grep '^RESULT' |
      sed 's/impl=torch-hyena/impl=torch-hyena-openblas/' >>"$results"
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
    print(f"{impl:26} params={kv['params']:>7} ms/iter={float(kv['ms_per_iter']):9.2f} samples/s={float(kv['samples_per_s']):9.2f}")
h = best.get("hwnas-hyena")
t = max((v for k, v in best.items() if k.startswith("torch")), key=lambda v: float(v["samples_per_s"]), default=None)
if h and t:
    print(f"hwnas hyena / fastest torch hyena ({t['impl']}): {float(h['samples_per_s']) / float(t['samples_per_s']):.2f}x samples/s")
PYEOF
