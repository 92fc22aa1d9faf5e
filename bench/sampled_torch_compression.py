"""Torch translations of the compression space's block kinds for bench/sampled_vs_torch.py: moe
(spaces/blocks/block_moe.cpp + nn/moe.cpp) and dense with lora_rank > 0 (block_dense.cpp +
nn/lora.cpp), plus kept_channels (spaces/compress.cpp), the width every "channel_prune" builds a
conv, dense or moe at (sampled_vs_torch.py applies it to its own conv and dense).  Same interface
as the other extension modules: build_block(kind, p, ins) -> (module, per-sample output shape),
or None for a kind (or variant) that is not ours.  Weights are initialised as hwnas draws them
(He normal, zero biases, router x 0.1, LoRA B = 0): the router's initial sharpness decides how
many assignments overflow an expert's capacity, i.e. the work.

"bits" / "prune" compress (sampled_torch_common.compress, per step, straight-through) exactly
the weights hwnas passes through compress_weight: for moe the router weight and every expert's
fc1 / fc2 weight (MoeLayer::w, via MoeModule's weight_transform), never a bias; for LoRA dense the
frozen base weight only (LoraLinear::forward), never the adapter.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from sampled_torch_common import ACT, compress


# Defaults of the blocks' ParamSpecs (block_moe.cpp, block_dense.cpp, block_util.hpp); a genome
# omits parameters at their default.
MOE_DEFAULTS = {"experts": 4, "k": 1, "hidden": 64, "capacity_factor": 1.25, "overflow": "drop",
                "aux_weight": 0.01, "activation": "relu", "channel_prune": 0.0, "bits": 32,
                "prune": 0.0}
DENSE_DEFAULTS = {"units": 64, "activation": "relu", "bias": True, "lora_rank": 0,
                  "lora_alpha": 8.0, "channel_prune": 0.0, "bits": 32, "prune": 0.0}

# ForwardContext::aux_losses: None, or a list the MoE layers append aux_weight * loss to in
# training; sampled_vs_torch.py sets it and adds the list to the task loss, as
# evaluators/trainer.cpp and bench_sampled_vs_torch do.
AUX_LOSSES = None


def _params(defaults, p):
    q = dict(defaults)
    q.update({k: v for k, v in p.items() if k in q})
    return q


def kept_channels(full, ratio):
    """spaces/compress.cpp kept_channels: max(1, std::lround(full * (1 - ratio)))."""
    v = full * (1.0 - ratio)
    return max(1, int(math.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1))


def he_linear(din, dout, bias=True):
    """nn::Linear: weight He normal (std sqrt(2 / in)), bias zeros."""
    lin = nn.Linear(din, dout, bias=bias)
    with torch.no_grad():
        lin.weight.normal_(0.0, math.sqrt(2.0 / din))
        if bias:
            lin.bias.zero_()
    return lin


# ---------------------------------------------------------------------------------------------
# LoRA dense (block_dense.cpp DenseModule over nn::LoraLinear, nn/lora.cpp):
#   y = act( x C(W)^T + b + (alpha / r) (x A^T) B^T )
# W [out, in] and b frozen (requires_grad false), C = compress_weight(bits, prune) on W only;
# A [r, in] He normal (std sqrt(2 / in), LoraAdapter's he_normal), B [out, r] zeros; the delta
# goes through the rank-r bottleneck, two linears then one scale (LoraAdapter::delta).  No dropout.
# The base is frozen, so its compressed form is a constant: hwnas compresses it on the first
# call and serves that until W is written (spaces/compress.hpp); so does this module.

class LoraAdapter(nn.Module):
    """nn::LoraAdapter: the trainable update (alpha / r) x A^T B^T."""

    def __init__(self, din, dout, rank, alpha):
        super().__init__()
        self.a = nn.Parameter(torch.randn(rank, din) * math.sqrt(2.0 / din))
        self.b = nn.Parameter(torch.zeros(dout, rank))
        self.scaling = float(alpha / rank)  # LoraAdapter::scaling_, a float

    def forward(self, x):
        return F.linear(F.linear(x, self.a), self.b) * self.scaling


class LoraDense(nn.Module):
    def __init__(self, din, dout, bias, act, rank, alpha, bits, prune):
        super().__init__()
        # Parameters in LoraLinear's order: weight, bias (frozen), then lora_a, lora_b.
        self.lin = he_linear(din, dout, bias)
        self.lin.weight.requires_grad_(False)
        if bias:
            self.lin.bias.requires_grad_(False)
        self.adapter = LoraAdapter(din, dout, rank, alpha)
        self.act, self.bits, self.prune = ACT[act], bits, prune
        self._cached, self._cached_version = None, None

    def base_weight(self):
        w = self.lin.weight
        if self.bits >= 16 and self.prune <= 0:
            return w
        if self._cached is None or self._cached_version != w._version:
            self._cached, self._cached_version = compress(w, self.bits, self.prune), w._version
        return self._cached

    def forward(self, x):
        y = F.linear(x, self.base_weight(), self.lin.bias)
        return self.act(y + self.adapter(x))


# ---------------------------------------------------------------------------------------------
# Mixture of experts (block_moe.cpp MoeModule over nn::MoeLayer, nn/moe.cpp), on the tokens x
# [N, d] (all rows of the batch: N = B for vectors, B * L for sequences):
#   p = softmax(x C(Wr)^T + br)                        router, [N, E]
#   (g, e) = topk(p, k)                                raw probabilities as gates, NOT
#                                                      renormalised over the k chosen
#   capacity = max(1, ceil(capacity_factor * N * k / E))   per expert per forward pass
#   assignments granted first choices before second choices, each in token order; one over its
#   expert's capacity is dropped (adds 0) or, with overflow "pass", adds g * x
#   y[t] = sum over granted (t, e, g): g * (C(W2_e) act(C(W1_e) x[t] + b1_e) + b2_e)
# Each expert's FFN runs only on the rows it was granted (gathered), the gated outputs are
# concatenated and scatter-added into y (one index_add), as MoeLayer::forward.  Expert hidden
# width = kept_channels(hidden, channel_prune); input and output width stay d.
# In training with AUX_LOSSES set and aux_weight > 0: aux_weight * E * sum_i f_i P_i (Switch
# eq. 4; f_i = share of the N k router choices, before capacity, P_i = mean probability), appended
# to AUX_LOSSES (moe_load_balancing_loss).

class Moe(nn.Module):
    def __init__(self, d, q):
        super().__init__()
        self.d, self.E, self.k = d, int(q["experts"]), int(q["k"])
        if not 1 <= self.k <= self.E:
            raise ValueError(f"moe: k = {self.k} must be between 1 and experts = {self.E}")
        self.hidden = kept_channels(int(q["hidden"]), float(q["channel_prune"]))
        self.factor, self.pass_overflow = float(q["capacity_factor"]), q["overflow"] == "pass"
        self.aux_weight, self.act = float(q["aux_weight"]), ACT[q["activation"]]
        self.bits, self.prune = int(q["bits"]), float(q["prune"])
        # Parameter order as MoeLayer names them: router.weight/bias, experts.<i>.fc1.*, .fc2.*
        self.router = he_linear(d, self.E)
        with torch.no_grad():
            self.router.weight.mul_(0.1)  # MoeLayer: a small router, near-uniform routing
        self.experts = nn.ModuleList(
            nn.ModuleDict({"fc1": he_linear(d, self.hidden), "fc2": he_linear(self.hidden, d)})
            for _ in range(self.E))

    def w(self, weight):  # MoeLayer::w = MoeModule's weight_transform (compress_weight)
        return compress(weight, self.bits, self.prune)

    def capacity(self, n):  # moe_capacity
        return max(1, int(math.ceil(self.factor * n * self.k / self.E)))

    def forward(self, x):
        shape = x.shape
        x2 = x.reshape(-1, self.d)
        n, E, k = x2.shape[0], self.E, self.k
        probs = F.softmax(F.linear(x2, self.w(self.router.weight), self.router.bias), dim=-1)
        gates, chosen = torch.topk(probs, k, dim=-1)  # [N, k], descending
        cap = self.capacity(n)
        with torch.no_grad():
            # Priority order: slot-major (all first choices, then all second), tokens ascending.
            flat = chosen.t().reshape(-1)  # [k N], entry j = (slot j // N, token j % N)
            onehot = F.one_hot(flat, E)
            rank_in_expert = (onehot.cumsum(0) * onehot).sum(1) - 1
            granted = rank_in_expert < cap
            j = granted.nonzero().squeeze(1)
            # The granted assignments grouped by expert, priority order kept within each.
            order = torch.sort(flat[j], stable=True).indices
            j = j[order]
            counts = torch.bincount(flat[j], minlength=E).tolist()
            tok = j % n
            gate_pos = tok * k + j // n  # position in gates [N k], as MoeLayer's gate_at
        gflat = gates.reshape(n * k)
        parts = []
        for e, xe in enumerate(x2.index_select(0, tok).split(counts)):  # one gather, per expert
            if xe.shape[0] == 0:
                continue
            ex = self.experts[e]
            h = self.act(F.linear(xe, self.w(ex["fc1"].weight), ex["fc1"].bias))
            parts.append(F.linear(h, self.w(ex["fc2"].weight), ex["fc2"].bias))
        dest = tok
        src = torch.cat(parts, 0) * gflat.index_select(0, gate_pos).unsqueeze(1) if parts else None
        if self.pass_overflow:
            with torch.no_grad():
                o = (~granted).nonzero().squeeze(1)  # priority order
                otok, opos = o % n, (o % n) * k + o // n
            if o.numel() > 0:
                over = x2.index_select(0, otok) * gflat.index_select(0, opos).unsqueeze(1)
                src = over if src is None else torch.cat([src, over], 0)
                dest = torch.cat([dest, otok])
        y = x2.new_zeros(n, self.d)
        if src is not None:
            y = y.index_add(0, dest, src)
        if self.training and AUX_LOSSES is not None and self.aux_weight > 0:
            AUX_LOSSES.append(self.aux_weight * load_balancing_loss(probs, chosen))
        return y.reshape(shape)


def load_balancing_loss(probs, chosen):
    """moe_load_balancing_loss: E * sum_i f_i P_i, differentiable through probs only."""
    E = probs.shape[1]
    f = torch.bincount(chosen.reshape(-1), minlength=E).to(probs.dtype) / chosen.numel()
    return E * (probs.mean(dim=0) * f).sum()


def build_block(kind, p, ins):
    t = tuple(ins[0])
    if kind == "moe":
        if len(t) not in (1, 2):
            raise ValueError(f"moe: input {t} must be a vector or a sequence")
        return Moe(t[-1], _params(MOE_DEFAULTS, p)), t
    if kind == "dense" and p.get("lora_rank", 0) > 0:
        q = _params(DENSE_DEFAULTS, p)
        u = kept_channels(int(q["units"]), float(q["channel_prune"]))
        return LoraDense(t[-1], u, bool(q["bias"]), q["activation"], int(q["lora_rank"]),
                         float(q["lora_alpha"]), int(q["bits"]), float(q["prune"])), t[:-1] + (u,)
    return None
