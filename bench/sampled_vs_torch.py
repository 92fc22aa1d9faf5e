#!/usr/bin/python3
"""PyTorch side of bench/sampled_vs_torch.sh: trains the genomes that bench_sampled_vs_torch
dumped (one JSON per line), each translated into a torch module block by block, with the same
step as the hwnas side (forward, cross-entropy, backward, AdamW lr 1e-3 wd 0.01) on random data of
the genome's input shape.  Weights differ; the work is the same: every block does what its
spaces/blocks/block_<kind>.cpp does (conv = conv -> batch norm -> activation with "same"
padding, nor_conv = ReLU -> conv -> BN, compressed layers fake-quantise and prune their weight
every step with a straight-through gradient, ...).  Prints one "RESULT impl=torch ..." per genome.
    /usr/bin/python3 bench/sampled_vs_torch.py --genomes FILE [--batch 64] [--steps 10]
                                               [--warmup 2] [--threads 2]
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from sampled_torch_common import ACT, compress

import sampled_torch_compression
import sampled_torch_continuous
import sampled_torch_mixers
import sampled_torch_spiking
from sampled_torch_compression import kept_channels

EXTENSIONS = (sampled_torch_spiking, sampled_torch_continuous, sampled_torch_mixers,
              sampled_torch_compression)


def same_pad(k):
    return (k - 1) // 2


class Conv(nn.Module):
    """ConvUnit: [pre-act] conv(same padding) [BN] [post-act], compressed weight."""

    def __init__(self, cin, cout, k, stride, groups, bn, pre, post, bits, prune):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, same_pad(k), groups=groups, bias=not bn)
        self.bn = nn.BatchNorm2d(cout) if bn else None
        self.pre, self.post, self.bits, self.prune = pre, post, bits, prune

    def forward(self, x):
        x = ACT[self.pre](x)
        c = self.conv
        x = F.conv2d(x, compress(c.weight, self.bits, self.prune), c.bias, c.stride, c.padding,
                     c.dilation, c.groups)
        if self.bn is not None:
            x = self.bn(x)
        return ACT[self.post](x)


class Dense(nn.Module):
    def __init__(self, din, dout, bias, act, bits, prune):
        super().__init__()
        self.lin = nn.Linear(din, dout, bias=bias)
        self.act, self.bits, self.prune = act, bits, prune

    def forward(self, x):
        return ACT[self.act](F.linear(x, compress(self.lin.weight, self.bits, self.prune),
                                      self.lin.bias))


class Lambda(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, *xs):
        return self.f(*xs)


class Norm(nn.Module):
    def __init__(self, batch, rank, features):
        super().__init__()
        self.batch, self.rank = batch, rank
        if batch:
            self.n = nn.BatchNorm2d(features) if rank == 3 else nn.BatchNorm1d(features)
        else:
            self.n = nn.LayerNorm(features)

    def forward(self, x):
        if self.batch:
            if self.rank == 2:  # sequence [N, L, D]: statistics over N*L
                s = x.shape
                return self.n(x.reshape(s[0] * s[1], s[2])).reshape(s)
            return self.n(x)
        if self.rank == 3:  # image: normalise over channels
            return self.n(x.transpose(1, 3)).transpose(1, 3)
        return self.n(x)


class Attention(nn.Module):
    """Full attention: fused QKV + out projection (nn.MultiHeadSelfAttention), optional causal
    mask.  Sliding windows, RoPE and compressed weights are sampled_torch_mixers'."""

    def __init__(self, length, d, heads, causal):
        super().__init__()
        self.mha = nn.MultiheadAttention(d, heads, batch_first=True)
        i = torch.arange(length)
        banned = i[None, :] > i[:, None] if causal else None
        self.register_buffer("mask", banned)

    def forward(self, x):
        return self.mha(x, x, x, need_weights=False, attn_mask=self.mask)[0]


