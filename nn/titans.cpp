#include "nn/titans.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace hwnas::nn {
namespace {

constexpr float kNormEps = 1e-6f;
constexpr float kMasked = -1e9f;  // additive score of a key a query may not see

bool power_of_two(int v) { return v > 0 && (v & (v - 1)) == 0; }

// x / ||x|| over the last dim of [B, n, d] (the paper l2-normalises queries and keys, which
// also keeps the inner gradient steps well scaled).  Applied to the linear projections: the
// paper's SiLU before it can shrink a query whose pre-activations are all negative to a
// near-zero vector, whose normalisation then multiplies gradients by 1 / ||.||.
Var l2_normalize(const Var& x) {
  Var ss = sum_last(mul(x, x));
  return div(x, sqrt(add_scalar(reshape(ss, Shape{x.dim(0), x.dim(1), 1}), kNormEps)));
}

// [B, n, d] -> [B * H, n, d / H]
Var split_heads(const Var& t, int heads) {
  const int B = t.dim(0), n = t.dim(1), f = t.dim(2) / heads;
  return reshape(transpose(reshape(t, Shape{B, n, heads, f}), 1, 2), Shape{B * heads, n, f});
}

Var merge_heads(const Var& t, int batch, int heads) {
  const int n = t.dim(1), f = t.dim(2);
  return reshape(transpose(reshape(t, Shape{batch, heads, n, f}), 1, 2),
                 Shape{batch, n, heads * f});
}

// Chunk mean of a gate [B, c, 1] -> [B, 1, 1].
Var chunk_mean(const Var& g) { return reshape(mean_dim(g, 1), Shape{g.dim(0), 1, 1}); }

}  // namespace

void TitansConfig::validate() const {
  auto bad = [](const std::string& m) { throw std::invalid_argument("titans: " + m); };
  if (d <= 0) bad("model dimension must be > 0, got " + std::to_string(d));
  if (heads <= 0 || d % heads != 0)
    bad("model dimension " + std::to_string(d) + " not divisible by heads " +
        std::to_string(heads) + "; choose heads dividing it");
  if (memory_depth != 1 && memory_depth != 2)
    bad("memory_depth " + std::to_string(memory_depth) + " must be 1 or 2");
  if (segment <= 0) bad("segment " + std::to_string(segment) + " must be > 0");
  if (persistent < 0) bad("persistent " + std::to_string(persistent) + " must be >= 0");
  if (!power_of_two(chunk)) bad("chunk " + std::to_string(chunk) + " must be a power of two");
  if (chunk > segment)
    bad("chunk " + std::to_string(chunk) + " larger than segment " + std::to_string(segment) +
        "; choose chunk <= segment (memory updates happen inside a segment)");
  if (!(inner_lr > 0) || !std::isfinite(inner_lr))
    bad("inner_lr must be a positive finite number, got " + std::to_string(inner_lr));
}

TitansMemoryLayer::TitansMemoryLayer(const TitansConfig& c, std::mt19937_64& rng)
    : c_((c.validate(), c)),
      mq_(c.d, c.d, false, rng),
      mk_(c.d, c.d, false, rng),
      mv_(c.d, c.d, false, rng),
      gates_(c.d, 3, true, rng),
      aq_(c.d, c.d, false, rng),
      akv_(c.d, 2 * c.d, false, rng),
      out_(c.d, c.d, true, rng) {
  const int d = c.d;
  std::normal_distribution<float> small(0.0f, 0.02f), unit(0.0f, 1.0f);
  std::normal_distribution<float> w_in(0.0f, std::sqrt(2.0f / static_cast<float>(d)));
  std::normal_distribution<float> w_out(0.0f, 1.0f / std::sqrt(static_cast<float>(d)));
  // Gates start near theta = inner_lr / 2, eta ~ 0.12 (momentum) and alpha ~ 0.05 (slow
  // forgetting): small weights so that they start close to their biases.
  Tensor gw(Shape{3, d});
  for (std::int64_t i = 0; i < gw.numel(); ++i) gw.data()[i] = small(rng);
  gates_.weight.value() = std::move(gw);
  gates_.bias.value() = Tensor::from(Shape{3}, {0.0f, -2.0f, -3.0f});
  for (int i = 0; i < c.memory_depth; ++i) {
    Tensor w(Shape{d, d});
    auto& dist = (c.memory_depth == 2 && i == 0) ? w_in : w_out;
    for (std::int64_t j = 0; j < w.numel(); ++j) w.data()[j] = dist(rng);
    m0_.push_back(parameter(std::move(w)));
  }
  if (c.persistent > 0) {
    Tensor p(Shape{c.persistent, d});
    for (std::int64_t j = 0; j < p.numel(); ++j) p.data()[j] = unit(rng);
    persistent_ = parameter(std::move(p));
  }
}

