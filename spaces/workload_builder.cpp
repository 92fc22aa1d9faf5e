#include "spaces/workload_builder.hpp"

#include <charconv>
#include <functional>
#include <span>
#include <string_view>

#include "spaces/catalogue.hpp"

namespace hwnas::spaces {

// Kind names compared as string_views: a literal of known length, no strlen per comparison.
using namespace std::string_view_literals;

std::string workload_node_name(const Genome& g, Genome::NodeId v) {
  const std::string& kind = g.node(v).kind;
  char digits[24];
  const auto [end, ec] = std::to_chars(digits, digits + sizeof digits, v);
  std::string name;
  name.reserve(2 + static_cast<std::size_t>(end - digits) + kind.size());
  name += 'n';
  name.append(digits, end);
  name += ':';
  name += kind;
  return name;
}

namespace {

// The genome's adjacency and block kinds, read once into flat arrays (Genome::inputs_of and
// catalogue lookups allocate and hash per call; liveness, fusion and fan-out visit every node
// several times).
class GraphView {
 public:
  explicit GraphView(const Genome& g) : kind(g.num_nodes(), nullptr) {
    const Genome::Graph& gr = g.graph();
    const std::size_t n = g.num_nodes();
    in_off_.reserve(n + 1);
    out_off_.reserve(n + 1);
    in_.reserve(boost::num_edges(gr));
    out_.reserve(boost::num_edges(gr));
    std::vector<Genome::NodeId> ins;
    for (Genome::NodeId v = 0; v < n; ++v) {
      in_off_.push_back(in_.size());
      g.inputs_into(v, ins);
      in_.insert(in_.end(), ins.begin(), ins.end());
      out_off_.push_back(out_.size());
      for (auto [it, end] = boost::out_edges(v, gr); it != end; ++it)
        out_.push_back(boost::target(*it, gr));
      if (v != g.input_node()) kind[v] = &catalogue().at(gr[v].kind);
    }
    in_off_.push_back(in_.size());
    out_off_.push_back(out_.size());
  }
  std::span<const Genome::NodeId> ins(Genome::NodeId v) const {
    return {in_.data() + in_off_[v], in_off_[v + 1] - in_off_[v]};
  }
  std::span<const Genome::NodeId> outs(Genome::NodeId v) const {
    return {out_.data() + out_off_[v], out_off_[v + 1] - out_off_[v]};
  }
  std::vector<const BlockKind*> kind;  // null for the input node

 private:
  std::vector<Genome::NodeId> in_, out_;
  std::vector<std::size_t> in_off_, out_off_;
};

// Cost what runs.  A node whose output is zero whatever the input ("none", or an add of zeros)
// cuts its edge; a node whose output reaches the network output only through such cuts is dead
// (NAS-Bench-201 cells with a path cut by none); views and identities (skip_connect, flatten,
// an add left with one non-zero input) are zero-copy.  None of these enter the workload, so no
// device family charges them.
std::vector<NodeRole> node_roles(const Genome& g, const std::vector<Genome::NodeId>& order,
                                 const GraphView& view) {
  const std::size_t n = g.num_nodes();
  std::vector<bool> zero(n, false), reaches(n, false);
  for (auto v : order) {
    if (v == g.input_node()) continue;
    if (view.kind[v]->zero_output) {
      zero[v] = true;
    } else if (g.node(v).kind == "add"sv) {
      bool all = true;
      for (auto u : view.ins(v)) all = all && zero[u];
      zero[v] = all;
    }
  }
  const Genome::NodeId out = g.output_node();
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    const auto v = *it;
    if (zero[v]) continue;
    bool r = v == out;
    for (auto c : view.outs(v)) r = r || reaches[c];
    reaches[v] = r;
  }
  std::vector<NodeRole> role(n, NodeRole::Dead);
  for (auto v : order) {
    if (v == g.input_node()) {
      role[v] = NodeRole::Input;
      continue;
    }
    if (zero[v]) {
      role[v] = NodeRole::Zero;
      continue;
    }
    if (!reaches[v]) continue;  // dead
    bool copy = view.kind[v]->zero_copy;
    if (g.node(v).kind == "add"sv) {
      int live = 0;
      for (auto u : view.ins(v)) live += zero[u] ? 0 : 1;
      copy = live == 1;  // adding zeros to one tensor: the tensor itself
    }
    role[v] = copy ? NodeRole::ZeroCopy : NodeRole::Runs;
  }
  return role;
}

}  // namespace

std::vector<NodeRole> node_roles(const Genome& g, const std::vector<Genome::NodeId>& order) {
  return node_roles(g, order, GraphView(g));
}

