#include "oneshot/darts_supernet.hpp"

#include <algorithm>
#include <numeric>
#include <stdexcept>

#include "nn/ops.hpp"
#include "spaces/catalogue.hpp"
#include "spaces/space_common.hpp"

namespace hwnas::oneshot {

spaces::TensorType CellLayout::cell_type(std::size_t s) const {
  return spaces::TensorType::image(stages.at(s).channels, input.dims.at(1) >> s,
                                   input.dims.at(2) >> s);
}

namespace {

void add_edges(CellLayout& l) {
  for (int j = 1; j <= l.nodes; ++j)
    for (int i = 0; i < j; ++i) l.edges.emplace_back(i, j);
}

void find_special_ops(CellLayout& l) {
  for (std::size_t o = 0; o < l.ops.size(); ++o) {
    if (l.ops[o].kind == "none" && l.none_op < 0) l.none_op = static_cast<int>(o);
    if (l.ops[o].kind == "skip_connect" && l.skip_op < 0) l.skip_op = static_cast<int>(o);
  }
}

}  // namespace

CellLayout cell_layout(const spaces::Space& space) {
  const nlohmann::json def = space.to_json();
  CellLayout l;
  l.space_type = space.type();
  l.input = space.input_type();
  l.outputs = space.num_outputs();
  if (l.space_type == "nb201") {
    // The fixed NAS-Bench-201 cell and skeleton (spaces/space_nb201.cpp).
    l.nodes = 3;
    l.inputs_per_node = 3;
    for (const char* op : {"none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"})
      l.ops.push_back({op, op, nlohmann::json::object()});
    l.stages = {{5, 16}, {5, 32}, {5, 64}};
  } else if (l.space_type == "cell") {
    // The definition was validated by the space; read it with the same defaults.
    l.nodes = def.at("nodes").get<int>();
    l.inputs_per_node = def.value("inputs_per_node", 2);
    l.concat_output = true;
    for (const auto& oj : def.at("ops")) {
      if (oj.is_string()) {
        l.ops.push_back({oj.get<std::string>(), oj.get<std::string>(), nlohmann::json::object()});
      } else {
        const std::string kind = oj.at("kind").get<std::string>();
        l.ops.push_back(
            {oj.value("name", kind), kind, oj.value("params", nlohmann::json::object())});
      }
    }
    for (const auto& sj : def.at("stages"))
      l.stages.push_back({sj.at("cells").get<int>(), sj.at("channels").get<int>()});
  } else {
    throw std::invalid_argument("darts supernet: space type '" + l.space_type +
                                "' has no cell edges; supported: nb201, cell");
  }
  add_edges(l);
  find_special_ops(l);
  return l;
}

// ---- the super-cell ----

namespace {

class SuperCell : public nn::Module {
 public:
  SuperCell(const CellLayout& l, const spaces::TensorType& in, spaces::Rng& rng) : layout_(&l) {
    for (std::size_t e = 0; e < l.edges.size(); ++e)
      edges_.push_back(std::make_unique<MixedOp>(l.ops, in, rng));
    if (l.concat_output && l.nodes > 1) {
      // The space's projection back to the stage's channels (spaces/space_cell.cpp).
      const auto& conv = spaces::catalogue().at("conv");
      const nlohmann::json p =
          conv.resolve({{"channels", in.dims[0]}, {"kernel", 1}, {"activation", "none"}});
      proj_ = conv.build({spaces::TensorType::image(in.dims[0] * l.nodes, in.dims[1], in.dims[2])},
                         p, rng);
    }
  }

