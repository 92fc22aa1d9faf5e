// Cell spaces (DARTS-style): one cell with N intermediate nodes; node j takes
// min(inputs_per_node, j) distinct earlier nodes (0 = the cell input), each through an op from
// the candidate set, and sums them; the cell output concatenates all intermediate nodes and a
// 1x1 conv restores the channel count.  The cell is stacked by the NB201 skeleton: stem conv,
// stages of `cells` cells at `channels`, residual reduction blocks between stages, classifier.
//
// {"type": "cell", "input": {"kind": "image", "shape": [3,32,32]}, "outputs": 10,
//  "nodes": 4, "inputs_per_node": 2,
//  "ops": ["nor_conv_3x3", "skip_connect", {"name": "dw5", "kind": "dwconv", "params": {"kernel":
//  5}}], "stages": [{"cells": 2, "channels": 16}, {"cells": 2, "channels": 32}]}
//
// Ops must keep the shape of their input.  Architecture strings use the NB201 form,
// "|op~0|+|op~0|op~1|+...", listing each node's chosen (op, input) pairs by input index.
#include <algorithm>

#include "spaces/space_common.hpp"

namespace hwnas::spaces::detail {
namespace {

struct OpDef {
  std::string name, kind;
  json params = json::object();
};

// Per intermediate node: (input index, op index) pairs sorted by input.
using CellNode = std::vector<std::pair<int, int>>;
using Cell = std::vector<CellNode>;

class CellSpace : public Space {
 public:
  CellSpace(json def, TensorType input, int outputs, int nodes, int k, std::vector<OpDef> ops,
            std::vector<SkeletonStage> stages)
      : def_(std::move(def)),
        input_(std::move(input)),
        outputs_(outputs),
        nodes_(nodes),
        k_(k),
        ops_(std::move(ops)),
        stages_(std::move(stages)) {}

  std::string type() const override { return "cell"; }
  TensorType input_type() const override { return input_; }
  int num_outputs() const override { return outputs_; }
  json to_json() const override { return def_; }

  int fan(int j) const { return std::min(k_, j); }  // inputs of node j (1-based)

  Genome build(const Cell& c) const {
    Genome g(input_);
    auto cell = [&](Genome& gg, Genome::NodeId x, int channels) {
      std::vector<Genome::NodeId> node{x};
      for (int j = 1; j <= nodes_; ++j) {
        std::vector<Genome::NodeId> terms;
        for (auto [from, op] : c[static_cast<std::size_t>(j - 1)]) {
          const OpDef& o = ops_[static_cast<std::size_t>(op)];
          auto v = gg.add_node(o.kind, o.params);
          gg.add_edge(node[static_cast<std::size_t>(from)], v);
          terms.push_back(v);
        }
        if (terms.size() == 1) {
          node.push_back(terms[0]);
        } else {
          auto sum = gg.add_node("add");
          for (auto t : terms) gg.add_edge(t, sum);
          node.push_back(sum);
        }
      }
      Genome::NodeId out = node.back();
      if (nodes_ > 1) {
        out = gg.add_node("concat");
        for (int j = 1; j <= nodes_; ++j) gg.add_edge(node[static_cast<std::size_t>(j)], out);
      }
      auto proj =
          gg.add_node("conv", {{"channels", channels}, {"kernel", 1}, {"activation", "none"}});
      gg.add_edge(out, proj);
      return proj;
    };
    auto x = build_skeleton(g, stages_, cell);
    const int div = 1 << (stages_.size() - 1);
    add_classifier_tail(
        g, x,
        TensorType::image(stages_.back().channels, input_.dims[1] / div, input_.dims[2] / div),
        outputs_);
    g.validate();
    g.meta() = {{"space", "cell"}, {"arch", cell_string(c)}};
    return g;
  }

  std::string cell_string(const Cell& c) const {
    std::string s;
    for (std::size_t j = 0; j < c.size(); ++j) {
      s += j == 0 ? "|" : "+|";
      for (auto [from, op] : c[j])
        s += ops_[static_cast<std::size_t>(op)].name + "~" + std::to_string(from) + "|";
    }
    return s;
  }

