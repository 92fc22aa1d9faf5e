#!/usr/bin/env bash
# hwnas's convolutions against oneDNN's (Debian's libdnnl-dev) on the conv layers of candidates
# sampled from the example spaces that hold convolutions (issue 17's "measure both").  Installs
# libdnnl-dev when it is missing (the project itself does not need it), builds
# bench_conv_vs_onednn and runs it per space and batch.
#
#   bash bench/conv_vs_onednn.sh [build-dir]        (default: build)
# Environment: SAMPLES (20), SEED (1), THREADS (2), SPACES ("cnn darts_cell compression"),
#   BATCHES ("64 128"), REPS (10), ROUNDS (3).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${1:-build}"
SAMPLES="${SAMPLES:-20}"
SEED="${SEED:-1}"
THREADS="${THREADS:-2}"
SPACES="${SPACES:-cnn darts_cell compression}"
BATCHES="${BATCHES:-64 128}"
REPS="${REPS:-10}"
ROUNDS="${ROUNDS:-3}"

if [ ! -f /usr/include/oneapi/dnnl/dnnl.hpp ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "[conv_vs_onednn] installing libdnnl-dev"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends libdnnl-dev >/dev/null
fi
# (Re)configure so that CMake finds oneDNN, then build the bench and the genome sampler.
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD_DIR" --target bench_conv_vs_onednn bench_sampled_vs_torch -j"$THREADS" >/dev/null
# Both libraries keep their threads spinning between parallel regions (oneTBB's default and
# OpenMP's default wait policy), so neither pays a wake-up per primitive.
export OMP_NUM_THREADS="$THREADS"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "[conv_vs_onednn] load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for space in $SPACES; do
  genomes="$work/$space.jsonl"
  "$BUILD_DIR/bench/bench_sampled_vs_torch" --space "examples/spaces/$space.json" --dump "$genomes" \
    --samples "$SAMPLES" --seed "$SEED"
  for batch in $BATCHES; do
    echo "[conv_vs_onednn] space $space, batch $batch"
    "$BUILD_DIR/bench/bench_conv_vs_onednn" --genomes "$genomes" --batch "$batch" \
      --threads "$THREADS" --reps "$REPS" --rounds "$ROUNDS"
  done
done
echo "[conv_vs_onednn] load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
