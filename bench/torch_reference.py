#!/usr/bin/python3
"""PyTorch reference for bench_train_vs_torch: the same three models, the same training step
(forward, cross-entropy, backward, AdamW), batch 64, float32, synthetic data, same number of
timed steps after warm-up.  Prints one "RESULT impl=torch ..." line per model.

Run with Debian's interpreter (/usr/bin/python3, package python3-torch); the default python3 on
the development machines is a pyenv build without torch.

    /usr/bin/python3 bench/torch_reference.py [--model mlp|cnn|attn|all] [--steps N]
                                              [--warmup N] [--batch B] [--threads T]
"""
import argparse
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1, self.l2, self.l3 = nn.Linear(784, 256), nn.Linear(256, 128), nn.Linear(128, 10)

    def forward(self, x):
        return self.l3(F.relu(self.l2(F.relu(self.l1(x)))))


class Cnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.b1 = nn.BatchNorm2d(16)
        self.c2 = nn.Conv2d(16, 32, 3, padding=1, bias=False)
        self.b2 = nn.BatchNorm2d(32)
        self.fc = nn.Linear(32 * 7 * 7, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.b1(self.c1(x))), 2, 2)
        x = F.max_pool2d(F.relu(self.b2(self.c2(x))), 2, 2)
        return self.fc(torch.flatten(x, 1))


class EncoderLayer(nn.Module):
    def __init__(self, d, heads, ffn):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)  # fused QKV + out proj
        self.ff1, self.ff2 = nn.Linear(d, ffn), nn.Linear(ffn, d)

    def forward(self, x):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        h = self.ln2(x)
        return x + self.ff2(F.gelu(self.ff1(h), approximate="tanh"))


class Encoder(nn.Module):
    def __init__(self, d_in=16, d=64, heads=4, ffn=128, layers=2, classes=2):
        super().__init__()
        self.in_proj = nn.Linear(d_in, d)
        self.layers = nn.ModuleList([EncoderLayer(d, heads, ffn) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        x = self.in_proj(x)
        for layer in self.layers:
            x = layer(x)
        return self.head(self.ln_f(x).mean(dim=1))


def forward_flops(model):
    """Same count as bench/train_vs_torch.cpp: 2 FLOPs per MAC of matmuls/convs/attention."""
    if model == "mlp":
        return 2.0 * (784 * 256 + 256 * 128 + 128 * 10)
    if model == "cnn":
        return 2.0 * (28 * 28 * 16 * 9 + 14 * 14 * 32 * 16 * 9 + 32 * 7 * 7 * 10)
    L, d, ffn, din = 64, 64, 128, 16
    layer = L * d * 3 * d + 2 * L * L * d + L * d * d + 2 * L * d * ffn
    return 2.0 * (L * din * d + 2 * layer + d * 2)


def run(which, args):
    torch.manual_seed(1)
    if which == "mlp":
        model, shape, classes = Mlp(), (args.batch, 784), 10
    elif which == "cnn":
        model, shape, classes = Cnn(), (args.batch, 1, 28, 28), 10
    elif which == "attn":
        model, shape, classes = Encoder(), (args.batch, 64, 16), 2
    else:
        raise SystemExit(f"unknown model {which!r}")
    model.train()
    x = torch.randn(*shape, dtype=torch.float32)
    y = torch.randint(0, classes, (args.batch,))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=0.01)
    n_params = sum(p.numel() for p in model.parameters())

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(args.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    secs = time.perf_counter() - t0
    sps = args.steps * args.batch / secs
    fl = forward_flops(which)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    print(f"RESULT impl=torch model={which} params={n_params} batch={args.batch} "
          f"threads={torch.get_num_threads()} steps={args.steps} seconds={secs:.4f} "
          f"samples_per_s={sps:.1f} fwd_mflop_per_sample={fl / 1e6:.4f} "
          f"gflops={sps * 3 * fl / 1e9:.2f} rss_mb={rss_mb:.1f} loss={loss:.4f}", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="all")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    models = ["mlp", "cnn", "attn"] if args.model == "all" else [args.model]
    for m in models:
        run(m, args)


if __name__ == "__main__":
    main()