class Reduction(nn.Module):
    """NAS-Bench-201 residual reduction: two ReLU-conv-BN (stride 2, 1) + avgpool/1x1 shortcut."""

    def __init__(self, cin, cout, bits, prune):
        super().__init__()
        self.a = Conv(cin, cout, 3, 2, 1, True, "relu", "none", bits, prune)
        self.b = Conv(cout, cout, 3, 1, 1, True, "relu", "none", bits, prune)
        self.short = nn.Conv2d(cin, cout, 1, bias=False)
        self.bits, self.prune = bits, prune

    def forward(self, x):
        s = F.conv2d(F.avg_pool2d(x, 2, 2), compress(self.short.weight, self.bits, self.prune),
                     self.short.bias)
        return self.b(self.a(x)) + s


def conv_out(n, k, s):
    return (n + 2 * same_pad(k) - k) // s + 1


def build_block(kind, p, ins):
    """Returns (module, output per-sample shape) for one genome node; ins = input shapes."""
    # The emerging block kinds live in one module per space family (same interface; None when
    # the kind, or this variant of it, is not theirs).  They are asked first so that a family
    # can take a variant of a classic kind (e.g. attention with RoPE).
    for ext in EXTENSIONS:
        r = ext.build_block(kind, p, ins)
        if r is not None:
            return r
    t = ins[0]
    bits, prune = p.get("bits", 32), p.get("prune", 0.0)
    # Structured channel pruning (conv, dense; moe is sampled_torch_compression's): the layer is
    # built at the kept width, and the next layer's input follows from the output shape.
    cprune = p.get("channel_prune", 0.0)
    if kind in ("conv", "dwconv"):
        k, s = p.get("kernel", 3), p.get("stride", 1)
        cout = kept_channels(p.get("channels", 16), cprune) if kind == "conv" else t[0]
        groups = 1 if kind == "conv" else t[0]
        m = Conv(t[0], cout, k, s, groups, p.get("batch_norm", True), "none",
                 p.get("activation", "relu"), bits, prune)
        return m, (cout, conv_out(t[1], k, s), conv_out(t[2], k, s))
    if kind in ("nor_conv_1x1", "nor_conv_3x3"):
        k = 1 if kind.endswith("1x1") else 3
        return Conv(t[0], t[0], k, 1, 1, True, "relu", "none", bits, prune), t
    if kind == "nb201_reduction":
        c = p["channels"]
        return Reduction(t[0], c, bits, prune), (c, conv_out(t[1], 3, 2), conv_out(t[2], 3, 2))
    if kind == "pool":
        k, s, op = p.get("kernel", 2), p.get("stride", 2), p.get("op", "max")
        pad = same_pad(k)
        if op == "max":
            f = lambda x: F.max_pool2d(x, k, s, pad)
        else:
            f = lambda x: F.avg_pool2d(x, k, s, pad, count_include_pad=False)
        return Lambda(f), (t[0], (t[1] + 2 * pad - k) // s + 1, (t[2] + 2 * pad - k) // s + 1)
    if kind == "avg_pool_3x3":
        return Lambda(lambda x: F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)), t
    if kind == "global_pool":
        if len(t) == 3:
            return Lambda(lambda x: x.mean(dim=(2, 3))), (t[0],)
        return Lambda(lambda x: x.mean(dim=1)), (t[-1],)
    if kind == "flatten":
        n = 1
        for d in t:
            n *= d
        return Lambda(lambda x: torch.flatten(x, 1)), (n,)
    if kind == "dense":  # with lora_rank > 0: sampled_torch_compression
        u = kept_channels(p.get("units", 64), cprune)
        return Dense(t[-1], u, p.get("bias", True), p.get("activation", "relu"), bits, prune), \
            t[:-1] + (u,)
    if kind == "head":
        o = p["outputs"]
        return Dense(t[-1], o, True, "none", bits, prune), t[:-1] + (o,)
    if kind == "norm":
        return Norm(p.get("type", "batch") == "batch", len(t), t[0] if len(t) == 3 else t[-1]), t
    if kind == "attention":
        if p.get("lora_rank", 0) > 0:
            raise NotImplementedError("no torch translation for attention with lora_rank > 0")
        return Attention(t[0], t[1], p.get("heads", 2), p.get("causal", False)), t
    if kind == "add":
        return Lambda(lambda *xs: sum(xs[1:], xs[0])), t
    if kind == "concat":
        dim = 1 if len(t) == 3 else -1
        out = list(t)
        feat = 0 if len(t) == 3 else len(t) - 1
        out[feat] = sum(s[feat] for s in ins)
        return Lambda(lambda *xs: torch.cat(xs, dim=dim)), tuple(out)
    if kind == "none":
        return Lambda(lambda x: x * 0.0), t
    if kind == "skip_connect":
        return Lambda(lambda x: x), t
    raise NotImplementedError(f"no torch translation for block kind {kind!r}")


