#include "hwmodels/learned_predictor.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>
#include <sstream>
#include <stdexcept>

#include "common/hash.hpp"

namespace hwnas::hw::learned {

const std::vector<std::string>& feature_names() {
  static const std::vector<std::string> names = {"log_batch",
                                                 "log_macs",
                                                 "log_other_flops",
                                                 "log_input_bytes",
                                                 "log_output_bytes",
                                                 "log_weight_bytes",
                                                 "log_params",
                                                 "bits",
                                                 "kernels",
                                                 "log_seq_len",
                                                 "log_macs_per_output",
                                                 "log_in_over_out_bytes",
                                                 "log_fan_in",
                                                 "sparsity",
                                                 "category",
                                                 "log_flops",
                                                 "log_bytes",
                                                 "log_channels",
                                                 "timesteps",
                                                 "window",
                                                 "stride",
                                                 "log_input_elements",
                                                 "log_output_elements"};
  return names;
}

double log_work(const NodeWorkload& n, int batch) {
  const double per_byte = n.bits > 0 ? 8.0 / n.bits : 1.0;  // elements per byte
  return std::log1p(batch * (n.flops() + (n.input_bytes + n.output_bytes) * per_byte));
}

std::vector<double> node_features(const NodeWorkload& n, int batch, bool eager) {
  const double b = batch;
  const double per_byte = n.bits > 0 ? 8.0 / n.bits : 0;  // elements per byte
  const double out_elems = n.output_bytes * per_byte;
  std::vector<double> f = {std::log(b),
                           std::log1p(b * n.macs),
                           std::log1p(b * n.other_flops),
                           std::log1p(b * n.input_bytes),
                           std::log1p(b * n.output_bytes),
                           std::log1p(n.weight_bytes),
                           std::log1p(n.params),
                           static_cast<double>(n.bits),
                           static_cast<double>(n.kernels_for(eager)),
                           std::log1p(static_cast<double>(n.seq_len)),
                           std::log1p(out_elems > 0 ? n.macs / out_elems : 0),
                           std::log((n.input_bytes + 1) / (n.output_bytes + 1)),
                           std::log1p(n.fan_in),
                           n.sparsity,
                           static_cast<double>(static_cast<int>(n.category)),
                           std::log1p(b * n.flops()),
                           std::log1p(n.weight_bytes + b * (n.input_bytes + n.output_bytes)),
                           std::log1p(n.channels),
                           static_cast<double>(n.timesteps),
                           static_cast<double>(n.window),
                           static_cast<double>(n.stride),
                           std::log1p(b * n.input_bytes * per_byte),
                           std::log1p(b * out_elems)};
  return f;
}

// ---------------------------------------------------------------- trees

double Tree::predict(const std::vector<double>& x) const {
  std::size_t i = 0;
  while (feature[i] >= 0)
    i = static_cast<std::size_t>(
        x[static_cast<std::size_t>(feature[i])] <= threshold[i] ? left[i] : right[i]);
  return value[i];
}

double Gbdt::predict(const std::vector<double>& x) const {
  double s = base;
  for (const auto& t : trees) s += t.predict(x);
  return s;
}

nlohmann::json Gbdt::to_json() const {
  nlohmann::json ts = nlohmann::json::array();
  for (const auto& t : trees)
    ts.push_back({{"feature", t.feature},
                  {"threshold", t.threshold},
                  {"left", t.left},
                  {"right", t.right},
                  {"value", t.value}});
  return {{"base", base}, {"trees", ts}};
}

Gbdt Gbdt::from_json(const nlohmann::json& j) {
  Gbdt g;
  g.base = j.at("base").get<double>();
  const int nf = static_cast<int>(feature_names().size());
  for (const auto& tj : j.at("trees")) {
    Tree t;
    t.feature = tj.at("feature").get<std::vector<int>>();
    t.threshold = tj.at("threshold").get<std::vector<double>>();
    t.left = tj.at("left").get<std::vector<int>>();
    t.right = tj.at("right").get<std::vector<int>>();
    t.value = tj.at("value").get<std::vector<double>>();
    const std::size_t n = t.feature.size();
    if (n == 0 || t.threshold.size() != n || t.left.size() != n || t.right.size() != n ||
        t.value.size() != n)
      throw std::invalid_argument("field 'trees': a tree's arrays differ in length");
    // Children come after their parent, so prediction always ends at a leaf.
    for (std::size_t i = 0; i < n; ++i)
      if (t.feature[i] >= 0 &&
          (t.feature[i] >= nf || t.left[i] <= static_cast<int>(i) ||
           t.right[i] <= static_cast<int>(i) || t.left[i] >= static_cast<int>(n) ||
           t.right[i] >= static_cast<int>(n)))
        throw std::invalid_argument("field 'trees': node " + std::to_string(i) +
                                    " has a feature or child out of range");
    g.trees.push_back(std::move(t));
  }
  return g;
}

namespace {

// Split candidates of one feature: midpoints between quantiles of its training values.
std::vector<double> bin_edges(std::vector<double> v, int bins) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  std::vector<double> edges;
  if (v.size() < 2) return edges;
  const std::size_t steps = std::min<std::size_t>(v.size() - 1, static_cast<std::size_t>(bins));
  for (std::size_t k = 1; k <= steps; ++k) {
    const std::size_t i = k * (v.size() - 1) / steps;  // 1 .. size-1
    const double e = 0.5 * (v[i - 1] + v[i]);
    if (edges.empty() || e > edges.back()) edges.push_back(e);
  }
  return edges;
}

struct TreeBuilder {
  const std::vector<std::vector<int>>& bin;  // [feature][row]
  const std::vector<std::vector<double>>& edges;
  const std::vector<double>& r;  // residuals
  const GbdtOptions& opt;
  Tree t;

