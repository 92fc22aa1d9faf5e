#!/usr/bin/env python3
"""Paired per-genome timing for bench_sampled_vs_torch: two builds, or two batch sizes.

On a shared machine the load moves over seconds, and a whole-file run of `--genomes F` puts each
genome at the same moment of every round, so a before/after of whole files can show one build
10-40 % ahead on the first half of the genomes and behind on the second.  Here every
(genome, variant) pair runs as its own process, the variants alternating genome by genome (and
their order flipped every round), and the best run per pair is kept.

  python3 bench/sampled_paired.py --genomes G.jsonl --bins OLD,NEW [--batch 64]
  python3 bench/sampled_paired.py --genomes G.jsonl --bins BIN --batches 64,128

G.jsonl comes from `bench_sampled_vs_torch --space S --dump G.jsonl`.  Prints one line per genome
and the geometric mean, median and count of wins of the second variant against the first:
step-time ratio for two builds (< 1: the second is faster), per-sample rate ratio for two batch
sizes (> 1: the second batch trains more samples per second).
"""
import argparse
import math
import os
import re
import subprocess
import sys
import tempfile


def run(binary, genome_file, batch, steps, warmup, threads):
    out = subprocess.run(
        [binary, "--genomes", genome_file, "--batch", str(batch), "--steps", str(steps),
         "--warmup", str(warmup), "--threads", str(threads)],
        capture_output=True, text=True)
    m = re.search(r"seconds=([0-9.eE+-]+) samples_per_s=([0-9.eE+-]+)", out.stdout)
    if out.returncode != 0 or not m:
        sys.exit(f"sampled_paired: {binary} failed on {genome_file} (exit {out.returncode}):\n"
                 f"{out.stderr.strip()[-2000:]}")
    return float(m.group(1)), float(m.group(2))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--genomes", required=True, help="JSON lines from --dump")
    ap.add_argument("--bins", required=True,
                    help="OLD,NEW (two builds) or one binary with --batches")
    ap.add_argument("--batches", help="A,B: compare two batch sizes with one binary")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()

    bins = a.bins.split(",")
    if a.batches:
        batches = [int(b) for b in a.batches.split(",")]
        if len(bins) != 1 or len(batches) != 2:
            sys.exit("sampled_paired: --batches A,B takes exactly one binary in --bins")
        variants = [(bins[0], b) for b in batches]
        names = [f"batch {b}" for b in batches]
    else:
        if len(bins) != 2:
            sys.exit("sampled_paired: --bins needs OLD,NEW (or one binary with --batches A,B)")
        variants = [(b, a.batch) for b in bins]
        names = [os.path.basename(b) for b in bins]
    for b in bins:
        if not os.access(b, os.X_OK):
            sys.exit(f"sampled_paired: --bins: {b} is not an executable file")

    try:
        lines = [l for l in open(a.genomes).read().splitlines() if l.strip()]
    except OSError as e:
        sys.exit(f"sampled_paired: --genomes: cannot read {a.genomes}: {e.strerror}")
    if not lines:
        sys.exit(f"sampled_paired: --genomes: {a.genomes} holds no genome (write one with --dump)")

    tmp = tempfile.TemporaryDirectory()
    files = []
    for i, line in enumerate(lines):
        path = os.path.join(tmp.name, f"{i}.jsonl")
        with open(path, "w") as f:
            f.write(line + "\n")
        files.append(path)

    # best[v][i]: the shortest time (two builds) or highest samples/s (two batches).
    best = [[None] * len(files) for _ in variants]
    for r in range(a.rounds):
        order = [0, 1] if r % 2 == 0 else [1, 0]
        for i, path in enumerate(files):
            for v in order:
                seconds, rate = run(variants[v][0], path, variants[v][1], a.steps, a.warmup,
                                    a.threads)
                value = rate if a.batches else seconds
                cur = best[v][i]
                if cur is None or (value > cur if a.batches else value < cur):
                    best[v][i] = value

    unit = "samples/s" if a.batches else "ms/step"
    scale = 1.0 if a.batches else 1e3 / a.steps
    print(f"{'genome':>6} {names[0]:>16} {names[1]:>16}  ratio ({unit}, best of {a.rounds})")
    logs = []
    for i in range(len(files)):
        ratio = best[1][i] / best[0][i]
        logs.append(math.log(ratio))
        print(f"{i:6d} {best[0][i] * scale:16.2f} {best[1][i] * scale:16.2f}  {ratio:.3f}")
    logs.sort()
    n = len(logs)
    median = math.exp((logs[(n - 1) // 2] + logs[n // 2]) / 2)
    wins = sum(1 for l in logs if (l > 0 if a.batches else l < 0))
    what = "per-sample rate" if a.batches else "step time"
    print(f"{names[1]} / {names[0]} {what}: geomean {math.exp(sum(logs) / n):.3f}, "
          f"median {median:.3f}, {names[1]} ahead on {wins} of {n} genomes")


if __name__ == "__main__":
    main()
