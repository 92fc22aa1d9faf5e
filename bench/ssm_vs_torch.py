#!/usr/bin/python3
"""PyTorch reference for bench_ssm_vs_torch: the same two iterations in eager PyTorch.
  scan: selective_scan_ref's sequential loop (state-spaces/mamba selective_scan_interface.py,
        real A, B and C per token, no D or z) with delta = softplus(.) and A = -exp(.);
  s4d:  S4DKernel's Vandermonde kernel (state-spaces/s4 models/s4/s4d.py) and the causal FFT
        convolution with n = 2L, plus the D skip.
Each: forward, loss sum(y * w), backward to every input; mean ms over the timed iterations.
Prints "RESULT impl=torch-<op> ..." lines.  Run with /usr/bin/python3 (python3-torch).
"""
import argparse
import math
import time

import torch
import torch.nn.functional as F


def mean_ms(a, iteration):
    for _ in range(a.warmup):
        iteration()
    t0 = time.perf_counter()
    for _ in range(a.iters):
        iteration()
    return 1e3 * (time.perf_counter() - t0) / a.iters


def selective_scan_ref(u, delta, A, B, C):
    # u, delta [b, d, l]; A [d, n]; B, C [b, n, l] -> y [b, d, l]
    deltaA = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
    deltaB_u = torch.einsum("bdl,bnl,bdl->bdln", delta, B, u)
    x = u.new_zeros((u.shape[0], A.shape[0], A.shape[1]))
    ys = []
    # unbind, not mamba_simple's deltaA[:, :, i]: the same loop, but its backward stacks the step
    # gradients once, where each of the L slice backwards would zero-fill a whole [b, d, l, n]
    # buffer (O(L^2) work that made torch look orders of magnitude slower than the math is).
    for dA, dBu, c in zip(deltaA.unbind(2), deltaB_u.unbind(2), C.unbind(2)):
        x = dA * x + dBu
        ys.append(torch.einsum("bdn,bn->bd", x, c))
    return torch.stack(ys, dim=2)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for k, v in [("batch", 8), ("seq", 512), ("inner", 128), ("state", 16), ("channels", 128),
                 ("s4d-state", 64), ("iters", 10), ("warmup", 2), ("threads", 2)]:
        p.add_argument("--" + k, type=int, default=v)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(1)
    b, L, E, N = a.batch, a.seq, a.inner, a.state

    u = torch.randn(b, E, L, requires_grad=True)
    dlt = (0.1 * torch.randn(b, E, L)).requires_grad_()
    A = torch.randn(E, N, requires_grad=True)
    B = torch.randn(b, N, L, requires_grad=True)
    C = torch.randn(b, N, L, requires_grad=True)
    w = torch.randn(b, E, L)
    scan_inputs = [u, dlt, A, B, C]

    def scan_iter():
        for t in scan_inputs:
            t.grad = None
        y = selective_scan_ref(u, F.softplus(dlt), -torch.exp(A), B, C)
        (y * w).sum().backward()

    print(f"RESULT impl=torch-scan batch={b} seq={L} inner={E} state={N} "
          f"threads={torch.get_num_threads()} ms_per_iter={mean_ms(a, scan_iter):.3f}", flush=True)

    H, M = a.channels, a.s4d_state // 2
    log_dt = (torch.rand(H) * (math.log(0.1) - math.log(0.001)) + math.log(0.001)).requires_grad_()
    log_a_real = torch.log(0.5 * torch.ones(H, M)).requires_grad_()
    a_imag = (math.pi * torch.arange(M).float().repeat(H, 1)).requires_grad_()
    c = torch.randn(H, M, 2, requires_grad=True)
    D = torch.randn(H, requires_grad=True)
    x = torch.randn(b, H, L, requires_grad=True)
    w2 = torch.randn(b, H, L)
    s4d_inputs = [log_dt, log_a_real, a_imag, c, D, x]

    def s4d_iter():
        for t in s4d_inputs:
            t.grad = None
        dt = torch.exp(log_dt)
        Cc = torch.view_as_complex(c)
        Ac = -torch.exp(log_a_real) + 1j * a_imag
        dtA = Ac * dt.unsqueeze(-1)
        K = dtA.unsqueeze(-1) * torch.arange(L)
        Cc = Cc * (torch.exp(dtA) - 1.0) / Ac
        k = 2 * torch.einsum("hn,hnl->hl", Cc, torch.exp(K)).real
        y = torch.fft.irfft(torch.fft.rfft(x, n=2 * L) * torch.fft.rfft(k, n=2 * L), n=2 * L)[..., :L]
        y = y + x * D.unsqueeze(-1)
        (y * w2).sum().backward()

    print(f"RESULT impl=torch-s4d batch={b} seq={L} channels={H} state={a.s4d_state} "
          f"threads={torch.get_num_threads()} ms_per_iter={mean_ms(a, s4d_iter):.3f}", flush=True)


if __name__ == "__main__":
    main()