  Cell parse_cell(const std::string& s) const {
    auto bad = [&](const std::string& why) {
      return std::invalid_argument("cell arch string '" + s + "': " + why);
    };
    Cell c;
    std::size_t start = 0;
    std::vector<std::string> groups;
    while (true) {
      std::size_t plus = s.find('+', start);
      groups.push_back(
          s.substr(start, plus == std::string::npos ? std::string::npos : plus - start));
      if (plus == std::string::npos) break;
      start = plus + 1;
    }
    if (static_cast<int>(groups.size()) != nodes_)
      throw bad("needs " + std::to_string(nodes_) + " node groups");
    for (int j = 1; j <= nodes_; ++j) {
      const std::string& grp = groups[static_cast<std::size_t>(j - 1)];
      if (grp.size() < 2 || grp.front() != '|' || grp.back() != '|')
        throw bad("group " + std::to_string(j) + " must be |op~i|...|");
      CellNode node;
      std::size_t p = 1;
      while (p < grp.size()) {
        std::size_t q = grp.find('|', p);
        std::string tok = grp.substr(p, q - p);
        p = q + 1;
        auto tilde = tok.find('~');
        if (tilde == std::string::npos) throw bad("token '" + tok + "' lacks '~'");
        int op = -1;
        for (std::size_t i = 0; i < ops_.size(); ++i)
          if (ops_[i].name == tok.substr(0, tilde)) op = static_cast<int>(i);
        if (op < 0) throw bad("unknown op '" + tok.substr(0, tilde) + "'");
        int from = -1;
        try {
          from = std::stoi(tok.substr(tilde + 1));
        } catch (const std::exception&) {
        }
        if (from < 0 || from >= j)
          throw bad("node " + std::to_string(j) + " cannot read from '" + tok.substr(tilde + 1) +
                    "'");
        node.emplace_back(from, op);
      }
      std::sort(node.begin(), node.end());
      if (static_cast<int>(node.size()) != fan(j))
        throw bad("node " + std::to_string(j) + " needs " + std::to_string(fan(j)) + " inputs");
      for (std::size_t i = 1; i < node.size(); ++i)
        if (node[i].first == node[i - 1].first)
          throw bad("node " + std::to_string(j) + " reads node " + std::to_string(node[i].first) +
                    " twice");
      c.push_back(node);
    }
    return c;
  }

  Cell cell_of(const Genome& g) const {
    if (!g.meta().contains("arch") || !g.meta()["arch"].is_string())
      throw std::invalid_argument(
          "genome carries no cell architecture (meta.arch): not produced by this space");
    return parse_cell(g.meta()["arch"].get<std::string>());
  }

  CellNode sample_node(int j, Rng& rng) const {
    std::vector<int> froms(static_cast<std::size_t>(j));
    for (int i = 0; i < j; ++i) froms[static_cast<std::size_t>(i)] = i;
    std::shuffle(froms.begin(), froms.end(), rng);
    CellNode n;
    for (int i = 0; i < fan(j); ++i)
      n.emplace_back(froms[static_cast<std::size_t>(i)],
                     static_cast<int>(pick_index(ops_.size(), rng)));
    std::sort(n.begin(), n.end());
    return n;
  }

  Genome sample(Rng& rng) const override {
    Cell c;
    for (int j = 1; j <= nodes_; ++j) c.push_back(sample_node(j, rng));
    return build(c);
  }

  // Single changes: an input's op, or rewiring an input to another unused earlier node.
  std::vector<Cell> alternatives(const Cell& c) const {
    std::vector<Cell> out;
    for (int j = 1; j <= nodes_; ++j) {
      const CellNode& node = c[static_cast<std::size_t>(j - 1)];
      for (std::size_t e = 0; e < node.size(); ++e) {
        for (int op = 0; op < static_cast<int>(ops_.size()); ++op)
          if (op != node[e].second) {
            Cell n = c;
            n[static_cast<std::size_t>(j - 1)][e].second = op;
            out.push_back(n);
          }
        for (int from = 0; from < j; ++from) {
          bool used = false;
          for (auto [f, o] : node) used |= f == from;
          if (used) continue;
          Cell n = c;
          auto& nn = n[static_cast<std::size_t>(j - 1)];
          nn[e].first = from;
          std::sort(nn.begin(), nn.end());
          out.push_back(n);
        }
      }
    }
    return out;
  }

