// The NAS-Bench-201 space (Dong & Yang, ICLR 2020), exactly: a 4-node cell whose 6 edges
// (1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2) each carry one of none, skip_connect, nor_conv_1x1,
// nor_conv_3x3, avg_pool_3x3; node j sums its incoming edges; the cell output is node 3.
// Skeleton: conv 3x3 stem (16 channels, BN), three stages of 5 cells at 16/32/64 channels
// joined by residual reduction blocks, BN + ReLU, global average pool, linear classifier.
// Definition: {"type": "nb201", "input": {...} (default image[3,32,32]), "outputs": 10}.
#include <array>

#include "spaces/decision_operators.hpp"
#include "spaces/space_common.hpp"

namespace hwnas::spaces::detail {
namespace {

const std::array<const char*, 5> kOps = {"none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3",
                                         "avg_pool_3x3"};
constexpr int kNumOps = 5;
constexpr int kEdges = 6;
// Edge e goes from kEdgeFrom[e] to kEdgeTo[e], in the arch string's order.
constexpr std::array<int, kEdges> kEdgeFrom = {0, 0, 1, 0, 1, 2};
constexpr std::array<int, kEdges> kEdgeTo = {1, 2, 2, 3, 3, 3};

using Cell = std::array<int, kEdges>;  // op index per edge

// Cell number `index` in [0, 15625): edge 0 is the most significant base-5 digit.
Cell cell_at(std::uint64_t index) {
  Cell c{};
  for (int e = kEdges - 1; e >= 0; --e, index /= kNumOps)
    c[static_cast<std::size_t>(e)] = static_cast<int>(index % kNumOps);
  return c;
}

int op_index(const std::string& name) {
  for (int i = 0; i < kNumOps; ++i)
    if (name == kOps[static_cast<std::size_t>(i)]) return i;
  return -1;
}

std::string cell_string(const Cell& c) {
  std::string s;
  for (int e = 0; e < kEdges; ++e) {
    if (e == 0 || kEdgeTo[static_cast<std::size_t>(e)] != kEdgeTo[static_cast<std::size_t>(e - 1)])
      s += e == 0 ? "|" : "+|";
    s += std::string(kOps[static_cast<std::size_t>(c[static_cast<std::size_t>(e)])]) + "~" +
         std::to_string(kEdgeFrom[static_cast<std::size_t>(e)]) + "|";
  }
  return s;
}

Cell parse_cell(const std::string& s) {
  auto bad = [&](const std::string& why) -> std::invalid_argument {
    return std::invalid_argument("nb201 arch string '" + s + "': " + why +
                                 " (expected |op~0|+|op~0|op~1|+|op~0|op~1|op~2| with op in none, "
                                 "skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3)");
  };
  std::vector<std::string> groups;
  std::size_t start = 0;
  while (true) {
    std::size_t plus = s.find('+', start);
    groups.push_back(s.substr(start, plus == std::string::npos ? std::string::npos : plus - start));
    if (plus == std::string::npos) break;
    start = plus + 1;
  }
  if (groups.size() != 3)
    throw bad("needs 3 node groups separated by '+', found " + std::to_string(groups.size()));
  Cell c{};
  int e = 0;
  for (int j = 0; j < 3; ++j) {
    const std::string& grp = groups[static_cast<std::size_t>(j)];
    if (grp.size() < 2 || grp.front() != '|' || grp.back() != '|')
      throw bad("group " + std::to_string(j + 1) + " must start and end with '|'");
    std::vector<std::string> toks;
    std::size_t p = 1;
    while (p < grp.size()) {
      std::size_t q = grp.find('|', p);
      toks.push_back(grp.substr(p, q - p));
      p = q + 1;
    }
    if (static_cast<int>(toks.size()) != j + 1)
      throw bad("node " + std::to_string(j + 1) + " needs " + std::to_string(j + 1) +
                " inputs, found " + std::to_string(toks.size()));
    for (int i = 0; i <= j; ++i, ++e) {
      const std::string& tok = toks[static_cast<std::size_t>(i)];
      auto tilde = tok.find('~');
      if (tilde == std::string::npos) throw bad("token '" + tok + "' lacks '~'");
      int op = op_index(tok.substr(0, tilde));
      if (op < 0) throw bad("unknown op '" + tok.substr(0, tilde) + "'");
      if (tok.substr(tilde + 1) != std::to_string(i))
        throw bad("token '" + tok + "' must read from node " + std::to_string(i));
      c[static_cast<std::size_t>(e)] = op;
    }
  }
  return c;
}

class Nb201Space : public Space, public DecisionOperators {
 public:
  Nb201Space(TensorType input, int outputs) : input_(std::move(input)), outputs_(outputs) {}

