"""Torch translations of the sequence-mixer block kinds (the sequence_mixers space) for
bench/sampled_vs_torch.py: s4d, mamba, hyena, ttt, and attention / sliding_attention where the
classic translation does not compute what hwnas does (attention with rope; sliding_attention,
whose window hwnas reads as |i - j| < window).  Same interface as the other extension modules:
build_block(kind, p, ins) -> (module, per-sample output shape), or None for a kind (or variant)
that is not ours.  Every module does the math of its spaces/blocks/block_<kind>.cpp, written in
the pure-PyTorch reference style of the papers' code (state-spaces/s4 s4d.py, mamba_simple with
selective_scan_ref, safari's HyenaOperator with fftconv_ref, ttt-lm-pytorch's dual form);
weight initialisation follows those references, not hwnas bit for bit.  Inputs are batch-first
[B, L, d]."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from sampled_torch_common import compress  # spaces/compress.cpp, shared with the classic kinds
from ssm_vs_torch import selective_scan_ref  # mamba_simple's loop (unbind, see there)

# Defaults of the blocks' ParamSpecs (spaces/blocks/block_<kind>.cpp); the genome omits a
# parameter left at its default.
DEFAULTS = {
    "s4d": {"d_state": 64, "init": "lin", "dt_min": 1e-3, "dt_max": 1e-1, "output": "glu"},
    "mamba": {"d_state": 16, "expand": 2, "d_conv": 4, "dt_rank": 0, "dt_min": 1e-3,
              "dt_max": 1e-1},
    "hyena": {"order": 2, "filter_width": 16, "filter_depth": 1, "emb_dim": 3,
              "short_kernel": 3},
    "ttt": {"heads": 2, "mini_batch": 16, "inner_lr": 1.0},
    "attention": {"heads": 2, "causal": False, "impl": "standard", "rope": False,
                  "lora_rank": 0},
    "sliding_attention": {"heads": 2, "causal": False, "impl": "standard", "rope": False,
                          "lora_rank": 0, "window": 8},
}
ROPE_BASE = 10000.0  # nn::kRopeBase
# How sliding-window attention is computed: "tiled" (query tiles against the keys they can see,
# as hwnas does) or "masked" (full scores, band masked).  bench/sampled_vs_torch.py times both
# and keeps the faster, as it keeps the faster BLAS.
SLIDING_IMPL = "tiled"


def params_of(kind, p):
    q = dict(DEFAULTS[kind])
    q.update({k: v for k, v in p.items() if k in q})
    q["bits"], q["prune"] = p.get("bits", 32), p.get("prune", 0.0)
    return q


def dense_only(kind, q):
    """s4d, mamba, hyena and ttt refuse compression in hwnas (infer throws)."""
    if q["bits"] != 32 or q["prune"] > 0:
        raise ValueError(f"{kind}: bits and prune are not supported; use bits 32, prune 0")


def log_uniform(n, lo, hi):
    return torch.rand(n) * (math.log(hi) - math.log(lo)) + math.log(lo)


# ---------------------------------------------------------------------------------------------
# S4D (block_s4d.cpp, nn::S4dLayer): y = K * u (ZOH kernel by Vandermonde, causal FFT convolution
# zero-padded to 2L) + D u, GELU (tanh), output linear d -> 2d + GLU (or d -> d).


class S4D(nn.Module):
    def __init__(self, H, N, init, dt_min, dt_max, glu):
        super().__init__()
        M = N // 2
        self.log_dt = nn.Parameter(log_uniform(H, dt_min, dt_max))
        self.log_a_real = nn.Parameter(torch.log(0.5 * torch.ones(H, M)))
        n = torch.arange(M, dtype=torch.float32)
        imag = math.pi * n if init == "lin" else N / math.pi * (N / (2 * n + 1) - 1)
        self.a_imag = nn.Parameter(imag.repeat(H, 1))
        self.c = nn.Parameter(torch.randn(H, M, 2) * math.sqrt(0.5))  # complex C as (re, im)
        self.d = nn.Parameter(torch.randn(H))
        self.output_linear = nn.Linear(H, 2 * H if glu else H)
        self.glu = glu

    def kernel(self, L):  # s4d.py S4DKernel.forward
        dt = torch.exp(self.log_dt)
        C = torch.view_as_complex(self.c)
        A = -torch.exp(self.log_a_real) + 1j * self.a_imag
        dtA = A * dt.unsqueeze(-1)  # [H, M]
        K = dtA.unsqueeze(-1) * torch.arange(L, device=A.device)  # [H, M, L]
        C = C * (torch.exp(dtA) - 1.0) / A
        return 2 * torch.einsum("hn,hnl->hl", C, torch.exp(K)).real  # [H, L]

    def forward(self, u):  # u [B, L, H]
        L = u.shape[1]
        u = u.transpose(1, 2)  # [B, H, L]
        k = self.kernel(L)
        n = 2 * L
        y = torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(k, n=n), n=n)[..., :L]
        y = y + u * self.d.unsqueeze(-1)
        y = self.output_linear(F.gelu(y, approximate="tanh").transpose(1, 2))
        return F.glu(y, dim=-1) if self.glu else y  # GLU: a * sigmoid(b), a the first half


# ---------------------------------------------------------------------------------------------
# Mamba (block_mamba.cpp, nn::MambaMixer = mamba_simple.py without the fused kernels).


class Mamba(nn.Module):
    def __init__(self, d, N, expand, d_conv, dt_rank, dt_min, dt_max):
        super().__init__()
        E = expand * d
        R = dt_rank if dt_rank > 0 else math.ceil(d / 16)
        self.E, self.N, self.R = E, N, R
        self.in_proj = nn.Linear(d, 2 * E, bias=False)
        self.conv1d = nn.Conv1d(E, E, d_conv, groups=E, padding=d_conv - 1, bias=True)
        self.x_proj = nn.Linear(E, R + 2 * N, bias=False)
        self.dt_proj = nn.Linear(R, E, bias=True)
        nn.init.uniform_(self.dt_proj.weight, -R ** -0.5, R ** -0.5)
        dt = torch.exp(log_uniform(E, dt_min, dt_max)).clamp(min=1e-4)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(E, 1))
        self.D = nn.Parameter(torch.ones(E))
        self.out_proj = nn.Linear(E, d, bias=False)

    def forward(self, u):  # u [B, L, d]
        L = u.shape[1]
        x, z = self.in_proj(u).transpose(1, 2).chunk(2, dim=1)  # [B, E, L] each
        x = F.silu(self.conv1d(x)[..., :L])  # causal depthwise conv
        x_dbl = self.x_proj(x.transpose(1, 2))  # [B, L, R + 2N]
        dt, B, C = torch.split(x_dbl, [self.R, self.N, self.N], dim=-1)
        delta = F.softplus(self.dt_proj(dt)).transpose(1, 2)  # [B, E, L]
        A = -torch.exp(self.A_log)
        y = selective_scan_ref(x, delta, A, B.transpose(1, 2), C.transpose(1, 2))
        y = y + x * self.D.unsqueeze(-1)
        y = y * F.silu(z)
        return self.out_proj(y.transpose(1, 2))


# ---------------------------------------------------------------------------------------------
# Hyena (block_hyena.cpp = safari's HyenaOperator with fftconv_ref).


class Hyena(nn.Module):
    def __init__(self, d, L, order, width, depth, emb, kernel):
        super().__init__()
        P, Fc = (order + 1) * d, d * (order - 1)
        self.d, self.order = d, order
        self.in_proj = nn.Linear(d, P)
        self.out_proj = nn.Linear(d, d)
        self.short_filter = nn.Conv1d(P, P, kernel, groups=P, padding=kernel - 1)
        # Implicit filter FFN: Linear(emb, W), Sin, [Linear(W, W), Sin] x depth, Linear(W, F),
        # one Sin module (frequency vector) shared by every layer as in safari.
        self.mlp = nn.ModuleList([nn.Linear(emb, width)] +
                                 [nn.Linear(width, width) for _ in range(depth)])
        self.mlp_out = nn.Linear(width, Fc, bias=False)
        self.freq = nn.Parameter(torch.ones(width))
        self.bias = nn.Parameter(torch.randn(Fc))
        # Positional features z [L, emb]: t, cos(f w), -sin(f w) (safari PositionalEmbedding).
        bands = (emb - 1) // 2
        t = torch.linspace(0, 1, L)[:, None]
        w = 2 * math.pi * torch.arange(L, dtype=torch.float32)[:, None] / L
        f = torch.linspace(1e-4, bands - 1, bands)[None]
        self.register_buffer("z", torch.cat([t, torch.cos(f * w), -torch.sin(f * w)], -1))
        # ExponentialModulation (fixed): exp(-t |delta_c|).
        deltas = torch.linspace(math.log(1e-2) / 1.5, math.log(1e-2) / 0.3, Fc)[None]
        self.register_buffer("decay", torch.exp(-t * deltas.abs()))

    def filters(self):  # [L, F], channel c = i (N - 1) + o
        a = self.z
        for lin in self.mlp:
            a = torch.sin(self.freq * lin(a))
        return self.mlp_out(a) * self.decay

    def forward(self, u):  # u [B, L, d]
        L = u.shape[1]
        uc = self.short_filter(self.in_proj(u).transpose(1, 2))[..., :L]  # [B, P, L]
        *x, v = uc.split(self.d, dim=1)
        steps = self.order - 1
        h = self.filters().t()  # [F, L]
        n = 2 * L
        for o in range(steps):  # x_{N-1}, ..., x_1 as safari's reversed(x[1:])
            v = v * x[self.order - 1 - o]
            k = h[o::steps]
            y = torch.fft.irfft(torch.fft.rfft(v, n=n) * torch.fft.rfft(k, n=n), n=n)[..., :L]
            v = y + v * self.bias[o::steps].unsqueeze(-1)
        return self.out_proj((v * x[0]).transpose(1, 2))


# ---------------------------------------------------------------------------------------------
# TTT-Linear (block_ttt.cpp, dual form of ttt-lm-pytorch's ttt_linear without RoPE and gate).


class TTTLinear(nn.Module):
    EPS = 1e-6

    def __init__(self, d, heads, mini_batch, base_lr):
        super().__init__()
        f = d // heads
        self.d, self.H, self.f, self.mb, self.base_lr = d, heads, f, mini_batch, base_lr
        self.theta_q = nn.Linear(d, d, bias=False)
        self.theta_k = nn.Linear(d, d, bias=False)
        self.theta_v = nn.Linear(d, d, bias=False)
        self.theta_o = nn.Linear(d, d, bias=False)
        self.lr_gate = nn.Linear(d, heads)
        nn.init.normal_(self.lr_gate.weight, std=0.02)
        nn.init.zeros_(self.lr_gate.bias)
        self.w0 = nn.Parameter(torch.randn(heads, f, f) / math.sqrt(f))
        self.b0 = nn.Parameter(torch.zeros(heads, 1, f))
        self.ln_gamma = nn.Parameter(torch.ones(heads, 1, f))
        self.ln_beta = nn.Parameter(torch.zeros(heads, 1, f))
        self.token_offset = nn.Parameter(torch.zeros(mini_batch))
        self.register_buffer("token_idx", 1.0 / torch.arange(1, mini_batch + 1,
                                                             dtype=torch.float32))
        self.post_norm = nn.LayerNorm(d)

    def forward(self, x):  # x [B, L, d]
        B, L, _ = x.shape
        H, f, eps = self.H, self.f, self.EPS

        def heads(t):  # [B, L, d] -> [B, H, L, f]
            return t.view(B, L, H, f).transpose(1, 2)

        XQ, XK, XV = heads(self.theta_q(x)), heads(self.theta_k(x)), heads(self.theta_v(x))
        lr = (torch.sigmoid(self.lr_gate(x)) * (self.base_lr / f)).transpose(1, 2)  # [B, H, L]
        tok = torch.clamp_min(self.token_idx + self.token_offset, 0.0)  # [mb]
        gamma, beta = self.ln_gamma, self.ln_beta
        W = self.w0.expand(B, H, f, f)
        b = self.b0.expand(B, H, 1, f)
        outs = []
        # Mini-batches by split (one concatenating backward, not one full-size slice backward
        # per mini-batch); the last one may be shorter, as in hwnas.
        chunks = zip(*(t.split(self.mb, dim=2) for t in (XQ, XK, XV, lr)))
        for Xq, Xk, Xv, lr_k in chunks:
            K = Xq.shape[2]
            # ln_fused_l2_bwd: gradient of 0.5 ||LN(Xk W + b) - (Xv - Xk)||^2 w.r.t. Z.
            Z = Xk @ W + b
            target = Xv - Xk
            mu = Z.mean(dim=-1, keepdim=True)
            var = Z.var(dim=-1, keepdim=True, unbiased=False)
            std = torch.sqrt(var + eps)
            x_hat = (Z - mu) / std
            grad_out = gamma * x_hat + beta - target
            gx = grad_out * gamma
            grad = (f * gx - gx.sum(dim=-1, keepdim=True)
                    - x_hat * (gx * x_hat).sum(dim=-1, keepdim=True)) / (f * std)
            # eta_ij = tok_i lr_j for j <= i.
            eta = torch.tril(tok[:K, None] * lr_k[:, :, None, :])  # [B, H, K, K]
            attn = Xq @ Xk.transpose(-2, -1)
            b_bar = b - eta @ grad
            z_bar = Xq @ W - (eta * attn) @ grad + b_bar
            z_bar = F.layer_norm(z_bar, (f,), eps=eps) * gamma + beta
            outs.append(Xq + z_bar)
            eta_last = eta[:, :, -1, :, None]  # [B, H, K, 1]
            W = W - (eta_last * Xk).transpose(-2, -1) @ grad
            b = b - (eta_last * grad).sum(dim=-2, keepdim=True)
        z = torch.cat(outs, dim=2).transpose(1, 2).reshape(B, L, self.d)
        return self.theta_o(self.post_norm(z))


# ---------------------------------------------------------------------------------------------
# Attention (block_attention.cpp): fused QKV (bias) and output projection (bias), optional RoPE
# on q and k (RoFormer: channel pairs (2i, 2i+1) of each head rotated by m base^(-2i/d_head)),
# scaled dot-product attention per head (scale 1/sqrt(d_head)); causal: keys j <= i; sliding
# window w: |i - j| < w (j in (i - w, i] if causal), computed as hwnas does in query tiles of
# T = clamp(S, 8, 64) rows against the T + S - 1 keys they can see (S = 2w - 1, or w if causal),
# so no L x L score matrix exists.  impl "flash" is the same function; computed the standard way.


def rope_tables(L, dh, base=ROPE_BASE):
    i = torch.arange(dh // 2, dtype=torch.float64)
    theta = base ** (-2.0 * i / dh)
    a = torch.arange(L, dtype=torch.float64)[:, None] * theta[None]  # [L, dh/2]
    return torch.cos(a).float(), torch.sin(a).float()


def apply_rope(x, cos, sin):
    """x [B, H, L, dh]; rotates the interleaved pairs (2i, 2i+1) by cos/sin [L, dh/2]."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)


