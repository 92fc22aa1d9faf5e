"""Torch translations of the spiking block kinds for bench/sampled_vs_torch.py: spike_encoder,
spiking_conv, spiking_dense and spike_readout (spaces/blocks/block_spiking_*.cpp), written as
snnTorch writes them: a Python loop over the T steps around a torch.autograd.Function for the
Heaviside spike with a surrogate backward, vectorised over batch and neurons; the synapses (conv
or linear) run once over all T steps with T folded into the batch, as the hwnas blocks do.

Time layout (block_spiking_util.hpp): T is folded into the features, step-major:
    sequence (T, D)       -> tensor [B, T, D]
    image (T*C, H, W)     -> tensor [B, T*C, H, W]   (reshapes to [B*T, C, H, W] for one conv)

LIF neuron (nn/lif.hpp), per neuron, v_0 = 0, a_t = 0 while refractory else 1:
    m_t = beta * v_{t-1} + a_t * I_t
    s_t = a_t * H(m_t - threshold)            H(0) = 1, surrogate derivative in backward
    v_t = m_t - threshold * s_t   (subtract)  or  m_t * (1 - s_t)   (zero)
The gradient flows through the reset (the spike is not detached there), as hwnas' fused
backward does; beta / threshold are fixed floats or, with learn_beta / learn_threshold, trained
scalars clamped to [0, 1] / [0.05, inf).

build_block(kind, p, ins) -> (module, per-sample output shape) for these kinds, else None.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from lif_vs_torch import FastSigmoidSpike  # snnTorch's fast_sigmoid: 1 / (slope |x| + 1)^2
from sampled_torch_common import compress

KINDS = ("spike_encoder", "spiking_conv", "spiking_dense", "spike_readout")

# Defaults of the blocks' ParamSpecs (block_spiking_*.cpp, lif_params / lif_learn_params in
# block_spiking_util.hpp, Catalogue::common_params): a genome omits parameters at their default.
DEFAULTS = {
    "timesteps": 4,
    "beta": 0.9,
    "threshold": 1.0,
    "reset": "subtract",
    "surrogate": "fast_sigmoid",
    "slope": 5.0,
    "refractory": 0,
    "learn_beta": False,
    "learn_threshold": False,
    "encoding": "direct",
    "channels": 32,
    "kernel": 3,
    "stride": 1,
    "bias": True,
    "units": 128,
    "outputs": 10,
    "mode": "membrane",
    "bits": 32,
    "prune": 0.0,
}


def _get(p, name):
    return p.get(name, DEFAULTS[name])


# ---- spike with surrogate gradient (nn/ops_surrogate.cpp) ----

class ArcTanSpike(torch.autograd.Function):
    """H(x) forward; arctan backward (SpikingJelly ATan): slope / 2 / (1 + (pi/2 slope x)^2)."""

    @staticmethod
    def forward(ctx, x, slope):
        ctx.save_for_backward(x)
        ctx.slope = slope
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        k = ctx.slope
        return g * (k / 2.0) / (1.0 + (math.pi / 2.0 * k * x) ** 2), None


class Lif(nn.Module):
    """The LIF stage of a spiking layer (block_spiking_util.hpp LifStage + nn::lif): current
    [B, T, N] -> spikes [B, T, N]."""

    def __init__(self, p, learnable=True):
        super().__init__()
        self.learn_beta = learnable and bool(_get(p, "learn_beta"))
        self.learn_threshold = learnable and bool(_get(p, "learn_threshold"))
        beta, th = float(_get(p, "beta")), float(_get(p, "threshold"))
        self.beta = nn.Parameter(torch.tensor([beta])) if self.learn_beta else beta
        self.threshold = nn.Parameter(torch.tensor([th])) if self.learn_threshold else th
        self.zero_reset = _get(p, "reset") == "zero"
        self.refractory = int(_get(p, "refractory"))
        self.slope = float(_get(p, "slope"))
        self.spike = ArcTanSpike if _get(p, "surrogate") == "arctan" else FastSigmoidSpike

    def forward(self, cur):
        beta = self.beta.clamp(0.0, 1.0) if self.learn_beta else self.beta
        th = self.threshold.clamp(min=0.05) if self.learn_threshold else self.threshold
        spike, slope, zero_reset, refr = self.spike.apply, self.slope, self.zero_reset, self.refractory
        out = []
        v = None  # v_0 = 0: the first step's membrane is its current
        wait = None
        for t in range(cur.shape[1]):
            i_t = cur[:, t]
            if refr == 0:
                m = i_t if v is None else beta * v + i_t
                s = spike(m - th, slope)
            else:  # silent (input ignored, no spike, no surrogate gradient) while wait > 0
                if wait is None:
                    wait = torch.zeros_like(i_t)
                on = (wait == 0).to(i_t.dtype)
                drive = on * i_t
                m = drive if v is None else beta * v + drive
                s = on * spike(m - th, slope)
                with torch.no_grad():
                    wait = torch.where(s > 0, torch.full_like(wait, float(refr)),
                                       (wait - 1).clamp(min=0))
            v = m * (1.0 - s) if zero_reset else m - th * s
            out.append(s)
        return torch.stack(out, dim=1)


# ---- blocks ----

def _steps(p):
    return int(_get(p, "timesteps"))


def _features_per_step(t, steps, block):
    """block_spiking_util.hpp features_per_step: (T, D) -> D, (T*C, H, W) -> C*H*W."""
    if len(t) == 2:
        if t[0] != steps:
            raise ValueError(f"{block}: input {t} has {t[0]} time steps, timesteps = {steps}")
        return t[1]
    if len(t) == 3:
        if t[0] % steps != 0:
            raise ValueError(f"{block}: input {t} channels not a multiple of timesteps = {steps}")
        return t[0] // steps * t[1] * t[2]
    raise ValueError(f"{block}: input {t} is not spiking (sequence[T, D] or image[T*C, H, W])")


class SpikeEncoder(nn.Module):
    """direct: the analog input repeated at every step (gradient summed over the steps);
    rate: Bernoulli spikes with p = clamp(x, 0, 1) per element and step (no gradient).
    [B, C, H, W] -> [B, T*C, H, W] (step-major); [B, D] -> [B, T, D]."""

    def __init__(self, steps, rate):
        super().__init__()
        self.steps, self.rate = steps, rate

    def forward(self, x):
        B, T = x.shape[0], self.steps
        y = x.unsqueeze(1).expand(B, T, *x.shape[1:])
        if self.rate:
            y = torch.bernoulli(y.detach().clamp(0.0, 1.0))
        else:
            y = y.contiguous()
        return y.reshape(B, T * x.shape[1], *x.shape[2:]) if x.dim() == 4 else y


class SpikingConv(nn.Module):
    """One conv (same padding, optional bias, no batch norm) over the [B*T] frames, then LIF over
    the T steps of cout*Ho*Wo neurons; [B, T*Cin, H, W] -> [B, T*Cout, Ho, Wo]."""

    def __init__(self, steps, cin, cout, k, stride, bias, p):
        super().__init__()
        self.steps, self.cin, self.cout = steps, cin, cout
        self.conv = nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, bias=bias)
        self.lif = Lif(p)
        self.bits, self.prune = int(_get(p, "bits")), float(_get(p, "prune"))

    def forward(self, x):
        B, T = x.shape[0], self.steps
        frames = x.reshape(B * T, self.cin, x.shape[2], x.shape[3])
        c = self.conv
        cur = F.conv2d(frames, compress(c.weight, self.bits, self.prune), c.bias, c.stride,
                       c.padding)
        ho, wo = cur.shape[2], cur.shape[3]
        spikes = self.lif(cur.reshape(B, T, self.cout * ho * wo))
        return spikes.reshape(B, T * self.cout, ho, wo)


class SpikingDense(nn.Module):
    """One linear over the [B*T] rows (per-step features flattened), then LIF;
    -> [B, T, units]."""

    def __init__(self, steps, din, units, bias, p):
        super().__init__()
        self.steps, self.din, self.units = steps, din, units
        self.lin = nn.Linear(din, units, bias=bias)
        self.lif = Lif(p)
        self.bits, self.prune = int(_get(p, "bits")), float(_get(p, "prune"))

    def forward(self, x):
        B, T = x.shape[0], self.steps
        cur = F.linear(x.reshape(B * T, self.din),
                       compress(self.lin.weight, self.bits, self.prune), self.lin.bias)
        return self.lif(cur.reshape(B, T, self.units))


class SpikeReadout(nn.Module):
    """One linear (with bias) over the [B*T] rows into `outputs` readout neurons, then
    membrane: non-spiking leaky integrators v_t = beta v_{t-1} + I_t, logits = mean_t v_t,
      computed as hwnas does it, one weighted sum over the steps: sum_t w_t I_t with
      w_t = (1/T) sum_{k=t}^{T-1} beta^(k-t) (the integrator is linear);
    count: LIF neurons with the block's settings (fixed beta / threshold), logits = mean_t s_t."""

    def __init__(self, steps, din, outputs, p):
        super().__init__()
        self.steps, self.din, self.outputs = steps, din, outputs
        self.lin = nn.Linear(din, outputs, bias=True)
        self.count = _get(p, "mode") == "count"
        self.lif = Lif(p, learnable=False) if self.count else None
        self.bits, self.prune = int(_get(p, "bits")), float(_get(p, "prune"))
        beta = float(_get(p, "beta"))
        w = [sum(beta ** (k - t) for k in range(t, steps)) / steps for t in range(steps)]
        self.register_buffer("step_weights", torch.tensor(w, dtype=torch.float32).view(steps, 1))

    def forward(self, x):
        B, T = x.shape[0], self.steps
        cur = F.linear(x.reshape(B * T, self.din),
                       compress(self.lin.weight, self.bits, self.prune), self.lin.bias)
        cur = cur.reshape(B, T, self.outputs)
        if self.count:
            return self.lif(cur).mean(dim=1)
        return (cur * self.step_weights).sum(dim=1)