  std::string type() const override { return "nb201"; }
  TensorType input_type() const override { return input_; }
  int num_outputs() const override { return outputs_; }

  Genome build(const Cell& c) const {
    Genome g(input_);
    auto cell = [&](Genome& gg, Genome::NodeId x, int) {
      std::array<Genome::NodeId, 4> node{x, 0, 0, 0};
      std::array<std::vector<Genome::NodeId>, 4> terms;
      for (int e = 0; e < kEdges; ++e) {
        int to = kEdgeTo[static_cast<std::size_t>(e)];
        // Node j's inputs are complete once all edges into it are seen (edges are ordered by to).
        auto op = gg.add_node(kOps[static_cast<std::size_t>(c[static_cast<std::size_t>(e)])]);
        gg.add_edge(node[static_cast<std::size_t>(kEdgeFrom[static_cast<std::size_t>(e)])], op);
        terms[static_cast<std::size_t>(to)].push_back(op);
        bool last_into_to = e + 1 == kEdges || kEdgeTo[static_cast<std::size_t>(e + 1)] != to;
        if (last_into_to) {
          auto& t = terms[static_cast<std::size_t>(to)];
          if (t.size() == 1) {
            node[static_cast<std::size_t>(to)] = t[0];
          } else {
            auto sum = gg.add_node("add");
            for (auto u : t) gg.add_edge(u, sum);
            node[static_cast<std::size_t>(to)] = sum;
          }
        }
      }
      return node[3];
    };
    auto x = build_skeleton(g, {{5, 16}, {5, 32}, {5, 64}}, cell);
    auto bn = g.add_node("norm");
    g.add_edge(x, bn);
    auto relu = g.add_node("activation");
    g.add_edge(bn, relu);
    add_classifier_tail(g, relu, TensorType::image(64, input_.dims[1] / 4, input_.dims[2] / 4),
                        outputs_);
    g.validate();
    g.meta() = {{"space", "nb201"}, {"arch", cell_string(c)}};
    return g;
  }