  int leaf(const std::vector<std::size_t>& rows) {
    double s = 0;
    for (auto i : rows) s += r[i];
    t.feature.push_back(-1);
    t.threshold.push_back(0);
    t.left.push_back(-1);
    t.right.push_back(-1);
    t.value.push_back(rows.empty() ? 0 : opt.shrinkage * s / static_cast<double>(rows.size()));
    return static_cast<int>(t.feature.size() - 1);
  }

  int build(const std::vector<std::size_t>& rows, int depth) {
    const std::size_t n = rows.size();
    if (depth >= opt.depth || n < 2 * static_cast<std::size_t>(opt.min_leaf)) return leaf(rows);
    double total = 0;
    for (auto i : rows) total += r[i];
    const double base_score = total * total / static_cast<double>(n);
    double best_gain = 1e-12;
    int best_f = -1, best_bin = -1;
    std::vector<double> sum;
    std::vector<std::size_t> cnt;
    for (std::size_t f = 0; f < edges.size(); ++f) {
      const std::size_t nb = edges[f].size() + 1;
      if (nb < 2) continue;
      sum.assign(nb, 0.0);
      cnt.assign(nb, 0);
      for (auto i : rows) {
        const int b = bin[f][i];
        sum[static_cast<std::size_t>(b)] += r[i];
        ++cnt[static_cast<std::size_t>(b)];
      }
      double sl = 0;
      std::size_t cl = 0;
      for (std::size_t b = 0; b + 1 < nb; ++b) {
        sl += sum[b];
        cl += cnt[b];
        const std::size_t cr = n - cl;
        if (cl < static_cast<std::size_t>(opt.min_leaf)) continue;
        if (cr < static_cast<std::size_t>(opt.min_leaf)) break;
        const double sr = total - sl;
        const double gain =
            sl * sl / static_cast<double>(cl) + sr * sr / static_cast<double>(cr) - base_score;
        if (gain > best_gain) {
          best_gain = gain;
          best_f = static_cast<int>(f);
          best_bin = static_cast<int>(b);
        }
      }
    }
    if (best_f < 0) return leaf(rows);
    std::vector<std::size_t> lo, hi;
    for (auto i : rows)
      (bin[static_cast<std::size_t>(best_f)][i] <= best_bin ? lo : hi).push_back(i);
    const int me = static_cast<int>(t.feature.size());
    t.feature.push_back(best_f);
    t.threshold.push_back(
        edges[static_cast<std::size_t>(best_f)][static_cast<std::size_t>(best_bin)]);
    t.left.push_back(-1);
    t.right.push_back(-1);
    t.value.push_back(0);
    const int l = build(lo, depth + 1);
    const int h = build(hi, depth + 1);
    t.left[static_cast<std::size_t>(me)] = l;
    t.right[static_cast<std::size_t>(me)] = h;
    return me;
  }
};

}  // namespace

