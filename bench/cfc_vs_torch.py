#!/usr/bin/python3
"""PyTorch reference for bench_cfc_vs_torch: torch.nn.LSTM of the same size (same input and
hidden width, batch_first), the same iteration (forward over [B, T, F], MSE against a fixed
target, backward to the input and every parameter), the same timed iterations after warm-up.
Prints one "RESULT impl=torch-lstm ..." line.  Run with /usr/bin/python3 (python3-torch).
"""
import argparse
import time

import torch
import torch.nn.functional as F


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for k, v in [("batch", 32), ("seq", 256), ("input", 128), ("hidden", 128), ("iters", 20),
                 ("warmup", 3), ("threads", 2)]:
        p.add_argument("--" + k, type=int, default=v)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(1)
    layer = torch.nn.LSTM(a.input, a.hidden, batch_first=True)
    x = torch.randn(a.batch, a.seq, a.input, requires_grad=True)
    target = torch.randn(a.batch, a.seq, a.hidden)

    def iteration():
        layer.zero_grad(set_to_none=True)
        x.grad = None
        F.mse_loss(layer(x)[0], target).backward()

    for _ in range(a.warmup):
        iteration()
    t0 = time.perf_counter()
    for _ in range(a.iters):
        iteration()
    secs = time.perf_counter() - t0
    n_params = sum(q.numel() for q in layer.parameters())
    print(f"RESULT impl=torch-lstm batch={a.batch} seq={a.seq} input={a.input} hidden={a.hidden} "
          f"threads={torch.get_num_threads()} params={n_params} "
          f"ms_per_iter={1e3 * secs / a.iters:.3f} samples_per_s={a.batch * a.iters / secs:.1f}",
          flush=True)


if __name__ == "__main__":
    main()