  // Reads the first cell's ops from the graph structure (the genome need not carry meta).
  Cell extract(const Genome& g) const {
    auto bad = [](const std::string& why) {
      return std::invalid_argument("not a NAS-Bench-201 network: " + why);
    };
    auto is_op = [](const Genome& gg, Genome::NodeId v) { return op_index(gg.node(v).kind) >= 0; };
    auto stem_out = g.outputs_of(g.input_node());
    if (stem_out.size() != 1 || g.node(stem_out[0]).kind != "conv")
      throw bad("no stem conv after the input");
    auto x = stem_out[0];
    auto first = g.outputs_of(x);
    if (first.size() != 3)
      throw bad("the first cell's input feeds " + std::to_string(first.size()) + " ops, not 3");
    Cell c{};
    Genome::NodeId n1 = 0, n2 = 0, n3 = 0;
    std::vector<Genome::NodeId> n1_ops;
    for (auto op : first) {
      if (!is_op(g, op))
        throw bad("node " + std::to_string(op) + " (" + g.node(op).kind + ") is not a cell op");
      auto cons = g.outputs_of(op);
      if (cons.size() == 1 && g.node(cons[0]).kind == "add" && g.inputs_of(cons[0]).size() == 3) {
        n3 = cons[0];
        c[3] = op_index(g.node(op).kind);
      } else if (cons.size() == 1 && g.node(cons[0]).kind == "add" &&
                 g.inputs_of(cons[0]).size() == 2) {
        n2 = cons[0];
        c[1] = op_index(g.node(op).kind);
      } else {
        n1 = op;
        c[0] = op_index(g.node(op).kind);
        n1_ops = cons;
      }
    }
    if (!n1 || !n2 || !n3 || n1_ops.size() != 2)
      throw bad("the first cell's edges do not form the 4-node cell");
    for (auto op : n1_ops) {
      auto cons = g.outputs_of(op);
      if (!is_op(g, op) || cons.size() != 1) throw bad("node 1's outputs are not cell ops");
      if (cons[0] == n2)
        c[2] = op_index(g.node(op).kind);
      else if (cons[0] == n3)
        c[4] = op_index(g.node(op).kind);
      else
        throw bad("an op of node 1 feeds neither node 2 nor node 3");
    }
    auto n2_out = g.outputs_of(n2);
    if (n2_out.size() != 1 || !is_op(g, n2_out[0]) ||
        g.outputs_of(n2_out[0]) != std::vector<Genome::NodeId>{n3})
      throw bad("node 2 does not feed node 3 through one op");
    c[5] = op_index(g.node(n2_out[0]).kind);
    return c;
  }

  Cell cell_of(const Genome& g) const {
    if (g.meta().contains("arch") && g.meta()["arch"].is_string())
      return parse_cell(g.meta()["arch"].get<std::string>());
    return extract(g);
  }

  // The operators work on cells; the genome forms build the result, the decision forms
  // (DecisionOperators) do not, and both draw the same random numbers.
  static Cell sample_cell(Rng& rng) {
    Cell c{};
    for (auto& op : c) op = static_cast<int>(pick_index(kNumOps, rng));
    return c;
  }
  static Cell mutate_cell(Cell c, Rng& rng) {
    auto e = pick_index(kEdges, rng);
    c[e] = static_cast<int>(pick_other(kNumOps, static_cast<std::size_t>(c[e]), rng));
    return c;
  }
  static Cell crossover_cells(const Cell& ca, const Cell& cb, Rng& rng) {
    Cell child{};
    std::bernoulli_distribution coin(0.5);
    for (int e = 0; e < kEdges; ++e)
      child[static_cast<std::size_t>(e)] =
          coin(rng) ? ca[static_cast<std::size_t>(e)] : cb[static_cast<std::size_t>(e)];
    return child;
  }

  Genome sample(Rng& rng) const override { return build(sample_cell(rng)); }
  Genome mutate(const Genome& g, Rng& rng) const override {
    return build(mutate_cell(cell_of(g), rng));
  }
  Genome crossover(const Genome& a, const Genome& b, Rng& rng) const override {
    return build(crossover_cells(cell_of(a), cell_of(b), rng));
  }

  std::vector<Genome> neighbours(const Genome& g) const override {
    Cell c = cell_of(g);
    std::vector<Genome> out;
    for (std::size_t e = 0; e < kEdges; ++e)
      for (int op = 0; op < kNumOps; ++op)
        if (op != c[e]) {
          Cell n = c;
          n[e] = op;
          out.push_back(build(n));
        }
    return out;
  }

  bool contains(const Genome& g) const override {
    try {
      return build(extract(g)).hash() == g.hash();
    } catch (const std::invalid_argument&) {
      return false;
    }
  }

  std::vector<float> encode_onehot(const Genome& g) const override { return onehot_of(cell_of(g)); }
  std::vector<float> encode_path(const Genome& g) const override { return path_of(cell_of(g)); }

