// Predictor-guided evolution, BANANAS-style (White, Neiswanger & Savani, "BANANAS: Bayesian
// Optimization with Neural Architectures for Neural Architecture Search", AAAI 2021).
//
// An ensemble of small MLPs (ReLU, Adam on the MSE of standardised targets in mini-batches of
// `train_batch` rows, as the paper's batch of 32; each member from its own initialisation;
// trained together as one stacked network, see StackedMlps) is trained on the space's encoding
// of every evaluated architecture (encode_path for cell-like spaces with one target, as the
// paper finds best, else encode_onehot) and predicts every target; the spread of the members'
// predictions is the uncertainty.  After `initial` uniform samples, each round: retrain the
// ensemble, mutate the best `parents` evaluated architectures into `candidates` unseen ones
// (every tenth a uniform sample instead), and queue the `batch` with the highest acquisition;
// the next `batch` proposals come from that queue, so the ensemble is retrained once per
// `batch` results.  A round's cost does not grow with the history: `epochs` steps of
// `train_batch` rows, and candidates are scored as decision vectors where the space allows
// (strategies/drafts.hpp), so only the `batch` chosen ones are built as genomes.
//
// Targets and acquisition:
//  - one objective (or objective = "fitness"): the loop's scalar fitness; expected improvement
//    (EI) over the best feasible fitness seen, from the ensemble mean and standard deviation,
//    or independent Thompson sampling (ITS, the paper's default: one draw from N(mean, sd) per
//    candidate);
//  - several objectives (objective = "pareto"): every objective is a target (one output each,
//    oriented so higher is better); each round draws random weights from the simplex and
//    scalarises with ParEGO's augmented Tchebycheff function (Knowles 2006) on objectives
//    normalised between the best and the median evaluated value; every slot of a batch draws
//    its own weights, so one batch spreads along the front.  Each member's predictions are
//    scalarised separately, so the acquisition sees the members' spread of the scalarised
//    value.  Parents are taken from the non-dominated fronts first.
// Constraints steer the choice of parents (Deb's rule: feasible first, then by violation) and
// the incumbent (feasible results only); the predictor does not model them.
//
// State: the evaluated history (architecture strings, results), the queue and the set of
// architectures already proposed.  The ensemble is not saved: it is retrained from the
// history at the start of each round, with initialisation seeds drawn from the strategy's RNG,
// so a restored strategy continues identically.
#include <algorithm>
#include <cmath>
#include <deque>
#include <numeric>
#include <set>
#include <stdexcept>

#include "nn/layers.hpp"
#include "nn/optim.hpp"
#include "strategies/drafts.hpp"
#include "strategies/registry.hpp"

