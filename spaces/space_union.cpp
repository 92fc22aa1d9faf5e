// Union spaces: one search over several spaces that take the same input and give the same
// outputs, e.g. a spiking network family next to a classic one, so that one run puts both on
// the same Pareto front.
//
// {"type": "union", "spaces": [<space definition>, ...],
//  "weights": [1, 1],                 (optional: sampling weight of each branch, default equal)
//  "switch_probability": 0.2}         (optional: chance that a mutation jumps to another branch)
//
// A genome remembers its branch in meta {"space": "union", "branch": i, "inner": <the branch's
// own meta>}; every operator hands the branch's own genome to that branch.  Neighbours stay in
// the branch (a jump has no single nearest architecture); mutation reaches the other branches.
#include <numeric>

#include "spaces/space_common.hpp"

namespace hwnas::spaces::detail {
namespace {

class UnionSpace : public Space {
 public:
  UnionSpace(json def, std::vector<std::unique_ptr<Space>> branches, std::vector<double> weights,
             double switch_probability)
      : def_(std::move(def)),
        branches_(std::move(branches)),
        weights_(std::move(weights)),
        switch_(switch_probability) {
    // Encoding lengths per branch, from one fixed sample each (encodings are fixed-length).
    Rng rng(12345);
    for (const auto& b : branches_) {
      Genome g = b->sample(rng);
      onehot_len_.push_back(b->encode_onehot(g).size());
      path_len_.push_back(b->encode_path(g).size());
    }
  }

  std::string type() const override { return "union"; }
  TensorType input_type() const override { return branches_.front()->input_type(); }
  int num_outputs() const override { return branches_.front()->num_outputs(); }
  json to_json() const override { return def_; }

  Genome sample(Rng& rng) const override {
    std::discrete_distribution<std::size_t> pick_branch(weights_.begin(), weights_.end());
    const std::size_t b = pick_branch(rng);
    return wrap(b, branches_[b]->sample(rng));
  }

  Genome mutate(const Genome& g, Rng& rng) const override {
    const std::size_t b = branch_of(g);
    std::vector<double> w = weights_;
    w[b] = 0;
    const bool others = std::accumulate(w.begin(), w.end(), 0.0) > 0;
    if (others && std::bernoulli_distribution(switch_)(rng)) {
      // Another branch, chosen by weight among the others.
      std::discrete_distribution<std::size_t> pick_branch(w.begin(), w.end());
      const std::size_t other = pick_branch(rng);
      return wrap(other, branches_[other]->sample(rng));
    }
    return wrap(b, branches_[b]->mutate(inner(g), rng));
  }

  Genome crossover(const Genome& a, const Genome& b, Rng& rng) const override {
    const std::size_t ba = branch_of(a), bb = branch_of(b);
    if (ba == bb) return wrap(ba, branches_[ba]->crossover(inner(a), inner(b), rng));
    // Parents from different families share no decisions: the child is one of them.
    return std::bernoulli_distribution(0.5)(rng) ? a : b;
  }

  std::vector<Genome> neighbours(const Genome& g) const override {
    const std::size_t b = branch_of(g);
    std::vector<Genome> out;
    for (auto& n : branches_[b]->neighbours(inner(g))) out.push_back(wrap(b, std::move(n)));
    return out;
  }

  bool contains(const Genome& g) const override {
    const json& m = g.meta();
    if (!m.is_object() || m.value("space", "") != "union" || !m.contains("branch") ||
        !m["branch"].is_number_unsigned() || m["branch"].get<std::size_t>() >= branches_.size())
      return false;
    return branches_[m["branch"].get<std::size_t>()]->contains(inner(g));
  }

  // Branch one-hot, then every branch's encoding in turn (zeros for the other branches).
  std::vector<float> encode_onehot(const Genome& g) const override {
    return encode(g, onehot_len_,
                  [](const Space& s, const Genome& x) { return s.encode_onehot(x); });
  }
  std::vector<float> encode_path(const Genome& g) const override {
    return encode(g, path_len_, [](const Space& s, const Genome& x) { return s.encode_path(x); });
  }

