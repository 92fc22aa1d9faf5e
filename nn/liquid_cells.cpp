#include "nn/liquid_cells.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "nn/activity.hpp"
#include "nn/ops.hpp"

namespace hwnas::nn {
namespace {
using Strided = Eigen::Map<RowMatrix, Eigen::Unaligned, Eigen::OuterStride<>>;
using ConstStrided = Eigen::Map<const RowMatrix, Eigen::Unaligned, Eigen::OuterStride<>>;

Strided view(const Rows& r, int rows, int cols) {
  return {r.p, rows, cols, Eigen::OuterStride<>(r.ld)};
}
ConstStrided view(const ConstRows& r, int rows, int cols) {
  return {r.p, rows, cols, Eigen::OuterStride<>(r.ld)};
}

// Elementwise maths is done in scalar loops (std:: functions), or with Eigen's vectorised
// functions over buffers the layer owns (Eigen-aligned, sized by the layer only), so every value
// depends only on its inputs and the layer's sizes, never on the batch chunk or the threads.
constexpr float kLecunA = 1.7159f, kLecunB = 0.666f;
float sgn(float x) { return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f); }

// The CfC's backbone activation lecun_tanh(z) = A tanh(B z) and its derivative over one row at a
// time, with Eigen's vectorised tanh into a buffer the cell owns (Eigen-aligned, sized by the
// layer): each value depends only on its input and the width, never on the batch chunk, so the
// forward pass and backward's recomputation agree bit for bit.
class LecunRow {
 public:
  explicit LecunRow(int width) : t_(width) {}
  const float* value(const float* z) {
    t_ = kLecunA * (kLecunB * in(z)).tanh();
    return t_.data();
  }
  const float* grad(const float* z) {
    t_ = (kLecunB * in(z)).tanh();
    t_ = kLecunA * kLecunB * (1.0f - t_.square());
    return t_.data();
  }

 private:
  Eigen::Map<const Eigen::ArrayXf> in(const float* z) const { return {z, t_.size()}; }
  Eigen::ArrayXf t_;
};

// The CfC heads of one row (z = [f1 | f2 | time_a | time_b] pre-activations, H each):
// tanh(f1), tanh(f2) and the time gate sigmoid(time_a ts + time_b), vectorised likewise.
struct CfcHeadsRow {
  explicit CfcHeadsRow(int hidden) : f1(hidden), f2(hidden), gate(hidden) {}
  void operator()(const float* z, float ts) {
    const Eigen::Index H = f1.size();
    using Row = Eigen::Map<const Eigen::ArrayXf>;
    f1 = Row(z, H).tanh();
    f2 = Row(z + H, H).tanh();
    gate = (1.0f + (-(Row(z + 2 * H, H) * ts + Row(z + 3 * H, H))).exp()).inverse();
  }
  Eigen::ArrayXf f1, f2, gate;
};
constexpr float kLtcEps = 1e-8f;

void check_shape(const std::string& cell, const std::string& what, const Tensor& t,
                 const Shape& want) {
  if (t.shape() != want)
    throw std::invalid_argument(cell + ": " + what + " must be " + want.str() + ", got " +
                                t.shape().str());
}

void check_mask(const char* cell, const char* what, const Tensor& m, const Shape& want) {
  if (m.empty()) return;
  if (m.shape() != want)
    throw std::invalid_argument(std::string(cell) + ": " + what + " must be " + want.str() +
                                ", got " + m.shape().str());
  for (std::int64_t i = 0; i < m.numel(); ++i)
    if (m.data()[i] != 0.0f && m.data()[i] != 1.0f)
      throw std::invalid_argument(std::string(cell) + ": " + what +
                                  " must hold only 0 and 1, got " + std::to_string(m.data()[i]));
}

float step_dt(const ConstRows& u, int r, int col, bool time_input) {
  return time_input ? u.row(r)[col] : 1.0f;
}
}  // namespace

CfcMode parse_cfc_mode(const std::string& s) {
  if (s == "default") return CfcMode::Default;
  if (s == "no_gate") return CfcMode::NoGate;
  if (s == "pure") return CfcMode::Pure;
  throw std::invalid_argument("cfc: mode must be default, no_gate or pure, got '" + s + "'");
}

std::string cfc_mode_name(CfcMode m) {
  switch (m) {
    case CfcMode::Default:
      return "default";
    case CfcMode::NoGate:
      return "no_gate";
    case CfcMode::Pure:
      return "pure";
  }
  return "default";
}

// ---------------------------------------------------------------- CfC

CfcCell::CfcCell(const CfcConfig& cfg, Tensor rec_mask) : cfg_(cfg), mask_(std::move(rec_mask)) {
  if (cfg.hidden <= 0)
    throw std::invalid_argument("cfc: hidden must be > 0, got " + std::to_string(cfg.hidden));
  if (cfg.backbone_layers < 0)
    throw std::invalid_argument("cfc: backbone_layers must be >= 0, got " +
                                std::to_string(cfg.backbone_layers));
  if (cfg.backbone_layers > 0 && cfg.backbone_units <= 0)
    throw std::invalid_argument("cfc: backbone_units must be > 0 with a backbone, got " +
                                std::to_string(cfg.backbone_units));
  check_mask("cfc", "rec_mask", mask_, Shape{cfg.first_width(), cfg.hidden});
}

int CfcCell::saved_size() const {
  const int L = cfg_.backbone_layers;
  return cfg_.first_width() +
         (L > 0 ? (L - 1) * cfg_.backbone_units + cfg_.heads() * cfg_.hidden : 0);
}

int CfcCell::param_count() const {
  const int L = cfg_.backbone_layers;
  return 1 + (L > 0 ? 2 * (L - 1) + 2 : 0) + (cfg_.mode == CfcMode::Pure ? 2 : 0);
}

