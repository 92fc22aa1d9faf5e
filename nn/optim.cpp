#include "nn/optim.hpp"

#include <oneapi/tbb/task_arena.h>

#include "nn/kernels.hpp"

// GCC 12 false positive inside AVX-512 intrinsics inlined from Eigen (GCC bug 105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <cmath>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif
#include <numbers>
#include <numeric>
#include <set>
#include <stdexcept>
#include <string>
#include <unordered_map>

namespace hwnas::nn {
namespace {
// Flush-to-zero / denormals-are-zero for the current thread while in scope.  Moments of
// parameters whose gradient stays zero (dead ReLU units) decay geometrically into the denormal
// range, where every arithmetic op costs ~100 cycles; flushing them to zero changes nothing
// measurable and keeps the step fast.  Deterministic: the same inputs flush the same way.
class FlushDenormals {
 public:
#if defined(__SSE__)
  FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040u); }  // FTZ | DAZ
  ~FlushDenormals() { _mm_setcsr(saved_); }

 private:
  unsigned saved_;
#endif
};

// A parameter the current step updates: it has a gradient and is not frozen.
bool trainable_now(const Var& p) { return p.requires_grad() && !p.grad().empty(); }

template <class Options>
std::vector<ParamGroup> to_groups(const std::vector<OptimizerGroup<Options>>& in) {
  std::vector<ParamGroup> out;
  for (const auto& g : in) out.push_back(ParamGroup{g.name, g.params, g.options.lr, g.options.lr});
  return out;
}

std::string lr_text(float lr) { return std::to_string(lr); }

// Optimizer chunks start on multiples of this many floats: Tensor storage is 64-byte aligned, so
// every chunk's entries then take the same path through Eigen's loops (packets, then the
// tensor's last few entries alone) however the tensor is chunked, and Eigen's packet and scalar
// versions of some functions (sqrt under EIGEN_FAST_MATH) round differently.
constexpr std::int64_t kPacketFloats = 16;

// Chunks of [0, n) in whole granules (a multiple of kPacketFloats), as many as the work is
// worth (16 operations per entry).
struct Chunking {
  std::int64_t n, granule, granules, chunks;
  Chunking(std::int64_t n_, std::int64_t granule_)
      : n(n_),
        granule(std::lcm(std::max<std::int64_t>(1, granule_), kPacketFloats)),
        granules((n + granule - 1) / granule),
        chunks(std::max<std::int64_t>(1, detail::chunk_count(granules, 16 * granule))) {}
  std::int64_t begin(std::int64_t c) const { return std::min(n, granules * c / chunks * granule); }
};

// Runs update(begin, end) over p's entries in deterministic chunks (in parallel when worth it),
// each chunk followed on the same thread by p's update hook, if it has one (nn/autograd.hpp).
// The update is elementwise and the chunks packet-aligned, so neither the chunking nor the hook
// changes its result.  A hook whose granule (rows) would leave fewer chunks than the threads
// plain chunks would keep busy sits the update out (its result then goes stale by
// Node::version).
template <class F>
void update_in_chunks(Var& p, F&& update) {
  const std::int64_t n = p.value().numel();  // (a non-const access: counted as a write)
  Node& node = *p.node();
  std::shared_ptr<UpdateHook> hook = node.update_hook;
  const Chunking plain(n, 1);
  Chunking chunking = plain;
  if (hook) {
    const std::int64_t granule = hook->granule(node);
    if (granule > 0) chunking = Chunking(n, granule);
    const std::int64_t busy =
        std::min<std::int64_t>(plain.chunks, oneapi::tbb::this_task_arena::max_concurrency());
    if (granule <= 0 || chunking.chunks < busy) {
      hook.reset();
      chunking = plain;
    }
  }
  if (hook) hook->before(node, chunking.chunks);
  auto run = [&](std::int64_t c) {
    const std::int64_t b = chunking.begin(c), e = chunking.begin(c + 1);
    if (b == e) return;
    update(b, e);
    if (hook) hook->chunk(node, c, b, e);
  };
  if (chunking.chunks == 1)
    run(0);
  else
    oneapi::tbb::parallel_for(
        oneapi::tbb::blocked_range<std::int64_t>(0, chunking.chunks, 1),
        [&](const oneapi::tbb::blocked_range<std::int64_t>& r) {
          for (std::int64_t c = r.begin(); c < r.end(); ++c) run(c);
        },
        oneapi::tbb::simple_partitioner());
  if (hook) hook->after(node);
}
}  // namespace

