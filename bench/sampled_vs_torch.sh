#!/usr/bin/env bash
# Training throughput of hwnas vs PyTorch on architectures sampled from the example spaces
# (issue 17): SAMPLES genomes per space (seeded), each trained for the same steps by
# bench_sampled_vs_torch (spaces::build_model, AdamW) and bench/sampled_vs_torch.py (a torch
# module generated from the genome JSON), same threads, random data of the input shape.
# Prints per space and batch the min / median / max of hwnas samples/s / torch samples/s and
# the median fraction of FP32 peak.
#
#   bash bench/sampled_vs_torch.sh [build-dir]            (default: build)
# Environment: SAMPLES (20), SEED (1), STEPS (15), WARMUP (5: the first steps grow buffer pools
#   and prune bands), SLOW_STEPS (2: darts_cell and sequence_mixers candidates take up to
#   seconds per step in PyTorch; they run SLOW_STEPS timed steps after one warm-up step),
#   THREADS (2), REPEATS (2: hwnas and torch alternate, the best run per genome is kept, and each
#   repeat's median ratio is printed as the spread), SPACES ("cnn mlp attention darts_cell
#   spiking continuous_time sequence_mixers compression spiking_vs_classic mlp_2d": every
#   example space a search trains; mlp_2d runs 20 x STEPS), BENCH_BIN (a prebuilt
#   bench_sampled_vs_torch), BEFORE_BIN (a second hwnas binary, e.g. built from older code,
#   timed in the same rounds).
# Both sides train as the trainer does: cross-entropy (per token for a sequence readout), mean
# squared error for a one-output regression readout (mlp_2d), plus the blocks' auxiliary losses
# (moe's load balancing).
# PyTorch runs with OpenBLAS in front of the reference BLAS when available (bench/torch_env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${1:-build}"
SAMPLES="${SAMPLES:-20}"
SEED="${SEED:-1}"
STEPS="${STEPS:-15}"
WARMUP="${WARMUP:-5}"
SLOW_STEPS="${SLOW_STEPS:-${DARTS_STEPS:-2}}"
THREADS="${THREADS:-2}"
REPEATS="${REPEATS:-2}"
SPACES="${SPACES:-cnn mlp attention darts_cell spiking continuous_time sequence_mixers compression spiking_vs_classic mlp_2d}"
source bench/torch_env.sh

if [ -n "${BENCH_BIN:-}" ]; then
  BENCH="$BENCH_BIN"
else
  torch_build_bench "$BUILD_DIR" bench_sampled_vs_torch "$THREADS"
  BENCH="$BUILD_DIR/bench/bench_sampled_vs_torch"
fi
torch_env_setup "$BUILD_DIR" "$THREADS"
torch_py() {
  if [ -n "$OPENBLAS_LIB" ]; then torch_run_openblas $PY "$@"; else $PY "$@"; fi
}

cores=$(lscpu | awk -F: '/^Core\(s\) per socket/{c=$2} /^Socket\(s\)/{s=$2} END{print c*s}')
mhz=$(lscpu | awk -F: '/^CPU max MHz/{print $2+0; exit}')
[ -z "$mhz" ] && mhz=$(awk -F: '/^cpu MHz/{print $2+0; exit}' /proc/cpuinfo)
if grep -qw avx512f /proc/cpuinfo; then fpc=64; simd=AVX-512; else fpc=32; simd=AVX2; fi
peak=$(awk -v c="$cores" -v m="$mhz" -v f="$fpc" 'BEGIN{printf "%.1f", c*m/1000*f}')
echo "[sampled] peak fp32 = $cores cores x $mhz MHz x $fpc FLOPs/cycle ($simd) = $peak GFLOP/s"
echo "[sampled] torch: $([ -n "$OPENBLAS_LIB" ] && echo openblas || echo reference BLAS)  samples=$SAMPLES seed=$SEED steps=$STEPS warmup=$WARMUP slow_steps=$SLOW_STEPS threads=$THREADS repeats=$REPEATS"
echo "[sampled] load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
results="$work/results"
: >"$results"
for space in $SPACES; do
  genomes="$work/$space.jsonl"
  "$BENCH" --space "examples/spaces/$space.json" --dump "$genomes" --samples "$SAMPLES" --seed "$SEED"
  steps=$STEPS warmup=$WARMUP
  case "$space" in
  darts_cell | sequence_mixers) steps=$SLOW_STEPS warmup=1 ;;
  mlp_2d) steps=$((STEPS * 20)) ;; # ~15 us steps: 15 of them would time noise
  esac
  batches="64"
  [ "$space" = cnn ] && batches="64 128"
  for batch in $batches; do
    args=(--genomes "$genomes" --batch "$batch" --steps "$steps" --warmup "$warmup" --threads "$THREADS")
    for ((r = 0; r < REPEATS; ++r)); do
      tag="space=$space rep=$r"
      "$BENCH" "${args[@]}" | grep '^RESULT' | sed "s/^RESULT /RESULT $tag /" >>"$results"
      if [ -n "${BEFORE_BIN:-}" ]; then
        "$BEFORE_BIN" "${args[@]}" | grep '^RESULT' |
          sed "s/^RESULT /RESULT $tag /; s/impl=hwnas/impl=before/" >>"$results"
      fi
      torch_py bench/sampled_vs_torch.py "${args[@]}" | grep '^RESULT' |
        sed "s/^RESULT /RESULT $tag /" >>"$results"
    done
    echo "[sampled] $space batch $batch done ($(cut -d' ' -f1 /proc/loadavg) load)"
  done
