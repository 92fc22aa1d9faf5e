#!/usr/bin/env bash
# KAN training throughput, hwnas vs an efficient-KAN in PyTorch, batch 64, float32, 2 threads:
#   mnist 784 -> 64 -> 10 and tiny 2 -> 5 -> 1, both G = 5, k = 3.
#
#   bench/run_kan_vs_torch.sh [build-dir]      (default: build)
# Environment: STEPS (50), WARMUP (5), THREADS (2), REPEATS (3, best kept).
# PyTorch is Debian's python3-torch (/usr/bin/python3), which links the slow reference BLAS; it
# is also run against OpenBLAS, unpacked locally by bench/run_vs_pytorch.sh (see there).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${1:-build}"
STEPS="${STEPS:-50}"
WARMUP="${WARMUP:-5}"
THREADS="${THREADS:-2}"
REPEATS="${REPEATS:-3}"
PY=/usr/bin/python3
cmake --build "$BUILD_DIR" --target bench_kan_vs_torch -j"$THREADS" >/dev/null
BENCH="$BUILD_DIR/bench/bench_kan_vs_torch"

# bench/run_vs_pytorch.sh owns the OpenBLAS unpacking; with zero repeats and a no-op binary it
# does only that (into <build-dir>/openblas), so the logic lives in one place.
if [ ! -f /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 ] &&
   [ ! -f "$BUILD_DIR/openblas/root/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3" ]; then
  BENCH_BIN=/bin/true REPEATS=0 bench/run_vs_pytorch.sh "$BUILD_DIR" >/dev/null || true
fi
OPENBLAS_LIB=""
for d in /usr/lib/x86_64-linux-gnu/openblas-pthread \
         "$BUILD_DIR/openblas/root/usr/lib/x86_64-linux-gnu/openblas-pthread"; do
  [ -f "$d/libblas.so.3" ] && { OPENBLAS_LIB="$(cd "$d" && pwd)"; break; }
done
[ -z "$OPENBLAS_LIB" ] && echo "[bench] OpenBLAS unavailable; torch runs with the reference BLAS only"

export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS="$THREADS" OPENBLAS_NUM_THREADS="$THREADS"
results=$(mktemp)
trap 'rm -f "$results"' EXIT
args=(--steps "$STEPS" --warmup "$WARMUP" --threads "$THREADS")
echo "[bench] load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for ((r = 0; r < REPEATS; ++r)); do
  "$BENCH" "${args[@]}" | grep '^RESULT' >>"$results"
  $PY bench/kan_vs_torch.py "${args[@]}" | grep '^RESULT' | sed 's/impl=torch/impl=torch-refblas/' >>"$results"
  if [ -n "$OPENBLAS_LIB" ]; then
    LD_LIBRARY_PATH="$OPENBLAS_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" $PY bench/kan_vs_torch.py "${args[@]}" |
      grep '^RESULT' | sed 's/impl=torch/impl=torch-openblas/' >>"$results"
  fi
done
echo "[bench] load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
$PY - "$results" <<'PYEOF'
import sys
best = {}
for line in open(sys.argv[1]):
    kv = dict(f.split("=", 1) for f in line.split()[1:])
    key = (kv["model"], kv["impl"])
    if key not in best or float(kv["samples_per_s"]) > float(best[key]["samples_per_s"]):
        best[key] = kv
print(f"\n{'model':6} {'impl':15} {'samples/s':>11}   hwnas/this")
for model in ["mnist", "tiny"]:
    h = best.get((model, "hwnas"))
    for impl in ["hwnas", "torch-refblas", "torch-openblas"]:
        r = best.get((model, impl))
        if not r:
            continue
        sps = float(r["samples_per_s"])
        ratio = "" if impl == "hwnas" or not h else f"{float(h['samples_per_s']) / sps:9.2f}x"
        print(f"{model:6} {impl:15} {sps:11.1f}   {ratio}")
PYEOF