void CfcCell::check_params(const std::vector<Tensor>& p) const {
  if (static_cast<int>(p.size()) != param_count())
    throw std::invalid_argument("cfc: expected " + std::to_string(param_count()) +
                                " parameter tensors, got " + std::to_string(p.size()));
  const int H = cfg_.hidden, U = cfg_.backbone_units, L = cfg_.backbone_layers,
            NH = cfg_.heads() * H;
  std::size_t k = 0;
  check_shape("cfc", "w_rec", p[k++], Shape{cfg_.first_width(), H});
  for (int l = 2; l <= L; ++l) {
    check_shape("cfc", "w_backbone" + std::to_string(l), p[k++], Shape{U, U});
    check_shape("cfc", "b_backbone" + std::to_string(l), p[k++], Shape{U});
  }
  if (L > 0) {
    check_shape("cfc", "w_head", p[k++], Shape{NH, U});
    check_shape("cfc", "b_head", p[k++], Shape{NH});
  }
  if (cfg_.mode == CfcMode::Pure) {
    check_shape("cfc", "w_tau", p[k++], Shape{H});
    check_shape("cfc", "a", p[k++], Shape{H});
  }
}

RowMatrix CfcCell::effective_rec(const Tensor& w_rec) const {
  if (mask_.empty()) return w_rec.matrix();
  return w_rec.matrix().cwiseProduct(mask_.matrix());
}

void CfcCell::forward_step(const std::vector<Tensor>& p, const StepForward& io) const {
  const int n = io.rows, H = cfg_.hidden, P = cfg_.first_width(), L = cfg_.backbone_layers,
            U = cfg_.backbone_units, NH = cfg_.heads() * H;
  Strided z1 = view(io.saved, n, P);
  z1 = view(io.u, n, P);
  z1.noalias() += view(io.s_prev, n, H) * effective_rec(p[0]).transpose();
  const float* heads_base = nullptr;  // row 0 of the heads' pre-activations in saved
  std::int64_t heads_off = 0;
  if (L > 0) {
    RowMatrix a(n, U);
    LecunRow act(U);
    auto activate = [&](const float* z, std::int64_t ldz) {
      for (int r = 0; r < n; ++r) std::copy_n(act.value(z + r * ldz), U, &a(r, 0));
    };
    activate(z1.data(), io.saved.ld);
    std::int64_t off = P;
    std::size_t k = 1;
    for (int l = 2; l <= L; ++l, off += U) {
      Strided zl(io.saved.p + off, n, U, Eigen::OuterStride<>(io.saved.ld));
      zl.noalias() = a * p[k].matrix().transpose();
      zl.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(p[k + 1].data(), U);
      k += 2;
      activate(zl.data(), io.saved.ld);
    }
    Strided zh(io.saved.p + off, n, NH, Eigen::OuterStride<>(io.saved.ld));
    zh.noalias() = a * p[k].matrix().transpose();
    zh.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(p[k + 1].data(), NH);
    heads_off = off;
  }
  heads_base = io.saved.p + heads_off;
  const std::size_t pure_at = p.size() - 2;
  CfcHeadsRow heads(cfg_.mode == CfcMode::Pure ? 0 : H);
  for (int r = 0; r < n; ++r) {
    const float* z = heads_base + static_cast<std::int64_t>(r) * io.saved.ld;
    const float ts = step_dt(io.u, r, P, cfg_.time_input);
    float* h = io.s.row(r);
    float* y = io.y.row(r);
    if (cfg_.mode != CfcMode::Pure) heads(z, ts);
    for (int j = 0; j < H; ++j) {
      float v;
      if (cfg_.mode == CfcMode::Pure) {
        const float wt = p[pure_at].data()[j], A = p[pure_at + 1].data()[j], f = z[j];
        v = A - A * std::exp(-ts * (std::fabs(wt) + std::fabs(f))) * f;
      } else {
        const float f1 = heads.f1[j], f2 = heads.f2[j], g = heads.gate[j];
        v = cfg_.mode == CfcMode::Default ? f1 * (1.0f - g) + g * f2 : f1 + g * f2;
      }
      h[j] = v;
      y[j] = v;
    }
  }
}

