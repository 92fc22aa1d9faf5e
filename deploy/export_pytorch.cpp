// PyTorch export: a self-contained .py (torch + numpy) whose Net module rebuilds the genome's
// evaluation-mode forward pass with torch.nn.functional, one line per genome node, and reads its
// weights from an hwnas module-state file (the .py parses that format; a .pt state_dict cannot
// be written from C++ without libtorch).  Parameters keep hwnas's names ("n3.conv.weight").
#include <sstream>

#include "deploy/export.hpp"
#include "nn/state_dict.hpp"
#include "spaces/catalogue.hpp"

namespace hwnas::deploy {
namespace {

using nlohmann::json;
using spaces::DataKind;

constexpr const char* kPrelude = R"py(
import math
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F


def read_hwnas_state(path):
    """Reads an hwnas module-state file into {name: float32 tensor}.

    Layout (little-endian): magic b"HWNASSD\0" (8 bytes), version u32 (1), count u64, then per
    record: name_len u32, name (UTF-8), type u8 (1 = float32), rank u8, rank dims as i64, the
    float32 data; then an FNV-1a 64 checksum u64 of every byte before it.
    """
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 28 or data[:8] != b"HWNASSD\0":
        raise ValueError(f"{path}: not an hwnas module-state file")
    h = 0xCBF29CE484222325
    for b in data[:-8]:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    if h != struct.unpack_from("<Q", data, len(data) - 8)[0]:
        raise ValueError(f"{path}: checksum mismatch (corrupted file)")
    version, count = struct.unpack_from("<IQ", data, 8)
    if version != 1:
        raise ValueError(f"{path}: unknown state file version {version}")
    off, out = 20, {}
    for _ in range(count):
        (n,) = struct.unpack_from("<I", data, off)
        off += 4
        name = data[off:off + n].decode("utf-8")
        off += n
        rtype, rank = struct.unpack_from("<BB", data, off)
        off += 2
        dims = struct.unpack_from("<" + "q" * rank, data, off)
        off += 8 * rank
        if rtype != 1:
            raise ValueError(f"{path}: record {name} is not float32")
        numel = int(np.prod(dims)) if rank else 1
        arr = np.frombuffer(data, dtype="<f4", count=numel, offset=off).reshape(dims)
        off += 4 * numel
        out[name] = torch.from_numpy(arr.copy())
    return out


def act(x, fn):
    if fn == "none":
        return x
    if fn == "relu":
        return F.relu(x)
    if fn == "gelu":
        return F.gelu(x, approximate="tanh")
    if fn == "silu":
        return x * torch.sigmoid(x)
    if fn == "tanh":
        return torch.tanh(x)
    if fn == "sigmoid":
        return torch.sigmoid(x)
    raise ValueError(f"unknown activation {fn}")


def prune(w, frac):
    """Zeroes the floor(frac * numel) smallest magnitudes (ties by index), as hwnas does."""
    if frac <= 0:
        return w
    k = int(math.floor(frac * w.numel()))
    flat = w.reshape(-1)
    idx = torch.sort(flat.detach().abs(), stable=True).indices[:k]
    mask = torch.ones_like(flat)
    mask[idx] = 0
    return (flat * mask).reshape(w.shape)


def fake_quant(w, bits):
    """Symmetric quantisation to `bits`, one scale per output channel (dim 0) of a weight of rank
    >= 2, one for a vector (round half away from zero, as std::round)."""
    if bits >= 16:
        return w
    qmax = float((1 << (bits - 1)) - 1)
    a = w.detach().abs()
    maxabs = a.amax(dim=tuple(range(1, w.dim())), keepdim=True) if w.dim() >= 2 else a.max()
    # An all-zero channel keeps its zeros under any scale.
    scale = torch.where(maxabs > 0, maxabs / qmax, torch.ones_like(maxabs))
    q = w / scale
    t = torch.trunc(q)
    r = t + torch.where((q - t).abs() >= 0.5, torch.sign(q), torch.zeros_like(q))
    # Straight-through gradient, as hwnas trains it.
    return w + (r * scale - w).detach()


class Net(torch.nn.Module):
    def __init__(self, weights=None):
        super().__init__()
        if weights is None:
            weights = os.path.join(os.path.dirname(os.path.abspath(__file__)), WEIGHTS_FILE)
        state = read_hwnas_state(weights) if isinstance(weights, str) else dict(weights)
        self.p = torch.nn.ParameterDict(
            {k.replace(".", "__"): torch.nn.Parameter(v, requires_grad="running_" not in k)
             for k, v in state.items()})

    def t(self, name):
        return self.p[name.replace(".", "__")]

    def has(self, name):
        return name.replace(".", "__") in self.p

    def w(self, name, bits, frac):
        return fake_quant(prune(self.t(name), frac), bits)

    def bn(self, x, pre):
        return F.batch_norm(x, self.t(pre + "running_mean"), self.t(pre + "running_var"),
                            self.t(pre + "gamma"), self.t(pre + "beta"), False, 0.0, 1e-5)