namespace hwnas::strategies {
namespace {

// The ensemble of MLPs (in -> hidden (ReLU) x depth -> outputs) with its members stacked, so
// that one pass trains them all: the first layer is one dense layer over every member's units
// ([rows, in] -> [rows, E*hidden]), the later ones batched GEMMs over the members
// ([E, rows, hidden] x [E, hidden, hidden]).  Member e starts from nn::Linear's initialisation
// drawn from its own seed and its loss is its own MSE (the total is their sum), and Adam works
// elementwise, so the members learn exactly as E separate networks would; only the arithmetic
// is grouped (one graph of ~10 ops per step instead of E graphs).  The spaces' encodings are
// 0/1 vectors with a few ones (path encoding: at most 4 of 84 for NB201), so for such inputs
// the first layer sums the weight rows of the set features (an embedding lookup) instead of
// multiplying by the mostly-zero input.
class StackedMlps {
 public:
  StackedMlps(int members, int in, int hidden, int depth, int out, std::mt19937_64& seeds)
      : members_(members), hidden_(hidden), out_(out) {
    const std::size_t h = static_cast<std::size_t>(hidden);
    // First layer as [in, E*hidden] (row i: every member's weights from input i), plus a
    // constant zero row that pads the sparse rows' feature lists.
    std::vector<float> first(static_cast<std::size_t>(in) * members * h);
    std::vector<std::vector<float>> later(static_cast<std::size_t>(depth));  // [E, fan_in, fan_out]
    for (int e = 0; e < members; ++e) {
      std::mt19937_64 init(seeds());
      // Member e's layers in order, as nn::Linear(fan_in, fan_out) draws them: weight [out, in].
      const nn::Tensor w0 = nn::he_normal(nn::Shape{hidden, in}, in, init);
      for (int o = 0; o < hidden; ++o)
        for (int i = 0; i < in; ++i)
          first[static_cast<std::size_t>(i) * members * h + static_cast<std::size_t>(e) * h +
                static_cast<std::size_t>(o)] = w0.data()[o * in + i];
      for (int l = 1; l <= depth; ++l) {
        const int fan_out = l < depth ? hidden : out;
        const nn::Tensor w = nn::he_normal(nn::Shape{fan_out, hidden}, hidden, init);
        auto& dst = later[static_cast<std::size_t>(l - 1)];
        const std::size_t base = dst.size();
        dst.resize(base + w.numel());
        for (int o = 0; o < fan_out; ++o)  // transposed to [fan_in, fan_out] for x * W
          for (int i = 0; i < hidden; ++i)
            dst[base + static_cast<std::size_t>(i * fan_out + o)] = w.data()[o * hidden + i];
      }
    }
    first_w_ = nn::parameter(nn::Tensor::from(nn::Shape{in, members * hidden}, first));
    first_b_ = nn::parameter(nn::Tensor::zeros(nn::Shape{members * hidden}));
    zero_row_ = nn::constant(nn::Tensor::zeros(nn::Shape{1, members * hidden}));
    for (int l = 1; l <= depth; ++l) {
      const int fan_out = l < depth ? hidden : out;
      w_.push_back(nn::parameter(nn::Tensor::from(nn::Shape{members, hidden, fan_out},
                                                  later[static_cast<std::size_t>(l - 1)])));
      b_.push_back(nn::parameter(nn::Tensor::zeros(nn::Shape{members, 1, fan_out})));
    }
  }

  // x [rows, in] (row-major) -> every member's outputs [E, rows, out].
  nn::Var forward(const std::vector<float>& x, int rows) const {
    const int in = first_w_.shape()[0];
    bool binary = true;
    int most = 0;  // most set features in a row
    for (int r = 0; r < rows && binary; ++r) {
      int set = 0;
      for (int i = 0; i < in && binary; ++i) {
        const float v = x[static_cast<std::size_t>(r) * in + i];
        binary = v == 0.0f || v == 1.0f;
        set += v == 1.0f;
      }
      most = std::max(most, set);
    }
    nn::Var first;
    if (binary && 4 * most <= in) {
      // Each row's set features, padded with the zero row (index `in`).
      std::vector<int> ids(static_cast<std::size_t>(rows) * std::max(most, 1), in);
      for (int r = 0; r < rows; ++r)
        for (int i = 0, k = 0; i < in; ++i)
          if (x[static_cast<std::size_t>(r) * in + i] == 1.0f)
            ids[static_cast<std::size_t>(r) * std::max(most, 1) + k++] = i;
      const int width = std::max(most, 1);
      const nn::Var rows_of = nn::embedding(nn::concat({first_w_, zero_row_}, 0), ids,
                                            nn::Shape{rows, width});  // [rows, width, E*h]
      first = nn::add(nn::scale(nn::mean_dim(rows_of, 1), static_cast<float>(width)), first_b_);
    } else {
      first = nn::add(nn::matmul(nn::constant(nn::Tensor::from(nn::Shape{rows, in}, x)), first_w_),
                      first_b_);
    }
    nn::Var h = nn::relu(first);
    h = nn::transpose(nn::reshape(h, nn::Shape{rows, members_, hidden_}), 0, 1);
    for (std::size_t l = 0; l < w_.size(); ++l) {
      h = nn::add(nn::matmul(h, w_[l]), b_[l]);
      if (l + 1 < w_.size()) h = nn::relu(h);
    }
    return h;
  }