Gbdt fit_gbdt(const std::vector<std::vector<double>>& x, const std::vector<double>& y,
              const GbdtOptions& opt) {
  if (x.empty() || x.size() != y.size())
    throw std::invalid_argument("fit_gbdt: need as many feature rows as targets (at least one)");
  const std::size_t n = x.size(), d = x[0].size();
  for (const auto& row : x)
    if (row.size() != d) throw std::invalid_argument("fit_gbdt: feature rows differ in length");
  std::vector<std::vector<double>> edges(d);
  std::vector<std::vector<int>> bin(d, std::vector<int>(n));
  for (std::size_t f = 0; f < d; ++f) {
    std::vector<double> col(n);
    for (std::size_t i = 0; i < n; ++i) col[i] = x[i][f];
    edges[f] = bin_edges(col, opt.bins);
    for (std::size_t i = 0; i < n; ++i)
      bin[f][i] = static_cast<int>(std::lower_bound(edges[f].begin(), edges[f].end(), col[i]) -
                                   edges[f].begin());
  }
  Gbdt g;
  g.base = std::accumulate(y.begin(), y.end(), 0.0) / static_cast<double>(n);
  std::vector<double> pred(n, g.base), r(n);
  std::vector<std::size_t> all(n);
  std::iota(all.begin(), all.end(), 0);
  for (int k = 0; k < opt.trees; ++k) {
    for (std::size_t i = 0; i < n; ++i) r[i] = y[i] - pred[i];
    TreeBuilder tb{bin, edges, r, opt, {}};
    tb.build(all, 0);
    for (std::size_t i = 0; i < n; ++i) pred[i] += tb.t.predict(x[i]);
    g.trees.push_back(std::move(tb.t));
  }
  return g;
}

// ---------------------------------------------------------------- MLP

double Mlp::predict(const std::vector<double>& x) const {
  std::vector<double> z(x.size()), next;
  for (std::size_t i = 0; i < x.size(); ++i) z[i] = (x[i] - mean[i]) / scale[i];
  for (std::size_t l = 0; l < layers.size(); ++l) {
    const Layer& L = layers[l];
    next.assign(static_cast<std::size_t>(L.out), 0.0);
    for (int o = 0; o < L.out; ++o) {
      double s = L.b[static_cast<std::size_t>(o)];
      const double* w = &L.w[static_cast<std::size_t>(o) * static_cast<std::size_t>(L.in)];
      for (int i = 0; i < L.in; ++i) s += w[i] * z[static_cast<std::size_t>(i)];
      next[static_cast<std::size_t>(o)] = l + 1 < layers.size() ? std::max(0.0, s) : s;
    }
    z.swap(next);
  }
  return z.at(0) * y_scale + y_mean;
}

nlohmann::json Mlp::to_json() const {
  nlohmann::json ls = nlohmann::json::array();
  for (const auto& L : layers) ls.push_back({{"in", L.in}, {"out", L.out}, {"w", L.w}, {"b", L.b}});
  return {
      {"mean", mean}, {"scale", scale}, {"layers", ls}, {"y_mean", y_mean}, {"y_scale", y_scale}};
}