class Attention(nn.Module):
    def __init__(self, L, d, heads, causal, window, rope, bits, prune):
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        nn.init.xavier_uniform_(self.qkv.weight)
        nn.init.xavier_uniform_(self.out.weight)
        nn.init.zeros_(self.qkv.bias)
        nn.init.zeros_(self.out.bias)
        self.H, self.dh, self.causal, self.rope = heads, d // heads, causal, rope
        self.bits, self.prune = bits, prune
        self.scale = 1.0 / math.sqrt(self.dh)
        if rope:
            cos, sin = rope_tables(L, self.dh)
            self.register_buffer("cos", cos)
            self.register_buffer("sin", sin)
        self.window = min(window, L) if window > 0 else 0
        i = torch.arange(L)
        if self.window > 0 and SLIDING_IMPL == "masked":
            # The whole L x L score matrix with the band masked: less work than the tiles'
            # padding and unfolds when L is short (the attention space's 28 rows).
            banned = (i[None, :] - i[:, None]).abs() >= self.window
            if causal:
                banned |= i[None, :] > i[:, None]
            self.register_buffer("mask", banned)
            self.window = 0
        elif self.window > 0:
            w = self.window
            S = w if causal else 2 * w - 1
            self.ahead = 0 if causal else w - 1
            self.T = min(L, max(8, min(S, 64)))
            self.R = self.T + S - 1
            self.nT = (L + self.T - 1) // self.T
            # Query i = t T + r sees key j = t T - (w - 1) + s when 0 <= s - r <= (w - 1) + ahead
            # and 0 <= j < L.  Padding query rows (i >= L, dropped) see everything (no empty row).
            t = torch.arange(self.nT)[:, None, None]
            r = torch.arange(self.T)[None, :, None]
            s = torch.arange(self.R)[None, None, :]
            j = t * self.T - (w - 1) + s
            ok = (s - r >= 0) & (s - r <= w - 1 + self.ahead) & (j >= 0) & (j < L)
            ok |= (t * self.T + r) >= L
            self.register_buffer("band_mask", ~ok)  # [nT, T, R], True = masked
        else:
            self.register_buffer("mask", i[None, :] > i[:, None] if causal else None)

    def full(self, q, k, v):  # [B, H, L, dh]
        s = (q @ k.transpose(-2, -1)) * self.scale
        if self.mask is not None:
            s = s.masked_fill(self.mask, float("-inf"))
        return torch.softmax(s, dim=-1) @ v

    def banded(self, q, k, v):  # [B, H, L, dh]
        B, H, L, dh = q.shape
        T, R, nT, w = self.T, self.R, self.nT, self.window
        Lp = nT * T
        q = F.pad(q, (0, 0, 0, Lp - L)).view(B, H, nT, T, dh)
        pad = (0, 0, w - 1, Lp - L + self.ahead)
        kw = F.pad(k, pad).unfold(2, R, T)  # [B, H, nT, dh, R]
        vw = F.pad(v, pad).unfold(2, R, T).transpose(-2, -1)  # [B, H, nT, R, dh]
        s = (q @ kw) * self.scale  # [B, H, nT, T, R]
        s = s.masked_fill(self.band_mask, float("-inf"))
        y = torch.softmax(s, dim=-1) @ vw  # [B, H, nT, T, dh]
        return y.reshape(B, H, Lp, dh)[:, :, :L]

    def forward(self, x):  # [B, L, d]
        B, L, d = x.shape
        qkv = F.linear(x, compress(self.qkv.weight, self.bits, self.prune), self.qkv.bias)
        q, k, v = qkv.view(B, L, 3, self.H, self.dh).permute(2, 0, 3, 1, 4)  # [B, H, L, dh]
        if self.rope:
            q, k = apply_rope(q, self.cos, self.sin), apply_rope(k, self.cos, self.sin)
        y = self.banded(q, k, v) if self.window > 0 else self.full(q, k, v)
        y = y.transpose(1, 2).reshape(B, L, d)
        return F.linear(y, compress(self.out.weight, self.bits, self.prune), self.out.bias)


