"""Training-step throughput of an efficient-KAN in PyTorch (the reference for bench/kan_vs_torch.cpp).

The layer is the efficient-KAN formulation written here from the paper's definitions: uniform
grid of G intervals over [-1, 1] extended by k knots each side, Cox-de Boor basis of every input
computed once (vectorised over all bases), base branch SiLU(x) W_base^T, spline branch
B(x).view(N, in*(G+k)) (W_spline * scale)^T -- one matmul each.  One step = forward, MSE,
backward, Adam, batch B, float32, random data.

    /usr/bin/python3 bench/kan_vs_torch.py [--model mnist|tiny|all] [--steps N] [--warmup N]
                                           [--batch B] [--threads T]
Prints "RESULT model=.. impl=torch samples_per_s=.." lines.
"""
import argparse
import math
import time

import torch


def bspline_basis(x, t, order):
    """Cox-de Boor: the order-k B-spline bases on knots t at x, [..., n] -> [..., n, len(t)-k-1]."""
    x = x.unsqueeze(-1)
    b = ((x >= t[:-1]) & (x < t[1:])).to(x.dtype)
    for d in range(1, order + 1):
        b = (x - t[: -(d + 1)]) / (t[d:-1] - t[: -(d + 1)]) * b[..., :-1] + \
            (t[d + 1:] - x) / (t[d + 1:] - t[1:-d]) * b[..., 1:]
    return b


class KanLinear(torch.nn.Module):
    def __init__(self, n_in, n_out, grid=5, order=3, lo=-1.0, hi=1.0):
        super().__init__()
        self.n_in, self.n_out, self.order = n_in, n_out, order
        h = (hi - lo) / grid
        knots = torch.arange(-order, grid + order + 1, dtype=torch.float32) * h + lo
        self.register_buffer("knots", knots)  # [G + 2k + 1]
        bound = 1.0 / math.sqrt(n_in)
        self.base_weight = torch.nn.Parameter(torch.empty(n_out, n_in).uniform_(-bound, bound))
        noise = 0.1 / grid
        self.spline_weight = torch.nn.Parameter(
            torch.empty(n_out, n_in, grid + order).uniform_(-noise / 2, noise / 2))
        self.spline_scaler = torch.nn.Parameter(torch.full((n_out, n_in), bound))

    def basis(self, x):  # [N, in] -> [N, in, G + k]
        return bspline_basis(x, self.knots, self.order)

    def forward(self, x):
        base = torch.nn.functional.linear(torch.nn.functional.silu(x), self.base_weight)
        w = (self.spline_weight * self.spline_scaler.unsqueeze(-1)).view(self.n_out, -1)
        spline = torch.nn.functional.linear(self.basis(x).reshape(x.shape[0], -1), w)
        return base + spline


def run(name, widths, args):
    torch.manual_seed(1)
    model = torch.nn.Sequential(*[KanLinear(a, b) for a, b in zip(widths[:-1], widths[1:])])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(args.batch, widths[0]) * 2 - 1
    y = torch.rand(args.batch, widths[-1]) * 2 - 1

    def step():
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    secs = time.perf_counter() - t0
    print(f"RESULT model={name} impl=torch samples_per_s={args.steps * args.batch / secs:.1f} "
          f"step_ms={1e3 * secs / args.steps:.3f}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="all", choices=["mnist", "tiny", "all"])
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.model in ("mnist", "all"):
        run("mnist", [784, 64, 10], args)
    if args.model in ("tiny", "all"):
        run("tiny", [2, 5, 1], args)


if __name__ == "__main__":
    main()
