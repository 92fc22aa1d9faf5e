#!/usr/bin/env bash
# Training throughput of hwnas vs PyTorch on the same three models (MLP, small CNN, 2-layer
# attention encoder), batch 64, float32, 2 threads, same timed steps after warm-up.
#
#   bench/run_vs_pytorch.sh [build-dir]         (default: build)
# Environment: STEPS (default 40), WARMUP (5), THREADS (2), REPEATS (3, best run kept),
#              OPENBLAS=0 to skip the PyTorch+OpenBLAS variant, BENCH_BIN=path to use a
#              prebuilt bench_train_vs_torch instead of building it.
#
# PyTorch setup (Debian's torch, its reference BLAS, and the OpenBLAS variant unpacked locally)
# is shared with the other comparisons: see bench/torch_env.sh.  Each model runs in its own
# process so peak RSS is per model.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${1:-build}"
STEPS="${STEPS:-40}"
WARMUP="${WARMUP:-5}"
THREADS="${THREADS:-2}"
REPEATS="${REPEATS:-3}"
source bench/torch_env.sh

if [ -n "${BENCH_BIN:-}" ]; then  # a prebuilt binary (e.g. from another build dir)
  BENCH="$BENCH_BIN"
else
  torch_build_bench "$BUILD_DIR" bench_train_vs_torch "$THREADS"
  BENCH="$BUILD_DIR/bench/bench_train_vs_torch"
fi
torch_env_setup "$BUILD_DIR" "$THREADS"

# Peak fp32 rate: physical cores x clock x FLOPs/cycle.  Assumes two FMA units per core
# (AVX-512: 2 x 16 lanes x 2 = 64 FLOPs/cycle; AVX2: 32), at the nominal clock that lscpu or
# /proc/cpuinfo reports (turbo and AVX-512 down-clocking ignored).
cores=$(lscpu | awk -F: '/^Core\(s\) per socket/{c=$2} /^Socket\(s\)/{s=$2} END{print c*s}')
mhz=$(lscpu | awk -F: '/^CPU max MHz/{print $2+0; exit}')
[ -z "$mhz" ] && mhz=$(awk -F: '/^cpu MHz/{print $2+0; exit}' /proc/cpuinfo)
if grep -qw avx512f /proc/cpuinfo; then fpc=64; simd=AVX-512; else fpc=32; simd=AVX2; fi
peak=$(awk -v c="$cores" -v m="$mhz" -v f="$fpc" 'BEGIN{printf "%.1f", c*m/1000*f}')
echo "[bench] peak fp32 = $cores cores x $(awk -v m="$mhz" 'BEGIN{printf "%.2f", m/1000}') GHz x $fpc FLOPs/cycle ($simd FMA, 2 units) = $peak GFLOP/s"
echo "[bench] load average before: $(cut -d' ' -f1-3 /proc/loadavg)  steps=$STEPS warmup=$WARMUP threads=$THREADS repeats=$REPEATS (best kept)"

results=$(mktemp)
trap 'rm -f "$results"' EXIT
for model in mlp cnn attn; do
  for ((r = 0; r < REPEATS; ++r)); do
    "$BENCH" --model "$model" --steps "$STEPS" --warmup "$WARMUP" --threads "$THREADS" |
      grep '^RESULT' >>"$results"
    $PY bench/torch_reference.py --model "$model" --steps "$STEPS" --warmup "$WARMUP" \
      --threads "$THREADS" | grep '^RESULT' | sed 's/impl=torch/impl=torch-refblas/' >>"$results"
    if [ -n "$OPENBLAS_LIB" ]; then
      torch_run_openblas $PY bench/torch_reference.py --model "$model" --steps "$STEPS" --warmup "$WARMUP" \
        --threads "$THREADS" | grep '^RESULT' | sed 's/impl=torch/impl=torch-openblas/' >>"$results"
    fi
  done
done
echo "[bench] load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

$PY - "$results" "$peak" <<'EOF'
import sys
path, peak = sys.argv[1], float(sys.argv[2])
best = {}
for line in open(path):
    kv = dict(f.split("=", 1) for f in line.split()[1:])
    key = (kv["model"], kv["impl"])
    if key not in best or float(kv["samples_per_s"]) > float(best[key]["samples_per_s"]):
        best[key] = kv
impls = ["hwnas", "torch-refblas", "torch-openblas"]
print()
print(f"{'model':6} {'impl':15} {'samples/s':>10} {'GFLOP/s':>8} {'%peak':>6} {'RSS MB':>7}   hwnas/this")
for model in ["mlp", "cnn", "attn"]:
    h = best.get((model, "hwnas"))
    for impl in impls:
        r = best.get((model, impl))
        if not r:
            continue
        sps, gf = float(r["samples_per_s"]), float(r["gflops"])
        ratio = "" if impl == "hwnas" or not h else f"{float(h['samples_per_s']) / sps:9.2f}x"
        print(f"{model:6} {impl:15} {sps:10.1f} {gf:8.2f} {100 * gf / peak:5.1f}% "
              f"{float(r['rss_mb']):7.1f}   {ratio}")
print()
print("GFLOP/s counts forward+backward as 3x the forward matmul/conv/attention FLOPs "
      "(bench/train_vs_torch.cpp: forward_flops).  RSS is each process's ru_maxrss; the Python "
      "figure includes the interpreter and libtorch (~240 MB before any model).")
EOF