class GenomeModel(nn.Module):
    def __init__(self, g):
        super().__init__()
        n = len(g["nodes"])
        self.inputs = [[] for _ in range(n)]
        consumers = [0] * n
        for a, b in g["edges"]:  # edge order is slot order
            self.inputs[b].append(a)
            consumers[a] += 1
        # Topological order (Kahn, lowest id first).
        indeg = [len(i) for i in self.inputs]
        ready, self.order = [v for v in range(n) if indeg[v] == 0], []
        while ready:
            ready.sort()
            v = ready.pop(0)
            self.order.append(v)
            for a, b in g["edges"]:
                if a == v:
                    indeg[b] -= 1
                    if indeg[b] == 0:
                        ready.append(b)
        self.sink = [v for v in range(n) if consumers[v] == 0][0]
        shapes = [None] * n
        shapes[0] = tuple(g["input"]["shape"])
        self.blocks = nn.ModuleList([nn.Identity() for _ in range(n)])
        for v in self.order[1:]:
            node = g["nodes"][v]
            m, shapes[v] = build_block(node["kind"], node.get("params", {}),
                                       [shapes[u] for u in self.inputs[v]])
            self.blocks[v] = m
        self.per_token = len(shapes[self.sink]) == 2  # [L, classes]: a sequence out

    def forward(self, x):
        act = {0: x}
        for v in self.order[1:]:
            act[v] = self.blocks[v](*[act[u] for u in self.inputs[v]])
        return act[self.sink]


def train_seconds(g, args):
    """Builds the genome's torch model and returns (seconds for the timed steps, parameters)."""
    torch.manual_seed(1)
    model = GenomeModel(g)
    model.train()
    x = torch.randn(args.batch, *g["input"]["shape"], dtype=torch.float32)
    # Per-token readouts (a sequence out) get one label per token, as the trainer's TokenClasses
    # head: mean cross-entropy over every token.
    per_token = model.per_token
    y = torch.randint(0, g["outputs"], (args.batch, g["input"]["shape"][0]) if per_token
                      else (args.batch,))
    # One output is a regression readout (mlp_2d's symbolic task): mean squared error, as the
    # trainer's regression head and the C++ side.
    regression = g["outputs"] == 1 and not per_token
    target = torch.randn(args.batch, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=0.01)

    # Blocks' auxiliary losses (moe's load balancing) join the loss, as in the trainer.
    aux_losses = []
    sampled_torch_compression.AUX_LOSSES = aux_losses

    def step():
        opt.zero_grad(set_to_none=True)
        aux_losses.clear()
        out = model(x)
        if regression:
            loss = F.mse_loss(out, target)
        else:
            loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
        for a in aux_losses:
            loss = loss + a
        loss.backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    return time.perf_counter() - t0, sum(p.numel() for p in model.parameters())


def run(idx, g, args):
    secs, params = train_seconds(g, args)
    # Sliding-window attention has two reasonable torch forms (tiles, or the full score matrix
    # with the band masked); which is faster depends on L and the window, so both are timed and
    # the faster kept.
    if any(n["kind"] == "sliding_attention" for n in g["nodes"]):
        sampled_torch_mixers.SLIDING_IMPL = "masked"
        secs = min(secs, train_seconds(g, args)[0])
        sampled_torch_mixers.SLIDING_IMPL = "tiled"
    sps = args.steps * args.batch / secs
    gf = sps * 3 * 2 * g["fwd_macs"] / 1e9
    print(f"RESULT impl=torch idx={idx} batch={args.batch} steps={args.steps} "
          f"seconds={secs:.4f} samples_per_s={sps:.1f} gflops={gf:.3f} params={params}",
          flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--genomes", required=True)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    with open(args.genomes) as f:
        for idx, line in enumerate(f):
            run(idx, json.loads(line), args)


if __name__ == "__main__":
    main()