Mlp Mlp::from_json(const nlohmann::json& j) {
  Mlp m;
  m.mean = j.at("mean").get<std::vector<double>>();
  m.scale = j.at("scale").get<std::vector<double>>();
  m.y_mean = j.at("y_mean").get<double>();
  m.y_scale = j.at("y_scale").get<double>();
  const std::size_t nf = feature_names().size();
  if (m.mean.size() != nf || m.scale.size() != nf)
    throw std::invalid_argument("field 'mlp.mean' / 'mlp.scale': need " + std::to_string(nf) +
                                " entries, one per feature");
  int in = static_cast<int>(nf);
  for (const auto& lj : j.at("layers")) {
    Layer L;
    L.in = lj.at("in").get<int>();
    L.out = lj.at("out").get<int>();
    L.w = lj.at("w").get<std::vector<double>>();
    L.b = lj.at("b").get<std::vector<double>>();
    if (L.in != in || L.out < 1 ||
        L.w.size() != static_cast<std::size_t>(L.in) * static_cast<std::size_t>(L.out) ||
        L.b.size() != static_cast<std::size_t>(L.out))
      throw std::invalid_argument("field 'mlp.layers': layer sizes do not chain");
    in = L.out;
    m.layers.push_back(std::move(L));
  }
  if (m.layers.empty() || in != 1)
    throw std::invalid_argument("field 'mlp.layers': the last layer must have one output");
  return m;
}

// ---------------------------------------------------------------- models

nlohmann::json KernelModel::to_json() const {
  nlohmann::json j = {{"chosen", chosen},
                      {"train_nodes", train_nodes},
                      {"heldout_log_mae", {{"gbdt", heldout_gbdt}, {"mlp", heldout_mlp}}}};
  if (chosen == "mlp")
    j["mlp"] = mlp.to_json();
  else
    j["gbdt"] = gbdt.to_json();
  return j;
}

KernelModel KernelModel::from_json(const nlohmann::json& j) {
  KernelModel k;
  k.chosen = j.at("chosen").get<std::string>();
  k.train_nodes = j.at("train_nodes").get<int>();
  k.heldout_gbdt = j.at("heldout_log_mae").at("gbdt").get<double>();
  k.heldout_mlp = j.at("heldout_log_mae").at("mlp").get<double>();
  if (k.chosen == "mlp")
    k.mlp = Mlp::from_json(j.at("mlp"));
  else if (k.chosen == "gbdt")
    k.gbdt = Gbdt::from_json(j.at("gbdt"));
  else
    throw std::invalid_argument("field 'chosen' is '" + k.chosen + "' (gbdt or mlp)");
  return k;
}

const KernelModel& LearnedModel::model_for(const NodeWorkload& n, std::string* level) const {
  if (auto it = by_kind.find(n.kernel_type_or_kind()); it != by_kind.end()) {
    if (level) *level = "kind";
    return it->second;
  }
  if (auto it = by_category.find(op_category_name(n.category)); it != by_category.end()) {
    if (level) *level = "category";
    return it->second;
  }
  if (level) *level = "global";
  return global;
}

double LearnedModel::node_ms(const NodeWorkload& n, int b, bool eager) const {
  const double log_ms = model_for(n).predict_log_ms(node_features(n, b, eager));
  return std::exp(per_work ? log_ms + log_work(n, b) : log_ms);
}

double LearnedModel::network_ms(const Workload& w, int b, bool eager) const {
  double s = 0;
  for (const auto& n : w.nodes)
    if (eager || n.kernels > 0) s += node_ms(n, b, eager);
  return std::max(
      0.0, net_scale * s + net_offset_ms + net_per_node_ms * static_cast<double>(w.nodes.size()));
}