void CfcCell::backward_step(const std::vector<Tensor>& p, const StepBackward& io) const {
  const int n = io.rows, H = cfg_.hidden, P = cfg_.first_width(), L = cfg_.backbone_layers,
            U = cfg_.backbone_units, NH = cfg_.heads() * H;
  std::vector<Tensor>& g = *io.grads;
  const std::int64_t heads_off = L > 0 ? P + static_cast<std::int64_t>(L - 1) * U : 0;
  const std::size_t pure_at = p.size() - 2;
  RowMatrix dz(n, NH);
  CfcHeadsRow heads(cfg_.mode == CfcMode::Pure ? 0 : H);
  for (int r = 0; r < n; ++r) {
    const float* z = io.saved.row(r) + heads_off;
    const float ts = step_dt(io.u, r, P, cfg_.time_input);
    if (cfg_.mode != CfcMode::Pure) heads(z, ts);
    float dts = 0.0f;
    for (int j = 0; j < H; ++j) {
      const float dh = io.dy.row(r)[j] + io.ds.row(r)[j];
      if (cfg_.mode == CfcMode::Pure) {
        const float wt = p[pure_at].data()[j], A = p[pure_at + 1].data()[j], f = z[j];
        const float e = std::exp(-ts * (std::fabs(wt) + std::fabs(f)));
        dz(r, j) = -dh * A * e * (1.0f - ts * std::fabs(f) * (f != 0.0f ? 1.0f : 0.0f));
        g[pure_at].data()[j] += dh * A * f * e * ts * sgn(wt);
        g[pure_at + 1].data()[j] += dh * (1.0f - e * f);
        dts += dh * A * f * e * (std::fabs(wt) + std::fabs(f));
      } else {
        const float f1 = heads.f1[j], f2 = heads.f2[j], gt = heads.gate[j];
        const float ta = z[2 * H + j];
        float df1, df2, dg;
        if (cfg_.mode == CfcMode::Default) {
          df1 = dh * (1.0f - gt);
          df2 = dh * gt;
          dg = dh * (f2 - f1);
        } else {
          df1 = dh;
          df2 = dh * gt;
          dg = dh * f2;
        }
        const float darg = dg * gt * (1.0f - gt);
        dz(r, j) = df1 * (1.0f - f1 * f1);
        dz(r, H + j) = df2 * (1.0f - f2 * f2);
        dz(r, 2 * H + j) = darg * ts;
        dz(r, 3 * H + j) = darg;
        dts += darg * ta;
      }
    }
    if (cfg_.time_input) io.du.row(r)[P] = dts;
  }
  Strided du1 = view(io.du, n, P);
  if (L == 0) {
    du1 = dz;
  } else {
    // Recompute the backbone activations a_1 .. a_L from the saved pre-activations.
    std::vector<RowMatrix> a(static_cast<std::size_t>(L), RowMatrix(n, U));
    LecunRow act(U);
    for (int l = 0; l < L; ++l)
      for (int r = 0; r < n; ++r) {
        const float* zl = io.saved.row(r) + (l == 0 ? 0 : P + static_cast<std::int64_t>(l - 1) * U);
        std::copy_n(act.value(zl), U, &a[static_cast<std::size_t>(l)](r, 0));
      }
    const std::size_t kh = static_cast<std::size_t>(1 + 2 * (L - 1));
    g[kh].matrix().noalias() += dz.transpose() * a[static_cast<std::size_t>(L - 1)];
    Eigen::Map<Eigen::RowVectorXf>(g[kh + 1].data(), NH) += dz.colwise().sum();
    RowMatrix da = dz * p[kh].matrix();
    for (int l = L; l >= 2; --l) {
      const std::size_t kw = static_cast<std::size_t>(1 + 2 * (l - 2));
      RowMatrix dzl(n, U);
      for (int r = 0; r < n; ++r) {
        const float* dl = act.grad(io.saved.row(r) + P + static_cast<std::int64_t>(l - 2) * U);
        for (int c = 0; c < U; ++c) dzl(r, c) = da(r, c) * dl[c];
      }
      g[kw].matrix().noalias() += dzl.transpose() * a[static_cast<std::size_t>(l - 2)];
      Eigen::Map<Eigen::RowVectorXf>(g[kw + 1].data(), U) += dzl.colwise().sum();
      da = dzl * p[kw].matrix();
    }
    for (int r = 0; r < n; ++r) {
      const float* dl = act.grad(io.saved.row(r));
      for (int c = 0; c < U; ++c) du1(r, c) = da(r, c) * dl[c];
    }
  }
  view(io.ds_prev, n, H).noalias() = view(ConstRows{io.du.p, io.du.ld}, n, P) * effective_rec(p[0]);
}

void CfcCell::accumulate_param_grads(const std::vector<Tensor>&, const SampleSpan& span,
                                     std::vector<Tensor>& grads) const {
  const int P = cfg_.first_width(), H = cfg_.hidden;
  RowMatrix dw = view(span.du, span.steps, P).transpose() * view(span.s_prev, span.steps, H);
  if (!mask_.empty()) dw = dw.cwiseProduct(mask_.matrix());
  grads[0].matrix() += dw;
}

// ---------------------------------------------------------------- LTC

LtcCell::LtcCell(const LtcConfig& cfg, Tensor mask, Tensor sensory_mask)
    : cfg_(cfg), mask_(std::move(mask)), smask_(std::move(sensory_mask)) {
  if (cfg.inputs <= 0 || cfg.hidden <= 0)
    throw std::invalid_argument("ltc: inputs and hidden must be > 0, got " +
                                std::to_string(cfg.inputs) + ", " + std::to_string(cfg.hidden));
  if (cfg.unfolds < 1)
    throw std::invalid_argument("ltc: unfolds must be >= 1, got " + std::to_string(cfg.unfolds));
  check_mask("ltc", "mask", mask_, Shape{cfg.hidden, cfg.hidden});
  check_mask("ltc", "sensory_mask", smask_, Shape{cfg.inputs, cfg.hidden});
}

void LtcCell::check_params(const std::vector<Tensor>& p) const {
  if (p.size() != kLtcParamCount)
    throw std::invalid_argument("ltc: expected " + std::to_string(kLtcParamCount) +
                                " parameter tensors, got " + std::to_string(p.size()));
  const int H = cfg_.hidden, F = cfg_.inputs;
  const char* names[kLtcParamCount] = {
      "gleak",         "vleak",      "cm",        "sigma",        "mu",      "w",      "erev",
      "sensory_sigma", "sensory_mu", "sensory_w", "sensory_erev", "input_w", "input_b"};
  for (int k = 0; k < kLtcParamCount; ++k) {
    Shape want = k <= kLtcCm      ? Shape{H}
                 : k <= kLtcErev  ? Shape{H, H}
                 : k <= kLtcSErev ? Shape{F, H}
                                  : Shape{F};
    check_shape("ltc", names[k], p[static_cast<std::size_t>(k)], want);
  }
}

