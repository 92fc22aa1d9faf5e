"""Torch translations of the continuous-time block kinds (cfc, ltc, kan, neural_ode) for
bench/sampled_vs_torch.py.  Each module does what its spaces/blocks/block_<kind>.cpp does, with
the nn code it calls (nn/liquid_cells.cpp, nn/kan.cpp + nn/ops_kan.cpp, nn/ode.cpp), written as
a PyTorch user would: batch-first, vectorised over the batch, nn.Linear / nn.Parameter, a Python
loop where the maths is sequential (time steps, LTC unfolds, solver steps), as ncps and
torchdiffeq do.  Weight initialisation follows hwnas where it is cheap to; it does not need to.

    build_block(kind, p, ins) -> (module, per-sample out shape), or None for other kinds.

Defaults and the params that apply to each kind are those of the block's ParamSpec in the C++
file (a genome omits parameters at their default and may carry ones that do not apply).
"""
import math
import random

import torch
import torch.nn as nn
import torch.nn.functional as F

from kan_vs_torch import bspline_basis
from sampled_torch_common import compress


# ---------------------------------------------------------------- shared helpers


def _bits_prune(p):
    return p.get("bits", 32), p.get("prune", 0.0)


def _lround(v):  # std::lround: halves away from zero
    return int(math.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1)


def ncp_wiring(inputs, units, motor, density, seed):
    """nn::make_ncp_wiring(inputs, units, motor, density, seed): neurons ordered motor, command,
    inter; the same layer sizes, fan-outs and synapse counts.  The random draws come from
    Python's generator, not std::mt19937_64, so which synapses exist differs from hwnas (the
    work of the masked dense maths does not).  Returns (adjacency [H, H], sensory [F, H])."""
    if not (0.0 < density <= 1.0):
        raise ValueError(f"ncp wiring: density must be in (0, 1], got {density}")
    if motor < 1 or units - motor < 2:
        raise ValueError(f"ncp wiring: need motor >= 1 and units >= motor + 2, got {units}, {motor}")
    rest = units - motor
    inter = max(1, (rest * 3 + 4) // 5)
    command = rest - inter
    if command < 1:
        raise ValueError(f"ncp wiring: units {units} leave no command neurons")

    def fan(n):
        return min(max(_lround(density * n), 1), n)

    sensory_fanout, inter_fanout, motor_fanin = fan(inter), fan(command), fan(command)
    recurrent_command = _lround(density * command * command)
    H = units
    adj = torch.zeros(H, H)
    sens = torch.zeros(inputs, H)
    rng = random.Random(seed)

    def pick(n, k):
        ids = list(range(n))
        for i in range(k):
            j = rng.randint(i, n - 1)
            ids[i], ids[j] = ids[j], ids[i]
        return ids[:k]

    c0, i0 = motor, motor + command
    for s in range(inputs):
        for d in pick(inter, sensory_fanout):
            sens[s, i0 + d] = 1
    for d in range(inter):
        if not sens[:, i0 + d].any():
            sens[rng.randint(0, inputs - 1), i0 + d] = 1
    for s in range(inter):
        for d in pick(command, inter_fanout):
            adj[i0 + s, c0 + d] = 1
    for d in range(command):
        if not adj[:, c0 + d].any():
            adj[i0 + rng.randint(0, inter - 1), c0 + d] = 1
    for _ in range(recurrent_command):
        adj[c0 + rng.randint(0, command - 1), c0 + rng.randint(0, command - 1)] = 1
    for m in range(motor):
        for s in pick(command, motor_fanin):
            adj[c0 + s, m] = 1
    return adj, sens


# ---------------------------------------------------------------- cfc

def lecun_tanh(x):
    return 1.7159 * torch.tanh(0.666 * x)


class CfC(nn.Module):
    """nn::CfcCell on the fused time loop (ncps CfCCell): the input half of the first layer is
    one GEMM over all steps, then per step z = u_t + h W_rec^T, the lecun_tanh backbone, one
    fused heads layer [4H] (f1, f2, time_a, time_b) and the mode's update with dt = 1:
      default  h = tanh(f1) (1 - g) + g tanh(f2),  g = sigmoid(time_a + time_b)
      no_gate  h = tanh(f1) + g tanh(f2)
      pure     h = A - A exp(-(|w_tau| + |f|)) f   (one head).
    backbone_layers 0: the heads are z itself.  Weight matrices are compressed as the block
    does; biases and the pure solution's vectors stay float."""

    def __init__(self, features, units, backbone_units, backbone_layers, mode, sequences,
                 bits, prune, masks=None):
        super().__init__()
        H, U, L = units, backbone_units, backbone_layers
        self.mode, self.L, self.H, self.sequences = mode, L, H, sequences
        self.bits, self.prune = bits, prune
        heads = 1 if mode == "pure" else 4
        P = U if L > 0 else heads * H
        self.inp = nn.Linear(features, P)                # w_in [P, F], b_in [P]
        self.rec = nn.Linear(H, P, bias=False)           # w_rec [P, H]
        self.backbone = nn.ModuleList([nn.Linear(U, U) for _ in range(max(L - 1, 0))])
        self.heads = nn.Linear(U, heads * H) if L > 0 else None
        for lin in [self.inp, self.rec] + list(self.backbone) + ([self.heads] if L else []):
            nn.init.xavier_uniform_(lin.weight)
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)
        if mode == "pure":
            self.w_tau = nn.Parameter(torch.zeros(H))
            self.A = nn.Parameter(torch.ones(H))
        if masks is not None:
            self.register_buffer("in_mask", masks[0])
            self.register_buffer("rec_mask", masks[1])
        else:
            self.in_mask = self.rec_mask = None

    def _w(self, w):
        return compress(w, self.bits, self.prune)

    def forward(self, x):  # [B, T, F]
        w_in, w_rec = self._w(self.inp.weight), self._w(self.rec.weight)
        if self.in_mask is not None:
            w_in, w_rec = w_in * self.in_mask, w_rec * self.rec_mask
        u = F.linear(x, w_in, self.inp.bias)  # [B, T, P]
        bb = [(self._w(l.weight), l.bias) for l in self.backbone]
        hd = (self._w(self.heads.weight), self.heads.bias) if self.L > 0 else None
        h = x.new_zeros(x.shape[0], self.H)
        outs = []
        for t in range(x.shape[1]):
            z = u[:, t] + F.linear(h, w_rec)
            if self.L > 0:
                a = lecun_tanh(z)
                for w, b in bb:
                    a = lecun_tanh(F.linear(a, w, b))
                z = F.linear(a, *hd)
            if self.mode == "pure":
                h = self.A - self.A * torch.exp(-(self.w_tau.abs() + z.abs())) * z
            else:
                f1, f2, ta, tb = z.chunk(4, dim=-1)
                f1, f2 = torch.tanh(f1), torch.tanh(f2)
                g = torch.sigmoid(ta + tb)  # sigma(time_a * dt + time_b), dt = 1
                h = f1 * (1.0 - g) + g * f2 if self.mode == "default" else f1 + g * f2
            if self.sequences:
                outs.append(h)
        return torch.stack(outs, dim=1) if self.sequences else h