  std::vector<nn::Var> parameters() const {
    std::vector<nn::Var> p{first_w_, first_b_};
    p.insert(p.end(), w_.begin(), w_.end());
    p.insert(p.end(), b_.begin(), b_.end());
    return p;
  }

  int members() const { return members_; }
  int outputs() const { return out_; }

 private:
  int members_, hidden_, out_;
  nn::Var first_w_, first_b_, zero_row_;
  std::vector<nn::Var> w_, b_;  // layers after the first: [E, fan_in, fan_out], [E, 1, fan_out]
};

double normal_cdf(double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); }
double normal_pdf(double z) { return std::exp(-0.5 * z * z) / std::sqrt(2.0 * M_PI); }

class Bananas final : public Strategy {
 public:
  Bananas(const spaces::Space& space, const StrategyContext& ctx, const nlohmann::json& p)
      : Strategy(space, ctx, p),
        initial_(p["initial"]),
        ensemble_(p["ensemble"]),
        hidden_(p["hidden"]),
        layers_(p["layers"]),
        epochs_(p["epochs"]),
        train_batch_(p["train_batch"]),
        lr_(p["lr"]),
        batch_(p["batch"]),
        candidates_(p["candidates"]),
        parents_(p["parents"]),
        its_(p["acquisition"] == "its"),
        pareto_(p["objective"] == "pareto" ||
                (p["objective"] == "auto" && ctx.objectives.size() > 1)),
        drafts_(space) {
    // The path encoding drops ops on dead paths, which cost latency all the same: the paper's
    // choice for accuracy, but not for hardware objectives.
    path_ = p["encoding"] == "path" || (p["encoding"] == "auto" && !pareto_ &&
                                        (space.type() == "nb201" || space.type() == "cell"));
    for (const auto& o : ctx.objectives) maximize_.push_back(o.maximize);
  }
  std::string name() const override { return "bananas"; }

 protected:
  Proposal propose() override {
    if (static_cast<int>(next_id()) >= initial_ && queue_.empty() && trainable_rows() >= 2) round();
    if (!queue_.empty()) {
      spaces::Genome g = std::move(queue_.front().genome);
      queue_.pop_front();
      return {0, std::move(g), {}};
    }
    // The initial design, or too few results yet (many proposals in flight): a new uniform
    // sample where one can be found.
    Draft d = drafts_.sample(rng_);
    std::string arch = drafts_.describe(d);
    for (int attempt = 0; attempt < 20 && seen_.count(arch); ++attempt) {
      d = drafts_.sample(rng_);
      arch = drafts_.describe(d);
    }
    seen_.insert(std::move(arch));
    return {0, drafts_.genome(d), {}};
  }

  void learn(const Proposal& p, const Result& r) override {
    history_.push_back({space_.describe(p.genome), drafts_.of(p.genome), encode(p.genome), r});
  }

  nlohmann::json save_body() const override {
    nlohmann::json hist = nlohmann::json::array(), queue = nlohmann::json::array();
    for (const auto& h : history_)
      hist.push_back({{"arch", h.arch}, {"result", h.result.to_json()}});
    for (const auto& q : queue_) queue.push_back(q.arch);
    return {{"history", hist}, {"queue", queue}, {"seen", seen_}};
  }

  void restore_body(const nlohmann::json& s) override {
    std::vector<Observed> history;
    for (const auto& h : s.at("history")) {
      const std::string arch = h.at("arch").get<std::string>();
      spaces::Genome g = space_.parse(arch);
      std::vector<float> x = encode(g);
      history.push_back(
          {arch, drafts_.of(std::move(g)), std::move(x), Result::from_json(h.at("result"))});
    }
    std::deque<Queued> queue;
    for (const auto& q : s.at("queue")) {
      const std::string arch = q.get<std::string>();
      queue.push_back({arch, space_.parse(arch)});
    }
    seen_ = s.at("seen").get<std::set<std::string>>();
    history_ = std::move(history);
    queue_ = std::move(queue);
  }