nlohmann::json LearnedModel::to_json() const {
  nlohmann::json kinds = nlohmann::json::object(), cats = nlohmann::json::object();
  for (const auto& [k, m] : by_kind) kinds[k] = m.to_json();
  for (const auto& [k, m] : by_category) cats[k] = m.to_json();
  return {{"batch", batch},
          {"fusion", fusion},
          {"target", per_work ? "log_ms_per_work" : "log_ms"},
          {"features", feature_names()},
          {"by_kind", kinds},
          {"by_category", cats},
          {"global", global.to_json()},
          {"net_scale", net_scale},
          {"net_offset_ms", net_offset_ms},
          {"net_per_node_ms", net_per_node_ms},
          {"report", report}};
}

LearnedModel LearnedModel::from_json(const nlohmann::json& j) {
  LearnedModel m;
  m.batch = j.at("batch").get<int>();
  m.fusion = j.at("fusion").get<std::string>();
  const std::string target = j.at("target").get<std::string>();
  if (target != "log_ms_per_work" && target != "log_ms")
    throw std::invalid_argument("field 'target' is '" + target + "' (log_ms_per_work or log_ms)");
  m.per_work = target == "log_ms_per_work";
  if (j.at("features").get<std::vector<std::string>>() != feature_names())
    throw std::invalid_argument("field 'features' lists other features than this hwnas computes");
  for (const auto& [k, v] : j.at("by_kind").items()) m.by_kind[k] = KernelModel::from_json(v);
  for (const auto& [k, v] : j.at("by_category").items())
    m.by_category[k] = KernelModel::from_json(v);
  m.global = KernelModel::from_json(j.at("global"));
  m.net_scale = j.at("net_scale").get<double>();
  m.net_offset_ms = j.at("net_offset_ms").get<double>();
  m.net_per_node_ms = j.at("net_per_node_ms").get<double>();
  m.report = j.value("report", nlohmann::json::object());
  return m;
}

std::string model_file_text(const LearnedModel& m) {
  const nlohmann::json body = m.to_json();
  const nlohmann::json file = {{"format", kFormat},
                               {"version", kVersion},
                               {"checksum", hex16(fnv1a64(body.dump()))},
                               {"model", body}};
  return file.dump() + "\n";
}

LearnedModel load_model_file(const std::string& path) {
  const std::string who = "learned model '" + path + "': ";
  const std::string refit = "write it again with `hwnas hw fit`";
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw std::invalid_argument(who +
                                "cannot open the file: give the path of a model written "
                                "by `hwnas hw fit` (relative to the device JSON)");
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::parse_error& e) {
    throw std::invalid_argument(who + "not valid JSON, the file is truncated or corrupted (" +
                                e.what() + "): " + refit);
  }
  if (!j.is_object() || j.value("format", "") != kFormat)
    throw std::invalid_argument(who + "not a learned latency model (field 'format' is not \"" +
                                kFormat + "\"): give the model file `hwnas hw fit` wrote");
  if (!j.contains("version") || !j["version"].is_number_integer() ||
      j["version"].get<int>() != kVersion)
    throw std::invalid_argument(
        who + "version " + (j.contains("version") ? j["version"].dump() : "missing") +
        ", this hwnas reads version " + std::to_string(kVersion) + ": " + refit + " of this hwnas");
  if (!j.contains("model") || !j.contains("checksum") || !j["checksum"].is_string())
    throw std::invalid_argument(who + "field 'model' or 'checksum' is missing: " + refit);
  const std::string sum = hex16(fnv1a64(j["model"].dump()));
  if (sum != j["checksum"].get<std::string>())
    throw std::invalid_argument(who + "checksum mismatch (file says " +
                                j["checksum"].get<std::string>() + ", contents hash to " + sum +
                                "): the file was edited or corrupted; " + refit);
  try {
    return LearnedModel::from_json(j["model"]);
  } catch (const nlohmann::json::exception& e) {
    throw std::invalid_argument(who + "a field is missing or has the wrong type (" + e.what() +
                                "): " + refit);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(who + e.what() + ": " + refit);
  }
}

}  // namespace hwnas::hw::learned