  nn::Var forward(const nn::Var& x, const nn::Var& weights, nn::ForwardContext& ctx) {
    const CellLayout& l = *layout_;
    const int n_ops = static_cast<int>(l.ops.size());
    std::vector<nn::Var> node(static_cast<std::size_t>(l.nodes + 1));
    node[0] = x;
    for (std::size_t e = 0; e < l.edges.size(); ++e) {
      const auto [from, to] = l.edges[e];
      const int row = static_cast<int>(e);
      nn::Var w = nn::slice(nn::slice(weights, 0, row, row + 1), 1, 0, n_ops);
      nn::Var y = edges_[e]->forward(node[static_cast<std::size_t>(from)], w, ctx);
      auto& acc = node[static_cast<std::size_t>(to)];
      acc = acc.defined() ? nn::add(acc, y) : y;
    }
    if (!proj_) return node.back();
    std::vector<nn::Var> parts(node.begin() + 1, node.end());
    return proj_->forward({nn::concat(parts, 1)}, ctx);
  }
  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext& ctx) override {
    return forward(in.at(0), in.at(1), ctx);
  }
  std::string name() const override { return "super_cell"; }
  void append_named_parameters(const std::string& prefix,
                               std::vector<nn::NamedParameter>& out) override {
    for (std::size_t e = 0; e < edges_.size(); ++e)
      edges_[e]->append_named_parameters(prefix + "e" + std::to_string(e) + ".", out);
    if (proj_) proj_->append_named_parameters(prefix + "proj.", out);
  }
  void append_named_buffers(const std::string& prefix, std::vector<nn::NamedBuffer>& out) override {
    for (std::size_t e = 0; e < edges_.size(); ++e)
      edges_[e]->append_named_buffers(prefix + "e" + std::to_string(e) + ".", out);
    if (proj_) proj_->append_named_buffers(prefix + "proj.", out);
  }

 private:
  const CellLayout* layout_;
  std::vector<std::unique_ptr<MixedOp>> edges_;
  std::unique_ptr<nn::Module> proj_;
};

}  // namespace

struct DartsSupernet::Impl {
  spaces::Genome skeleton;  // the space's network with one placeholder node per cell
  std::vector<spaces::Genome::NodeId> order;
  std::vector<std::vector<spaces::Genome::NodeId>> inputs;
  std::vector<std::unique_ptr<nn::Module>> modules;
  std::vector<SuperCell*> cells;  // by node, null for skeleton nodes
};

DartsSupernet::DartsSupernet(CellLayout layout, std::uint64_t seed)
    : layout_(std::move(layout)), impl_(std::make_unique<Impl>()) {
  namespace sd = spaces::detail;
  const CellLayout& l = layout_;
  spaces::Genome g(l.input);
  std::vector<spaces::Genome::NodeId> placeholders;
  // The skeleton exactly as the space builds it, with an identity standing for each cell so the
  // genome validates and types every node; the placeholders become super-cells below.
  auto cell = [&](spaces::Genome& gg, spaces::Genome::NodeId x, int) {
    auto v = gg.add_node("skip_connect");
    gg.add_edge(x, v);
    placeholders.push_back(v);
    return v;
  };
  std::vector<sd::SkeletonStage> stages;
  for (const auto& s : l.stages) stages.push_back({s.cells, s.channels});
  auto x = sd::build_skeleton(g, stages, cell);
  const int div = 1 << (l.stages.size() - 1);
  const auto last = spaces::TensorType::image(l.stages.back().channels, l.input.dims[1] / div,
                                              l.input.dims[2] / div);
  if (l.space_type == "nb201") {
    auto bn = g.add_node("norm");
    g.add_edge(x, bn);
    auto relu = g.add_node("activation");
    g.add_edge(bn, relu);
    x = relu;
  }
  sd::add_classifier_tail(g, x, last, l.outputs);
  g.validate();

  spaces::Rng rng(seed);
  Impl& m = *impl_;
  m.skeleton = g;
  m.order = g.topological_order();
  const std::size_t n = g.num_nodes();
  m.modules.resize(n);
  m.inputs.resize(n);
  m.cells.assign(n, nullptr);
  // DARTS initialises alpha at 1e-3 * N(0, 1): nearly uniform, ties broken at random.
  nn::Tensor a(nn::Shape{static_cast<int>(l.edges.size()), static_cast<int>(l.ops.size())});
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (std::int64_t i = 0; i < a.numel(); ++i) a.data()[i] = 1e-3f * normal(rng);
  alpha_ = nn::parameter(a);
  for (auto v : m.order) {
    m.inputs[v] = g.inputs_of(v);
    if (v == g.input_node()) continue;
    const spaces::BlockNode& b = g.node(v);
    if (std::find(placeholders.begin(), placeholders.end(), v) != placeholders.end()) {
      auto c = std::make_unique<SuperCell>(layout_, g.node(m.inputs[v].at(0)).out, rng);
      m.cells[v] = c.get();
      m.modules[v] = std::move(c);
      continue;
    }
    const auto& kind = spaces::catalogue().at(b.kind);
    std::vector<spaces::TensorType> in;
    for (auto u : m.inputs[v]) in.push_back(g.node(u).out);
    m.modules[v] = kind.build(in, kind.resolve(b.params), rng);
  }
}

