#include "search/learned_fit.hpp"

#include <Eigen/Dense>
#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <stdexcept>

#include "nn/autograd.hpp"
#include "nn/layers.hpp"
#include "nn/ops.hpp"
#include "nn/optim.hpp"

namespace hwnas::search {

namespace learned = hw::learned;

namespace {

// Below this a node time is under the timer's resolution; it is clamped so log stays finite.
constexpr double kMinNodeMs = 1e-4;

struct NodeRow {
  std::vector<double> x;
  double log_ms = 0;
};

double mean_abs_log_error(const learned::KernelModel& m, const std::vector<NodeRow>& rows) {
  double s = 0;
  for (const auto& r : rows) s += std::abs(m.predict_log_ms(r.x) - r.log_ms);
  return rows.empty() ? 0 : s / static_cast<double>(rows.size());
}

void split_rows(const std::vector<NodeRow>& rows, std::vector<std::vector<double>>& x,
                std::vector<double>& y) {
  x.clear();
  y.clear();
  for (const auto& r : rows) {
    x.push_back(r.x);
    y.push_back(r.log_ms);
  }
}

// A kernel type's regressor, and the chosen candidate as fitted without the selection rows:
// that one scores a type's selection rows when deciding between the type's own regressor and
// its fallback (a fallback refitted on every row has seen them).
struct Fitted {
  learned::KernelModel model, on_fit_rows;
  bool scored = false;  // on_fit_rows was fitted (enough fit rows, some selection rows)
};

Fitted fit_one(const std::vector<NodeRow>& fit_rows, const std::vector<NodeRow>& select_rows,
               const std::vector<NodeRow>& all_rows, const LearnedFitOptions& opt) {
  Fitted out;
  learned::KernelModel& km = out.model;
  km.train_nodes = static_cast<int>(all_rows.size());
  std::vector<std::vector<double>> x;
  std::vector<double> y;
  if (!select_rows.empty() && fit_rows.size() >= 8) {
    split_rows(fit_rows, x, y);
    learned::KernelModel g, m;
    g.chosen = "gbdt";
    g.gbdt = learned::fit_gbdt(x, y, opt.gbdt);
    m.chosen = "mlp";
    m.mlp = train_mlp(x, y, opt);
    km.heldout_gbdt = mean_abs_log_error(g, select_rows);
    km.heldout_mlp = mean_abs_log_error(m, select_rows);
    km.chosen = km.heldout_mlp < km.heldout_gbdt ? "mlp" : "gbdt";
    out.on_fit_rows = km.chosen == "mlp" ? std::move(m) : std::move(g);
    out.scored = true;
  }
  split_rows(all_rows, x, y);
  if (km.chosen == "mlp")
    km.mlp = train_mlp(x, y, opt);
  else
    km.gbdt = learned::fit_gbdt(x, y, opt.gbdt);
  return out;
}

}  // namespace

std::vector<std::size_t> seeded_permutation(std::size_t n, std::uint64_t seed) {
  std::vector<std::size_t> p(n);
  std::iota(p.begin(), p.end(), 0);
  std::mt19937_64 rng(seed);
  for (std::size_t i = n; i > 1; --i) {
    std::uniform_int_distribution<std::size_t> d(0, i - 1);
    std::swap(p[i - 1], p[d(rng)]);
  }
  return p;
}

learned::Mlp train_mlp(const std::vector<std::vector<double>>& x, const std::vector<double>& y,
                       const LearnedFitOptions& opt) {
  if (x.empty() || x.size() != y.size())
    throw std::invalid_argument("train_mlp: need as many feature rows as targets");
  const std::size_t n = x.size(), d = x[0].size();
  learned::Mlp m;
  m.mean.assign(d, 0);
  m.scale.assign(d, 0);
  for (const auto& r : x)
    for (std::size_t j = 0; j < d; ++j) m.mean[j] += r[j] / static_cast<double>(n);
  for (const auto& r : x)
    for (std::size_t j = 0; j < d; ++j)
      m.scale[j] += (r[j] - m.mean[j]) * (r[j] - m.mean[j]) / static_cast<double>(n);
  for (auto& s : m.scale) s = s > 1e-12 ? std::sqrt(s) : 1.0;  // constant features pass as 0
  m.y_mean = std::accumulate(y.begin(), y.end(), 0.0) / static_cast<double>(n);
  double vy = 0;
  for (double v : y) vy += (v - m.y_mean) * (v - m.y_mean) / static_cast<double>(n);
  m.y_scale = vy > 1e-12 ? std::sqrt(vy) : 1.0;

  std::mt19937_64 rng(opt.seed ^ 0x6d6c70u);
  const int h = opt.mlp_hidden;
  nn::Linear l1(static_cast<int>(d), h, true, rng), l2(h, h, true, rng), l3(h, 1, true, rng);
  std::vector<nn::Var> params = {l1.weight, l1.bias, l2.weight, l2.bias, l3.weight, l3.bias};
  nn::AdamOptions ao;
  ao.lr = opt.mlp_lr;
  nn::Adam adam(params, ao);
  const int bs =
      static_cast<int>(std::min<std::size_t>(n, static_cast<std::size_t>(opt.mlp_batch)));
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::size_t pos = n;  // reshuffle on the first step
  nn::Tensor xb(nn::Shape{bs, static_cast<int>(d)}), yb(nn::Shape{bs, 1});
  for (int step = 0; step < opt.mlp_steps; ++step) {
    for (int i = 0; i < bs; ++i) {
      if (pos >= n) {
        std::shuffle(order.begin(), order.end(), rng);
        pos = 0;
      }
      const std::size_t r = order[pos++];
      for (std::size_t j = 0; j < d; ++j)
        xb.data()[static_cast<std::size_t>(i) * d + j] =
            static_cast<float>((x[r][j] - m.mean[j]) / m.scale[j]);
      yb.data()[i] = static_cast<float>((y[r] - m.y_mean) / m.y_scale);
    }
    // Cosine decay: large steps early, a settled fit at the end.
    adam.set_lr(static_cast<float>(opt.mlp_lr * 0.5 *
                                   (1 + std::cos(M_PI * step / std::max(1, opt.mlp_steps)))));
    nn::Var in = nn::constant(xb.clone());
    nn::Var out = l3.forward(nn::relu(l2.forward(nn::relu(l1.forward(in)))));
    nn::Var loss = nn::mse(out, nn::constant(yb.clone()));
    adam.zero_grad();
    nn::backward(loss);
    adam.step();
  }
  auto layer = [](nn::Linear& l) {
    learned::Mlp::Layer L;
    const nn::Tensor& w = l.weight.value();
    L.out = w.dim(0);
    L.in = w.dim(1);
    L.w.assign(w.data(), w.data() + w.numel());
    const nn::Tensor& b = l.bias.value();
    L.b.assign(b.data(), b.data() + b.numel());
    return L;
  };
  m.layers = {layer(l1), layer(l2), layer(l3)};
  return m;
}

learned::LearnedModel fit_learned_model(const std::vector<MeasuredNetwork>& train,
                                        const LearnedFitOptions& opt) {
  if (train.size() < 4)
    throw std::invalid_argument("learned fit: need at least 4 measured architectures, got " +
                                std::to_string(train.size()));
  const bool eager = opt.fusion == "eager";
  // Architectures held back to choose between GBDT and MLP.
  std::vector<char> select(train.size(), 0);
  {
    const auto perm = seeded_permutation(train.size(), opt.seed ^ 0x5e1ec7u);
    const auto k = static_cast<std::size_t>(std::floor(opt.selection_share * train.size()));
    for (std::size_t i = 0; i < k; ++i) select[perm[i]] = 1;
  }
  struct Group {
    std::vector<NodeRow> fit, sel, all;
  };
  std::map<std::string, Group> kinds, cats;
  std::map<std::string, std::string> category_of;  // kernel type -> its op category
  Group global;
  for (std::size_t a = 0; a < train.size(); ++a) {
    const auto& net = train[a];
    if (net.node_ms.size() != net.workload.nodes.size())
      throw std::invalid_argument("learned fit: architecture '" + net.architecture + "' has " +
                                  std::to_string(net.node_ms.size()) + " node times for " +
                                  std::to_string(net.workload.nodes.size()) + " workload nodes");
    for (std::size_t i = 0; i < net.node_ms.size(); ++i) {
      const auto& n = net.workload.nodes[i];
      NodeRow r{learned::node_features(n, opt.batch, eager),
                std::log(std::max(kMinNodeMs, net.node_ms[i])) -
                    (opt.per_work ? learned::log_work(n, opt.batch) : 0.0)};
      const std::string category = hw::op_category_name(n.category);
      category_of.emplace(n.kernel_type_or_kind(), category);
      for (Group* g : {&kinds[n.kernel_type_or_kind()], &cats[category], &global}) {
        (select[a] ? g->sel : g->fit).push_back(r);
        g->all.push_back(r);
      }
    }
  }
  if (global.all.empty())
    throw std::invalid_argument("learned fit: the architectures have no nodes");
  learned::LearnedModel m;
  m.batch = opt.batch;
  m.fusion = opt.fusion;
  m.per_work = opt.per_work;
  const auto enough = static_cast<std::size_t>(opt.min_nodes);
  // Fallbacks first: the global regressor, then one per op category with enough nodes.  A
  // kernel type keeps its own regressor only when that beats its fallback on the type's
  // selection rows (a type with a dozen nodes can do worse than a category with a thousand);
  // a category only when a type falls back to it.
  const Fitted global_fit = fit_one(global.fit, global.sel, global.all, opt);
  m.global = global_fit.model;
  std::map<std::string, Fitted> cat_fits;
  for (const auto& [c, g] : cats)
    if (g.all.size() >= enough) cat_fits.emplace(c, fit_one(g.fit, g.sel, g.all, opt));
  std::set<std::string> category_used;
  for (const auto& [k, g] : kinds) {
    const auto cit = cat_fits.find(category_of.at(k));
    const Fitted& fallback = cit != cat_fits.end() ? cit->second : global_fit;
    bool own = g.all.size() >= enough;
    if (own) {
      Fitted f = fit_one(g.fit, g.sel, g.all, opt);
      if (f.scored && fallback.scored)
        own = mean_abs_log_error(f.on_fit_rows, g.sel) <=
              mean_abs_log_error(fallback.on_fit_rows, g.sel);
      if (own) m.by_kind[k] = std::move(f.model);
    }
    if (!own && cit != cat_fits.end()) category_used.insert(cit->first);
  }
  for (auto& [c, f] : cat_fits)
    if (category_used.count(c)) m.by_category[c] = std::move(f.model);

  // Per-network linear term, least squares in relative error:
  //   min sum ((a s + b + c nodes - y) / y)^2  with a > 0, b and c >= 0 (else fewer terms).
  std::vector<std::array<double, 3>> feats;
  std::vector<double> ys;
  for (const auto& net : train) {
    double s = 0;
    for (const auto& n : net.workload.nodes)
      if (eager || n.kernels > 0) s += m.node_ms(n, opt.batch, eager);
    feats.push_back({s, 1.0, static_cast<double>(net.workload.nodes.size())});
    ys.push_back(net.network_ms);
  }
  auto solve = [&](int terms) {
    Eigen::MatrixXd ata = Eigen::MatrixXd::Zero(terms, terms);
    Eigen::VectorXd aty = Eigen::VectorXd::Zero(terms);
    for (std::size_t i = 0; i < ys.size(); ++i) {
      const double w = 1.0 / (ys[i] * ys[i]);
      for (int r = 0; r < terms; ++r) {
        aty(r) += w * feats[i][static_cast<std::size_t>(r)] * ys[i];
        for (int c = 0; c < terms; ++c)
          ata(r, c) +=
              w * feats[i][static_cast<std::size_t>(r)] * feats[i][static_cast<std::size_t>(c)];
      }
    }
    Eigen::VectorXd x = ata.ldlt().solve(aty);
    std::array<double, 3> out{0, 0, 0};
    for (int r = 0; r < terms; ++r) out[static_cast<std::size_t>(r)] = x(r);
    return out;
  };
  std::array<double, 3> coef{1, 0, 0};
  for (int terms = 3; terms >= 1; --terms) {
    const auto c = solve(terms);
    const bool ok = c[0] > 0 && std::isfinite(c[0]) && std::isfinite(c[1]) && std::isfinite(c[2]) &&
                    c[1] >= 0 && c[2] >= 0;
    if (ok) {
      coef = c;
      break;
    }
  }
  m.net_scale = coef[0];
  m.net_offset_ms = coef[1];
  m.net_per_node_ms = coef[2];
  m.report = {{"train_architectures", train.size()},
              {"train_nodes", global.all.size()},
              {"seed", opt.seed},
              {"kinds", m.by_kind.size()},
              {"categories", m.by_category.size()}};
  return m;
}

LearnedFitReport fit_learned_with_holdout(const std::vector<MeasuredNetwork>& nets, double holdout,
                                          const LearnedFitOptions& opt) {
  LearnedFitReport rep;
  const auto perm = seeded_permutation(nets.size(), opt.seed);
  const auto k = static_cast<std::size_t>(std::floor(holdout * nets.size()));
  for (std::size_t i = 0; i < nets.size(); ++i)
    (i < k ? rep.heldout_rows : rep.train_rows).push_back(perm[i]);
  std::sort(rep.heldout_rows.begin(), rep.heldout_rows.end());
  std::sort(rep.train_rows.begin(), rep.train_rows.end());
  std::vector<MeasuredNetwork> train;
  for (auto i : rep.train_rows) train.push_back(nets[i]);
  rep.model = fit_learned_model(train, opt);
  const bool eager = opt.fusion == "eager";
  for (const auto& n : nets)
    rep.predicted_ms.push_back(rep.model.network_ms(n.workload, opt.batch, eager));
  auto quality = [&](const std::vector<std::size_t>& rows) {
    std::vector<double> p, y;
    for (auto i : rows) {
      p.push_back(rep.predicted_ms[i]);
      y.push_back(nets[i].network_ms);
    }
    return hw::fit_quality(p, y);
  };
  rep.train_quality = quality(rep.train_rows);
  if (!rep.heldout_rows.empty()) rep.heldout_quality = quality(rep.heldout_rows);
  rep.model.report["holdout"] = holdout;
  rep.model.report["heldout"] = rep.heldout_quality.to_json();
  rep.model.report["train"] = rep.train_quality.to_json();
  return rep;
}

}  // namespace hwnas::search
