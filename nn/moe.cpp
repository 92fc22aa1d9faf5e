#include "nn/moe.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "nn/activity.hpp"

namespace hwnas::nn {

int moe_capacity(int tokens, int k, int experts, double factor) {
  const double c = std::ceil(factor * static_cast<double>(tokens) * k / experts);
  return std::max(1, static_cast<int>(c));
}

Var moe_load_balancing_loss(const Var& probs, const IndexTensor& chosen) {
  const Shape& s = probs.shape();
  if (s.rank() != 2)
    throw std::invalid_argument("moe_load_balancing_loss: probs must be [N, E], got " + s.str());
  const int n = s[0], e = s[1];
  if (chosen.shape.rank() != 2 || chosen.shape[0] != n)
    throw std::invalid_argument("moe_load_balancing_loss: chosen must be [N, k] with N = " +
                                std::to_string(n) + ", got " + chosen.shape.str());
  Tensor f = Tensor::zeros(Shape{e});
  const float share = 1.0f / static_cast<float>(chosen.numel());
  for (int v : chosen.values) {
    if (v < 0 || v >= e)
      throw std::invalid_argument("moe_load_balancing_loss: expert index " + std::to_string(v) +
                                  " out of range [0, " + std::to_string(e) + ")");
    f.data()[v] += share;
  }
  // E * sum_i f_i P_i, with P_i the mean probability over the tokens.
  return scale(sum(mul(mean_dim(probs, 0), constant(f))), static_cast<float>(e));
}

namespace {
void check_options(int d, const MoeOptions& o) {
  auto bad = [](const std::string& what) { throw std::invalid_argument("MoeLayer: " + what); };
  if (d < 1) bad("model dimension must be >= 1, got " + std::to_string(d));
  if (o.experts < 1) bad("experts must be >= 1, got " + std::to_string(o.experts));
  if (o.k < 1 || o.k > o.experts)
    bad("k = " + std::to_string(o.k) + " must be between 1 and experts = " +
        std::to_string(o.experts) + "; choose fewer active experts or more experts");
  if (o.hidden < 1) bad("hidden must be >= 1, got " + std::to_string(o.hidden));
  if (!(o.capacity_factor > 0) || !std::isfinite(o.capacity_factor))
    bad("capacity_factor must be > 0, got " + std::to_string(o.capacity_factor));
  if (!(o.aux_weight >= 0) || !std::isfinite(o.aux_weight))
    bad("aux_weight must be >= 0, got " + std::to_string(o.aux_weight));
}
}  // namespace

MoeLayer::MoeLayer(int d, const MoeOptions& options, std::mt19937_64& rng)
    : router((check_options(d, options), d), options.experts, true, rng), opt_(options), d_(d) {
  // A small router keeps the initial routing close to uniform, so every expert receives tokens
  // (and gradient) early on; Switch reduces its initialisation scale for the same reason.
  Tensor& rw = router.weight.value();
  for (std::int64_t i = 0; i < rw.numel(); ++i) rw.data()[i] *= 0.1f;
  fc1.reserve(static_cast<std::size_t>(opt_.experts));
  fc2.reserve(static_cast<std::size_t>(opt_.experts));
  for (int e = 0; e < opt_.experts; ++e) {
    fc1.emplace_back(d, opt_.hidden, true, rng);
    fc2.emplace_back(opt_.hidden, d, true, rng);
  }
}

Var MoeLayer::forward(const Var& x, ForwardContext& ctx) {
  const Shape& s = x.shape();
  if (s.rank() < 1 || s.back(-1) != d_)
    throw std::invalid_argument("MoeLayer: input must be [.., " + std::to_string(d_) + "], got " +
                                s.str());
  const int n = static_cast<int>(x.value().numel() / d_);
  const int E = opt_.experts, k = opt_.k;
  const Var x2 = reshape(x, Shape{n, d_});
  const Var probs = softmax(linear(x2, w(router.weight), router.bias));  // [N, E]
  const TopK top = topk(probs, k);

  // Dispatch plan: all first choices, then all second choices, each in token order.
  MoeRouting r;
  r.tokens = n;
  r.capacity = moe_capacity(n, k, E, opt_.capacity_factor);
  r.chosen_per_expert.assign(static_cast<std::size_t>(E), 0);
  r.processed_per_expert.assign(static_cast<std::size_t>(E), 0);
  std::vector<std::vector<int>> rows(static_cast<std::size_t>(E)), gate_at(rows.size());
  std::vector<int> over_rows, over_gate_at;
  for (int slot = 0; slot < k; ++slot)
    for (int t = 0; t < n; ++t) {
      const int pos = t * k + slot;
      const auto e = static_cast<std::size_t>(top.indices.values[static_cast<std::size_t>(pos)]);
      ++r.chosen_per_expert[e];
      if (r.processed_per_expert[e] < r.capacity) {
        ++r.processed_per_expert[e];
        rows[e].push_back(t);
        gate_at[e].push_back(pos);
      } else {
        ++r.overflowed;
        over_rows.push_back(t);
        over_gate_at.push_back(pos);
      }
    }

  const Var gates = reshape(top.values, Shape{n * k});
  auto gate_column = [&](const std::vector<int>& at) {
    return reshape(index_select(gates, 0, at), Shape{static_cast<int>(at.size()), 1});
  };
  std::vector<Var> parts;
  std::vector<int> dest;  // token row of every row of the concatenated parts
  for (int e = 0; e < E; ++e) {
    const std::vector<int>& rs = rows[static_cast<std::size_t>(e)];
    if (rs.empty()) continue;
    const Var xe = index_select(x2, 0, rs);
    const Var h = apply_activation(linear(xe, w(fc1[e].weight), fc1[e].bias), opt_.activation);
    const Var ye = linear(h, w(fc2[e].weight), fc2[e].bias);
    parts.push_back(mul(ye, gate_column(gate_at[static_cast<std::size_t>(e)])));
    dest.insert(dest.end(), rs.begin(), rs.end());
  }
  if (opt_.overflow == MoeOverflow::Pass && !over_rows.empty()) {
    parts.push_back(mul(index_select(x2, 0, over_rows), gate_column(over_gate_at)));
    dest.insert(dest.end(), over_rows.begin(), over_rows.end());
  }
  Var y = constant(Tensor::zeros(Shape{n, d_}));
  if (!parts.empty()) {
    const Var src = parts.size() == 1 ? parts[0] : concat(parts, 0);
    std::vector<int> idx;
    idx.reserve(dest.size() * static_cast<std::size_t>(d_));
    for (int t : dest) idx.insert(idx.end(), static_cast<std::size_t>(d_), t);
    y = scatter_add(y, 0, IndexTensor(Shape{static_cast<int>(dest.size()), d_}, std::move(idx)),
                    src);
  }

  if (ctx.training && ctx.aux_losses && opt_.aux_weight > 0)
    ctx.aux_losses->push_back(
        scale(moe_load_balancing_loss(probs, top.indices), static_cast<float>(opt_.aux_weight)));
  if (ctx.activity) {
    // Totals over the batch; the model divides by its samples.  A sample is the leading index
    // (a sequence of L tokens, or one vector).
    const int samples = s.rank() >= 2 ? s[0] : 1;
    const double per_sample_tokens = static_cast<double>(n) / samples;
    int processed = 0;
    for (int e = 0; e < E; ++e) {
      const int c = r.processed_per_expert[static_cast<std::size_t>(e)];
      processed += c;
      ctx.activity->add_at(activity_key::kTokensPerExpert, static_cast<std::size_t>(e), c);
    }
    ctx.activity->add(activity_key::kActiveExperts, processed / per_sample_tokens);
    ctx.activity->add(activity_key::kDroppedTokens, r.overflowed);
  }
  routing_ = std::move(r);
  return reshape(y, s);
}

void MoeLayer::append_named_parameters(const std::string& prefix,
                                       std::vector<NamedParameter>& out) {
  router.append_named_parameters(prefix + "router.", out);
  for (int e = 0; e < opt_.experts; ++e) {
    const std::string p = prefix + "experts." + std::to_string(e) + ".";
    fc1[static_cast<std::size_t>(e)].append_named_parameters(p + "fc1.", out);
    fc2[static_cast<std::size_t>(e)].append_named_parameters(p + "fc2.", out);
  }
}

}  // namespace hwnas::nn