DartsSupernet::~DartsSupernet() = default;

nn::Var DartsSupernet::forward(const nn::Var& x, const nn::Var& weights, nn::ForwardContext& ctx) {
  Impl& m = *impl_;
  std::vector<nn::Var> act(m.modules.size());
  for (auto v : m.order) {
    if (v == m.skeleton.input_node()) {
      act[v] = x;
      continue;
    }
    if (m.cells[v]) {
      act[v] = m.cells[v]->forward(act[m.inputs[v][0]], weights, ctx);
      continue;
    }
    std::vector<nn::Var> in;
    for (auto u : m.inputs[v]) in.push_back(act[u]);
    act[v] = m.modules[v]->forward(in, ctx);
  }
  return act[m.skeleton.output_node()];
}

nn::Var DartsSupernet::forward(const std::vector<nn::Var>& in, nn::ForwardContext& ctx) {
  return forward(in.at(0), nn::softmax(alpha_), ctx);
}

void DartsSupernet::append_named_parameters(const std::string& prefix,
                                            std::vector<nn::NamedParameter>& out) {
  out.push_back({prefix + "arch.alpha", alpha_});
  for (auto v : impl_->order)
    if (impl_->modules[v])
      impl_->modules[v]->append_named_parameters(prefix + "n" + std::to_string(v) + ".", out);
}

void DartsSupernet::append_named_buffers(const std::string& prefix,
                                         std::vector<nn::NamedBuffer>& out) {
  for (auto v : impl_->order)
    if (impl_->modules[v])
      impl_->modules[v]->append_named_buffers(prefix + "n" + std::to_string(v) + ".", out);
}

std::vector<nn::Var> DartsSupernet::weight_parameters() {
  std::vector<nn::Var> out;
  for (const auto& p : named_parameters())
    if (!nn::name_has_prefix(p.name, "arch")) out.push_back(p.var);
  return out;
}

EdgeProbs probabilities(const nn::Var& alpha) {
  nn::NoGradGuard ng;
  const nn::Tensor p = nn::softmax(nn::constant(alpha.value())).value();
  const int rows = p.dim(0), cols = p.dim(1);
  EdgeProbs out(static_cast<std::size_t>(rows),
                std::vector<double>(static_cast<std::size_t>(cols)));
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c)
      out[static_cast<std::size_t>(r)][static_cast<std::size_t>(c)] = p.data()[r * cols + c];
  return out;
}

// ---- derivation ----

namespace {

// Per intermediate node j (index j - 1): the chosen (input, op, edge) triples.
struct Chosen {
  int from, op, edge;
};
using ChosenCell = std::vector<std::vector<Chosen>>;

int best_op(const CellLayout& l, const std::vector<double>& p, int exclude_a, int exclude_b) {
  int best = -1;
  for (int o = 0; o < static_cast<int>(p.size()); ++o) {
    if (o == l.none_op || o == exclude_a || o == exclude_b) continue;
    if (best < 0 || p[static_cast<std::size_t>(o)] > p[static_cast<std::size_t>(best)]) best = o;
  }
  return best;
}

void check_probs(const CellLayout& l, const EdgeProbs& p) {
  if (p.size() != l.edges.size())
    throw std::invalid_argument("derive: " + std::to_string(p.size()) + " probability rows for " +
                                std::to_string(l.edges.size()) + " edges");
  for (const auto& r : p)
    if (r.size() != l.ops.size())
      throw std::invalid_argument("derive: a probability row has " + std::to_string(r.size()) +
                                  " entries for " + std::to_string(l.ops.size()) + " ops");
  if (l.none_op >= 0 && l.ops.size() == 1)
    throw std::invalid_argument("derive: the only candidate op is 'none'");
}

// Replaces the weakest skips beyond max_skip by each edge's next best op.
void cap_skips(const CellLayout& l, const EdgeProbs& p, int max_skip, ChosenCell& c, int* skips) {
  std::vector<Chosen*> sk;
  for (auto& node : c)
    for (auto& ch : node)
      if (ch.op == l.skip_op && l.skip_op >= 0) sk.push_back(&ch);
  if (skips) *skips = static_cast<int>(sk.size());
  if (max_skip < 0 || static_cast<int>(sk.size()) <= max_skip) return;
  std::stable_sort(sk.begin(), sk.end(), [&](const Chosen* a, const Chosen* b) {
    return p[static_cast<std::size_t>(a->edge)][static_cast<std::size_t>(l.skip_op)] >
           p[static_cast<std::size_t>(b->edge)][static_cast<std::size_t>(l.skip_op)];
  });
  for (std::size_t k = static_cast<std::size_t>(max_skip); k < sk.size(); ++k) {
    const int alt = best_op(l, p[static_cast<std::size_t>(sk[k]->edge)], l.skip_op, -1);
    if (alt >= 0) sk[k]->op = alt;
  }
}

std::vector<int> to_decisions(const CellLayout& l, ChosenCell c) {
  std::vector<int> values;
  for (auto& node : c) {
    std::sort(node.begin(), node.end(),
              [](const Chosen& a, const Chosen& b) { return a.from < b.from; });
    if (l.space_type == "nb201") {
      for (const auto& ch : node) values.push_back(ch.op);
    } else {
      // Slot s reads the rank of its input among the nodes earlier slots left: with sorted
      // inputs that is from - s (spaces/space_cell.cpp decode).
      for (std::size_t s = 0; s < node.size(); ++s) {
        values.push_back(node[s].from - static_cast<int>(s));
        values.push_back(node[s].op);
      }
    }
  }
  return values;
}

}  // namespace