  Genome mutate(const Genome& g, Rng& rng) const override {
    auto alts = alternatives(cell_of(g));
    if (alts.empty()) return build(cell_of(g));
    return build(alts[pick_index(alts.size(), rng)]);
  }

  Genome crossover(const Genome& a, const Genome& b, Rng& rng) const override {
    Cell ca = cell_of(a), cb = cell_of(b), child;
    std::bernoulli_distribution coin(0.5);
    for (std::size_t j = 0; j < ca.size(); ++j) child.push_back(coin(rng) ? ca[j] : cb[j]);
    return build(child);
  }

  std::vector<Genome> neighbours(const Genome& g) const override {
    std::vector<Genome> out;
    for (const auto& c : alternatives(cell_of(g))) out.push_back(build(c));
    return out;
  }

  bool contains(const Genome& g) const override {
    try {
      return build(cell_of(g)).hash() == g.hash();
    } catch (const std::invalid_argument&) {
      return false;
    }
  }

  // Per node j and candidate input i < j: the op's one-hot if that edge is chosen, else zeros.
  std::vector<float> encode_onehot(const Genome& g) const override {
    Cell c = cell_of(g);
    std::vector<float> v;
    for (int j = 1; j <= nodes_; ++j)
      for (int i = 0; i < j; ++i) {
        int op = -1;
        for (auto [f, o] : c[static_cast<std::size_t>(j - 1)])
          if (f == i) op = o;
        for (int k = 0; k < static_cast<int>(ops_.size()); ++k) v.push_back(k == op ? 1.0f : 0.0f);
      }
    return v;
  }

  // BANANAS-style path encoding: one feature per op sequence (length 1..N) along a path from
  // the cell input to any intermediate node (all reach the output through the concat); paths
  // through a "none" op are dead.  Length sum_{l=1..N} |ops|^l.
  std::vector<float> encode_path(const Genome& g) const override {
    Cell c = cell_of(g);
    const std::size_t n_ops = ops_.size();
    std::vector<std::size_t> offset{0};
    std::size_t width = 1, total = 0;
    for (int l = 1; l <= nodes_; ++l) {
      width *= n_ops;
      total += width;
      offset.push_back(total);
    }
    std::vector<float> v(total, 0.0f);
    // paths[j]: op sequences (as indices) of live paths from node 0 to node j.
    std::vector<std::vector<std::vector<int>>> paths(static_cast<std::size_t>(nodes_ + 1));
    paths[0].push_back({});
    for (int j = 1; j <= nodes_; ++j)
      for (auto [from, op] : c[static_cast<std::size_t>(j - 1)]) {
        if (ops_[static_cast<std::size_t>(op)].kind == "none") continue;
        for (auto p : paths[static_cast<std::size_t>(from)]) {
          p.push_back(op);
          std::size_t idx = 0;
          for (int o : p) idx = idx * n_ops + static_cast<std::size_t>(o);
          v[offset[p.size() - 1] + idx] = 1.0f;
          paths[static_cast<std::size_t>(j)].push_back(std::move(p));
        }
      }
    return v;
  }

  // Per node j and input slot s: which earlier node (the rank among the nodes slots 0..s-1 did
  // not take, so every value is valid and no node is read twice) and which op.  Slots are
  // filled in input order, so encoding a cell gives the ranks of its sorted inputs.
  std::vector<Decision> decisions() const override {
    std::vector<Decision> out;
    for (int j = 1; j <= nodes_; ++j)
      for (int s = 0; s < fan(j); ++s) {
        const std::string p = "node[" + std::to_string(j) + "].input[" + std::to_string(s) + "]";
        out.push_back({p + ".from", j - s});
        out.push_back({p + ".op", static_cast<int>(ops_.size())});
      }
    return out;
  }