 private:
  struct Observed {
    std::string arch;
    Draft parent;  // the evaluated architecture, as a parent of mutations
    std::vector<float> x;
    Result result;
  };
  struct Queued {
    std::string arch;
    spaces::Genome genome;
  };

  std::vector<float> encode(const spaces::Genome& g) const {
    return path_ ? space_.encode_path(g) : space_.encode_onehot(g);
  }
  std::vector<float> encode(const Draft& d) const {
    return path_ ? drafts_.encode_path(d) : drafts_.encode_onehot(d);
  }

  // The training targets of a result (higher is better), empty when it has none.
  std::vector<double> targets(const Result& r) const {
    if (!r.ok) return {};
    std::vector<double> t;
    if (!pareto_) {
      t = {r.fitness};
    } else {
      for (std::size_t k = 0; k < r.objectives.size(); ++k)
        t.push_back(maximize_[k] ? r.objectives[k] : -r.objectives[k]);
    }
    for (double v : t)
      if (!std::isfinite(v)) return {};
    return t;
  }

  int trainable_rows() const {
    int n = 0;
    for (const auto& h : history_) n += !targets(h.result).empty();
    return n;
  }

  // The round's scalarisation of (standardised) targets: the value itself for one target,
  // ParEGO's augmented Tchebycheff (negated, so higher is better) for several.
  double scalarise(const std::vector<double>& u) const {
    if (u.size() == 1) return u[0];
    double worst = -std::numeric_limits<double>::infinity(), sum = 0;
    for (std::size_t k = 0; k < u.size(); ++k) {
      const double range = hi_[k] - lo_[k];
      const double f = range > 0 ? (hi_[k] - u[k]) / range : 0.0;  // 0 at the best seen
      worst = std::max(worst, weights_[k] * f);
      sum += weights_[k] * f;
    }
    return -(worst + 0.05 * sum);
  }

