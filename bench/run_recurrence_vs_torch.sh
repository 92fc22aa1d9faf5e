#!/usr/bin/env bash
# Forward+backward throughput and peak memory of hwnas's fused recurrence (nn/time_loop.hpp)
# against torch.nn.LSTM / torch.nn.RNN: batch 32, T = 256, 128 input features, hidden 128,
# float32, 2 threads for both (nn::ThreadBudget / torch.set_num_threads), same timed iterations
# after the same warm-up.  Each run is its own process, so peak RSS is per run.
#
#   bench/run_recurrence_vs_torch.sh [build-dir]         (default: build)
# Environment: CELLS ("lstm rnn"), BATCH (32), SEQ (256), INPUT (128), HIDDEN (128), ITERS (20),
#              WARMUP (3), THREADS (2), REPEATS (3, best run kept), CHECKPOINT (16: an extra
#              hwnas run with checkpointed recomputation every 16 steps; 0 skips it),
#              OPENBLAS=0 to skip the PyTorch+OpenBLAS variant, BENCH_BIN=path to use a
#              prebuilt bench_recurrence_vs_torch instead of building it.
# PyTorch setup (Debian's torch with its reference BLAS, and OpenBLAS unpacked locally): see
# bench/torch_env.sh.  The ratio is taken against the faster torch variant.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${1:-build}"
CELLS="${CELLS:-lstm rnn}"
BATCH="${BATCH:-32}"
SEQ="${SEQ:-256}"
INPUT="${INPUT:-128}"
HIDDEN="${HIDDEN:-128}"
ITERS="${ITERS:-20}"
WARMUP="${WARMUP:-3}"
THREADS="${THREADS:-2}"
REPEATS="${REPEATS:-3}"
CHECKPOINT="${CHECKPOINT:-16}"
source bench/torch_env.sh

if [ -n "${BENCH_BIN:-}" ]; then
  BENCH="$BENCH_BIN"
else
  torch_build_bench "$BUILD_DIR" bench_recurrence_vs_torch "$THREADS"
  BENCH="$BUILD_DIR/bench/bench_recurrence_vs_torch"
fi
torch_env_setup "$BUILD_DIR" "$THREADS"

shape=(--batch "$BATCH" --seq "$SEQ" --input "$INPUT" --hidden "$HIDDEN" --iters "$ITERS" --warmup "$WARMUP"
       --threads "$THREADS")
echo "[bench] load average before: $(cut -d' ' -f1-3 /proc/loadavg)  batch=$BATCH seq=$SEQ input=$INPUT" \
     "hidden=$HIDDEN iters=$ITERS warmup=$WARMUP threads=$THREADS repeats=$REPEATS (best kept)"
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for cell in $CELLS; do
  for ((r = 0; r < REPEATS; ++r)); do
    "$BENCH" --cell "$cell" "${shape[@]}" | grep '^RESULT' >>"$results"
    if [ "$CHECKPOINT" != 0 ]; then
      "$BENCH" --cell "$cell" "${shape[@]}" --checkpoint "$CHECKPOINT" | grep '^RESULT' |
        sed 's/impl=hwnas/impl=hwnas-ckpt/' >>"$results"
    fi
    $PY bench/recurrence_vs_torch.py --cell "$cell" "${shape[@]}" | grep '^RESULT' |
      sed 's/impl=torch/impl=torch-refblas/' >>"$results"
    if [ -n "$OPENBLAS_LIB" ]; then
      torch_run_openblas $PY bench/recurrence_vs_torch.py --cell "$cell" "${shape[@]}" | grep '^RESULT' |
        sed 's/impl=torch/impl=torch-openblas/' >>"$results"
    fi
  done
done
echo "[bench] load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

$PY - "$results" "$CELLS" <<'EOF'
import sys
path, cells = sys.argv[1], sys.argv[2].split()
best = {}
for line in open(path):
    kv = dict(f.split("=", 1) for f in line.split()[1:])
    key = (kv["cell"], kv["impl"])
    if key not in best or float(kv["samples_per_s"]) > float(best[key]["samples_per_s"]):
        best[key] = kv
print()
print(f"{'cell':5} {'impl':15} {'ms/iter':>9} {'CPU ms':>8} {'us/step':>8} {'samples/s':>10} {'RSS MB':>7} {'+run MB':>7}   hwnas/this")
for cell in cells:
    h = best.get((cell, "hwnas"))
    torch_best = max((best[(cell, i)] for i in ("torch-refblas", "torch-openblas") if (cell, i) in best),
                     key=lambda r: float(r["samples_per_s"]), default=None)
    for impl in ["hwnas", "hwnas-ckpt", "torch-refblas", "torch-openblas"]:
        r = best.get((cell, impl))
        if not r:
            continue
        label = impl + (f"(k={r['checkpoint']})" if impl == "hwnas-ckpt" else "")
        ratio = "" if impl.startswith("hwnas") or not h else \
            f"{float(h['samples_per_s']) / float(r['samples_per_s']):9.2f}x"
        print(f"{cell:5} {label:15} {float(r['ms_per_iter']):9.2f} {float(r['cpu_ms_per_iter']):8.1f} {float(r['us_per_timestep']):8.1f} "
              f"{float(r['samples_per_s']):10.1f} {float(r['rss_mb']):7.1f} {float(r['rss_mb']) - float(r['rss_base_mb']):7.1f}   {ratio}")
    if h and torch_best:
        print(f"{cell:5} hwnas / fastest torch ({torch_best['impl']}): "
              f"{float(h['samples_per_s']) / float(torch_best['samples_per_s']):.2f}x samples/s")
print()
print("One iteration = forward over [B, T, F], MSE against a fixed target, backward to the input "
      "and all parameters (no optimizer step).  us/step = ms/iter / T.  CPU ms = user+system CPU "
      "time per iteration over all threads (wall time on a loaded machine also counts waiting).  RSS is each process's "
      "ru_maxrss; the Python figure includes the interpreter and libtorch (~240 MB before any model).  "
      "+run MB = peak RSS minus the peak before the first iteration (layer, input and target "
      "already built): the memory the iterations themselves added.")
EOF