Optimizer::Optimizer(std::vector<Var> params, float lr)
    : Optimizer(std::vector<ParamGroup>{ParamGroup{"default", std::move(params), lr, lr}}) {}

Optimizer::Optimizer(std::vector<ParamGroup> groups) : groups_(std::move(groups)) {
  validate_groups();
}

void Optimizer::validate_groups() {
  if (groups_.empty()) throw std::invalid_argument("optimizer: needs at least one parameter group");
  std::set<std::string> names;
  std::unordered_map<const Node*, std::string> owner;
  for (const ParamGroup& g : groups_) {
    if (g.name.empty())
      throw std::invalid_argument("optimizer: parameter group names must be non-empty");
    if (!names.insert(g.name).second)
      throw std::invalid_argument("optimizer: parameter group '" + g.name + "' is listed twice");
    if (!(g.lr >= 0.0f))
      throw std::invalid_argument("optimizer: lr must be >= 0, got " + lr_text(g.lr) + " (group '" +
                                  g.name + "')");
    for (std::size_t i = 0; i < g.params.size(); ++i) {
      const Var& p = g.params[i];
      if (!p.defined())
        throw std::invalid_argument("optimizer: parameter " + std::to_string(i) +
                                    " is undefined (group '" + g.name + "')");
      auto [it, fresh] = owner.emplace(p.node(), g.name);
      // Listed twice, it would be updated twice per step.
      if (!fresh)
        throw std::invalid_argument("optimizer: parameter " + std::to_string(i) + " of group '" +
                                    g.name + "' is already listed in group '" + it->second + "'");
      params_.push_back(p);
    }
  }
  steps_.assign(groups_.size(), 0);
}

void Optimizer::zero_grad() { nn::zero_grad(params_); }

void Optimizer::set_lr(float lr) {
  if (!(lr >= 0.0f)) throw std::invalid_argument("optimizer: lr must be >= 0, got " + lr_text(lr));
  for (ParamGroup& g : groups_) g.lr = lr;
}

void Optimizer::set_lr(const std::string& group, float lr) {
  if (!(lr >= 0.0f))
    throw std::invalid_argument("optimizer: lr must be >= 0, got " + lr_text(lr) + " (group '" +
                                group + "')");
  groups_[group_index(group)].lr = lr;
}

void Optimizer::set_lr_factor(float factor) {
  if (!(factor >= 0.0f))
    throw std::invalid_argument("optimizer: lr factor must be >= 0, got " + lr_text(factor));
  for (ParamGroup& g : groups_) g.lr = g.initial_lr * factor;
}

std::size_t Optimizer::group_index(const std::string& name) const {
  for (std::size_t g = 0; g < groups_.size(); ++g)
    if (groups_[g].name == name) return g;
  std::string known;
  for (const ParamGroup& g : groups_) known += (known.empty() ? "'" : ", '") + g.name + "'";
  throw std::invalid_argument("optimizer: no parameter group named '" + name +
                              "' (groups: " + known + ")");
}

const ParamGroup& Optimizer::group(const std::string& name) const {
  return groups_[group_index(name)];
}