  static std::vector<float> onehot_of(const Cell& c) {
    std::vector<float> v(kEdges * kNumOps, 0.0f);
    for (int e = 0; e < kEdges; ++e)
      v[static_cast<std::size_t>(e * kNumOps + c[static_cast<std::size_t>(e)])] = 1.0f;
    return v;
  }

  // Path encoding as in BANANAS (White et al., 2021): one feature per sequence of non-none ops
  // along an input-to-output path of the cell (4 + 16 + 64 = 84), set if some path carries it.
  static std::vector<float> path_of(const Cell& c) {
    std::vector<float> v(84, 0.0f);
    static const std::vector<std::vector<int>> paths = {{3}, {0, 4}, {1, 5}, {0, 2, 5}};
    for (const auto& path : paths) {
      int index = 0, offset = 0, width = 1;
      bool alive = true;
      for (std::size_t i = 0; i < path.size(); ++i) {
        int op = c[static_cast<std::size_t>(path[i])];
        if (op == 0) alive = false;
        index = index * 4 + (op - 1);
        if (i > 0) offset += width;
        width *= 4;
      }
      if (alive) v[static_cast<std::size_t>(offset + index)] = 1.0f;
    }
    return v;
  }

  // ---- DecisionOperators: a cell's decisions are its ops, in edge order ----
  Cell cell_of_decisions(const std::vector<int>& values) const {
    // The full check (with the decisions' names) only when something is wrong: strategies call
    // this for every candidate.
    bool ok = values.size() == kEdges;
    for (std::size_t i = 0; ok && i < values.size(); ++i)
      ok = values[i] >= 0 && values[i] < kNumOps;
    if (!ok) check_decision_values(decisions(), values, "nb201");
    Cell c{};
    std::copy(values.begin(), values.end(), c.begin());
    return c;
  }
  static std::vector<int> decisions_of(const Cell& c) { return {c.begin(), c.end()}; }

  std::vector<int> sample_decisions(Rng& rng) const override {
    return decisions_of(sample_cell(rng));
  }
  std::vector<int> mutate_decisions(const std::vector<int>& v, Rng& rng) const override {
    return decisions_of(mutate_cell(cell_of_decisions(v), rng));
  }
  std::vector<int> crossover_decisions(const std::vector<int>& a, const std::vector<int>& b,
                                       Rng& rng) const override {
    return decisions_of(crossover_cells(cell_of_decisions(a), cell_of_decisions(b), rng));
  }
  std::vector<float> encode_onehot_decisions(const std::vector<int>& v) const override {
    return onehot_of(cell_of_decisions(v));
  }
  std::vector<float> encode_path_decisions(const std::vector<int>& v) const override {
    return path_of(cell_of_decisions(v));
  }
  std::string describe_decisions(const std::vector<int>& v) const override {
    return cell_string(cell_of_decisions(v));
  }

  // One choice per edge, in the arch string's order.
  std::vector<Decision> decisions() const override {
    std::vector<Decision> out;
    for (int e = 0; e < kEdges; ++e)
      out.push_back({"edge[" + std::to_string(e) + "](" +
                         std::to_string(kEdgeFrom[static_cast<std::size_t>(e)]) + "->" +
                         std::to_string(kEdgeTo[static_cast<std::size_t>(e)]) + ").op",
                     kNumOps});
    return out;
  }

  Genome decode(const std::vector<int>& values) const override {
    return build(cell_of_decisions(values));
  }

  std::vector<int> encode_decisions(const Genome& g) const override {
    return decisions_of(cell_of(g));
  }

  std::optional<std::uint64_t> size() const override { return 15625; }

  Genome at(std::uint64_t index) const override {
    if (index >= 15625)
      throw std::out_of_range("nb201: index " + std::to_string(index) + " >= 15625");
    return build(cell_at(index));
  }

  std::string describe(const Genome& g) const override { return cell_string(cell_of(g)); }
  Genome parse(const std::string& s) const override { return build(parse_cell(s)); }