    def conv_unit(self, x, pre, kernel, stride, groups, bn, pre_act, post_act, bits, frac):
        h = act(x, pre_act)
        b = self.t(pre + "conv.bias") if self.has(pre + "conv.bias") else None
        h = F.conv2d(h, self.w(pre + "conv.weight", bits, frac), b, stride, (kernel - 1) // 2, 1,
                     groups)
        if bn:
            h = self.bn(h, pre + "bn.")
        return act(h, post_act)

    def linear(self, x, pre, bits, frac):
        b = self.t(pre + "bias") if self.has(pre + "bias") else None
        return F.linear(x, self.w(pre + "weight", bits, frac), b)

    def norm(self, x, pre, batch, image):
        if batch:
            if x.dim() == 3:
                n, l, d = x.shape
                return self.bn(x.reshape(n * l, d), pre + "bn.").reshape(n, l, d)
            return self.bn(x, pre + "bn.")
        if image:
            y = x.transpose(1, 3)
            return F.layer_norm(y, (y.shape[-1],), self.t(pre + "ln.gamma"),
                                self.t(pre + "ln.beta"), 1e-5).transpose(1, 3)
        return F.layer_norm(x, (x.shape[-1],), self.t(pre + "ln.gamma"), self.t(pre + "ln.beta"),
                            1e-5)

    def rope(self, x, heads):
        # nn::rope: channel pairs (2i, 2i+1) of each head rotated by position * 10000^(-2i/dh)
        n, l, d = x.shape
        dh = d // heads
        theta = 10000.0 ** (-2.0 * torch.arange(dh // 2, dtype=torch.float64) / dh)
        ang = torch.arange(l, dtype=torch.float64).unsqueeze(1) * theta
        c, s = ang.cos().float().repeat(1, heads), ang.sin().float().repeat(1, heads)
        x0, x1 = x[..., 0::2], x[..., 1::2]
        return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).reshape(n, l, d)

    def attention(self, x, pre, heads, causal, window, rope, bits, frac):
        n, l, d = x.shape
        dh = d // heads
        q, k, v = self.linear(x, pre + "attn.qkv.", bits, frac).split(d, dim=-1)
        if rope:
            q, k = self.rope(q, heads), self.rope(k, heads)
        q, k, v = (y.reshape(n, l, heads, dh).transpose(1, 2) for y in (q, k, v))
        s = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(dh))
        if causal or window > 0:
            i = torch.arange(l).unsqueeze(1)
            j = torch.arange(l).unsqueeze(0)
            seen = (j <= i) if causal else torch.ones(l, l, dtype=torch.bool)
            if window > 0:
                seen = seen & (((i - j) < window) if causal else ((i - j).abs() < window))
            s = s.masked_fill(~seen, float("-inf"))
        o = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(n, l, d)
        return self.linear(o, pre + "attn.out.", bits, frac)

