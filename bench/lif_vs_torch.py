"""The LIF neuron loop of bench/lif_vs_torch.cpp written in PyTorch, as snnTorch's Leaky does it:
a Python loop over the T steps, reset by subtraction, Heaviside forward with a fast-sigmoid
surrogate backward (slope 25) in a torch.autograd.Function, gradient through the reset.
Same input current [B, T, N], same loss sum(spikes * proj).  Prints "torch_ms_per_iter <ms>".

  /usr/bin/python3 bench/lif_vs_torch.py --batch 64 --steps 16 --neurons 1024 --threads 2
"""
import argparse
import time

import torch


class FastSigmoidSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, slope):
        ctx.save_for_backward(x)
        ctx.slope = slope
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g / (ctx.slope * x.abs() + 1.0) ** 2, None


def lif(cur, beta, th, slope=25.0):
    v = torch.zeros_like(cur[:, 0])
    out = []
    for t in range(cur.shape[1]):
        m = beta * v + cur[:, t]
        s = FastSigmoidSpike.apply(m - th, slope)
        v = m - th * s
        out.append(s)
    return torch.stack(out, dim=1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--neurons", type=int, default=1024)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    cur = torch.rand(a.batch, a.steps, a.neurons, generator=g) * 2.0 - 0.5
    proj = torch.rand(a.batch, a.steps, a.neurons, generator=g) * 2.0 - 0.5

    def once():
        x = cur.clone().requires_grad_(True)
        s = lif(x, 0.9, 1.0)
        (s * proj).sum().backward()
        return s

    for _ in range(a.warmup):
        once()
    t0 = time.perf_counter()
    for _ in range(a.iters):
        s = once()
    ms = (time.perf_counter() - t0) * 1e3 / a.iters
    print(f"torch {torch.__version__} batch={a.batch} steps={a.steps} neurons={a.neurons} "
          f"threads={a.threads} spike_rate={s.mean().item():.4f}")
    print(f"torch_ms_per_iter {ms:.3f}")


if __name__ == "__main__":
    main()