  nlohmann::json to_json() const override {
    return {{"type", "nb201"}, {"input", input_.to_json()}, {"outputs", outputs_}};
  }

 private:
  TensorType input_;
  int outputs_;
};

}  // namespace

std::unique_ptr<Space> make_nb201_space(const json& def) {
  check_keys(def, "space", {"type", "input", "outputs"});
  TensorType input = TensorType::image(3, 32, 32);
  if (def.contains("input")) input = TensorType::from_json(def["input"], "space.input");
  if (input.kind != DataKind::Image) fail("space.input.kind", "the nb201 space needs image input");
  if (input.dims[1] % 4 || input.dims[2] % 4)
    fail("space.input.shape",
         input.str() + ": height and width must be divisible by 4 (two reductions)");
  int outputs = read_int_or(def, "outputs", "space", 1, 100000, 10);
  return std::make_unique<Nb201Space>(input, outputs);
}

}  // namespace hwnas::spaces::detail

namespace hwnas::spaces {

int nb201_index(std::string_view s) {
  using namespace detail;
  // Groups "|a~0|", "|b~0|c~1|", "|d~0|e~1|f~2|" joined by '+'.
  static constexpr std::array<std::string_view, 5> ops = {"none", "skip_connect", "nor_conv_1x1",
                                                          "nor_conv_3x3", "avg_pool_3x3"};
  std::size_t p = 0;
  int index = 0;
  for (int j = 0; j < 3; ++j) {
    if (j > 0 && (p >= s.size() || s[p++] != '+')) return -1;
    if (p >= s.size() || s[p++] != '|') return -1;
    for (int i = 0; i <= j; ++i) {
      const std::size_t tilde = s.find('~', p);
      if (tilde == std::string_view::npos) return -1;
      const std::string_view op = s.substr(p, tilde - p);
      int k = -1;
      for (int o = 0; o < 5; ++o)
        if (op == ops[static_cast<std::size_t>(o)]) k = o;
      if (k < 0 || tilde + 2 >= s.size() || s[tilde + 1] != char('0' + i) || s[tilde + 2] != '|')
        return -1;
      index = index * 5 + k;
      p = tilde + 3;
    }
  }
  return p == s.size() ? index : -1;
}

int nb201_live_index(int index) {
  using namespace detail;
  if (index < 0 || index >= 15625)
    throw std::out_of_range("nb201 cell index " + std::to_string(index) + " outside [0, 15625)");
  const Cell c = cell_at(static_cast<std::uint64_t>(index));
  // The output node is zero when every edge into it is none; then nothing before it reaches the
  // output.  (Zero nodes 1 and 2 need no flag: ops reading them still run, as in node_roles.)
  bool output_zero = true;
  for (int e = 0; e < kEdges; ++e)
    if (kEdgeTo[static_cast<std::size_t>(e)] == 3 && c[static_cast<std::size_t>(e)] != 0)
      output_zero = false;
  std::array<bool, 4> live{};
  live[3] = !output_zero;
  for (int j = 2; j >= 0; --j)  // node j reaches the output through a non-none edge to a live node
    for (int e = 0; e < kEdges; ++e)
      if (kEdgeFrom[static_cast<std::size_t>(e)] == j && c[static_cast<std::size_t>(e)] != 0 &&
          live[static_cast<std::size_t>(kEdgeTo[static_cast<std::size_t>(e)])])
        live[static_cast<std::size_t>(j)] = true;
  int live_index = 0;
  for (int e = 0; e < kEdges; ++e) {
    const bool dead = !live[static_cast<std::size_t>(kEdgeTo[static_cast<std::size_t>(e)])];
    live_index = live_index * kNumOps + (dead ? 0 : c[static_cast<std::size_t>(e)]);
  }
  return live_index;
}

std::string nb201_string(int index) {
  return detail::cell_string(detail::cell_at(static_cast<std::uint64_t>(index)));
}

}  // namespace hwnas::spaces