std::vector<Tensor> TitansMemoryLayer::initial_memory() const {
  std::vector<Tensor> out;
  for (const Var& w : m0_) out.push_back(w.value().clone());
  return out;
}

Var TitansMemoryLayer::memory_read(const State& st, const Var& q) const {
  if (c_.memory_depth == 1) return bmm(q, st.w[0]);
  return bmm(silu(bmm(q, st.w[0])), st.w[1]);
}

std::vector<Var> TitansMemoryLayer::memory_grad(const State& st, const Var& k, const Var& v,
                                                const Var& theta, double* loss_sum) const {
  // The chunk's mean loss (a mini-batch gradient step: the step size does not grow with the
  // chunk).  The backward of the memory MLP written out as ops, so that the outer loss
  // differentiates through the inner step (second order, as block_ttt.cpp does for its inner
  // LayerNorm).
  auto record = [&](const Var& r) {
    if (!loss_sum) return;
    const Tensor& t = r.value();
    double acc = 0;
    for (std::int64_t i = 0; i < t.numel(); ++i) acc += double(t.data()[i]) * t.data()[i];
    *loss_sum = acc;
  };
  const Var kt = transpose(k, 1, 2);
  if (c_.memory_depth == 1) {
    Var r = sub(bmm(k, st.w[0]), v);
    record(r);
    return {bmm(kt, scale(mul(r, theta), 2.0f / static_cast<float>(k.dim(1))))};
  }
  Var z = bmm(k, st.w[0]);
  Var sg = sigmoid(z);
  Var a = mul(z, sg);
  Var r = sub(bmm(a, st.w[1]), v);
  record(r);
  // Normalised step (NLMS): each token's step is divided by 1 + ||a||^2, the curvature of the
  // loss in W2, so that it cannot overshoot as the hidden activations grow.
  Var a_sq = add_scalar(reshape(sum_last(mul(a, a)), Shape{a.dim(0), a.dim(1), 1}), 1.0f);
  Var gr = div(scale(mul(r, theta), 2.0f / static_cast<float>(k.dim(1))), a_sq);
  Var g1 = bmm(transpose(a, 1, 2), gr);
  Var da = bmm(gr, transpose(st.w[1], 1, 2));
  // silu'(z) = sg (1 + z (1 - sg))
  Var dsilu = mul(sg, add_scalar(mul(z, add_scalar(scale(sg, -1.0f), 1.0f)), 1.0f));
  Var g0 = bmm(kt, mul(da, dsilu));
  return {g0, g1};
}

Var TitansMemoryLayer::segment_attention(const Var& kv, const Var& q, int s_len,
                                         bool with_h) const {
  const int B = q.dim(0), H = c_.heads, T = kv.dim(1), np = c_.persistent;
  // Query i sees every persistent token, and h_j and x_j for j <= i only: h_j is read with
  // x_j's query, so a later h would leak a later token.
  Tensor mask(Shape{s_len, T}, kMasked);
  for (int i = 0; i < s_len; ++i) {
    for (int j = 0; j < np; ++j) mask.data()[i * T + j] = 0.0f;
    for (int j = 0; j <= i; ++j) {
      if (with_h) mask.data()[i * T + np + j] = 0.0f;
      mask.data()[i * T + np + (with_h ? s_len : 0) + j] = 0.0f;
    }
  }
  auto parts = split(kv, {c_.d, c_.d}, 2);
  Var qh = split_heads(q, H), kh = split_heads(parts[0], H), vh = split_heads(parts[1], H);
  const float inv = 1.0f / std::sqrt(static_cast<float>(c_.d / H));
  Var scores = add(scale(bmm(qh, transpose(kh, 1, 2)), inv), constant(mask));
  return merge_heads(bmm(softmax(scores), vh), B, H);
}