namespace {
// Per-call transformed parameters of the LTC (softplus of the positive ones, masks folded in).
// The time loop calls each step per batch chunk, so this runs (T x chunks) times per pass: the
// maps are Eigen's vectorised exp / log1p into Eigen-aligned arrays (the lane split, so every
// bit, depends only on the sizes).
struct LtcDerived {
  Eigen::ArrayXf gl, cm, w, sw;  // softplus'ed; w and sw masked
  // d/d raw of each (sigmoid of the raw value; times the mask for w and sw).
  Eigen::ArrayXf dgl, dcm, dw, dsw;
  enum class Need { kValues, kValuesAndGradients };
  LtcDerived(const std::vector<Tensor>& p, const Tensor& mask, const Tensor& smask,
             Need need = Need::kValues) {
    auto raw = [](const Tensor& t) {
      return Eigen::Map<const Eigen::ArrayXf>(t.data(), static_cast<Eigen::Index>(t.numel()));
    };
    auto masked = [&](Eigen::ArrayXf& a, const Tensor& m) {
      if (!m.empty()) a *= raw(m);
    };
    auto softplus = [&](const Tensor& t, const Tensor& m) {
      // softplus(x) = max(x, 0) + log1p(exp(-|x|)): stable for any x, and without a select
      // (Eigen evaluates a select expression one scalar at a time).
      const auto x = raw(t);
      Eigen::ArrayXf o = x.max(0.0f) + (-x.abs()).exp().log1p();
      masked(o, m);
      return o;
    };
    auto sigmoid = [&](const Tensor& t, const Tensor& m) {
      Eigen::ArrayXf o = (1.0f + (-raw(t)).exp()).inverse();
      masked(o, m);
      return o;
    };
    gl = softplus(p[kLtcGleak], Tensor());
    cm = softplus(p[kLtcCm], Tensor());
    w = softplus(p[kLtcW], mask);
    sw = softplus(p[kLtcSW], smask);
    if (need == Need::kValuesAndGradients) {
      dgl = sigmoid(p[kLtcGleak], Tensor());
      dcm = sigmoid(p[kLtcCm], Tensor());
      dw = sigmoid(p[kLtcW], mask);
      dsw = sigmoid(p[kLtcSW], smask);
    }
  }
};

// The synapses' activations sigmoid(sigma_ij (v_i - mu_ij)) for all i, j of one sample, the
// LTC's hot loop: the arguments are formed in a plain loop and the sigmoid runs over all of them
// with Eigen's vectorised exp.  The buffers are Eigen-aligned and sized by the layer, so the
// split between vector and scalar lanes, and so every bit of the result, depends only on the
// inputs: the forward pass and backward's recomputation agree exactly, whatever the threads.
class SynapseActivations {
 public:
  SynapseActivations(int rows, int cols)
      : rows_(rows), cols_(cols), z_(rows * cols), s_(rows * cols) {}
  // s_ij = sigmoid(sigma_ij * (v_i - mu_ij)) for a [rows, cols] sigma and mu; returns s.
  const float* operator()(const float* __restrict v, const float* __restrict sigma,
                          const float* __restrict mu) {
    float* __restrict z = z_.data();
    for (std::int64_t i = 0; i < rows_; ++i) {
      const std::int64_t o = i * cols_;
      for (std::int64_t j = 0; j < cols_; ++j) z[o + j] = sigma[o + j] * (v[i] - mu[o + j]);
    }
    s_ = (1.0f + (-z_).exp()).inverse();
    return s_.data();
  }

 private:
  std::int64_t rows_, cols_;
  Eigen::ArrayXf z_, s_;
};

// The sensory neurons' inputs x_i = u_i in_w_i + in_b_i (forward and backward alike).
void sensory_drive(const float* u, const float* inw, const float* inb, int inputs, float* x) {
  for (int i = 0; i < inputs; ++i) x[i] = u[i] * inw[i] + inb[i];
}

// num_j += sum_i a_ij erev_ij and den_j += sum_i a_ij with a_ij = w_ij s_ij (ascending i).
void add_synaptic_currents(int rows, int cols, const float* __restrict w, const float* __restrict s,
                           const float* __restrict erev, float* __restrict num,
                           float* __restrict den) {
  for (int i = 0; i < rows; ++i) {
    const std::int64_t o = static_cast<std::int64_t>(i) * cols;
    for (int j = 0; j < cols; ++j) {
      const float a = w[o + j] * s[o + j];
      num[j] += a * erev[o + j];
      den[j] += a;
    }
  }
}

// Backward of add_synaptic_currents through s = sigmoid(sigma (v - mu)), given dnum, dden:
// accumulates the gradients of erev, raw w (dw_raw = d w / d raw), sigma and mu, and adds the
// gradient of each v_i into dv.
struct SynapseGrads {
  float *erev, *w, *sigma, *mu;
};
void synapse_backward(int rows, int cols, const float* __restrict v, const float* __restrict sigma,
                      const float* __restrict mu, const float* __restrict w,
                      const float* __restrict dw_raw, const float* __restrict erev,
                      const float* __restrict s, const float* __restrict dnum,
                      const float* __restrict dden, const SynapseGrads& grads,
                      float* __restrict dv) {
  float *__restrict g_erev = grads.erev, *__restrict g_w = grads.w,
                    *__restrict g_sigma = grads.sigma, *__restrict g_mu = grads.mu;
  for (int i = 0; i < rows; ++i) {
    const std::int64_t o = static_cast<std::int64_t>(i) * cols;
    float dvi = 0.0f;
    for (int j = 0; j < cols; ++j) {
      const std::int64_t ij = o + j;
      const float si = s[ij], a = w[ij] * si;
      const float da = dnum[j] * erev[ij] + dden[j];
      g_erev[ij] += dnum[j] * a;
      g_w[ij] += da * si * dw_raw[ij];
      const float dzz = da * w[ij] * si * (1.0f - si);
      g_sigma[ij] += dzz * (v[i] - mu[ij]);
      g_mu[ij] -= dzz * sigma[ij];
      dvi += dzz * sigma[ij];
    }
    dv[i] += dvi;
  }
}
}  // namespace