  void round() {
    // ---- training data, standardised per target ----
    std::vector<std::size_t> rows;
    std::vector<std::vector<double>> y;
    for (std::size_t i = 0; i < history_.size(); ++i) {
      auto t = targets(history_[i].result);
      if (t.empty()) continue;
      rows.push_back(i);
      y.push_back(std::move(t));
    }
    const std::size_t n = rows.size(), m = y.front().size();
    const int in = static_cast<int>(history_.front().x.size());
    std::vector<double> mean(m, 0.0), sd(m, 0.0);
    for (const auto& t : y)
      for (std::size_t k = 0; k < m; ++k) mean[k] += t[k] / static_cast<double>(n);
    for (const auto& t : y)
      for (std::size_t k = 0; k < m; ++k) sd[k] += (t[k] - mean[k]) * (t[k] - mean[k]);
    for (auto& s : sd) s = s > 0 ? std::sqrt(s / static_cast<double>(n)) : 1.0;
    std::vector<float> xs, ys;
    xs.reserve(n * static_cast<std::size_t>(in));
    for (std::size_t r = 0; r < n; ++r) {
      const auto& x = history_[rows[r]].x;
      xs.insert(xs.end(), x.begin(), x.end());
      for (std::size_t k = 0; k < m; ++k)
        ys.push_back(static_cast<float>((y[r][k] - mean[k]) / sd[k]));
    }

    // ---- the scalarisation of this round ----
    draw_weights(m);
    // Normalisation: 0 at the best value seen, 1 at the median.  The median rather than the
    // worst, so that a few broken architectures (accuracy at chance) do not squash the range
    // where the front lies and hand every scalarisation to the other objectives.
    lo_.assign(m, 0.0);
    hi_.assign(m, -std::numeric_limits<double>::infinity());
    for (std::size_t k = 0; k < m; ++k) {
      std::vector<double> col;
      for (const auto& t : y) col.push_back((t[k] - mean[k]) / sd[k]);
      std::nth_element(col.begin(), col.begin() + static_cast<std::ptrdiff_t>(col.size() / 2),
                       col.end());
      lo_[k] = col[col.size() / 2];
      hi_[k] = *std::max_element(col.begin(), col.end());
    }
    // Incumbent: the best scalarised value among feasible results.
    double incumbent = -std::numeric_limits<double>::infinity();
    std::vector<double> value(history_.size(), -std::numeric_limits<double>::infinity());
    for (std::size_t r = 0; r < n; ++r) {
      std::vector<double> u(m);
      for (std::size_t k = 0; k < m; ++k) u[k] = (y[r][k] - mean[k]) / sd[k];
      value[rows[r]] = scalarise(u);
      if (history_[rows[r]].result.violation <= 0) incumbent = std::max(incumbent, value[rows[r]]);
    }

    // ---- train the ensemble: `epochs` Adam steps, each on `train_batch` rows (all rows when
    // there are no more), visited in seeded shuffled passes ----
    std::mt19937_64 seeds(rng_());
    const StackedMlps nets(ensemble_, in, hidden_, layers_, static_cast<int>(m), seeds);
    {
      nn::AdamOptions opt;
      opt.lr = static_cast<float>(lr_);
      nn::Adam adam(nets.parameters(), opt);
      const std::size_t rows_per_step =
          train_batch_ > 0 ? std::min(n, static_cast<std::size_t>(train_batch_)) : n;
      std::vector<std::size_t> order(n);
      std::iota(order.begin(), order.end(), 0);
      std::size_t next = n;  // position in the current pass
      std::vector<float> bx, by;
      for (int step = 0; step < epochs_; ++step) {
        if (rows_per_step < n && next + rows_per_step > n) {
          std::shuffle(order.begin(), order.end(), seeds);
          next = 0;
        }
        bx.clear();
        by.clear();
        for (int e = 0; e < ensemble_; ++e)  // every member's targets: [E, rows, m]
          for (std::size_t i = 0; i < rows_per_step; ++i) {
            const std::size_t r = rows_per_step < n ? order[next + i] : i;
            if (e == 0)
              bx.insert(bx.end(), xs.begin() + static_cast<std::ptrdiff_t>(r * in),
                        xs.begin() + static_cast<std::ptrdiff_t>((r + 1) * in));
            by.insert(by.end(), ys.begin() + static_cast<std::ptrdiff_t>(r * m),
                      ys.begin() + static_cast<std::ptrdiff_t>((r + 1) * m));
          }
        if (rows_per_step < n) next += rows_per_step;
        const int rows = static_cast<int>(rows_per_step);
        const nn::Var Y =
            nn::constant(nn::Tensor::from(nn::Shape{ensemble_, rows, static_cast<int>(m)}, by));
        adam.zero_grad();
        // The sum of the members' own MSEs (mse averages over all E * rows * m entries).
        nn::backward(nn::scale(nn::mse(nets.forward(bx, rows), Y), static_cast<float>(ensemble_)));
        adam.step();
      }
    }

    // ---- parents: the best evaluated, feasible first (Deb's rule); with several targets the
    // non-dominated fronts first (so the whole front is mutated), then this round's scalar ----
    std::vector<std::size_t> rank(history_.size(), 0);
    if (m > 1) {
      std::vector<double> violation;
      for (std::size_t r = 0; r < n; ++r)
        violation.push_back(std::max(0.0, history_[rows[r]].result.violation));
      // Only the best fronts matter: the parents are the first `parents_` rows of the order below.
      const auto fronts = constrained_non_dominated_sort(y, violation, std::vector<bool>(m, true),
                                                         static_cast<std::size_t>(parents_));
      for (std::size_t r = 0; r < n; ++r) rank[rows[r]] = fronts.size();  // behind every front
      for (std::size_t f = 0; f < fronts.size(); ++f)
        for (std::size_t r : fronts[f]) rank[rows[r]] = f;
    }
    std::vector<std::size_t> order(history_.size());
    std::iota(order.begin(), order.end(), 0);
    auto better = [&](std::size_t a, std::size_t b) {
      const Result &ra = history_[a].result, &rb = history_[b].result;
      const bool fa = std::isfinite(value[a]) && ra.violation <= 0;
      const bool fb = std::isfinite(value[b]) && rb.violation <= 0;
      if (fa != fb) return fa;
      if (!fa) {
        const bool va = std::isfinite(value[a]), vb = std::isfinite(value[b]);
        if (va != vb) return va;
        if (ra.violation != rb.violation) return ra.violation < rb.violation;
      }
      if (rank[a] != rank[b]) return rank[a] < rank[b];
      if (value[a] != value[b]) return value[a] > value[b];
      return a < b;
    };
    std::sort(order.begin(), order.end(), better);
    order.resize(std::min(order.size(), static_cast<std::size_t>(parents_)));

    // ---- candidates: unseen mutations of the parents ----
    // Drafts: on spaces with decision operators no genome is built until one is chosen.
    struct Candidate {
      std::string arch;
      Draft draft;
    };
    std::vector<Candidate> cands;
    cands.reserve(static_cast<std::size_t>(candidates_));
    std::set<std::string> fresh;
    for (int i = 0, tries = 0; i < candidates_ && tries < 4 * candidates_; ++tries) {
      const Observed& parent = history_[order[static_cast<std::size_t>(tries) % order.size()]];
      // Every tenth candidate is a uniform sample, so the predictor can also pick far points.
      Draft child = tries % 10 == 9 ? drafts_.sample(rng_) : drafts_.mutate(parent.parent, rng_);
      std::string arch = drafts_.describe(child);
      if (seen_.count(arch) || !fresh.insert(arch).second) continue;
      cands.push_back({std::move(arch), std::move(child)});
      ++i;
    }
    if (cands.empty()) return;  // the neighbourhood is exhausted: fall back to sampling

    // ---- acquisition from the members' predictions ----
    std::vector<float> cx;
    for (const auto& c : cands) {
      auto x = encode(c.draft);
      cx.insert(cx.end(), x.begin(), x.end());
    }
    // pred[c][e]: member e's standardised targets for candidate c.
    std::vector<std::vector<std::vector<double>>> pred(cands.size());
    {
      nn::NoGradGuard no_grad;
      const nn::Tensor out =
          nets.forward(cx, static_cast<int>(cands.size())).value();  // [E, candidates, m]
      const float* d = out.data();
      for (int e = 0; e < ensemble_; ++e)
        for (std::size_t c = 0; c < cands.size(); ++c) {
          const float* row = d + (static_cast<std::size_t>(e) * cands.size() + c) * m;
          pred[c].emplace_back(row, row + m);
        }
    }
    // With several targets every batch slot draws its own scalarisation (the first is the
    // round's, which chose the parents), so one batch spreads along the front.
    std::vector<double> score(cands.size());
    std::vector<bool> taken(cands.size(), false);
    for (int slot = 0; slot < batch_; ++slot) {
      if (slot > 0 && m > 1) {
        draw_weights(m);
        incumbent = -std::numeric_limits<double>::infinity();
        for (std::size_t r = 0; r < n; ++r) {
          std::vector<double> u(m);
          for (std::size_t k = 0; k < m; ++k) u[k] = (y[r][k] - mean[k]) / sd[k];
          if (history_[rows[r]].result.violation <= 0)
            incumbent = std::max(incumbent, scalarise(u));
        }
      }
      if (slot == 0 || m > 1 || its_)
        for (std::size_t c = 0; c < cands.size(); ++c) {
          if (taken[c]) continue;
          double mu = 0, var = 0;
          std::vector<double> sc;
          for (const auto& u : pred[c]) sc.push_back(scalarise(u));
          for (double v : sc) mu += v / static_cast<double>(sc.size());
          for (double v : sc) var += (v - mu) * (v - mu) / static_cast<double>(sc.size());
          const double sigma = std::sqrt(var);
          if (its_) {
            score[c] = mu + sigma * std::normal_distribution<double>(0.0, 1.0)(rng_);
          } else if (!std::isfinite(incumbent)) {
            score[c] = mu + sigma;  // no feasible result yet: optimism
          } else if (sigma <= 0) {
            score[c] = std::max(mu - incumbent, 0.0);
          } else {
            const double z = (mu - incumbent) / sigma;
            score[c] = (mu - incumbent) * normal_cdf(z) + sigma * normal_pdf(z);
          }
        }
      std::size_t best = cands.size();
      for (std::size_t c = 0; c < cands.size(); ++c)
        if (!taken[c] && (best == cands.size() || score[c] > score[best])) best = c;
      if (best == cands.size()) break;
      taken[best] = true;
      seen_.insert(cands[best].arch);
      queue_.push_back({cands[best].arch, drafts_.genome(cands[best].draft)});
    }
  }

