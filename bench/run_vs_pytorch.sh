#!/usr/bin/env bash
# Training throughput of hwnas vs PyTorch on the same three models (MLP, small CNN, 2-layer
# attention encoder), batch 64, float32, 2 threads, same timed steps after warm-up.
#
#   bench/run_vs_pytorch.sh [build-dir]         (default: build)
# Environment: STEPS (default 40), WARMUP (5), THREADS (2), REPEATS (3, best run kept),
#              OPENBLAS=0 to skip the PyTorch+OpenBLAS variant, BENCH_BIN=path to use a
#              prebuilt bench_train_vs_torch instead of building it.
#
# PyTorch comes from Debian's python3-torch, run by /usr/bin/python3 (the default python3 on
# the development machines is a pyenv build without torch).  Debian's torch links the reference
# (netlib) BLAS through the libblas.so.3 alternative, which makes its dense layers very slow; so
# the script also runs it against OpenBLAS, unpacked locally from the libopenblas0-pthread .deb
# (apt-get download + dpkg -x into the build dir: no system change), and compares hwnas with
# the faster of the two.  Each model runs in its own process so peak RSS is per model.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${1:-build}"
STEPS="${STEPS:-40}"
WARMUP="${WARMUP:-5}"
THREADS="${THREADS:-2}"
REPEATS="${REPEATS:-3}"
PY=/usr/bin/python3
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"

if ! $PY -c "import torch" 2>/dev/null; then
  echo "[bench] installing python3-torch"
  $SUDO apt-get install -y python3-torch >/dev/null
fi

if [ -n "${BENCH_BIN:-}" ]; then  # a prebuilt binary (e.g. from another build dir)
  BENCH="$BENCH_BIN"
else
  if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
  fi
  cmake --build "$BUILD_DIR" --target bench_train_vs_torch -j"$THREADS" >/dev/null
  BENCH="$BUILD_DIR/bench/bench_train_vs_torch"
fi
mkdir -p "$BUILD_DIR"

OPENBLAS_LIB=""
if [ "${OPENBLAS:-1}" != 0 ]; then
  if [ -f /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 ]; then
    OPENBLAS_LIB=/usr/lib/x86_64-linux-gnu/openblas-pthread
  else
    dl="$BUILD_DIR/openblas"
    if [ ! -f "$dl/root/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3" ]; then
      mkdir -p "$dl"
      (cd "$dl" && apt-get download libopenblas0-pthread >/dev/null 2>&1 &&
         dpkg -x libopenblas0-pthread_*.deb root) || echo "[bench] OpenBLAS unavailable; skipping that variant"
    fi
    [ -f "$dl/root/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3" ] &&
      OPENBLAS_LIB="$(cd "$dl/root/usr/lib/x86_64-linux-gnu/openblas-pthread" && pwd)"
  fi
fi

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
# Waiting threads sleep instead of spinning: on a shared, busy machine OpenMP's default spin
# barriers (and OpenBLAS's own threads) would otherwise slow PyTorch down by 10x or more.
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS="$THREADS" OPENBLAS_NUM_THREADS="$THREADS"
for model in mlp cnn attn; do
  for ((r = 0; r < REPEATS; ++r)); do
    "$BENCH" --model "$model" --steps "$STEPS" --warmup "$WARMUP" --threads "$THREADS" |
      grep '^RESULT' >>"$results"
    $PY bench/torch_reference.py --model "$model" --steps "$STEPS" --warmup "$WARMUP" \
      --threads "$THREADS" | grep '^RESULT' | sed 's/impl=torch/impl=torch-refblas/' >>"$results"
    if [ -n "$OPENBLAS_LIB" ]; then
      LD_LIBRARY_PATH="$OPENBLAS_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
        $PY bench/torch_reference.py --model "$model" --steps "$STEPS" --warmup "$WARMUP" \
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