namespace {

using Role = NodeRole;

// Ops a fused runtime (TensorRT, TFLite) merges into the node before them: a batch norm after
// a conv (folded into its weights) and an activation after a conv, dense, norm or add, when
// that producer feeds nothing else.
bool fuses_into_producer(const Genome& g, const GraphView& view, Genome::NodeId v,
                         const std::vector<Role>& role, const nlohmann::json& p) {
  const BlockNode& b = g.node(v);
  const auto ins = view.ins(v);
  if (ins.size() != 1 || role[ins[0]] != Role::Runs) return false;
  const auto prod = ins[0];
  int consumers = 0;
  for (auto c : view.outs(prod)) consumers += role[c] == Role::Runs ? 1 : 0;
  if (consumers != 1) return false;
  const std::string& pk = g.node(prod).kind;
  if (b.kind == "norm"sv)
    return p.at("type").get_ref<const std::string&>() == "batch"sv &&
           (pk == "conv"sv || pk == "dwconv"sv || pk == "nor_conv_1x1"sv || pk == "nor_conv_3x3"sv);
  if (b.kind == "activation"sv)
    return pk == "conv"sv || pk == "dwconv"sv || pk == "dense"sv || pk == "norm"sv ||
           pk == "add"sv || pk == "nor_conv_1x1"sv || pk == "nor_conv_3x3"sv ||
           pk == "nb201_reduction"sv;
  return false;
}

}  // namespace

hw::Workload build_workload(const Genome& genome, const nn::ActivityRecorder* activity) {
  Genome validated = genome;
  validated.validate();
  // Read through a const reference: the non-const accessors would copy the graph this genome
  // shares with the caller's (copy-on-write).
  const Genome& g = validated;
  hw::Workload wl;
  // The input is read once at float32 (datasets arrive as floats).
  wl.input_bytes = static_cast<double>(g.input_type().numel()) * 4.0;
  auto order = g.topological_order();
  const GraphView view(g);
  const std::vector<Role> role = node_roles(g, order, view);
  std::vector<std::size_t> index(g.num_nodes(), 0);
  wl.nodes.reserve(g.num_nodes());
  std::vector<TensorType> in;  // reused: assigning keeps each element's dims buffer
  for (auto v : order) {
    if (role[v] != Role::Runs) continue;
    const BlockNode& b = g.node(v);
    const BlockKind& kind = *view.kind[v];
    nlohmann::json resolved;
    const nlohmann::json& p = kind.resolve_into(b.params, resolved);
    std::size_t n_in = 0;
    for (auto u : view.ins(v)) {
      if (b.kind == "add"sv && role[u] == Role::Zero) continue;  // a none term adds nothing
      if (n_in == in.size()) in.emplace_back();
      in[n_in++] = g.node(u).out;
    }
    in.resize(n_in);

    hw::NodeWorkload w;
    w.name = workload_node_name(g, v);
    w.block_kind = b.kind;
    w.bits = p.at("bits").get<int>();
    w.sparsity = p.at("prune").get<double>();
    const double bytes_per = w.bits / 8.0;
    for (const auto& t : in) w.input_bytes += static_cast<double>(t.numel()) * bytes_per;
    w.output_bytes = static_cast<double>(b.out.numel()) * bytes_per;
    if (in[0].kind == DataKind::Sequence) w.seq_len = in[0].dims[0];
    kind.count(in, b.out, p, w);
    // Pruned weights are not stored (compressed storage, index overhead ignored).  A block
    // whose parameters are not all compressed alike sets weight_bytes itself in count.
    if (w.weight_bytes == 0) w.weight_bytes = w.params * (1.0 - w.sparsity) * bytes_per;
    // Sparsity is a property of weights: a weightless node (pool, add) that a space's layer
    // decisions gave a prune ratio prunes nothing.
    if (w.params == 0) w.sparsity = 0;
    if (fuses_into_producer(g, view, v, role, p)) {
      w.eager_kernels = w.kernels_eager();
      w.kernels = 0;  // the fused runtime runs it inside its producer's kernel
    }
    if (activity) {
      if (const nn::ActivitySink* sink = activity->find(static_cast<std::int64_t>(v));
          sink && sink->samples() > 0) {
        w.activity.samples = sink->samples();
        w.activity.scalars = sink->per_sample();
        w.activity.series = sink->series_per_sample();
      }
    }
    index[v] = wl.nodes.size();
    wl.nodes.push_back(std::move(w));
  }
  // fan_out: connections each neuron of a node drives, from its weighted consumers' mapping
  // (consumer neurons x their fan-in, shared among the consumer's inputs); a zero-copy consumer
  // passes the connections on to its own consumers.
  std::function<double(Genome::NodeId)> conns_into = [&](Genome::NodeId c) -> double {
    if (role[c] == Role::ZeroCopy) {
      double s = 0;
      for (auto d : view.outs(c)) s += conns_into(d);
      return s;
    }
    if (role[c] != Role::Runs) return 0;
    const hw::NodeWorkload& cw = wl.nodes[index[c]];
    return cw.neurons * cw.fan_in / static_cast<double>(view.ins(c).size());
  };
  for (auto v : order) {
    if (role[v] != Role::Runs) continue;
    hw::NodeWorkload& w = wl.nodes[index[v]];
    double conns = 0;
    for (auto c : view.outs(v)) conns += conns_into(c);
    w.fan_out = w.neurons > 0 ? conns / w.neurons : 0;
  }
  return wl;
}

hw::Workload build_workload_with_genome(const Genome& g) {
  hw::Workload w = build_workload(g);
  w.architecture = nlohmann::json::parse(g.canonical_json());
  return w;
}

}  // namespace hwnas::spaces
