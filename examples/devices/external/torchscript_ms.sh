#!/bin/sh
# A "benchmark binary that prints milliseconds", the kind of command command_device.py wraps:
# exports the architecture with `hwnas export --genome`, compiles it with TorchScript (traced and
# frozen: batch norm folded into the convolutions, a graph runtime rather than eager PyTorch)
# and times it on one CPU thread, printing the median of 10 runs in ms as its last line.
#   usage: torchscript_ms.sh GENOME.json BATCH
# Replace it by your own command: a TFLite or TensorRT benchmark, a script for a device farm.
set -eu
genome=$1
batch=${2:-1}
hwnas=${HWNAS_BIN:-$(command -v hwnas || echo "$(dirname "$0")/../../../build/hwnas")}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$hwnas" export --genome "$genome" --format pytorch --out "$tmp/net.py" >/dev/null
# Debian's python3-torch is Debian's interpreter's (a pyenv python3 first on PATH lacks it).
/usr/bin/python3 - "$tmp/net.py" "$genome" "$batch" <<'PY'
import importlib.util, json, sys, time
import torch

torch.set_num_threads(1)
spec = importlib.util.spec_from_file_location("net", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
net = module.Net().eval()
shape = json.load(open(sys.argv[2]))["input"]["shape"]
x = torch.randn([int(sys.argv[3])] + shape, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    compiled = torch.jit.freeze(torch.jit.trace(net, x, check_trace=False))
    for _ in range(3):
        compiled(x)
    times = []
    for _ in range(10):
        start = time.perf_counter()
        compiled(x)
        times.append((time.perf_counter() - start) * 1e3)
times.sort()
print(0.5 * (times[4] + times[5]))
PY
