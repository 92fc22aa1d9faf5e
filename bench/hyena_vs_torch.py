"""The Hyena operator of spaces/blocks/block_hyena.cpp in PyTorch (the same math as
HazyResearch/safari's HyenaOperator with fftconv_ref): forward + backward of sum(output) on
[B, L, d]; prints one RESULT line like bench_hyena_vs_torch.  Run by bench/hyena_vs_torch.sh."""
import argparse
import math
import time

import torch
import torch.nn as nn


class Hyena(nn.Module):
    def __init__(self, d, L, order, fw, depth, emb, kernel):
        super().__init__()
        self.d, self.order, self.kernel = d, order, kernel
        P, F = (order + 1) * d, d * (order - 1)
        self.in_proj = nn.Linear(d, P)
        self.out_proj = nn.Linear(d, d)
        self.short = nn.Conv1d(P, P, kernel, groups=P, padding=kernel - 1)
        layers = [nn.Linear(emb, fw)] + [nn.Linear(fw, fw) for _ in range(depth)]
        self.mlp = nn.ModuleList(layers)
        self.mlp_out = nn.Linear(fw, F, bias=False)
        self.freq = nn.Parameter(torch.ones(fw))
        self.bias = nn.Parameter(torch.randn(F))
        bands = (emb - 1) // 2
        t = torch.linspace(0, 1, L)[:, None]
        w = 2 * math.pi * torch.arange(L)[:, None] / L
        f = torch.linspace(1e-4, bands - 1, bands)[None]
        self.register_buffer("z", torch.cat([t, torch.cos(f * w), -torch.sin(f * w)], -1))
        deltas = torch.linspace(math.log(1e-2) / 1.5, math.log(1e-2) / 0.3, F)[None]
        self.register_buffer("decay", torch.exp(-t * deltas.abs()))

    def filters(self):
        a = self.z
        for lin in self.mlp:
            a = torch.sin(self.freq * lin(a))
        return self.mlp_out(a) * self.decay  # [L, F]

    def forward(self, u):
        B, L, d = u.shape
        p = self.short(self.in_proj(u).transpose(1, 2))[..., :L]  # [B, P, L]
        parts = p.split(d, dim=1)
        x, v = parts[:-1], parts[-1]
        h = self.filters().t()  # [F, L], channel i (N-1) + o
        steps = self.order - 1
        n = 2 * L
        for o in range(steps):
            v = v * x[self.order - 1 - o]
            k = h[o::steps]
            y = torch.fft.irfft(torch.fft.rfft(v, n=n) * torch.fft.rfft(k, n=n), n=n)[..., :L]
            v = y + v * self.bias[o::steps][:, None]
        return self.out_proj((v * x[0]).transpose(1, 2))


def main():
    ap = argparse.ArgumentParser()
    for k, dflt in [("batch", 8), ("seq", 1024), ("width", 64), ("order", 2),
                    ("filter-width", 64), ("iters", 10), ("warmup", 2), ("threads", 2)]:
        ap.add_argument("--" + k, type=int, default=dflt)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    m = Hyena(a.width, a.seq, a.order, a.filter_width, 2, 3, 3)
    x0 = torch.randn(a.batch, a.seq, a.width)
    total = 0.0
    for i in range(a.warmup + a.iters):
        m.zero_grad()
        x = x0.clone().requires_grad_(True)
        t0 = time.perf_counter()
        m(x).sum().backward()
        t1 = time.perf_counter()
        if i >= a.warmup:
            total += t1 - t0
    ms = total / a.iters * 1e3
    params = sum(p.numel() for p in m.parameters())
    print(f"RESULT impl=torch-hyena params={params} ms_per_iter={ms:.3f} "
          f"samples_per_s={a.batch / (ms / 1e3):.2f}")


if __name__ == "__main__":
    main()