void LtcCell::forward_step(const std::vector<Tensor>& p, const StepForward& io) const {
  const int n = io.rows, H = cfg_.hidden, F = cfg_.inputs, K = cfg_.unfolds;
  const LtcDerived d(p, mask_, smask_);
  const float *vleak = p[kLtcVleak].data(), *sig = p[kLtcSigma].data(), *mu = p[kLtcMu].data(),
              *erev = p[kLtcErev].data(), *ssig = p[kLtcSSigma].data(), *smu = p[kLtcSMu].data(),
              *serev = p[kLtcSErev].data(), *inw = p[kLtcInW].data(), *inb = p[kLtcInB].data();
  std::vector<float> v(static_cast<std::size_t>(H)), num(v.size()), den(v.size()),
      x(static_cast<std::size_t>(F));
  SynapseActivations sensory(F, H), recurrent(H, H);
  for (int r = 0; r < n; ++r) {
    const float* u = io.u.row(r);
    float* saved = io.saved.row(r);
    float *num_s = saved + static_cast<std::int64_t>(K) * H, *den_s = num_s + H;
    std::fill(num_s, num_s + 2 * H, 0.0f);
    sensory_drive(u, inw, inb, F, x.data());
    add_synaptic_currents(F, H, d.sw.data(), sensory(x.data(), ssig, smu), serev, num_s, den_s);
    const float dt = step_dt(io.u, r, F, cfg_.time_input);
    std::copy(io.s_prev.row(r), io.s_prev.row(r) + H, v.begin());
    for (int k = 0; k < K; ++k) {
      float* vk = saved + static_cast<std::int64_t>(k) * H;
      std::copy(v.begin(), v.end(), vk);
      // The sensory currents start each unfold's sums.
      std::copy(num_s, num_s + H, num.begin());
      std::copy(den_s, den_s + H, den.begin());
      add_synaptic_currents(H, H, d.w.data(), recurrent(vk, sig, mu), erev, num.data(), den.data());
      for (int j = 0; j < H; ++j) {
        const std::size_t sj = static_cast<std::size_t>(j);
        const float cmt = d.cm[sj] * static_cast<float>(K) / dt;
        v[sj] =
            (cmt * vk[j] + d.gl[sj] * vleak[j] + num[sj]) / (cmt + d.gl[sj] + den[sj] + kLtcEps);
      }
    }
    std::copy(v.begin(), v.end(), io.s.row(r));
    std::copy(v.begin(), v.end(), io.y.row(r));
  }
}

void LtcCell::backward_step(const std::vector<Tensor>& p, const StepBackward& io) const {
  const int n = io.rows, H = cfg_.hidden, F = cfg_.inputs, K = cfg_.unfolds;
  const LtcDerived d(p, mask_, smask_, LtcDerived::Need::kValuesAndGradients);
  const float *vleak = p[kLtcVleak].data(), *sig = p[kLtcSigma].data(), *mu = p[kLtcMu].data(),
              *erev = p[kLtcErev].data(), *ssig = p[kLtcSSigma].data(), *smu = p[kLtcSMu].data(),
              *serev = p[kLtcSErev].data(), *inw = p[kLtcInW].data(), *inb = p[kLtcInB].data();
  std::vector<Tensor>& g = *io.grads;
  float *g_gl = g[kLtcGleak].data(), *g_vl = g[kLtcVleak].data(), *g_cm = g[kLtcCm].data(),
        *g_inw = g[kLtcInW].data(), *g_inb = g[kLtcInB].data();
  const SynapseGrads g_rec{g[kLtcErev].data(), g[kLtcW].data(), g[kLtcSigma].data(),
                           g[kLtcMu].data()};
  const SynapseGrads g_sen{g[kLtcSErev].data(), g[kLtcSW].data(), g[kLtcSSigma].data(),
                           g[kLtcSMu].data()};
  const std::size_t Hs = static_cast<std::size_t>(H);
  std::vector<float> dv(Hs), dvp(Hs), num(Hs), den(Hs), dnum_s(Hs), dden_s(Hs), dcmt(Hs);
  std::vector<float> x(static_cast<std::size_t>(F)), dx(x.size());
  SynapseActivations sensory(F, H), recurrent(H, H);
  for (int r = 0; r < n; ++r) {
    const float* u = io.u.row(r);
    const float* saved = io.saved.row(r);
    const float *num_s = saved + static_cast<std::int64_t>(K) * H, *den_s = num_s + H;
    const float dt = step_dt(io.u, r, F, cfg_.time_input);
    for (int j = 0; j < H; ++j) dv[static_cast<std::size_t>(j)] = io.dy.row(r)[j] + io.ds.row(r)[j];
    std::fill(dnum_s.begin(), dnum_s.end(), 0.0f);
    std::fill(dden_s.begin(), dden_s.end(), 0.0f);
    std::fill(dcmt.begin(), dcmt.end(), 0.0f);
    for (int k = K - 1; k >= 0; --k) {
      const float* vp = saved + static_cast<std::int64_t>(k) * H;
      std::copy(num_s, num_s + H, num.begin());
      std::copy(den_s, den_s + H, den.begin());
      const float* s = recurrent(vp, sig, mu);
      add_synaptic_currents(H, H, d.w.data(), s, erev, num.data(), den.data());
      // dN = dv / D, dD = -dv * v_new / D; reuse num/den for dN/dD.
      for (int j = 0; j < H; ++j) {
        const std::size_t sj = static_cast<std::size_t>(j);
        const float cmt = d.cm[sj] * static_cast<float>(K) / dt;
        const float D = cmt + d.gl[sj] + den[sj] + kLtcEps;
        const float N = cmt * vp[j] + d.gl[sj] * vleak[j] + num[sj];
        const float dN = dv[sj] / D, dD = -dv[sj] * N / (D * D);
        dcmt[sj] += dN * vp[j] + dD;
        const float dgl = dN * vleak[j] + dD;
        g_gl[j] += dgl * d.dgl[sj];
        g_vl[j] += dN * d.gl[sj];
        dnum_s[sj] += dN;
        dden_s[sj] += dD;
        dvp[sj] = dN * cmt;
        num[sj] = dN;
        den[sj] = dD;
      }
      synapse_backward(H, H, vp, sig, mu, d.w.data(), d.dw.data(), erev, s, num.data(), den.data(),
                       g_rec, dvp.data());
      std::swap(dv, dvp);
    }
    for (int j = 0; j < H; ++j) io.ds_prev.row(r)[j] = dv[static_cast<std::size_t>(j)];
    float ddt = 0.0f;
    for (int j = 0; j < H; ++j) {
      const std::size_t sj = static_cast<std::size_t>(j);
      // cm_t = softplus(cm) * K / dt.
      g_cm[j] += dcmt[sj] * static_cast<float>(K) / dt * d.dcm[sj];
      ddt -= dcmt[sj] * d.cm[sj] * static_cast<float>(K) / (dt * dt);
    }
    sensory_drive(u, inw, inb, F, x.data());
    std::fill(dx.begin(), dx.end(), 0.0f);
    synapse_backward(F, H, x.data(), ssig, smu, d.sw.data(), d.dsw.data(), serev,
                     sensory(x.data(), ssig, smu), dnum_s.data(), dden_s.data(), g_sen, dx.data());
    for (int i = 0; i < F; ++i) {
      const float dxi = dx[static_cast<std::size_t>(i)];
      g_inw[i] += dxi * u[i];
      g_inb[i] += dxi;
      io.du.row(r)[i] = dxi * inw[i];
    }
    if (cfg_.time_input) io.du.row(r)[F] = ddt;
  }
}