  // "branch", then every branch's decisions in turn ("spaces[i]." prefixed); only the chosen
  // branch's part is read.
  std::vector<Decision> decisions() const override {
    std::vector<Decision> out{{"branch", static_cast<int>(branches_.size())}};
    for (std::size_t b = 0; b < branches_.size(); ++b)
      for (auto d : branches_[b]->decisions()) {
        d.name = "spaces[" + std::to_string(b) + "]." + d.name;
        out.push_back(std::move(d));
      }
    return out;
  }

  Genome decode(const std::vector<int>& values) const override {
    check_decision_values(decisions(), values, "union");
    const auto b = static_cast<std::size_t>(values[0]);
    std::size_t start = 1;
    for (std::size_t i = 0; i < b; ++i) start += branches_[i]->decisions().size();
    const auto first = values.begin() + static_cast<std::ptrdiff_t>(start);
    const auto n = static_cast<std::ptrdiff_t>(branches_[b]->decisions().size());
    return wrap(b, branches_[b]->decode(std::vector<int>(first, first + n)));
  }

  std::vector<int> encode_decisions(const Genome& g) const override {
    const std::size_t b = branch_of(g);
    std::vector<int> out{static_cast<int>(b)};
    for (std::size_t i = 0; i < branches_.size(); ++i) {
      if (i == b) {
        const auto inner_values = branches_[i]->encode_decisions(inner(g));
        out.insert(out.end(), inner_values.begin(), inner_values.end());
      } else {
        out.insert(out.end(), branches_[i]->decisions().size(), 0);
      }
    }
    return out;
  }

  std::optional<std::uint64_t> size() const override {
    std::uint64_t total = 0;
    for (const auto& b : branches_) {
      auto n = b->size();
      if (!n || *n > UINT64_MAX - total) return std::nullopt;
      total += *n;
    }
    return total;
  }

  std::vector<Genome> enumerate() const override {
    auto n = size();
    if (!n || *n > 1000000)
      throw std::logic_error("union space has " +
                             (n ? std::to_string(*n) : std::string("unbounded")) +
                             " architectures, too many to enumerate");
    std::vector<Genome> out;
    for (std::size_t b = 0; b < branches_.size(); ++b)
      for (auto& g : branches_[b]->enumerate()) out.push_back(wrap(b, std::move(g)));
    return out;
  }

  Genome at(std::uint64_t index) const override {
    for (std::size_t b = 0; b < branches_.size(); ++b) {
      auto n = branches_[b]->size();
      if (!n) throw std::logic_error("union space: branch " + std::to_string(b) + " is not finite");
      if (index < *n) return wrap(b, branches_[b]->at(index));
      index -= *n;
    }
    throw std::out_of_range("union space: index past the last architecture");
  }

  // {"branch": i, "arch": <the branch's own description>}
  std::string describe(const Genome& g) const override {
    const std::size_t b = branch_of(g);
    return json{{"branch", b}, {"arch", branches_[b]->describe(inner(g))}}.dump();
  }

  Genome parse(const std::string& s) const override {
    json j;
    try {
      j = json::parse(s);
    } catch (const json::parse_error& e) {
      throw std::invalid_argument(std::string("union architecture string is not JSON: ") +
                                  e.what());
    }
    if (!j.is_object() || !j.contains("branch") || !j["branch"].is_number_unsigned() ||
        !j.contains("arch") || !j["arch"].is_string())
      throw std::invalid_argument(
          "union architecture string must be {\"branch\": i, \"arch\": \"<branch's string>\"}");
    const std::size_t b = j["branch"].get<std::size_t>();
    if (b >= branches_.size())
      throw std::invalid_argument("union architecture: branch " + std::to_string(b) +
                                  " out of range (the space has " +
                                  std::to_string(branches_.size()) + ")");
    return wrap(b, branches_[b]->parse(j["arch"].get<std::string>()));
  }

