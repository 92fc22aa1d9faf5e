#include "spaces/workload_builder.hpp"

#include "spaces/catalogue.hpp"

namespace hwnas::spaces {

std::string workload_node_name(const Genome& g, Genome::NodeId v) {
  return "n" + std::to_string(v) + ":" + g.node(v).kind;
}

hw::Workload build_workload(const Genome& genome, const nn::ActivityRecorder* activity) {
  Genome g = genome;
  g.validate();
  hw::Workload wl;
  // The input is read once at float32 (datasets arrive as floats).
  wl.input_bytes = static_cast<double>(g.input_type().numel()) * 4.0;
  auto order = g.topological_order();
  std::vector<std::size_t> index(g.num_nodes(), 0);
  for (auto v : order) {
    if (v == g.input_node()) continue;
    const BlockNode& b = g.node(v);
    const BlockKind& kind = catalogue().at(b.kind);
    const nlohmann::json p = kind.resolve(b.params);
    std::vector<TensorType> in;
    for (auto u : g.inputs_of(v)) in.push_back(g.node(u).out);

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
  // (consumer neurons x their fan-in, shared among the consumer's inputs).
  for (auto v : order) {
    if (v == g.input_node()) continue;
    hw::NodeWorkload& w = wl.nodes[index[v]];
    double conns = 0;
    for (auto c : g.outputs_of(v)) {
      const hw::NodeWorkload& cw = wl.nodes[index[c]];
      conns += cw.neurons * cw.fan_in / static_cast<double>(g.inputs_of(c).size());
    }
    w.fan_out = w.neurons > 0 ? conns / w.neurons : 0;
  }
  return wl;
}

}  // namespace hwnas::spaces