std::vector<int> derive_decisions(const CellLayout& l, const EdgeProbs& p, int max_skip,
                                  int* skips) {
  check_probs(l, p);
  ChosenCell c(static_cast<std::size_t>(l.nodes));
  for (int j = 1; j <= l.nodes; ++j) {
    std::vector<Chosen> cand;
    for (std::size_t e = 0; e < l.edges.size(); ++e)
      if (l.edges[e].second == j)
        cand.push_back({l.edges[e].first, best_op(l, p[e], -1, -1), static_cast<int>(e)});
    // Strongest inputs first (ties: lower input), keep fan(j).
    std::stable_sort(cand.begin(), cand.end(), [&](const Chosen& a, const Chosen& b) {
      return p[static_cast<std::size_t>(a.edge)][static_cast<std::size_t>(a.op)] >
             p[static_cast<std::size_t>(b.edge)][static_cast<std::size_t>(b.op)];
    });
    cand.resize(static_cast<std::size_t>(l.fan(j)));
    c[static_cast<std::size_t>(j - 1)] = std::move(cand);
  }
  cap_skips(l, p, max_skip, c, skips);
  return to_decisions(l, std::move(c));
}

std::vector<int> sample_decisions(const CellLayout& l, const EdgeProbs& p, int max_skip,
                                  std::mt19937_64& rng) {
  check_probs(l, p);
  ChosenCell c(static_cast<std::size_t>(l.nodes));
  for (int j = 1; j <= l.nodes; ++j) {
    std::vector<Chosen> cand;
    std::vector<double> strength;
    for (std::size_t e = 0; e < l.edges.size(); ++e) {
      if (l.edges[e].second != j) continue;
      std::vector<double> w = p[e];
      if (l.none_op >= 0) w[static_cast<std::size_t>(l.none_op)] = 0;
      std::discrete_distribution<int> pick(w.begin(), w.end());
      const int op = pick(rng);
      cand.push_back({l.edges[e].first, op, static_cast<int>(e)});
      strength.push_back(p[e][static_cast<std::size_t>(op)]);
    }
    std::vector<Chosen> kept;
    for (int s = 0; s < l.fan(j); ++s) {
      std::discrete_distribution<std::size_t> pick(strength.begin(), strength.end());
      const std::size_t k = pick(rng);
      kept.push_back(cand[k]);
      cand.erase(cand.begin() + static_cast<std::ptrdiff_t>(k));
      strength.erase(strength.begin() + static_cast<std::ptrdiff_t>(k));
    }
    c[static_cast<std::size_t>(j - 1)] = std::move(kept);
  }
  cap_skips(l, p, max_skip, c, nullptr);
  return to_decisions(l, std::move(c));
}

int count_skips(const CellLayout& l, const std::vector<int>& d) {
  if (l.skip_op < 0) return 0;
  int n = 0;
  // nb201: one op per edge; cell: (from, op) pairs.
  const std::size_t step = l.space_type == "nb201" ? 1 : 2;
  for (std::size_t i = step - 1; i < d.size(); i += step) n += d[i] == l.skip_op;
  return n;
}

}  // namespace hwnas::oneshot
