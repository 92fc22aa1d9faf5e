#include "spaces/model_builder.hpp"

#include "spaces/catalogue.hpp"

namespace hwnas::spaces {

namespace {
class GenomeModelImpl : public GenomeModel {
 public:
  explicit GenomeModelImpl(const Genome& g, std::uint64_t seed) : genome_(g) {
    genome_.validate();
    Rng rng(seed);
    order_ = genome_.topological_order();
    const std::size_t n = genome_.num_nodes();
    modules_.resize(n);
    inputs_.resize(n);
    consumers_.assign(n, 0);
    for (auto v : order_) {
      inputs_[v] = genome_.inputs_of(v);
      for (auto u : inputs_[v]) ++consumers_[u];
      if (v == genome_.input_node()) continue;
      const BlockNode& b = genome_.node(v);
      const BlockKind& kind = catalogue().at(b.kind);
      std::vector<TensorType> in_types;
      for (auto u : inputs_[v]) in_types.push_back(genome_.node(u).out);
      modules_[v] = kind.build(in_types, kind.resolve(b.params), rng);
    }
    output_ = genome_.output_node();
  }

  nn::Var forward(const nn::Var& x, nn::ForwardContext& ctx) override {
    const std::size_t n = genome_.num_nodes();
    // Activations are released as soon as their last consumer has run.
    std::vector<nn::Var> act(n);
    std::vector<int> remaining = consumers_;
    for (auto v : order_) {
      if (v == genome_.input_node()) {
        act[v] = x;
        continue;
      }
      std::vector<nn::Var> in;
      in.reserve(inputs_[v].size());
      for (auto u : inputs_[v]) in.push_back(act[u]);
      act[v] = modules_[v]->forward(in, ctx);
      for (auto u : inputs_[v])
        if (--remaining[u] == 0) act[u] = nn::Var();
    }
    return act[output_];
  }

  // Each node's tensors are named after its node id: "n3.conv.weight".
  void append_named_parameters(const std::string& prefix,
                               std::vector<nn::NamedParameter>& out) override {
    for (auto v : order_)
      if (modules_[v])
        modules_[v]->append_named_parameters(prefix + "n" + std::to_string(v) + ".", out);
  }
  void append_named_buffers(const std::string& prefix, std::vector<nn::NamedBuffer>& out) override {
    for (auto v : order_)
      if (modules_[v])
        modules_[v]->append_named_buffers(prefix + "n" + std::to_string(v) + ".", out);
  }

  std::int64_t num_parameters() override {
    std::vector<nn::Var> ps;
    collect_parameters(ps);
    std::int64_t total = 0;
    for (const auto& p : ps) total += p.value().numel();
    return total;
  }

  std::string name() const override { return "genome_model"; }

 private:
  Genome genome_;
  std::vector<Genome::NodeId> order_;
  std::vector<std::unique_ptr<nn::Module>> modules_;
  std::vector<std::vector<Genome::NodeId>> inputs_;
  std::vector<int> consumers_;
  Genome::NodeId output_ = 0;
};
}  // namespace

std::unique_ptr<GenomeModel> build_model(const Genome& g, std::uint64_t seed) {
  return std::make_unique<GenomeModelImpl>(g, seed);
}

}  // namespace hwnas::spaces