# ---------------------------------------------------------------------------------------------


def build_block(kind, p, ins):
    if kind not in DEFAULTS:
        return None
    q = params_of(kind, p)
    t = tuple(ins[0])
    L, d = t
    if kind == "s4d":
        dense_only(kind, q)
        m = S4D(d, q["d_state"], q["init"], q["dt_min"], q["dt_max"], q["output"] == "glu")
        return m, t
    if kind == "mamba":
        dense_only(kind, q)
        return Mamba(d, q["d_state"], q["expand"], q["d_conv"], q["dt_rank"], q["dt_min"],
                     q["dt_max"]), t
    if kind == "hyena":
        dense_only(kind, q)
        return Hyena(d, L, q["order"], q["filter_width"], q["filter_depth"], q["emb_dim"],
                     q["short_kernel"]), t
    if kind == "ttt":
        dense_only(kind, q)
        if d % q["heads"]:
            raise ValueError(f"ttt: d {d} not divisible by heads {q['heads']}")
        return TTTLinear(d, q["heads"], q["mini_batch"], q["inner_lr"]), t
    # attention / sliding_attention.  Plain full float attention without rope is the classic
    # translation's (nn.MultiheadAttention computes the same); rope, compressed weights and
    # every sliding window (hwnas's |i - j| < window, tiled) are ours.
    window = q["window"] if kind == "sliding_attention" else 0
    if not q["rope"] and window == 0 and q["bits"] >= 16 and q["prune"] <= 0:
        return None
    if q["lora_rank"] > 0:
        raise NotImplementedError(f"no torch translation for {kind} with lora_rank > 0")
    if d % q["heads"] or (q["rope"] and (d // q["heads"]) % 2):
        raise ValueError(f"{kind}: d {d} and heads {q['heads']} do not fit")
    return Attention(L, d, q["heads"], q["causal"], window, q["rope"], q["bits"],
                     q["prune"]), t