  // Weights uniform on the simplex (all 1 for one target).
  void draw_weights(std::size_t m) {
    weights_.assign(m, 1.0);
    if (m == 1) return;
    double total = 0;
    for (auto& w : weights_) total += w = -std::log(1.0 - unit(rng_));
    for (auto& w : weights_) w /= total;
  }

  static double unit(spaces::Rng& rng) {
    return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  }

  int initial_, ensemble_, hidden_, layers_, epochs_, train_batch_;
  double lr_;
  int batch_, candidates_, parents_;
  bool its_, pareto_, path_ = false;
  std::vector<bool> maximize_;
  Drafts drafts_;

  std::vector<Observed> history_;
  std::deque<Queued> queue_;
  std::set<std::string> seen_;  // architectures proposed so far (never proposed twice)
  // The current round's scalarisation: simplex weights, standardised range of each target.
  std::vector<double> weights_, lo_, hi_;
};

}  // namespace

StrategyEntry bananas_strategy() {
  return {
      "bananas",
      "predictor-guided evolution (BANANAS, White et al. 2021): an ensemble of MLPs on the path "
      "or one-hot encoding picks mutations of the best by expected improvement, Thompson "
      "sampling or (several objectives) random ParEGO scalarisations",
      {ParamSpec::int_range("initial", 1, 100000, 20, "uniform samples before the predictor"),
       ParamSpec::int_range("ensemble", 1, 64, 5, "MLPs in the ensemble"),
       ParamSpec::int_range("hidden", 1, 4096, 32, "units per hidden layer"),
       ParamSpec::int_range("layers", 1, 32, 2, "hidden layers per MLP"),
       ParamSpec::int_range("epochs", 1, 100000, 100,
                            "Adam steps per retrain (every member at once), each on "
                            "`train_batch` rows"),
       ParamSpec::int_range("train_batch", 0, 100000, 32,
                            "rows per Adam step, in shuffled passes over the evaluated "
                            "architectures; 0 = all rows (full batch)"),
       ParamSpec::float_range("lr", 1e-6, 1.0, 0.01, "Adam learning rate"),
       ParamSpec::int_range("batch", 1, 100000, 15,
                            "proposals per retrain (the ensemble is retrained every `batch` "
                            "proposals)"),
       ParamSpec::int_range("candidates", 1, 100000, 100, "mutations scored per round"),
       ParamSpec::int_range("parents", 1, 100000, 10, "best evaluated architectures mutated"),
       ParamSpec::choice("acquisition", {"ei", "its"}, "ei",
                         "ei: expected improvement; its: independent Thompson sampling"),
       ParamSpec::choice(
           "encoding", {"auto", "path", "onehot"}, "auto",
           "predictor input; auto = path for nb201 and cell spaces on one target, else one-hot"),
       ParamSpec::choice("objective", {"auto", "fitness", "pareto"}, "auto",
                         "fitness: the loop's scalar; pareto: every objective, random ParEGO "
                         "scalarisations; auto = pareto with several objectives")},
      [](const nlohmann::json& p, const spaces::Space& space,
         const StrategyContext& ctx) -> std::unique_ptr<Strategy> {
        if (p["batch"].get<int>() > p["candidates"].get<int>())
          throw std::invalid_argument("strategy.batch: " + p["batch"].dump() +
                                      " exceeds strategy.candidates (" + p["candidates"].dump() +
                                      ")");
        return std::make_unique<Bananas>(space, ctx, p);
      }};
}

}  // namespace hwnas::strategies
