#include "spaces/model_builder.hpp"

#include "hwmodels/host_timer.hpp"
#include "spaces/catalogue.hpp"
#include "spaces/workload_builder.hpp"

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
      const BlockNode& b = std::as_const(genome_).node(v);
      const BlockKind& kind = catalogue().at(b.kind);
      std::vector<TensorType> in_types;
      for (auto u : inputs_[v]) in_types.push_back(std::as_const(genome_).node(u).out);
      modules_[v] = kind.build(in_types, kind.resolve(b.params), rng);
    }
    output_ = genome_.output_node();
    roles_ = node_roles(genome_, order_);
    // An add drops its zero terms (adding zeros changes no value, and an add left with one term
    // passes it on: NodeRole::ZeroCopy), so a zero node's tensor is made only for a consumer
    // that reads it as a tensor, or when it is the network's output.
    drops_zero_terms_.assign(n, 0);
    zeros_needed_.assign(n, 0);
    for (auto v : order_)
      drops_zero_terms_[v] =
          v != genome_.input_node() && std::as_const(genome_).node(v).kind == "add";
    for (auto v : order_)
      for (auto u : inputs_[v])
        if (roles_[u] == NodeRole::Zero && roles_[v] != NodeRole::Dead && !drops_zero_terms_[v])
          zeros_needed_[u] = 1;
    if (roles_[output_] == NodeRole::Zero) zeros_needed_[output_] = 1;
  }

  nn::Var forward(const nn::Var& x, nn::ForwardContext& ctx) override {
    const std::size_t n = genome_.num_nodes();
    // Activations are released as soon as their last consumer has run.
    std::vector<nn::Var> act(n);
    std::vector<int> remaining = consumers_;
    // Recording (evaluation pass only): each node writes into its own sink, and every node's
    // output density is measured here, so blocks need no code of their own for it.
    nn::ActivityRecorder* rec = ctx.recorder;
    nn::ActivitySink* const outer_sink = ctx.activity;
    std::vector<double> nonzero, numel;
    double batch = 0;
    if (rec) {
      nonzero.assign(n, 0);
      numel.assign(n, 0);
      batch = x.value().numel() > 0 ? x.value().dim(0) : 0;
    }
    for (auto v : order_) {
      if (v == genome_.input_node()) {
        act[v] = x;
        if (rec) count_outputs(x, v, nonzero, numel);
        continue;
      }
      // Run what runs (spaces/workload_builder.hpp): a dead node's output never reaches the
      // network's, and a zero node's output is zeros whatever its inputs, so neither is computed
      // (nor back-propagated through): the host does the work the device models charge.
      if (roles_[v] == NodeRole::Dead) {
        release_inputs(v, act, remaining);
        continue;
      }
      std::vector<nn::Var> in;
      in.reserve(inputs_[v].size());
      for (auto u : inputs_[v])
        if (!(drops_zero_terms_[v] && roles_[u] == NodeRole::Zero)) in.push_back(act[u]);
      nn::ActivitySink* sink = rec ? &rec->sink(static_cast<std::int64_t>(v)) : nullptr;
      if (rec) ctx.activity = sink;
      if (hook_) hook_->before(v);
      if (roles_[v] == NodeRole::Zero)
        act[v] = zeros_needed_[v] ? zeros_of(v, x) : nn::Var();
      else
        act[v] = modules_[v]->forward(in, ctx);
      if (hook_) hook_->after(v);
      if (rec) {
        if (act[v].defined()) {
          count_outputs(act[v], v, nonzero, numel);
        } else {  // a zero node not made: all of its batch x type elements are zero
          nonzero[v] = 0;
          numel[v] = batch * static_cast<double>(std::as_const(genome_).node(v).out.numel());
        }
        double in_nonzero = 0, in_numel = 0;
        for (auto u : inputs_[v]) {
          in_nonzero += nonzero[u];
          in_numel += numel[u];
        }
        // share x samples, so that total / samples is the sample-weighted mean share.
        sink->add_samples(batch);
        if (numel[v] > 0)
          sink->add(nn::activity_key::kActivationDensity, batch * nonzero[v] / numel[v]);
        if (in_numel > 0) sink->add(nn::activity_key::kInputDensity, batch * in_nonzero / in_numel);
      }
      release_inputs(v, act, remaining);
    }
    ctx.activity = outer_sink;
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

  // Activations are released as soon as their last consumer has run (or been skipped).
  void release_inputs(Genome::NodeId v, std::vector<nn::Var>& act,
                      std::vector<int>& remaining) const {
    for (auto u : inputs_[v])
      if (--remaining[u] == 0) act[u] = nn::Var();
  }
  // A zero node's output: zeros of its inferred type for the batch of x, a constant.
  nn::Var zeros_of(Genome::NodeId v, const nn::Var& x) const {
    std::vector<int> dims{x.value().dim(0)};
    for (int d : std::as_const(genome_).node(v).out.dims) dims.push_back(d);
    return nn::constant(nn::Tensor(nn::Shape(dims), 0.0f));
  }
  void set_node_hook(NodeHook* hook) override { hook_ = hook; }

 private:
  static void count_outputs(const nn::Var& out, Genome::NodeId v, std::vector<double>& nonzero,
                            std::vector<double>& numel) {
    const nn::Tensor& t = out.value();
    nonzero[v] = static_cast<double>(nn::count_nonzero(t.data(), t.numel()));
    numel[v] = static_cast<double>(t.numel());
  }

  Genome genome_;
  std::vector<Genome::NodeId> order_;
  std::vector<std::unique_ptr<nn::Module>> modules_;
  std::vector<std::vector<Genome::NodeId>> inputs_;
  std::vector<int> consumers_;
  Genome::NodeId output_ = 0;
  NodeHook* hook_ = nullptr;
  std::vector<NodeRole> roles_;  // by node id: what runs (spaces/workload_builder.hpp)
  std::vector<char> drops_zero_terms_, zeros_needed_;  // by node id
};
}  // namespace

std::unique_ptr<GenomeModel> build_model(const Genome& g, std::uint64_t seed) {
  return std::make_unique<GenomeModelImpl>(g, seed);
}

double time_forward_ms(const Genome& g, int batch, int warmup, int reps, std::uint64_t seed) {
  auto model = build_model(g, seed);
  std::vector<int> dims = {batch};
  for (int d : g.input_type().dims) dims.push_back(d);
  nn::Var x = nn::constant(nn::Tensor(nn::Shape(dims), 0.5f));
  nn::ForwardContext ctx;
  ctx.training = false;
  nn::NoGradGuard no_grad;
  return hw::measure_median_ms([&] { model->forward(x, ctx); }, warmup, reps);
}

}  // namespace hwnas::spaces
