#!/usr/bin/env bash
# hwnas's fused selective scan and S4D layer (bench/ssm_vs_torch.cpp) against eager PyTorch
# implementations of the same math (bench/ssm_vs_torch.py: selective_scan_ref's loop, S4D's
# Vandermonde kernel + FFT convolution), forward + backward, 2 threads each, best of REPEATS
# runs; prints both and the time ratio torch / hwnas per op (> 1: hwnas faster).
#
#   bench/ssm_vs_torch.sh [build-dir]     Environment: BATCH SEQ INNER STATE CHANNELS S4D_STATE
#                                         ITERS WARMUP THREADS REPEATS (3), BENCH_BIN
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${1:-build}"
THREADS="${THREADS:-2}"
REPEATS="${REPEATS:-3}"
source bench/torch_env.sh
if [ -n "${BENCH_BIN:-}" ]; then
  BENCH="$BENCH_BIN"
else
  torch_build_bench "$BUILD_DIR" bench_ssm_vs_torch "$THREADS"
  BENCH="$BUILD_DIR/bench/bench_ssm_vs_torch"
fi
# No dense layers are timed, so the BLAS choice does not matter: no OpenBLAS variant.
OPENBLAS=0 torch_env_setup "$BUILD_DIR" "$THREADS"
args=(--batch "${BATCH:-8}" --seq "${SEQ:-512}" --inner "${INNER:-128}" --state "${STATE:-16}"
      --channels "${CHANNELS:-128}" --s4d-state "${S4D_STATE:-64}" --iters "${ITERS:-10}"
      --warmup "${WARMUP:-2}" --threads "$THREADS")
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for ((r = 0; r < REPEATS; ++r)); do
  "$BENCH" "${args[@]}" | grep '^RESULT' >>"$results"
  $PY bench/ssm_vs_torch.py "${args[@]}" | grep '^RESULT' >>"$results"
done
$PY - "$results" <<'PYEOF'
import sys
best = {}
for line in open(sys.argv[1]):
    kv = dict(f.split("=", 1) for f in line.split()[1:])
    if kv["impl"] not in best or float(kv["ms_per_iter"]) < float(best[kv["impl"]]["ms_per_iter"]):
        best[kv["impl"]] = kv
for impl, kv in sorted(best.items()):
    print(f"{impl:12} ms/iter={float(kv['ms_per_iter']):10.2f}  " +
          " ".join(f"{k}={v}" for k, v in kv.items() if k not in ("impl", "ms_per_iter")))
for op in ("scan", "s4d"):
    h, t = best.get("hwnas-" + op), best.get("torch-" + op)
    if h and t:
        print(f"{op}: torch / hwnas time = {float(t['ms_per_iter']) / float(h['ms_per_iter']):.2f}x")
PYEOF
