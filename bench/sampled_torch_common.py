"""Shared by bench/sampled_vs_torch.py and its block-family modules (sampled_torch_*.py)."""
import torch
import torch.nn.functional as F

# nn::apply_activation by name (gelu is the tanh form, as hwnas computes it).
ACT = {
    "relu": F.relu,
    "gelu": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "none": lambda x: x,
}


def compress(w, bits, prune):
    """spaces/compress.cpp compress_weight: zero the floor(prune * n) smallest magnitudes, then
    symmetric fake quantisation to `bits` with one scale per output channel (dim 0; one for a
    vector): max |kept entry| / (2^(bits-1) - 1), 1 for an all-zero channel.  The gradient passes
    straight through to the kept entries.  (kthvalue prunes a few more than k only on exact
    magnitude ties, and torch.round rounds exact halves to even: neither changes the work.)"""
    if bits >= 16 and prune <= 0:
        return w
    with torch.no_grad():
        q = w.clone()
        mask = None
        k = int(prune * w.numel())
        if k > 0:
            thr = w.abs().flatten().kthvalue(k).values
            mask = (w.abs() > thr).to(w.dtype)
            q.mul_(mask)
        if bits < 16:
            qmax = float(2 ** (bits - 1) - 1)
            rows = q.reshape(q.shape[0], -1) if q.dim() >= 2 else q.reshape(1, -1)
            scale = rows.abs().amax(dim=1, keepdim=True) / qmax
            scale = torch.where(scale > 0, scale, torch.ones_like(scale))
            q = (torch.round(rows / scale) * scale).view_as(w)
    ste = w * mask if mask is not None else w
    return ste + (q - ste).detach()