def build_cfc(p, ins):
    T, Fin = ins[0]
    H = p.get("units", 32)
    U = p.get("backbone_units", 64)
    L = p.get("backbone_layers", 1)
    mode = p.get("mode", "default")
    seqs = p.get("return_sequences", True)
    bits, prune = _bits_prune(p)
    masks = None
    if p.get("wiring", "dense") == "ncp":
        if L != 0:
            raise ValueError(f"cfc: wiring ncp needs backbone_layers 0, got {L}")
        adj, sens = ncp_wiring(Fin, H, max(1, H // 4), p.get("density", 0.5),
                               p.get("wiring_seed", 1))
        P = (1 if mode == "pure" else 4) * H
        cols = torch.arange(P) % H  # output o of every head reads neuron o % H's synapses
        masks = (sens[:, cols].t().contiguous(), adj[:, cols].t().contiguous())
    m = CfC(Fin, H, U, L, mode, seqs, bits, prune, masks)
    return m, ((T, H) if seqs else (H,))


# ---------------------------------------------------------------- ltc

def _inv_softplus(t):
    return torch.log(torch.expm1(t))


class LTC(nn.Module):
    """nn::LtcCell (ncps LTCCell with implicit_param_constraints: softplus on w, sw, gleak, cm),
    its fused semi-implicit solver run `unfolds` times per step with dt = 1:
      x' = x in_w + in_b;  sensory a^s = softplus(sw) sigmoid(ssig (x'_i - smu)) (once per step)
      cm_t = softplus(cm) unfolds
      repeat: a = softplus(w) sigmoid(sig (v_i - mu))
              v = (cm_t v + gl vleak + sum_i a erev + sum_i a^s serev)
                  / (cm_t + gl + sum_i a + sum_i a^s + 1e-8)
    The state is the output (no output map).  The sensory terms depend only on the input, so
    they are computed for all steps at once before the loop (the same arithmetic).  w and sw are
    compressed before their softplus, as the block does; the neuron constants stay float."""

    def __init__(self, features, units, unfolds, sequences, bits, prune, masks=None):
        super().__init__()
        H, Fi = units, features
        self.H, self.K, self.sequences, self.bits, self.prune = H, unfolds, sequences, bits, prune

        def u(*shape, lo, hi):
            return torch.empty(*shape).uniform_(lo, hi)

        self.gleak = nn.Parameter(_inv_softplus(u(H, lo=0.001, hi=1.0)))
        self.vleak = nn.Parameter(u(H, lo=-0.2, hi=0.2))
        self.cm = nn.Parameter(_inv_softplus(u(H, lo=0.4, hi=0.6)))
        self.sigma = nn.Parameter(u(H, H, lo=3.0, hi=8.0))
        self.mu = nn.Parameter(u(H, H, lo=0.3, hi=0.8))
        self.w = nn.Parameter(_inv_softplus(u(H, H, lo=0.001, hi=1.0)))
        self.erev = nn.Parameter(torch.randint(0, 2, (H, H)).float() * 2 - 1)
        self.sensory_sigma = nn.Parameter(u(Fi, H, lo=3.0, hi=8.0))
        self.sensory_mu = nn.Parameter(u(Fi, H, lo=0.3, hi=0.8))
        self.sensory_w = nn.Parameter(_inv_softplus(u(Fi, H, lo=0.001, hi=1.0)))
        self.sensory_erev = nn.Parameter(torch.randint(0, 2, (Fi, H)).float() * 2 - 1)
        self.input_w = nn.Parameter(torch.ones(Fi))
        self.input_b = nn.Parameter(torch.zeros(Fi))
        if masks is not None:
            self.register_buffer("mask", masks[0])
            self.register_buffer("sensory_mask", masks[1])
        else:
            self.mask = self.sensory_mask = None

    def forward(self, x):  # [B, T, F]
        w = F.softplus(compress(self.w, self.bits, self.prune))
        sw = F.softplus(compress(self.sensory_w, self.bits, self.prune))
        if self.mask is not None:
            w, sw = w * self.mask, sw * self.sensory_mask
        gl = F.softplus(self.gleak)
        cm_t = F.softplus(self.cm) * float(self.K)  # * unfolds / dt, dt = 1
        leak_num = gl * self.vleak
        den_const = cm_t + gl + 1e-8
        # Sensory synapses of every step: [B, T, F, H] -> sums over the inputs [B, T, H].
        xs = x * self.input_w + self.input_b
        sa = sw * torch.sigmoid(self.sensory_sigma * (xs.unsqueeze(-1) - self.sensory_mu))
        num_s = (sa * self.sensory_erev).sum(dim=2) + leak_num
        den_s = sa.sum(dim=2) + den_const
        v = x.new_zeros(x.shape[0], self.H)
        outs = []
        for t in range(x.shape[1]):
            ns, ds = num_s[:, t], den_s[:, t]
            for _ in range(self.K):
                a = w * torch.sigmoid(self.sigma * (v.unsqueeze(-1) - self.mu))  # [B, H, H]
                num = cm_t * v + ns + (a * self.erev).sum(dim=1)
                den = ds + a.sum(dim=1)
                v = num / den
            if self.sequences:
                outs.append(v)
        return torch.stack(outs, dim=1) if self.sequences else v


def build_ltc(p, ins):
    T, Fin = ins[0]
    H = p.get("units", 16)
    seqs = p.get("return_sequences", True)
    bits, prune = _bits_prune(p)
    masks = None
    if p.get("wiring", "dense") == "ncp":
        masks = ncp_wiring(Fin, H, max(1, H // 4), p.get("density", 0.5), p.get("wiring_seed", 1))
    m = LTC(Fin, H, p.get("unfolds", 6), seqs, bits, prune, masks)
    return m, ((T, H) if seqs else (H,))


# ---------------------------------------------------------------- kan

KAN_ACT = {
    "silu": F.silu,
    "relu": F.relu,
    "gelu": lambda x: F.gelu(x, approximate="tanh"),  # nn::Activation::Gelu is the tanh form
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "none": lambda x: x,
}


class KAN(nn.Module):
    """nn::KanLinear (efficient-KAN): y = b(x) W_base^T + B(x) (W_spline * s)^T over the last
    dimension, B the order-k B-spline basis of a uniform grid of G intervals over [-r, r]
    extended by k knots each side (Cox-de Boor, all G + k bases of every input at once).  Both
    weight matrices (the spline one after its per-edge scale) are compressed as the block does."""

    def __init__(self, n_in, n_out, grid, order, r, act, scale, bits, prune):
        super().__init__()
        self.n_in, self.n_out, self.order, self.nb = n_in, n_out, order, grid + order
        self.act, self.bits, self.prune = KAN_ACT[act], bits, prune
        h = 2.0 * r / grid
        self.register_buffer("knots", torch.arange(-order, grid + order + 1,
                                                   dtype=torch.float32) * h - r)
        bound = 1.0 / math.sqrt(n_in)
        self.base_weight = nn.Parameter(torch.empty(n_out, n_in).uniform_(-bound, bound))
        noise = 0.1 / grid
        self.spline_weight = nn.Parameter(
            torch.empty(n_out, n_in * self.nb).uniform_(-noise / 2, noise / 2))
        self.spline_scaler = nn.Parameter(torch.full((n_out, n_in), bound)) if scale else None

    def basis(self, x):  # [N, in] -> [N, in, G + k]
        return bspline_basis(x, self.knots, self.order)

    def forward(self, x):
        shape = x.shape
        xf = x.reshape(-1, self.n_in)
        ws = self.spline_weight
        if self.spline_scaler is not None:
            ws = (ws.view(self.n_out, self.n_in, self.nb) *
                  self.spline_scaler.unsqueeze(-1)).view(self.n_out, -1)
        base = F.linear(self.act(xf), compress(self.base_weight, self.bits, self.prune))
        spline = F.linear(self.basis(xf).reshape(xf.shape[0], -1),
                          compress(ws, self.bits, self.prune))
        return (base + spline).reshape(*shape[:-1], self.n_out)


def build_kan(p, ins):
    t = ins[0]
    units = p.get("units", 64)
    bits, prune = _bits_prune(p)
    m = KAN(t[-1], units, p.get("grid", 5), p.get("order", 3), p.get("grid_range", 1.0),
            p.get("base_activation", "silu"), p.get("spline_scale", True), bits, prune)
    return m, tuple(t[:-1]) + (units,)


# ---------------------------------------------------------------- neural_ode

ODE_ACT = {"tanh": torch.tanh, "softplus": F.softplus, "silu": F.silu, "sigmoid": torch.sigmoid}

# Dormand-Prince 5(4) (nn/ode.cpp's tableau, torchdiffeq's).
DP_ALPHA = (1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
DP_BETA = ((1 / 5,),
           (3 / 40, 9 / 40),
           (44 / 45, -56 / 15, 32 / 9),
           (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
           (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
           (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84))
DP_ERR = (35 / 384 - 1951 / 21600, 0.0, 500 / 1113 - 22642 / 50085, 125 / 192 - 451 / 720,
          -2187 / 6784 - -12231 / 42400, 11 / 84 - 649 / 6300, -1 / 60)


class OdeFunc(nn.Module):
    """nn::OdeFunc: Linear(D, H) [+ t time_weight on its bias], act, (layers - 1) x (Linear(H, H),
    act), Linear(H, D)."""

    def __init__(self, dim, hidden, layers, act, time_dependent):
        super().__init__()
        widths = [dim] + [hidden] * layers + [dim]
        self.lins = nn.ModuleList([nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:])])
        with torch.no_grad():  # the output layer starts near zero (initial flow ~ identity)
            self.lins[-1].weight.mul_(0.1)
            self.lins[-1].bias.mul_(0.1)
        self.time_weight = nn.Parameter(torch.empty(hidden).uniform_(
            -1 / math.sqrt(dim + 1), 1 / math.sqrt(dim + 1))) if time_dependent else None
        self.act = ODE_ACT[act]

    def forward(self, t, h):
        l0 = self.lins[0]
        b0 = l0.bias if self.time_weight is None else l0.bias + t * self.time_weight
        x = self.act(F.linear(h, l0.weight, b0))
        for lin in self.lins[1:-1]:
            x = self.act(lin(x))
        return self.lins[-1](x)


# Solvers over tuples of tensors (the adjoint's augmented state [h, a, g_1 .. g_m]; a 1-tuple for
# the plain state).  Each tuple component is one segment of the dopri5 error norm, as hwnas's
# mixed norm (max over segments of the RMS).

def _comb(y, ks, cs):
    """y + sum_j cs[j] ks[j], componentwise over the tuples (zero coefficients skipped)."""
    out = []
    for i, yi in enumerate(y):
        acc = yi
        for k, c in zip(ks, cs):
            if c != 0:
                acc = torch.add(acc, k[i], alpha=c)
        out.append(acc)
    return tuple(out)


def rk4_solve(f, y, t0, t1, steps):
    """`steps` classical RK4 steps from t0 to t1 (t1 < t0 integrates backwards)."""
    dt = (t1 - t0) / steps
    for s in range(steps):
        t = t0 + s * dt
        k1 = f(t, y)
        k2 = f(t + dt / 2, _comb(y, [k1], [dt / 2]))
        k3 = f(t + dt / 2, _comb(y, [k2], [dt / 2]))
        k4 = f(t + dt, _comb(y, [k3], [dt]))
        y = _comb(y, [k1, k2, k3, k4], [dt / 6, dt / 3, dt / 3, dt / 6])
    return y


def _rms(xs):
    return max(float(x.pow(2).mean().sqrt()) for x in xs if x.numel() > 0)


def dopri5_solve(f, y, t0, t1, o):
    """nn/ode.cpp dopri5 (torchdiffeq's): Hairer's initial step, FSAL, error ratio
    norm(err / (atol + rtol max(|y0|, |y1|))), controller dt *= clamp(0.9 ratio^-1/5, 0.2, 10)
    (no shrink after an accepted step).  Step sizes and the error are plain numbers (no graph),
    so on the tape the derivative is that of the discrete solver with the steps fixed."""
    rtol, atol = o["rtol"], o["atol"]
    d = 1.0 if t1 > t0 else -1.0
    k0 = f(t0, y)
    with torch.no_grad():
        scale = [atol + yi.abs() * rtol for yi in y]
        d0 = _rms([yi / s for yi, s in zip(y, scale)])
        d1 = _rms([ki / s for ki, s in zip(k0, scale)])
        h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
        f1 = f(t0 + d * h0, _comb(y, [k0], [d * h0]))
        d2 = _rms([(a - b) / s for a, b, s in zip(f1, k0, scale)]) / h0
        h1 = max(1e-6, h0 * 1e-3) if (d1 <= 1e-15 and d2 <= 1e-15) else \
            (0.01 / max(d1, d2)) ** 0.2
        dt = d * min(100 * h0, h1)
    t, attempts = t0, 0
    while d * (t1 - t) > 0:
        attempts += 1
        if attempts > o["max_steps"]:
            raise RuntimeError(f"odeint: dopri5 needed more than max_steps = {o['max_steps']}")
        if d * (t + dt - t1) > 0:
            dt = t1 - t
        if abs(dt) < 1e-12 * max(1.0, abs(t1 - t0)) or t + dt == t:
            raise RuntimeError(f"odeint: dopri5 step size underflow (dt = {dt} at t = {t})")
        k = [k0]
        for i in range(6):
            yi = _comb(y, k[: i + 1], [dt * b for b in DP_BETA[i]])
            if i == 5:
                y1 = yi
            k.append(f(t + DP_ALPHA[i] * dt, yi))
        with torch.no_grad():
            err = _comb(tuple(torch.zeros_like(yi) for yi in y), k, [dt * e for e in DP_ERR])
            ratio = _rms([e / (atol + rtol * torch.maximum(a.abs(), b.abs()))
                          for e, a, b in zip(err, y, y1)])
        if ratio <= 1:
            t = t1 if d * (t + dt - t1) >= 0 else t + dt
            y, k0 = y1, k[6]  # FSAL
        if ratio == 0:
            dt = dt * 10.0
        else:
            dfactor = 1.0 if ratio < 1 else 0.2
            dt = dt * min(10.0, max(0.9 / ratio ** 0.2, dfactor))
    return y


def ode_solve(f, y, t0, t1, o):
    if o["solver"] == "rk4":
        return rk4_solve(f, y, t0, t1, o["steps"])
    return dopri5_solve(f, y, t0, t1, o)


class OdeAdjoint(torch.autograd.Function):
    """The adjoint method (nn/ode.cpp adjoint_solve, torchdiffeq's odeint_adjoint): the forward
    solve keeps no graph; backward integrates the augmented system [h, a, g] with
    dh/dt = f, da/dt = -a^T df/dh, dg/dt = -a^T df/dtheta from t1 back to t0 with the same solver
    (rk4: the same step grid; dopri5: its own adaptive steps, mixed norm over h, a and each
    parameter's gradient), recomputing h backwards from h(t1) rather than storing it."""

    @staticmethod
    def forward(ctx, func, o, h0, *params):
        with torch.no_grad():
            (h1,) = ode_solve(lambda t, y: (func(t, y[0]),), (h0,), o["t0"], o["t1"], o)
        ctx.func, ctx.o = func, o
        ctx.save_for_backward(h1, *params)
        return h1

    @staticmethod
    def backward(ctx, grad_h1):
        func, o = ctx.func, ctx.o
        h1, *params = ctx.saved_tensors
        n = len(params)

        def field(t, y):
            h, a = y[0], y[1]
            with torch.enable_grad():
                h = h.detach().requires_grad_(True)
                fh = func(t, h)
                # -a^T df/d(h, theta) in one vector-Jacobian product.
                vjp = torch.autograd.grad(fh, (h, *params), -a, allow_unused=True)
            vjp = [torch.zeros_like(x) if g is None else g
                   for g, x in zip(vjp, (h, *params))]
            return (fh.detach(), *vjp)

        y = (h1, grad_h1, *[torch.zeros_like(p) for p in params])
        with torch.no_grad():
            y = ode_solve(field, y, o["t1"], o["t0"], o)
        return (None, None, y[1], *y[2:2 + n])


class NeuralOde(nn.Module):
    """nn::NeuralOde on vectors [B, D]: h(t1) of dh/dt = f(h, t) from h(0) = x over [0, t1],
    rk4 (`steps` equal steps) or dopri5; gradients by backprop through the solver or by the
    adjoint (OdeAdjoint)."""

    def __init__(self, dim, p):
        super().__init__()
        self.func = OdeFunc(dim, p.get("hidden", 32), p.get("layers", 1),
                            p.get("activation", "tanh"), p.get("time_dependent", False))
        self.o = {"solver": p.get("solver", "rk4"), "steps": p.get("steps", 8),
                  "t0": 0.0, "t1": float(p.get("t1", 1.0)), "rtol": p.get("rtol", 1e-3),
                  "atol": p.get("atol", 1e-4), "max_steps": p.get("max_steps", 1000)}
        self.adjoint = p.get("gradient", "backprop") == "adjoint"

    def forward(self, x):
        o = self.o
        if self.adjoint and torch.is_grad_enabled():
            return OdeAdjoint.apply(self.func, o, x, *self.func.parameters())
        f = self.func
        if o["solver"] == "rk4":  # the plain tape loop (what ode_vs_torch.py times)
            dt = (o["t1"] - o["t0"]) / o["steps"]
            y = x
            for s in range(o["steps"]):
                t = o["t0"] + s * dt
                k1 = f(t, y)
                k2 = f(t + dt / 2, torch.add(y, k1, alpha=dt / 2))
                k3 = f(t + dt / 2, torch.add(y, k2, alpha=dt / 2))
                k4 = f(t + dt, torch.add(y, k3, alpha=dt))
                y = y + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            return y
        return dopri5_solve(lambda t, y: (f(t, y[0]),), (x,), o["t0"], o["t1"], o)[0]


def build_neural_ode(p, ins):
    t = ins[0]
    if len(t) != 1:
        raise ValueError(f"neural_ode: needs a vector input, got {t}")
    if p.get("bits", 32) != 32 or p.get("prune", 0.0) > 0:
        raise ValueError("neural_ode: bits and prune are not supported yet; use bits 32, prune 0")
    return NeuralOde(t[0], p), t


# ---------------------------------------------------------------- entry point

BUILDERS = {"cfc": build_cfc, "ltc": build_ltc, "kan": build_kan, "neural_ode": build_neural_ode}


def build_block(kind, p, ins):
    b = BUILDERS.get(kind)
    return None if b is None else b(p, [tuple(s) for s in ins])