OptimizerState Optimizer::state() const {
  OptimizerState s;
  s.kind = kind();
  const std::vector<std::string> slots = slot_names();
  auto* self = const_cast<Optimizer*>(this);  // slot() is non-const only to hand out references
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    const std::string& gn = groups_[g].name;
    s.counters[gn + ".params"] = static_cast<std::int64_t>(groups_[g].params.size());
    s.counters[gn + ".step"] = steps_[g];
    s.tensors[gn + ".lr"] = Tensor::scalar(groups_[g].lr);
    for (std::size_t i = 0; i < groups_[g].params.size(); ++i)
      for (std::size_t k = 0; k < slots.size(); ++k) {
        const Tensor& t = self->slot(g, i, k);
        if (!t.empty()) s.tensors[gn + "." + std::to_string(i) + "." + slots[k]] = t.clone();
      }
  }
  return s;
}

void Optimizer::load_state(const OptimizerState& s) {
  const std::string who = "optimizer load_state: ";
  if (s.kind != kind())
    throw std::invalid_argument(who + "state is from a '" + s.kind + "' optimizer, this is '" +
                                kind() + "'");
  const std::vector<std::string> slots = slot_names();
  // Validate everything before changing anything.
  std::set<std::string> expected_tensors, expected_counters;
  for (const ParamGroup& g : groups_) {
    auto size_it = s.counters.find(g.name + ".params");
    if (size_it == s.counters.end())
      throw std::invalid_argument(who + "parameter group '" + g.name +
                                  "' is missing from the state");
    if (size_it->second != static_cast<std::int64_t>(g.params.size()))
      throw std::invalid_argument(who + "group '" + g.name + "' has " +
                                  std::to_string(size_it->second) + " parameters in the state, " +
                                  std::to_string(g.params.size()) + " here");
    if (!s.counters.count(g.name + ".step"))
      throw std::invalid_argument(who + "counter '" + g.name + ".step' is missing from the state");
    if (!s.tensors.count(g.name + ".lr"))
      throw std::invalid_argument(who + "tensor '" + g.name + ".lr' is missing from the state");
    expected_counters.insert({g.name + ".params", g.name + ".step"});
    expected_tensors.insert(g.name + ".lr");
    for (std::size_t i = 0; i < g.params.size(); ++i)
      for (const std::string& sl : slots) {
        const std::string n = g.name + "." + std::to_string(i) + "." + sl;
        expected_tensors.insert(n);
        auto it = s.tensors.find(n);
        if (it != s.tensors.end() && it->second.shape() != g.params[i].shape())
          throw std::invalid_argument(who + n + ": shape " + it->second.shape().str() +
                                      " in state, " + g.params[i].shape().str() + " in parameter");
      }
  }
  for (const auto& [n, t] : s.tensors)
    if (!expected_tensors.count(n))
      throw std::invalid_argument(who + "unexpected tensor '" + n + "' in state");
  for (const auto& [n, v] : s.counters)
    if (!expected_counters.count(n))
      throw std::invalid_argument(who + "unexpected counter '" + n + "' in state");

  for (std::size_t g = 0; g < groups_.size(); ++g) {
    const std::string& gn = groups_[g].name;
    steps_[g] = s.counters.at(gn + ".step");
    groups_[g].lr = s.tensors.at(gn + ".lr").item();
    for (std::size_t i = 0; i < groups_[g].params.size(); ++i)
      for (std::size_t k = 0; k < slots.size(); ++k) {
        auto it = s.tensors.find(gn + "." + std::to_string(i) + "." + slots[k]);
        // A slot absent from the state was never used (its parameter had no gradient yet).
        slot(g, i, k) = it == s.tensors.end() ? Tensor() : it->second.clone();
      }
  }
}

Sgd::Sgd(std::vector<Var> params, const SgdOptions& opt)
    : Sgd(std::vector<SgdGroup>{SgdGroup{"default", std::move(params), opt}}) {}