// ---------------------------------------------------------------- NCP wiring

std::int64_t NcpWiring::synapses() const {
  return count_nonzero(adjacency.data(), adjacency.numel()) +
         count_nonzero(sensory.data(), sensory.numel());
}

NcpWiring make_ncp_wiring(int inputs, int inter, int command, int motor, int sensory_fanout,
                          int inter_fanout, int recurrent_command, int motor_fanin,
                          std::uint64_t seed) {
  if (inputs < 1 || inter < 1 || command < 1 || motor < 1)
    throw std::invalid_argument("ncp wiring: inputs, inter, command and motor must be >= 1, got " +
                                std::to_string(inputs) + ", " + std::to_string(inter) + ", " +
                                std::to_string(command) + ", " + std::to_string(motor));
  if (sensory_fanout < 1 || sensory_fanout > inter || inter_fanout < 1 || inter_fanout > command ||
      motor_fanin < 1 || motor_fanin > command || recurrent_command < 0)
    throw std::invalid_argument(
        "ncp wiring: need 1 <= sensory_fanout <= inter, 1 <= inter_fanout <= command, "
        "1 <= motor_fanin <= command, recurrent_command >= 0; got " +
        std::to_string(sensory_fanout) + ", " + std::to_string(inter_fanout) + ", " +
        std::to_string(motor_fanin) + ", " + std::to_string(recurrent_command));
  NcpWiring w;
  w.inputs = inputs;
  w.inter = inter;
  w.command = command;
  w.motor = motor;
  const int H = w.units();
  w.adjacency = Tensor(Shape{H, H}, 0.0f);
  w.sensory = Tensor(Shape{inputs, H}, 0.0f);
  std::mt19937_64 rng(seed);
  // Neuron ids: motor [0, motor), command [motor, motor+command), inter after.
  const int c0 = motor, i0 = motor + command;
  auto pick = [&](int n, int k) {  // k distinct of [0, n)
    std::vector<int> ids(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) ids[static_cast<std::size_t>(i)] = i;
    for (int i = 0; i < k; ++i) {
      std::uniform_int_distribution<int> d(i, n - 1);
      std::swap(ids[static_cast<std::size_t>(i)], ids[static_cast<std::size_t>(d(rng))]);
    }
    ids.resize(static_cast<std::size_t>(k));
    return ids;
  };
  auto any = [&](int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); };
  auto set = [](Tensor& t, int cols, int i, int j) {
    t.data()[static_cast<std::int64_t>(i) * cols + j] = 1.0f;
  };
  auto has_input = [](const Tensor& t, int rows, int cols, int j) {
    for (int i = 0; i < rows; ++i)
      if (t.data()[static_cast<std::int64_t>(i) * cols + j] != 0.0f) return true;
    return false;
  };
  // sensory -> inter
  for (int s = 0; s < inputs; ++s)
    for (int d : pick(inter, sensory_fanout)) set(w.sensory, H, s, i0 + d);
  for (int d = 0; d < inter; ++d)
    if (!has_input(w.sensory, inputs, H, i0 + d)) set(w.sensory, H, any(inputs), i0 + d);
  // inter -> command
  for (int s = 0; s < inter; ++s)
    for (int d : pick(command, inter_fanout)) set(w.adjacency, H, i0 + s, c0 + d);
  for (int d = 0; d < command; ++d)
    if (!has_input(w.adjacency, H, H, c0 + d)) set(w.adjacency, H, i0 + any(inter), c0 + d);
  // command -> command (recurrent)
  for (int k = 0; k < recurrent_command; ++k)
    set(w.adjacency, H, c0 + any(command), c0 + any(command));
  // command -> motor
  for (int m = 0; m < motor; ++m)
    for (int s : pick(command, motor_fanin)) set(w.adjacency, H, c0 + s, m);
  return w;
}

NcpWiring make_ncp_wiring(int inputs, int units, int motor, float density, std::uint64_t seed) {
  if (!(density > 0.0f && density <= 1.0f))
    throw std::invalid_argument("ncp wiring: density must be in (0, 1], got " +
                                std::to_string(density));
  if (motor < 1 || units - motor < 2)
    throw std::invalid_argument("ncp wiring: need motor >= 1 and units >= motor + 2, got units " +
                                std::to_string(units) + ", motor " + std::to_string(motor));
  const int rest = units - motor;
  const int inter = std::max(1, (rest * 3 + 4) / 5), command = rest - inter;
  if (command < 1)
    throw std::invalid_argument("ncp wiring: units " + std::to_string(units) +
                                " leave no command neurons");
  auto fan = [&](int n) { return std::clamp(static_cast<int>(std::lround(density * n)), 1, n); };
  return make_ncp_wiring(inputs, inter, command, motor, fan(inter), fan(command),
                         static_cast<int>(std::lround(density * command * command)), fan(command),
                         seed);
}

