# Reference learning curve for the Mamba mixer on MQAR: a pure-PyTorch Mamba stack (the math of
# state-spaces/mamba's mamba_simple.py with nn.Linear's default initialisation, a sequential
# scan) in the same two-layer pre-norm residual stack and on the same small MQAR as
# tests/evaluators/test_ssm_learning.cpp (L 64, 8 pairs, vocab 32, width 32, batch 32, AdamW,
# one warm-up epoch then cosine, gradient clip 1.0; MQAR generated as evaluators/tasks/
# task_mqar.cpp does).  It tells whether hwnas's Mamba learns the task as the reference
# architecture does at the same budget (the hwnas side is that test).
#
#   /usr/bin/python3 bench/mamba_mqar_reference.py [epochs=16] [lr=1e-2] [train=2000]
#
# Weights, data and seeds differ from the C++ side: compare accuracies over seeds, not runs.
import math, sys, time, numpy as np, torch, torch.nn as nn, torch.nn.functional as F
torch.set_num_threads(2)
L, KV, V, W, NL = 64, 8, 32, 32, 2
EPOCHS = int(sys.argv[1]) if len(sys.argv) > 1 else 16
LR = float(sys.argv[2]) if len(sys.argv) > 2 else 1e-2
NTRAIN = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
POWER_A = 0.01
def make(n, rng):
    x = np.zeros((n, L), np.int64); y = np.full((n, L), -100, np.int64)
    half = V // 2; ctx = 2 * KV; space = (L - ctx) // 2
    for s in range(n):
        keys = rng.permutation(np.arange(1, half))[:KV]; vals = rng.permutation(np.arange(half, V))[:KV]
        tok = rng.integers(0, V, L)
        tok[0:ctx:2] = keys; tok[1:ctx:2] = vals
        w = POWER_A * (np.arange(1, space + 1) ** (POWER_A - 1)); w = w / w.sum()
        gaps = rng.choice(space, KV, replace=False, p=w)
        for i, g in enumerate(gaps):
            tok[ctx + 2 * g] = keys[i]; y[s, ctx + 2 * g] = vals[i]
        x[s] = tok
    return torch.tensor(x), torch.tensor(y)
class Mamba(nn.Module):
    def __init__(s, d, N=16, E=2, dconv=4):
        super().__init__(); di = E * d; s.N = N; r = math.ceil(d / 16); s.r = r
        s.in_proj = nn.Linear(d, 2 * di, bias=False)
        s.conv = nn.Conv1d(di, di, dconv, groups=di, padding=dconv - 1)
        s.x_proj = nn.Linear(di, r + 2 * N, bias=False)
        s.dt_proj = nn.Linear(r, di)
        nn.init.uniform_(s.dt_proj.weight, -r ** -0.5, r ** -0.5)
        dt = torch.exp(torch.rand(di) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)).clamp(min=1e-4)
        with torch.no_grad(): s.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        s.A_log = nn.Parameter(torch.log(torch.arange(1, N + 1).float()).repeat(di, 1))
        s.D = nn.Parameter(torch.ones(di)); s.out_proj = nn.Linear(di, d, bias=False)
    def forward(s, u):
        B_, Lq, _ = u.shape
        xz = s.in_proj(u); x, z = xz.chunk(2, -1)
        x = F.silu(s.conv(x.transpose(1, 2))[..., :Lq].transpose(1, 2))
        dbl = s.x_proj(x); dt, Bm, Cm = dbl.split([s.r, s.N, s.N], -1)
        dt = F.softplus(s.dt_proj(dt)); A = -torch.exp(s.A_log)
        dA = torch.exp(dt.unsqueeze(-1) * A); dBx = dt.unsqueeze(-1) * Bm.unsqueeze(2) * x.unsqueeze(-1)
        h = torch.zeros(B_, x.shape[-1], s.N); ys = []
        for t in range(Lq):
            h = dA[:, t] * h + dBx[:, t]; ys.append((h * Cm[:, t].unsqueeze(1)).sum(-1))
        y = torch.stack(ys, 1) + x * s.D
        return s.out_proj(y * F.silu(z))
class Net(nn.Module):
    def __init__(s):
        super().__init__(); s.emb = nn.Linear(V, W)
        s.norms = nn.ModuleList([nn.LayerNorm(W) for _ in range(NL)]); s.mix = nn.ModuleList([Mamba(W) for _ in range(NL)])
        s.fn = nn.LayerNorm(W); s.head = nn.Linear(W, V)
    def forward(s, tok):
        h = s.emb(F.one_hot(tok, V).float())
        for n, m in zip(s.norms, s.mix): h = h + m(n(h))
        return s.head(s.fn(h))
torch.manual_seed(3); rng = np.random.default_rng(5)
xt, yt = make(NTRAIN, rng); xv, yv = make(256, rng)
net = Net(); opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=0.0)
steps_per = math.ceil(NTRAIN / 32); total = EPOCHS * steps_per; warm = steps_per
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: (k + 1) / warm if k < warm else 0.5 * (1 + math.cos(math.pi * (k - warm) / max(1, total - warm))))
t0 = time.time()
def acc():
    with torch.no_grad():
        p = net(xv).argmax(-1); m = yv != -100; return (p[m] == yv[m]).float().mean().item()
for ep in range(EPOCHS):
    perm = torch.randperm(NTRAIN)
    for i in range(0, NTRAIN, 32):
        idx = perm[i:i + 32]; out = net(xt[idx])
        loss = F.cross_entropy(out.reshape(-1, V), yt[idx].reshape(-1), ignore_index=-100)
        opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0); opt.step(); sched.step()
    print(f"epoch {ep+1} loss {loss.item():.3f} val acc {acc():.3f} ({time.time()-t0:.0f} s)", flush=True)