Sgd::Sgd(std::vector<SgdGroup> groups) : Optimizer(to_groups(groups)) {
  for (const SgdGroup& g : groups) {
    if (g.options.momentum < 0.0f)
      throw std::invalid_argument("Sgd: momentum must be >= 0 (group '" + g.name + "')");
    if (g.options.nesterov && g.options.momentum <= 0.0f)
      throw std::invalid_argument("Sgd: nesterov needs momentum > 0 (group '" + g.name + "')");
    options_.push_back(g.options);
  }
  velocity_.resize(groups_.size());
  for (std::size_t g = 0; g < groups_.size(); ++g) velocity_[g].resize(groups_[g].params.size());
}

void Sgd::step() {
  Eigen::ArrayXf decayed;  // gradient plus L2 term; the stored gradient is left untouched
  for (std::size_t gi = 0; gi < groups_.size(); ++gi) {
    ++steps_[gi];
    const SgdOptions& opt = options_[gi];
    const float lr = groups_[gi].lr;
    for (std::size_t i = 0; i < groups_[gi].params.size(); ++i) {
      Var& p = groups_[gi].params[i];
      if (!trainable_now(p)) continue;
      auto w = p.value().array();
      const float* gp = p.grad().data();
      if (opt.weight_decay != 0.0f) {
        decayed = p.grad().array() + opt.weight_decay * w;
        gp = decayed.data();
      }
      Eigen::Map<const Eigen::ArrayXf> g(gp, w.size());
      Tensor& v = velocity_[gi][i];
      const bool first = opt.momentum != 0.0f && v.empty();  // its first gradient
      if (first) v = Tensor(p.shape());
      auto va = v.array();
      update_in_chunks(p, [&](std::int64_t i0, std::int64_t i1) {
        const std::int64_t len = i1 - i0;
        auto wj = w.segment(i0, len);
        auto gj = g.segment(i0, len);
        if (opt.momentum == 0.0f) {
          wj -= lr * gj;
          return;
        }
        auto vj = va.segment(i0, len);
        if (first)
          vj = gj;  // first step: v = g (PyTorch's convention)
        else
          vj = opt.momentum * vj + gj;
        if (opt.nesterov)
          wj -= lr * (gj + opt.momentum * vj);
        else
          wj -= lr * vj;
      });
    }
  }
}

AdamBase::AdamBase(std::vector<ParamGroup> groups, std::vector<Hyper> hyper, bool decoupled,
                   const char* who)
    : Optimizer(std::move(groups)), hyper_(std::move(hyper)), decoupled_(decoupled) {
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    const Hyper& h = hyper_[g];
    const std::string where = " (group '" + groups_[g].name + "')";
    if (!(h.beta1 >= 0.0f && h.beta1 < 1.0f))
      throw std::invalid_argument(std::string(who) + ": beta1 must be in [0, 1)" + where);
    if (!(h.beta2 >= 0.0f && h.beta2 < 1.0f))
      throw std::invalid_argument(std::string(who) + ": beta2 must be in [0, 1)" + where);
    if (!(h.eps > 0.0f))
      throw std::invalid_argument(std::string(who) + ": eps must be > 0" + where);
  }
  m_.resize(groups_.size());
  v_.resize(groups_.size());
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    m_[g].resize(groups_[g].params.size());
    v_[g].resize(groups_[g].params.size());
  }
}