def build_block(kind, p, ins):
    if kind not in KINDS:
        return None
    t = tuple(ins[0])
    T = _steps(p)
    if kind == "spike_encoder":
        rate = _get(p, "encoding") == "rate"
        if len(t) == 3:
            return SpikeEncoder(T, rate), (T * t[0], t[1], t[2])
        if len(t) == 1:
            return SpikeEncoder(T, rate), (T, t[0])
        raise ValueError(f"spike_encoder: input {t} must be an image or a vector")
    if kind == "spiking_conv":
        if len(t) != 3:
            raise ValueError(f"spiking_conv: input {t} is not an image[T*C, H, W]")
        _features_per_step(t, T, kind)
        cin, cout = t[0] // T, int(_get(p, "channels"))
        k, s = int(_get(p, "kernel")), int(_get(p, "stride"))
        pad = (k - 1) // 2
        ho, wo = (t[1] + 2 * pad - k) // s + 1, (t[2] + 2 * pad - k) // s + 1
        return SpikingConv(T, cin, cout, k, s, bool(_get(p, "bias")), p), (T * cout, ho, wo)
    if kind == "spiking_dense":
        din, units = _features_per_step(t, T, kind), int(_get(p, "units"))
        return SpikingDense(T, din, units, bool(_get(p, "bias")), p), (T, units)
    # spike_readout
    din, outputs = _features_per_step(t, T, kind), int(_get(p, "outputs"))
    return SpikeReadout(T, din, outputs, p), (outputs,)