// ---------------------------------------------------------------- functional forms

namespace {
void check_seq(const char* op, const Var& x, const Var& dt, const Var& h0, int F, int H) {
  if (!x.defined() || x.shape().rank() != 3 || x.dim(2) != F)
    throw std::invalid_argument(std::string(op) + ": x must be [batch, time, " + std::to_string(F) +
                                "], got " + (x.defined() ? x.shape().str() : "undefined"));
  if (dt.defined() && dt.shape() != Shape{x.dim(0), x.dim(1)})
    throw std::invalid_argument(std::string(op) + ": dt must be [batch, time] = " +
                                Shape{x.dim(0), x.dim(1)}.str() + ", got " + dt.shape().str());
  if (h0.defined() && h0.shape() != Shape{x.dim(0), H})
    throw std::invalid_argument(std::string(op) + ": h0 must be [batch, hidden] = " +
                                Shape{x.dim(0), H}.str() + ", got " + h0.shape().str());
}
Var with_dt(const Var& u, const Var& dt) {
  return concat({u, reshape(dt, Shape{dt.dim(0), dt.dim(1), 1})}, 2);
}
}  // namespace

Recurrence cfc(const Var& x, const Var& dt, const Var& h0, const Var& w_in, const Var& b_in,
               const std::vector<Var>& params, const CfcConfig& cfg0, const Tensor& rec_mask,
               const Tensor& in_mask, const RecurrenceOptions& options) {
  CfcConfig cfg = cfg0;
  cfg.time_input = dt.defined();
  auto cell = std::make_shared<CfcCell>(cfg, rec_mask);
  const int P = cfg.first_width();
  if (!w_in.defined() || w_in.shape().rank() != 2 || w_in.dim(0) != P)
    throw std::invalid_argument("cfc: w_in must be [" + std::to_string(P) + ", features], got " +
                                (w_in.defined() ? w_in.shape().str() : "undefined"));
  check_seq("cfc", x, dt, h0, w_in.dim(1), cfg.hidden);
  check_mask("cfc", "in_mask", in_mask, w_in.shape());
  const Var w = in_mask.empty() ? w_in : mul(w_in, constant(in_mask));
  if (!dt.defined()) return run_recurrence(cell, x, h0, w, b_in, params, options);
  return run_recurrence(cell, with_dt(linear(x, w, b_in), dt), h0, Var(), Var(), params, options);
}

Recurrence ltc(const Var& x, const Var& dt, const Var& h0, const std::vector<Var>& params,
               const LtcConfig& cfg0, const Tensor& mask, const Tensor& sensory_mask,
               const RecurrenceOptions& options) {
  LtcConfig cfg = cfg0;
  cfg.time_input = dt.defined();
  auto cell = std::make_shared<LtcCell>(cfg, mask, sensory_mask);
  check_seq("ltc", x, dt, h0, cfg.inputs, cfg.hidden);
  return run_recurrence(cell, dt.defined() ? with_dt(x, dt) : x, h0, Var(), Var(), params, options);
}

// ---------------------------------------------------------------- modules

namespace {
Tensor uniform(const Shape& s, float lo, float hi, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> d(lo, hi);
  Tensor t(s);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = d(rng);
  return t;
}
Tensor glorot(int out, int in, std::mt19937_64& rng) {
  const float b = std::sqrt(6.0f / static_cast<float>(in + out));
  return uniform(Shape{out, in}, -b, b, rng);
}
Tensor filled(const Shape& s, float v) {
  Tensor t(s);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = v;
  return t;
}
}  // namespace

Cfc::Cfc(int input_size, const CfcConfig& c, std::mt19937_64& rng, float wiring_density, int motor,
         std::uint64_t wiring_seed, RecurrenceOptions opts)
    : cfg(c), options(opts) {
  cfg.time_input = false;
  if (input_size <= 0)
    throw std::invalid_argument("Cfc: input_size must be > 0, got " + std::to_string(input_size));
  CfcCell probe(cfg);  // validates the configuration
  const int H = cfg.hidden, U = cfg.backbone_units, L = cfg.backbone_layers, P = cfg.first_width(),
            NH = cfg.heads() * H;
  // Xavier-uniform weights and zero biases as the reference.
  const Tensor w_first = glorot(P, input_size + H, rng);
  Tensor wx(Shape{P, input_size}), wh(Shape{P, H});
  for (int o = 0; o < P; ++o) {
    for (int i = 0; i < input_size; ++i)
      wx.data()[static_cast<std::int64_t>(o) * input_size + i] =
          w_first.data()[static_cast<std::int64_t>(o) * (input_size + H) + i];
    for (int i = 0; i < H; ++i)
      wh.data()[static_cast<std::int64_t>(o) * H + i] =
          w_first.data()[static_cast<std::int64_t>(o) * (input_size + H) + input_size + i];
  }
  if (wiring_density < 1.0f) {
    if (L != 0)
      throw std::invalid_argument("Cfc: NCP wiring needs backbone_layers 0, got " +
                                  std::to_string(L));
    const NcpWiring w =
        make_ncp_wiring(input_size, H, motor > 0 ? motor : 1, wiring_density, wiring_seed);
    rec_mask = Tensor(Shape{P, H}, 0.0f);
    in_mask = Tensor(Shape{P, input_size}, 0.0f);
    for (int o = 0; o < P; ++o) {
      const int j = o % H;
      for (int i = 0; i < H; ++i)
        rec_mask.data()[static_cast<std::int64_t>(o) * H + i] =
            w.adjacency.data()[static_cast<std::int64_t>(i) * H + j];
      for (int i = 0; i < input_size; ++i)
        in_mask.data()[static_cast<std::int64_t>(o) * input_size + i] =
            w.sensory.data()[static_cast<std::int64_t>(i) * H + j];
    }
  }
  w_in = parameter(wx);
  b_in = parameter(Tensor(Shape{P}, 0.0f));
  params.push_back(parameter(wh));
  for (int l = 2; l <= L; ++l) {
    params.push_back(parameter(glorot(U, U, rng)));
    params.push_back(parameter(Tensor(Shape{U}, 0.0f)));
  }
  if (L > 0) {
    params.push_back(parameter(glorot(NH, U, rng)));
    params.push_back(parameter(Tensor(Shape{NH}, 0.0f)));
  }
  if (cfg.mode == CfcMode::Pure) {
    params.push_back(parameter(Tensor(Shape{H}, 0.0f)));
    params.push_back(parameter(filled(Shape{H}, 1.0f)));
  }
}