  Genome decode(const std::vector<int>& values) const override {
    check_decision_values(decisions(), values, "cell");
    Cell c;
    std::size_t k = 0;
    for (int j = 1; j <= nodes_; ++j) {
      std::vector<int> free(static_cast<std::size_t>(j));
      for (int i = 0; i < j; ++i) free[static_cast<std::size_t>(i)] = i;
      CellNode node;
      for (int s = 0; s < fan(j); ++s, k += 2) {
        const auto at = free.begin() + values[k];
        node.emplace_back(*at, values[k + 1]);
        free.erase(at);
      }
      std::sort(node.begin(), node.end());
      c.push_back(std::move(node));
    }
    return build(c);
  }

  std::vector<int> encode_decisions(const Genome& g) const override {
    Cell c = cell_of(g);
    std::vector<int> out;
    for (int j = 1; j <= nodes_; ++j) {
      std::vector<int> free(static_cast<std::size_t>(j));
      for (int i = 0; i < j; ++i) free[static_cast<std::size_t>(i)] = i;
      for (auto [from, op] : c[static_cast<std::size_t>(j - 1)]) {
        const auto at = std::find(free.begin(), free.end(), from);
        out.push_back(static_cast<int>(at - free.begin()));
        out.push_back(op);
        free.erase(at);
      }
    }
    return out;
  }

  // Choices of node j: C(j, fan) input sets times |ops|^fan.
  std::vector<CellNode> node_choices(int j) const {
    std::vector<CellNode> out;
    const int f = fan(j);
    std::vector<int> sel(static_cast<std::size_t>(f));
    std::function<void(int, int)> rec_inputs = [&](int pos, int start) {
      if (pos == f) {
        std::size_t combos = 1;
        for (int i = 0; i < f; ++i) combos *= ops_.size();
        for (std::size_t m = 0; m < combos; ++m) {
          CellNode n;
          std::size_t r = m;
          for (int i = f - 1; i >= 0; --i) {
            n.emplace_back(sel[static_cast<std::size_t>(i)], static_cast<int>(r % ops_.size()));
            r /= ops_.size();
          }
          std::sort(n.begin(), n.end());
          out.push_back(n);
        }
        return;
      }
      for (int i = start; i < j; ++i) {
        sel[static_cast<std::size_t>(pos)] = i;
        rec_inputs(pos + 1, i + 1);
      }
    };
    rec_inputs(0, 0);
    return out;
  }

  std::optional<std::uint64_t> size() const override {
    long double total = 1;
    for (int j = 1; j <= nodes_; ++j) total *= static_cast<long double>(node_choices_count(j));
    if (total > 9.0e18L) return std::nullopt;
    return static_cast<std::uint64_t>(total);
  }

  std::uint64_t node_choices_count(int j) const {
    const int f = fan(j);
    std::uint64_t comb = 1;
    for (int i = 0; i < f; ++i)
      comb = comb * static_cast<std::uint64_t>(j - i) / static_cast<std::uint64_t>(i + 1);
    for (int i = 0; i < f; ++i) comb *= ops_.size();
    return comb;
  }

  Genome at(std::uint64_t index) const override {
    auto n = size();
    if (!n || index >= *n)
      throw std::out_of_range("cell space: index " + std::to_string(index) + " out of range");
    Cell c(static_cast<std::size_t>(nodes_));
    for (int j = nodes_; j >= 1; --j) {
      auto choices = node_choices(j);
      c[static_cast<std::size_t>(j - 1)] =
          choices[static_cast<std::size_t>(index % choices.size())];
      index /= choices.size();
    }
    return build(c);
  }

  std::string describe(const Genome& g) const override { return cell_string(cell_of(g)); }
  Genome parse(const std::string& s) const override { return build(parse_cell(s)); }