    def reduction(self, x, pre, bits, frac):
        y = self.conv_unit(x, pre + "a.", 3, 2, 1, True, "relu", "none", bits, frac)
        y = self.conv_unit(y, pre + "b.", 3, 1, 1, True, "relu", "none", bits, frac)
        s = F.conv2d(F.avg_pool2d(x, 2, 2), self.w(pre + "shortcut.weight", bits, frac))
        return y + s
)py";

std::string py_bool(bool b) { return b ? "True" : "False"; }
std::string py_str(const std::string& s) { return "\"" + s + "\""; }

std::string node_line(const spaces::Genome& g, spaces::Genome::NodeId v) {
  const spaces::BlockNode& b = g.node(v);
  const json p = spaces::catalogue().at(b.kind).resolve(b.params);
  const std::string& kind = b.kind;
  const spaces::TensorType in_type = g.node(g.inputs_of(v).at(0)).out;
  std::vector<std::string> ins;
  for (auto u : g.inputs_of(v)) ins.push_back("a" + std::to_string(u));
  const std::string x = ins[0];
  const std::string pre = py_str("n" + std::to_string(v) + ".");
  const std::string comp =
      std::to_string(p.value("bits", 32)) + ", " + std::to_string(p.value("prune", 0.0));
  auto s = [&](const char* k) { return p.at(k).get<std::string>(); };
  auto i = [&](const char* k) { return std::to_string(p.at(k).get<int>()); };
  std::ostringstream os;
  if (kind == "conv" || kind == "dwconv")
    os << "self.conv_unit(" << x << ", " << pre << ", " << i("kernel") << ", " << i("stride")
       << ", " << (kind == "dwconv" ? in_type.dims[0] : 1) << ", "
       << py_bool(p.at("batch_norm").get<bool>()) << ", \"none\", " << py_str(s("activation"))
       << ", " << comp << ")";
  else if (kind == "nor_conv_1x1" || kind == "nor_conv_3x3")
    os << "self.conv_unit(" << x << ", " << pre << ", " << (kind == "nor_conv_1x1" ? 1 : 3)
       << ", 1, 1, True, \"relu\", \"none\", " << comp << ")";
  else if (kind == "nb201_reduction")
    os << "self.reduction(" << x << ", " << pre << ", " << comp << ")";
  else if (kind == "dense")
    os << "act(self.linear(" << x << ", " << pre << " + \"linear.\", " << comp << "), "
       << py_str(s("activation")) << ")";
  else if (kind == "head")
    os << "self.linear(" << x << ", " << pre << " + \"linear.\", " << comp << ")";
  else if (kind == "activation")
    os << "act(" << x << ", " << py_str(s("fn")) << ")";
  else if (kind == "norm")
    os << "self.norm(" << x << ", " << pre << ", " << py_bool(s("type") == "batch") << ", "
       << py_bool(in_type.kind == DataKind::Image) << ")";
  else if (kind == "pool") {
    const int k = p.at("kernel").get<int>();
    if (s("op") == "max")
      os << "F.max_pool2d(" << x << ", " << k << ", " << i("stride") << ", " << (k - 1) / 2 << ")";
    else
      os << "F.avg_pool2d(" << x << ", " << k << ", " << i("stride") << ", " << (k - 1) / 2
         << ", count_include_pad=False)";
  } else if (kind == "avg_pool_3x3")
    os << "F.avg_pool2d(" << x << ", 3, 1, 1, count_include_pad=False)";
  else if (kind == "global_pool")
    os << x << (in_type.kind == DataKind::Image ? ".mean(dim=(2, 3))" : ".mean(dim=1)");
  else if (kind == "flatten")
    os << x << ".flatten(1)";
  else if (kind == "add") {
    os << ins[0];
    for (std::size_t k = 1; k < ins.size(); ++k) os << " + " << ins[k];
  } else if (kind == "concat") {
    os << "torch.cat([";
    for (std::size_t k = 0; k < ins.size(); ++k) os << (k ? ", " : "") << ins[k];
    os << "], dim=" << (in_type.kind == DataKind::Image ? 1 : -1) << ")";
  } else if (kind == "none")
    os << x << " * 0.0";
  else if (kind == "skip_connect")
    os << x;
  else if (kind == "attention" || kind == "sliding_attention")
    os << "self.attention(" << x << ", " << pre << ", " << i("heads") << ", "
       << py_bool(p.at("causal").get<bool>()) << ", "
       << (kind == "sliding_attention" ? i("window") : std::string("0")) << ", "
       << py_bool(p.at("rope").get<bool>()) << ", " << comp << ")";
  else
    throw ExportError("export to PyTorch: node " + std::to_string(v) + " is a '" + kind +
                      "' block, which has no faithful PyTorch form");
  return os.str();
}

std::string file_name_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

void export_pytorch(const spaces::Genome& genome, const nn::StateDict& trained,
                    const std::string& py_path, const std::string& weights_path) {
  spaces::Genome g = genome;
  g.validate();
  nn::StateDict weights = trained;  // LoRA adapters folded into their base weights
  merge_lora(g, weights);
  check_exportable(g, "PyTorch");
  std::ostringstream py;
  std::string input_dims;
  for (int d : g.input_type().dims) input_dims += ", " + std::to_string(d);
  py << "\"\"\"hwnas architecture " << g.hash() << " as a PyTorch module (generated by hwnas "
     << "export).\n\n"
     << "    net = Net()              # reads the weights file next to this one\n"
     << "    net.eval()\n"
     << "    logits = net(x)          # x: float32 [batch" << input_dims << "]\n\n"
     << "Input " << g.input_type().str() << " (Fashion-MNIST images normalised as hwnas does: "
     << "(pixel / 255 - 0.2860) / 0.3530); output " << g.node(g.output_node()).out.str()
     << " per sample.\nNet(weights=path_or_dict) loads other weights; Net.p holds them under "
        "hwnas's names with '.' as '__'.\n\"\"\"\n";
  py << kPrelude;
  py << "\n\nWEIGHTS_FILE = " << py_str(file_name_of(weights_path)) << "\n\n\n";
  py << "class Net(Net):  # noqa: F811  the generic helpers above, plus this genome's graph\n"
     << "    def forward(self, x):\n"
     << "        a" << g.input_node() << " = x\n";
  for (auto v : g.topological_order()) {
    if (v == g.input_node()) continue;
    py << "        a" << v << " = " << node_line(g, v) << "  # " << g.node(v).kind << "\n";
  }
  py << "        return a" << g.output_node() << "\n\n\n"
     << "if __name__ == \"__main__\":\n"
     << "    net = Net().eval()\n"
     << "    with torch.no_grad():\n"
     << "        print(net(torch.zeros(2" << input_dims << ")).shape)\n";
  // The weights first: a .py without its weights file would be useless.
  nn::save_state_dict(weights, weights_path);
  nn::write_file_atomically(py_path, py.str());
}

}  // namespace hwnas::deploy
