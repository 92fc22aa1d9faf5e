#!/usr/bin/python3
"""PyTorch reference for bench_ode_vs_torch: the same RK4 Neural ODE solve (f = Linear(D, H),
tanh, Linear(H, D); `steps` classical RK4 steps over [0, 1], batch B), MSE against a fixed
target, backward through the solver to h0 and every parameter (what torchdiffeq's
odeint(method="rk4") does with backprop), the same timed iterations after warm-up.
Prints one "RESULT impl=torch-rk4 ..." line.  Run with /usr/bin/python3 (python3-torch).
"""
import argparse
import time

import torch
import torch.nn.functional as F


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for k, v in [("batch", 64), ("dim", 32), ("hidden", 64), ("steps", 20), ("iters", 200),
                 ("warmup", 20), ("threads", 2)]:
        p.add_argument("--" + k, type=int, default=v)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(1)
    f = torch.nn.Sequential(torch.nn.Linear(a.dim, a.hidden), torch.nn.Tanh(),
                            torch.nn.Linear(a.hidden, a.dim))
    x = torch.randn(a.batch, a.dim, requires_grad=True)
    target = torch.randn(a.batch, a.dim)
    dt = 1.0 / a.steps

    def solve(y):
        for _ in range(a.steps):
            k1 = f(y)
            k2 = f(y + dt / 2 * k1)
            k3 = f(y + dt / 2 * k2)
            k4 = f(y + dt * k3)
            y = y + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        return y

    def iteration():
        f.zero_grad(set_to_none=True)
        x.grad = None
        F.mse_loss(solve(x), target).backward()

    for _ in range(a.warmup):
        iteration()
    t0 = time.perf_counter()
    for _ in range(a.iters):
        iteration()
    secs = time.perf_counter() - t0
    n_params = sum(q.numel() for q in f.parameters())
    print(f"RESULT impl=torch-rk4 batch={a.batch} dim={a.dim} hidden={a.hidden} steps={a.steps} "
          f"threads={torch.get_num_threads()} params={n_params} "
          f"ms_per_iter={1e3 * secs / a.iters:.4f} samples_per_s={a.batch * a.iters / secs:.1f}",
          flush=True)


if __name__ == "__main__":
    main()