 private:
  static Genome wrap(std::size_t branch, Genome g) {
    json m = {{"space", "union"}, {"branch", branch}, {"inner", g.meta()}};
    g.meta() = std::move(m);
    return g;
  }
  static Genome inner(const Genome& g) {
    Genome c = g;
    c.meta() = g.meta().value("inner", json::object());
    return c;
  }
  std::size_t branch_of(const Genome& g) const {
    const json& m = g.meta();
    if (!m.is_object() || m.value("space", "") != "union" || !m.contains("branch") ||
        !m["branch"].is_number_unsigned() || m["branch"].get<std::size_t>() >= branches_.size())
      throw std::invalid_argument(
          "genome carries no union branch (meta.branch): not produced by this space");
    return m["branch"].get<std::size_t>();
  }

  template <class F>
  std::vector<float> encode(const Genome& g, const std::vector<std::size_t>& lens,
                            F&& encode_branch) const {
    const std::size_t b = branch_of(g);
    std::vector<float> v(branches_.size(), 0.0f);
    v[b] = 1.0f;
    for (std::size_t i = 0; i < branches_.size(); ++i) {
      if (i != b) {
        v.insert(v.end(), lens[i], 0.0f);
        continue;
      }
      std::vector<float> e = encode_branch(*branches_[i], inner(g));
      e.resize(lens[i], 0.0f);  // fixed length per branch
      v.insert(v.end(), e.begin(), e.end());
    }
    return v;
  }

  json def_;
  std::vector<std::unique_ptr<Space>> branches_;
  std::vector<double> weights_;
  double switch_;
  std::vector<std::size_t> onehot_len_, path_len_;
};

}  // namespace

std::unique_ptr<Space> make_union_space(const json& def) {
  check_keys(def, "space",
             {"type", "spaces", "weights", "switch_probability", "name", "description"});
  if (!def.contains("spaces") || !def["spaces"].is_array() || def["spaces"].size() < 2)
    fail("space.spaces", "must be an array of at least two space definitions");
  std::vector<std::unique_ptr<Space>> branches;
  for (std::size_t i = 0; i < def["spaces"].size(); ++i) {
    const std::string path = "space.spaces[" + std::to_string(i) + "]";
    const json& sub = def["spaces"][i];
    if (sub.is_object() && sub.value("type", "") == "union")
      fail(path + ".type", "a union cannot hold another union; list its spaces here instead");
    try {
      branches.push_back(make_space(sub));
    } catch (const std::invalid_argument& e) {
      // The branch names its fields from "space."; name them from here instead.
      std::string msg = e.what();
      if (msg.rfind("space", 0) == 0) msg = path + msg.substr(5);
      throw std::invalid_argument(msg);
    }
    const Space& first = *branches.front();
    if (!(branches.back()->input_type() == first.input_type()))
      fail(path + ".input", branches.back()->input_type().str() + " differs from spaces[0]'s " +
                                first.input_type().str() +
                                "; every branch must take the same input");
    if (branches.back()->num_outputs() != first.num_outputs())
      fail(path + ".outputs", std::to_string(branches.back()->num_outputs()) +
                                  " differs from spaces[0]'s " +
                                  std::to_string(first.num_outputs()));
  }
  std::vector<double> weights(branches.size(), 1.0);
  if (def.contains("weights") && def["weights"] != json("equal")) {
    const json& w = def["weights"];
    if (!w.is_array() || w.size() != branches.size())
      fail("space.weights",
           "must list one weight per space (" + std::to_string(branches.size()) + ")");
    double total = 0;
    for (std::size_t i = 0; i < w.size(); ++i) {
      if (!w[i].is_number() || w[i].get<double>() < 0)
        fail("space.weights[" + std::to_string(i) + "]",
             w[i].dump() + " must be a non-negative number");
      weights[i] = w[i].get<double>();
      total += weights[i];
    }
    if (total <= 0) fail("space.weights", "at least one weight must be positive");
  }
  double sw = 0.2;
  if (def.contains("switch_probability")) {
    const json& s = def["switch_probability"];
    if (!s.is_number() || s.get<double>() < 0 || s.get<double>() > 1)
      fail("space.switch_probability", s.dump() + " must be a number in [0, 1]");
    sw = s.get<double>();
  }
  return std::make_unique<UnionSpace>(def, std::move(branches), std::move(weights), sw);
}

}  // namespace hwnas::spaces::detail