done
echo "[sampled] load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
[ -n "${KEEP_RESULTS:-}" ] && cp "$results" "$KEEP_RESULTS"

$PY - "$results" "$peak" <<'EOF'
import statistics as st
import sys
from collections import defaultdict
path, peak = sys.argv[1], float(sys.argv[2])
best = {}                      # (space, batch, impl, idx) -> best run
per_rep = defaultdict(dict)    # (space, batch, impl, rep) -> idx -> samples/s
for line in open(path):
    kv = dict(f.split("=", 1) for f in line.split()[1:])
    key = (kv["space"], int(kv["batch"]), kv["impl"], int(kv["idx"]))
    sps = float(kv["samples_per_s"])
    per_rep[(key[0], key[1], key[2], int(kv["rep"]))][key[3]] = sps
    if key not in best or sps > float(best[key]["samples_per_s"]):
        best[key] = kv
groups = sorted({(k[0], k[1]) for k in best})
impls = [i for i in ("hwnas", "before") if any(k[2] == i for k in best)]
print()
w = max(11, max((len(s) for s, _ in groups), default=0))
print(f"{'space':{w}} {'batch':>5} {'impl':6} {'n':>3} {'ratio min':>9} {'median':>7} {'max':>6}"
      f"   {'per-repeat medians':20} {'%peak med':>9} {'torch %peak':>11} {'med samples/s':>13}")
for space, batch in groups:
    for impl in impls:
        ratios, peaks, tpeaks, sps = [], [], [], []
        for (s, b, i, idx), r in best.items():
            if (s, b, i) != (space, batch, impl):
                continue
            t = best.get((s, b, "torch", idx))
            if not t:
                continue
            ratios.append(float(r["samples_per_s"]) / float(t["samples_per_s"]))
            peaks.append(100 * float(r["gflops"]) / peak)
            tpeaks.append(100 * float(t["gflops"]) / peak)
            sps.append(float(r["samples_per_s"]))
        if not ratios:
            continue
        reps = []
        for rep in sorted({k[3] for k in per_rep if k[:3] == (space, batch, impl)}):
            h, t = per_rep[(space, batch, impl, rep)], per_rep.get((space, batch, "torch", rep), {})
            rr = [h[i] / t[i] for i in h if i in t]
            if rr:
                reps.append(f"{st.median(rr):.2f}")
        print(f"{space:{w}} {batch:5d} {impl:6} {len(ratios):3d} {min(ratios):8.2f}x "
              f"{st.median(ratios):6.2f}x {max(ratios):5.2f}x   {' '.join(reps):20} "
              f"{st.median(peaks):8.1f}% {st.median(tpeaks):10.1f}% {st.median(sps):13.0f}")
print()
print("ratio = hwnas samples/s / torch samples/s per genome (best of the repeats each); "
      "%peak = 3 x forward MACs x 2 FLOPs x samples/s / peak (MACs from spaces::build_workload).")
EOF
