#!/usr/bin/python3
"""PyTorch reference for bench_recurrence_vs_torch: the same single-layer recurrence
(torch.nn.LSTM or torch.nn.RNN with tanh, batch_first), the same iteration (forward over
[B, T, F], MSE against a fixed target, backward to the input and every parameter; no optimizer
step), the same number of timed iterations after warm-up.  Prints one "RESULT impl=torch ..."
line.

Run with Debian's interpreter (/usr/bin/python3, package python3-torch).

    /usr/bin/python3 bench/recurrence_vs_torch.py [--cell lstm|rnn] [--batch 32] [--seq 256]
        [--input 128] [--hidden 128] [--iters 20] [--warmup 3] [--threads 2]
"""
import argparse
import resource
import time

import torch
import torch.nn.functional as F


def cpu_seconds():
    """User + system CPU seconds of this process, all threads (wall time on a loaded machine
    includes waiting for a core; CPU time does not)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cell", default="lstm", choices=["lstm", "rnn"])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--input", type=int, default=128)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(1)
    if a.cell == "lstm":
        layer = torch.nn.LSTM(a.input, a.hidden, batch_first=True)
    else:
        layer = torch.nn.RNN(a.input, a.hidden, nonlinearity="tanh", batch_first=True)
    x = torch.randn(a.batch, a.seq, a.input, requires_grad=True)
    target = torch.randn(a.batch, a.seq, a.hidden)

    def iteration():
        layer.zero_grad(set_to_none=True)
        x.grad = None
        loss = F.mse_loss(layer(x)[0], target)
        loss.backward()
        return loss.item()

    rss_base_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # before any step
    for _ in range(a.warmup):
        iteration()
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    for _ in range(a.iters):
        loss = iteration()
    secs = time.perf_counter() - t0
    cpu_ms_iter = 1e3 * (cpu_seconds() - cpu0) / a.iters
    ms_iter = 1e3 * secs / a.iters
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    print(f"RESULT impl=torch cell={a.cell} batch={a.batch} seq={a.seq} input={a.input} "
          f"hidden={a.hidden} threads={torch.get_num_threads()} checkpoint=0 iters={a.iters} "
          f"ms_per_iter={ms_iter:.3f} cpu_ms_per_iter={cpu_ms_iter:.3f} us_per_timestep={1e3 * ms_iter / a.seq:.2f} "
          f"samples_per_s={a.batch * a.iters / secs:.1f} rss_mb={rss_mb:.1f} rss_base_mb={rss_base_mb:.1f} loss={loss:.6f}",
          flush=True)


if __name__ == "__main__":
    main()