Var TitansMemoryLayer::forward(const Var& x, ForwardContext& ctx) {
  if (x.shape().rank() != 3 || x.dim(2) != c_.d)
    throw std::invalid_argument("titans: expects [batch, length, " + std::to_string(c_.d) +
                                "], got " + x.shape().str());
  const int B = x.dim(0), L = x.dim(1), d = c_.d, np = c_.persistent;
  const bool mem = c_.memory;
  Var q_all = aq_.forward(x), kv_all = akv_.forward(x);
  Var kv_p;
  if (np > 0) kv_p = add(constant(Tensor::zeros(Shape{B, np, 2 * d})), akv_.forward(persistent_));
  Var qx;
  State st;
  if (mem) {
    qx = l2_normalize(mq_.forward(x));
    for (const Var& w0 : m0_) {
      st.w.push_back(add(constant(Tensor::zeros(Shape{B, d, d})), w0));
      st.s.push_back(constant(Tensor::zeros(Shape{B, d, d})));
    }
  }
  std::vector<Var> outs;
  std::size_t chunk_index = 0;
  for (int s0 = 0; s0 < L; s0 += c_.segment) {
    const int e = std::min(L, s0 + c_.segment), n = e - s0;
    std::vector<Var> kv_parts;
    if (np > 0) kv_parts.push_back(kv_p);
    // h = M*_{t-1}(q): the memory as left by the previous segments, read without an update.
    if (mem) kv_parts.push_back(akv_.forward(memory_read(st, slice(qx, 1, s0, e))));
    kv_parts.push_back(slice(kv_all, 1, s0, e));
    Var kv = kv_parts.size() == 1 ? kv_parts[0] : concat(kv_parts, 1);
    Var y = segment_attention(kv, slice(q_all, 1, s0, e), n, mem);
    if (!mem) {
      outs.push_back(y);
      continue;
    }
    Var qy = l2_normalize(mq_.forward(y));
    Var ky = l2_normalize(mk_.forward(y));
    Var vy = mv_.forward(y);
    Var g = sigmoid(gates_.forward(y));  // [B, n, 3]: theta, eta, alpha
    Var theta = scale(slice(g, 2, 0, 1), c_.inner_lr);
    Var eta = slice(g, 2, 1, 2), alpha = slice(g, 2, 2, 3);
    std::vector<Var> reads;
    for (int a = 0; a < n; a += c_.chunk) {
      const int b = std::min(n, a + c_.chunk);
      // Each token reads the memory as of the end of the previous chunk (causal).
      reads.push_back(memory_read(st, slice(qy, 1, a, b)));
      double loss = 0;
      std::vector<Var> grad = memory_grad(st, slice(ky, 1, a, b), slice(vy, 1, a, b),
                                          slice(theta, 1, a, b), ctx.activity ? &loss : nullptr);
      if (ctx.activity) ctx.activity->add_at(kTitansInnerLoss, chunk_index, loss / (b - a));
      ++chunk_index;
      Var eta_c = chunk_mean(slice(eta, 1, a, b));
      Var keep_c = add_scalar(scale(chunk_mean(slice(alpha, 1, a, b)), -1.0f), 1.0f);
      for (std::size_t i = 0; i < st.w.size(); ++i) {
        st.s[i] = sub(mul(st.s[i], eta_c), grad[i]);   // S_c = eta S_{c-1} - theta grad
        st.w[i] = add(mul(st.w[i], keep_c), st.s[i]);  // M_c = (1 - alpha) M_{c-1} + S_c
      }
    }
    Var read = reads.size() == 1 ? reads[0] : concat(reads, 1);
    outs.push_back(mul(y, sigmoid(read)));  // o = y (x) M*(y): memory gates the attention output
  }
  last_memory_.clear();
  for (const Var& w : st.w) last_memory_.push_back(w.value().clone());
  Var o = outs.size() == 1 ? outs[0] : concat(outs, 1);
  return out_.forward(o);
}

void TitansMemoryLayer::append_named_parameters(const std::string& prefix,
                                                std::vector<NamedParameter>& out) {
  aq_.append_named_parameters(prefix + "attn_q.", out);
  akv_.append_named_parameters(prefix + "attn_kv.", out);
  out_.append_named_parameters(prefix + "out.", out);
  if (persistent_.defined()) out.push_back({prefix + "persistent", persistent_});
  if (!c_.memory) return;
  mq_.append_named_parameters(prefix + "mem_q.", out);
  mk_.append_named_parameters(prefix + "mem_k.", out);
  mv_.append_named_parameters(prefix + "mem_v.", out);
  gates_.append_named_parameters(prefix + "gates.", out);
  for (std::size_t i = 0; i < m0_.size(); ++i)
    out.push_back({prefix + "memory0.w" + std::to_string(i), m0_[i]});
}

}  // namespace hwnas::nn