Var Cfc::forward(const Var& x) { return forward(x, Var(), Var()).outputs; }

Recurrence Cfc::forward(const Var& x, const Var& dt, const Var& h0) {
  return cfc(x, dt, h0, w_in, b_in, params, cfg, rec_mask, in_mask, options);
}

void Cfc::append_named_parameters(const std::string& prefix, std::vector<NamedParameter>& out) {
  // Names follow the cell's parameter layout (see the constructor): the recurrent weight, then
  // per extra backbone layer a weight and bias, the heads' weight and bias, and the pure
  // solution's w_tau and A.
  out.push_back({prefix + "w_in", w_in});
  out.push_back({prefix + "b_in", b_in});
  std::size_t i = 0;
  out.push_back({prefix + "w_rec", params.at(i++)});
  const int L = cfg.backbone_layers;
  for (int l = 2; l <= L; ++l) {
    out.push_back({prefix + "backbone." + std::to_string(l - 1) + ".weight", params.at(i++)});
    out.push_back({prefix + "backbone." + std::to_string(l - 1) + ".bias", params.at(i++)});
  }
  if (L > 0) {
    out.push_back({prefix + "heads.weight", params.at(i++)});
    out.push_back({prefix + "heads.bias", params.at(i++)});
  }
  if (cfg.mode == CfcMode::Pure) {
    out.push_back({prefix + "w_tau", params.at(i++)});
    out.push_back({prefix + "a", params.at(i++)});
  }
}

Ltc::Ltc(const LtcConfig& c, std::mt19937_64& rng, float wiring_density, int motor,
         std::uint64_t wiring_seed, RecurrenceOptions opts)
    : cfg(c), options(opts) {
  cfg.time_input = false;
  LtcCell probe(cfg);
  const int H = cfg.hidden, F = cfg.inputs;
  if (wiring_density < 1.0f) {
    const NcpWiring w = make_ncp_wiring(F, H, motor > 0 ? motor : 1, wiring_density, wiring_seed);
    mask = w.adjacency;
    sensory_mask = w.sensory;
  }
  // Initial ranges of the reference (ncps LTCCell._init_ranges); softplus-constrained
  // parameters are stored as their inverse-softplus.
  auto inv_sp = [](Tensor t) {
    for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = std::log(std::expm1(t.data()[i]));
    return t;
  };
  params.resize(kLtcParamCount);
  params[kLtcGleak] = parameter(inv_sp(uniform(Shape{H}, 0.001f, 1.0f, rng)));
  params[kLtcVleak] = parameter(uniform(Shape{H}, -0.2f, 0.2f, rng));
  params[kLtcCm] = parameter(inv_sp(uniform(Shape{H}, 0.4f, 0.6f, rng)));
  params[kLtcSigma] = parameter(uniform(Shape{H, H}, 3.0f, 8.0f, rng));
  params[kLtcMu] = parameter(uniform(Shape{H, H}, 0.3f, 0.8f, rng));
  params[kLtcW] = parameter(inv_sp(uniform(Shape{H, H}, 0.001f, 1.0f, rng)));
  Tensor erev(Shape{H, H}), serev(Shape{F, H});
  std::bernoulli_distribution coin(0.5);
  for (std::int64_t i = 0; i < erev.numel(); ++i) erev.data()[i] = coin(rng) ? 1.0f : -1.0f;
  for (std::int64_t i = 0; i < serev.numel(); ++i) serev.data()[i] = coin(rng) ? 1.0f : -1.0f;
  params[kLtcErev] = parameter(erev);
  params[kLtcSSigma] = parameter(uniform(Shape{F, H}, 3.0f, 8.0f, rng));
  params[kLtcSMu] = parameter(uniform(Shape{F, H}, 0.3f, 0.8f, rng));
  params[kLtcSW] = parameter(inv_sp(uniform(Shape{F, H}, 0.001f, 1.0f, rng)));
  params[kLtcSErev] = parameter(serev);
  params[kLtcInW] = parameter(filled(Shape{F}, 1.0f));
  params[kLtcInB] = parameter(Tensor(Shape{F}, 0.0f));
}

Var Ltc::forward(const Var& x) { return forward(x, Var(), Var()).outputs; }

Recurrence Ltc::forward(const Var& x, const Var& dt, const Var& h0) {
  return ltc(x, dt, h0, params, cfg, mask, sensory_mask, options);
}

void Ltc::append_named_parameters(const std::string& prefix, std::vector<NamedParameter>& out) {
  // In LtcParam order.
  static const char* const kNames[kLtcParamCount] = {
      "gleak",         "vleak",      "cm",        "sigma",        "mu",      "w",      "erev",
      "sensory_sigma", "sensory_mu", "sensory_w", "sensory_erev", "input_w", "input_b"};
  for (int i = 0; i < kLtcParamCount; ++i)
    out.push_back({prefix + kNames[i], params.at(static_cast<std::size_t>(i))});
}

}  // namespace hwnas::nn
