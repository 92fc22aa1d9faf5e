#!/usr/bin/env bash
# One-shot vs multi-trial search on the cnn space over Fashion-MNIST (issue 16):
#  1. ranking quality: Kendall tau between inherited-weight and stand-alone accuracy over 20
#     subnets for the uniform, progressive and progressive+KD supernet schedules
#     (build/bench/bench_ofa_kendall_tau);
#  2. search: spos (progressive shrinking, optional KD) against regularized evolution given the
#     same wall-clock (budget.max_seconds = spos's time): best stand-alone accuracy, wall time,
#     total training cost in sample-epochs (training images x epochs, summed: the supernet's
#     epochs plus every retrained candidate's).
#
#   bench/oneshot_vs_multitrial.sh [train=5000] [val=1000] [tau_train=4000]
# Needs a built checkout (hwnas, bench_ofa_kendall_tau) and the Fashion-MNIST files.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD:-$here/build}"
train="${1:-5000}"
val="${2:-1000}"
tau_train="${3:-4000}"
work="$(mktemp -d /tmp/hwnas_oneshot_vs_multitrial.XXXXXX)"
trap 'rm -rf "$work"' EXIT

echo "== Kendall tau over 20 subnets (${tau_train} train images) =="
"$build/bench/bench_ofa_kendall_tau" "$tau_train" 1000 8 2 20

# A config from examples/search_spos.json with the strategy and budget replaced.
make_config() {  # name strategy-json budget-json
  python3 - "$here" "$work" "$train" "$val" "$1" "$2" "$3" <<'PY'
import json, sys
here, work, train, val, name, strategy, budget = sys.argv[1:]
j = json.load(open(f"{here}/examples/search_spos.json"))
j["name"] = name
j["space"] = f"{here}/examples/spaces/cnn.json"
j["task"]["train_subset"] = int(train)
j["task"]["val_size"] = int(val)
j["strategy"] = json.loads(strategy)
j["budget"] = json.loads(budget)
j["workers"] = 1
j["db"] = f"{work}/{name}.db"
json.dump(j, open(f"{work}/{name}.json", "w"), indent=1)
PY
}

run() {  # name -> prints "wall best evaluations retrain_sample_epochs"
  local start end
  start=$(date +%s.%N)
  "$build/hwnas" search "$work/$1.json" > "$work/$1.log" 2>&1
  end=$(date +%s.%N)
  local q
  q=$(sqlite3 "$work/$1.db" "select count(*), max(json_extract(metrics,'\$.val_accuracy')),
        sum(json_extract(metrics,'\$.epochs_run')) from evaluations where status = 'ok'")
  echo "$(echo "$end - $start" | bc) ${q//|/ }"
}

supernet_epochs=8
spos_strategy='{"type": "spos", "schedule": "progressive", "full_epochs": 2, "kernel_epochs": 2,
  "depth_epochs": 2, "width_epochs": 2, "batch_size": 64, "w_lr": 0.2, "eval_samples": 1000,
  "population": 16, "generations": 6, "candidates": 4}'
printf "\n== search on cnn.json, %s train / %s val images, candidates trained 2 epochs ==\n" \
  "$train" "$val"
printf "%-26s %10s %8s %12s %16s\n" strategy wall_s best evaluated sample_epochs
for kd in false true; do
  name="spos_progressive_kd_$kd"
  make_config "$name" "$(echo "$spos_strategy" | sed "s/}\$/, \"kd\": $kd}/")" \
    '{"evaluations": 4}'
  read -r wall n best epochs <<<"$(run "$name")"
  # The supernet: one pass of floor(train/64)*64 images per epoch (drop_last), plus the picks.
  cost=$(( supernet_epochs * (train / 64) * 64 + ${epochs%.*} * train ))
  printf "%-26s %10.1f %8.4f %12s %16s\n" "$name" "$wall" "$best" "$n" "$cost"
  [ "$kd" = false ] && spos_wall="$wall"
done
name=regularized_evolution
make_config "$name" '{"type": "regularized_evolution", "population": 8, "sample_size": 3}' \
  "{\"evaluations\": 100000, \"max_seconds\": ${spos_wall%.*}}"
read -r wall n best epochs <<<"$(run "$name")"
printf "%-26s %10.1f %8.4f %12s %16s\n" "$name" "$wall" "$best" "$n" "$(( ${epochs%.*} * train ))"
echo "(regularized evolution's budget.max_seconds = the progressive spos run's wall time;"
echo " sample-epochs of spos = 8 supernet epochs + 4 picks x 2 epochs; the KD teacher's extra"
echo " forward passes are not counted)"