 private:
  json def_;
  TensorType input_;
  int outputs_, nodes_, k_;
  std::vector<OpDef> ops_;
  std::vector<SkeletonStage> stages_;
};

}  // namespace

std::unique_ptr<Space> make_cell_space(const json& def) {
  check_keys(def, "space",
             {"type", "input", "outputs", "nodes", "inputs_per_node", "ops", "stages", "name",
              "description"});
  if (!def.contains("input"))
    fail("space.input", "missing; e.g. {\"kind\": \"image\", \"shape\": [3, 32, 32]}");
  TensorType input = TensorType::from_json(def["input"], "space.input");
  if (input.kind != DataKind::Image) fail("space.input.kind", "cell spaces need image input");
  int outputs = read_int(def, "outputs", "space", 1, 100000);
  int nodes = read_int(def, "nodes", "space", 1, 8);
  int k = read_int_or(def, "inputs_per_node", "space", 1, 8, 2);

  if (!def.contains("stages") || !def["stages"].is_array() || def["stages"].empty())
    fail("space.stages", "must be a non-empty array of {\"cells\", \"channels\"}");
  std::vector<SkeletonStage> stages;
  for (std::size_t s = 0; s < def["stages"].size(); ++s) {
    const json& sj = def["stages"][s];
    const std::string sp = "space.stages[" + std::to_string(s) + "]";
    check_keys(sj, sp, {"cells", "channels"});
    stages.push_back({read_int(sj, "cells", sp, 1, 64), read_int(sj, "channels", sp, 1, 4096)});
  }
  const int div = 1 << (stages.size() - 1);
  if (input.dims[1] % div || input.dims[2] % div)
    fail("space.input.shape", input.str() + ": height and width must be divisible by " +
                                  std::to_string(div) + " (" + std::to_string(stages.size() - 1) +
                                  " reductions)");

  if (!def.contains("ops") || !def["ops"].is_array() || def["ops"].empty())
    fail("space.ops",
         "must be a non-empty array of candidate ops (an empty op set has no architectures)");
  std::vector<OpDef> ops;
  const Catalogue& cat = catalogue();
  for (std::size_t i = 0; i < def["ops"].size(); ++i) {
    const json& oj = def["ops"][i];
    const std::string op = "space.ops[" + std::to_string(i) + "]";
    OpDef o;
    if (oj.is_string()) {
      o.name = o.kind = oj.get<std::string>();
    } else if (oj.is_object()) {
      check_keys(oj, op, {"name", "kind", "params"});
      if (!oj.contains("kind") || !oj["kind"].is_string()) fail(op + ".kind", "missing block kind");
      o.kind = oj["kind"].get<std::string>();
      o.name = oj.value("name", o.kind);
      o.params = oj.value("params", json::object());
    } else {
      fail(op, "must be a block kind name or {\"name\", \"kind\", \"params\"}");
    }
    const BlockKind* kind = cat.find(o.kind);
    if (!kind) fail(op, "unknown block kind '" + o.kind + "' (known: " + cat.known_list() + ")");
    if (o.name.empty() || o.name.find_first_of("|~+") != std::string::npos)
      fail(op + ".name", "'" + o.name + "' must be non-empty without | ~ +");
    for (const auto& prev : ops)
      if (prev.name == o.name) fail(op, "duplicate op name '" + o.name + "'");
    for (std::size_t s = 0; s < stages.size(); ++s) {
      TensorType t = TensorType::image(stages[s].channels, input.dims[1] >> s, input.dims[2] >> s);
      try {
        TensorType out = infer_type(o.kind, {t}, o.params);
        if (!(out == t))
          fail(op, "'" + o.name + "' changes " + t.str() + " to " + out.str() +
                       "; cell ops must keep the shape");
      } catch (const std::invalid_argument& e) {
        if (std::string(e.what()).rfind(op, 0) == 0) throw;
        fail(op, e.what());
      }
    }
    ops.push_back(std::move(o));
  }
  return std::make_unique<CellSpace>(def, input, outputs, nodes, k, std::move(ops),
                                     std::move(stages));
}

}  // namespace hwnas::spaces::detail
