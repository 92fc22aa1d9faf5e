#!/usr/bin/env bash
# An RK4 Neural ODE solve, forward+backward (bench/ode_vs_torch.cpp: hwnas backprop and adjoint)
# against the same maths in PyTorch (bench/ode_vs_torch.py): D = 32, MLP 32-64-32 tanh, batch 64,
# 20 steps, 2 threads each, best of REPEATS runs; prints each and the samples/s ratio of each
# hwnas mode against the fastest torch variant (Debian's reference BLAS or OpenBLAS, see
# bench/torch_env.sh).
#
#   bench/ode_vs_torch.sh [build-dir]     Environment: BATCH DIM HIDDEN STEPS ITERS WARMUP
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
  torch_build_bench "$BUILD_DIR" bench_ode_vs_torch "$THREADS"
  BENCH="$BUILD_DIR/bench/bench_ode_vs_torch"
fi
torch_env_setup "$BUILD_DIR" "$THREADS"
args=(--batch "${BATCH:-64}" --dim "${DIM:-32}" --hidden "${HIDDEN:-64}" --steps "${STEPS:-20}"
      --iters "${ITERS:-200}" --warmup "${WARMUP:-20}" --threads "$THREADS")
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for ((r = 0; r < REPEATS; ++r)); do
  "$BENCH" "${args[@]}" | grep '^RESULT' >>"$results"
  $PY bench/ode_vs_torch.py "${args[@]}" | grep '^RESULT' | sed 's/impl=torch-rk4/impl=torch-rk4-refblas/' >>"$results"
  if [ -n "$OPENBLAS_LIB" ]; then
    torch_run_openblas $PY bench/ode_vs_torch.py "${args[@]}" | grep '^RESULT' |
      sed 's/impl=torch-rk4/impl=torch-rk4-openblas/' >>"$results"
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
    print(f"{impl:24} params={kv['params']:>7} ms/iter={float(kv['ms_per_iter']):9.3f} samples/s={float(kv['samples_per_s']):10.1f}")
t = max((v for k, v in best.items() if k.startswith("torch")), key=lambda v: float(v["samples_per_s"]), default=None)
for mode in ("backprop", "adjoint"):
    h = best.get("hwnas-" + mode)
    if h and t:
        print(f"hwnas RK4 ODE ({mode}) / fastest torch ({t['impl']}): {float(h['samples_per_s']) / float(t['samples_per_s']):.2f}x samples/s")
PYEOF
