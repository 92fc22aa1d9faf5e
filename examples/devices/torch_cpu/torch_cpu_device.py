#!/usr/bin/env python3
"""A measuring cost model: each architecture is built in PyTorch and its forward pass timed on
this machine's CPU (batch from the request; eval mode, no autograd, warm-up runs, then the median
of timed runs).  Use it next to the analytic devices to see how a real runtime ranks the same
networks:

    hwnas hw predict --device examples/devices/torch_cpu/torch_cpu.json GENOME.json

The network is the one `hwnas export --genome G --format pytorch` writes (untrained initial
weights: latency does not depend on their values), so it is exactly the graph hwnas trains,
for every block kind the PyTorch export covers (conv, dwconv, pool, linear, attention, norm,
quantised and pruned layers, ...); other kinds fail that cost with the exporter's message.

Options (put them in the device JSON's "command"):
  --hwnas PATH     the hwnas binary (default: $HWNAS_BIN, then `hwnas` on PATH, then the
                   repository's build/hwnas next to this example)
  --threads N      torch intra-op threads (default 1: one core, as `hwnas hw measure` under
                   --threads 1; the host measurement and this one are then comparable)
  --warmup N       untimed runs first (default 3)
  --reps N         timed runs; the median is reported (default 15)
Needs Debian's python3-torch, hence /usr/bin/python3 in torch_cpu.json (a pyenv or venv python3
first on PATH would not see it); the protocol loop is ../external/hwnas_device.py.
"""
import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "external"))
from hwnas_device import serve  # noqa: E402

import torch  # noqa: E402


def find_hwnas(given):
    for candidate in (given, os.environ.get("HWNAS_BIN"), shutil.which("hwnas"),
                      os.path.join(HERE, "..", "..", "..", "build", "hwnas")):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return os.path.abspath(candidate)
    sys.exit("torch_cpu_device: no hwnas binary found: pass --hwnas PATH or set HWNAS_BIN")


def build_net(hwnas, architecture, workdir):
    """The architecture as a torch module, through hwnas's own PyTorch export."""
    genome = os.path.join(workdir, "genome.json")
    with open(genome, "w") as f:
        json.dump(architecture, f)
    module_path = os.path.join(workdir, "net.py")
    done = subprocess.run([hwnas, "export", "--genome", genome, "--format", "pytorch",
                           "--out", module_path], capture_output=True, text=True)
    if done.returncode != 0:
        message = (done.stderr.strip() or done.stdout.strip()).replace("error: ", "", 1)
        raise ValueError("hwnas export: " + message)
    name = "hwnas_net_" + hashlib.sha1(json.dumps(architecture, sort_keys=True).encode()).hexdigest()
    spec = importlib.util.spec_from_file_location(name, module_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.Net().eval()  # reads its weights file now, before workdir goes
    # The export prunes and fake-quantises weights inside forward() (so it can be trained);
    # a deployed network has them baked in.  Compute each layer's weight once, as hwnas's own
    # inference does, so that what is timed is the network, not its compression step.
    baked = {}
    compress = net.w

    def baked_weight(name, bits, frac):
        key = (name, bits, frac)
        if key not in baked:
            baked[key] = compress(name, bits, frac).detach()
        return baked[key]

    net.w = baked_weight
    return net


def median_ms(run, warmup, reps):
    for _ in range(warmup):
        run()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    mid = len(times) // 2
    return times[mid] if len(times) % 2 else 0.5 * (times[mid - 1] + times[mid])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hwnas")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--reps", type=int, default=15)
    args = parser.parse_args()
    if args.threads < 1 or args.warmup < 0 or args.reps < 1:
        sys.exit("torch_cpu_device: need --threads >= 1, --warmup >= 0, --reps >= 1")
    hwnas = find_hwnas(args.hwnas)
    torch.set_num_threads(args.threads)

    def estimate(architecture, workload, batch):
        if architecture is None:
            raise ValueError("no architecture given: this device builds the network to time it")
        with tempfile.TemporaryDirectory(prefix="hwnas_torch_cpu_") as workdir:
            net = build_net(hwnas, architecture, workdir)
        shape = architecture["input"]["shape"]
        x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            ms = median_ms(lambda: net(x), args.warmup, args.reps)
        weight_bytes = sum(t.numel() * t.element_size() for t in net.parameters())
        return {"latency_ms": ms, "memory_bytes": float(weight_bytes)}

    serve(estimate, name="torch_cpu", objectives=["latency_ms", "memory_bytes"])


if __name__ == "__main__":
    main()