void AdamBase::step() {
  Eigen::ArrayXf coupled;  // Adam's gradient plus L2 term; the stored gradient is left untouched
  for (std::size_t gi = 0; gi < groups_.size(); ++gi) {
    const std::int64_t t = ++steps_[gi];
    const Hyper& h = hyper_[gi];
    const float lr = groups_[gi].lr;
    const double bc1 = 1.0 - std::pow(static_cast<double>(h.beta1), static_cast<double>(t));
    const double bc2 = 1.0 - std::pow(static_cast<double>(h.beta2), static_cast<double>(t));
    // Folding the corrections into the step size and eps: lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps).
    const auto step_size = static_cast<float>(lr / bc1);
    const auto inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(bc2));
    const float b1 = h.beta1, b2 = h.beta2;
    const float decay = decoupled_ ? 1.0f - lr * h.weight_decay : 1.0f;
    const float eps = h.eps;
    for (std::size_t i = 0; i < groups_[gi].params.size(); ++i) {
      Var& p = groups_[gi].params[i];
      if (!trainable_now(p)) continue;
      if (m_[gi][i].empty()) {
        m_[gi][i] = Tensor::zeros(p.shape());
        v_[gi][i] = Tensor::zeros(p.shape());
      }
      float* w = p.value().data();
      const float* g = p.grad().data();
      if (!decoupled_ && h.weight_decay != 0.0f) {
        coupled = p.grad().array() + h.weight_decay * p.value().array();
        g = coupled.data();
      }
      float* m = m_[gi][i].data();
      float* v = v_[gi][i].data();
      // Vectorised passes over cache-sized chunks, in parallel for big tensors; elements are
      // independent, so the result does not depend on the chunking.
      update_in_chunks(p, [&](std::int64_t i0, std::int64_t i1) {
        FlushDenormals ftz;  // (restored before the update hook runs)
        const std::int64_t len = i1 - i0;
        Eigen::Map<Eigen::ArrayXf> wj(w + i0, len), mj(m + i0, len), vj(v + i0, len);
        Eigen::Map<const Eigen::ArrayXf> gj(g + i0, len);
        mj = b1 * mj + (1.0f - b1) * gj;
        vj = b2 * vj + (1.0f - b2) * gj.square();
        wj = wj * decay - step_size * mj / (vj.sqrt() * inv_sqrt_bc2 + eps);
      });
    }
  }
}

AdamW::AdamW(std::vector<Var> params, const AdamWOptions& opt)
    : AdamW(std::vector<AdamWGroup>{AdamWGroup{"default", std::move(params), opt}}) {}

AdamW::AdamW(std::vector<AdamWGroup> groups)
    : AdamBase(
          to_groups(groups),
          [&] {
            std::vector<Hyper> h;
            for (const AdamWGroup& g : groups)
              h.push_back(
                  {g.options.beta1, g.options.beta2, g.options.eps, g.options.weight_decay});
            return h;
          }(),
          /*decoupled=*/true, "AdamW") {}

Adam::Adam(std::vector<Var> params, const AdamOptions& opt)
    : Adam(std::vector<AdamGroup>{AdamGroup{"default", std::move(params), opt}}) {}

Adam::Adam(std::vector<AdamGroup> groups)
    : AdamBase(
          to_groups(groups),
          [&] {
            std::vector<Hyper> h;
            for (const AdamGroup& g : groups)
              h.push_back(
                  {g.options.beta1, g.options.beta2, g.options.eps, g.options.weight_decay});
            return h;
          }(),
          /*decoupled=*/false, "Adam") {}

float clip_grad_norm(const std::vector<Var>& params, float max_norm) {
  double sq = 0;  // in double, in parameter order: deterministic
  for (const Var& p : params)
    if (p.defined() && !p.grad().empty()) sq += p.grad().array().cast<double>().square().sum();
  const double norm = std::sqrt(sq);
  if (norm > max_norm && norm > 0) {
    const auto s = static_cast<float>(max_norm / (norm + 1e-6));
    for (const Var& p : params)
      if (p.defined() && !p.grad().empty()) p.node()->grad.array() *= s;
  }
  return static_cast<float>(norm);
}

void zero_grad(const std::vector<Var>& params) {
  for (const Var& p : params)
    if (p.defined()) p.node()->grad = Tensor();
}

float CosineSchedule::lr_at(std::int64_t step) const {
  if (step < 0) step = 0;
  if (step < warmup_steps)
    return base_lr * static_cast<float>(step + 1) / static_cast<float>(warmup_steps);
  if (step >= total_steps) return min_lr;
  const double p =
      static_cast<double>(step - warmup_steps) / static_cast<double>(total_steps - warmup_steps);
  return static_cast<float>(min_lr +
                            (base_lr - min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * p)));
}

}  // namespace hwnas::nn
