// Training throughput on sampled architectures (the hwnas side of bench/sampled_vs_torch.sh).
//
// The throughput of a search is the throughput of the candidates it samples, not of a few
// hand-picked models, so this samples genomes from an example space (seeded), builds each with
// spaces::build_model and trains it as the trainer does (cross-entropy, backward, AdamW) on
// random data of the space's input shape.  bench/sampled_vs_torch.py trains the same genomes
// (read from the --dump file) in PyTorch.
//
//   bench_sampled_vs_torch --space examples/spaces/cnn.json --dump genomes.jsonl
//                          [--samples 20] [--seed 1]
//   bench_sampled_vs_torch --genomes genomes.jsonl [--batch 64] [--steps 10] [--warmup 2]
//                          [--threads 2] [--fmnist] [--profile | --float-twin ROUNDS]
//                          [--compressed-copy]
// --dump writes one genome JSON per line (with its forward MACs per sample) and exits.
// Timing prints one "RESULT ..." line per genome.  --float-twin R instead times each compressed
// (quantised / pruned) genome against the same genome in float, alternating R rounds, and prints
// the overhead (split into quantisation and pruning for genomes that do both) and how the pruning
// boundaries were selected (spaces::prune_selection_stats).  --profile instead prints, summed
// over all genomes, the forward and backward time per block kind ("conv[q]" = a compressed
// conv), measured with probe nodes between the genome's nodes (bench/models.hpp).
// --compressed-copy has compressed dense layers read a compressed copy of their weights instead of
// compressing them as their GEMMs pack them (spaces::set_packed_compression(false)): the same
// numbers, for timing the two against each other.
// --fmnist trains on Fashion-MNIST's training split instead (shuffled batches, one new batch per
// step, as the trainer draws them; genomes with 28x28 image inputs and 10 classes only): how
// weights move, and so how far a pruning boundary moves per step, depends on the data, and one
// fixed random batch that the network memorises pushes every weight the same way step after step.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench/models.hpp"
#include "evaluators/datasets.hpp"
#include "nn/ops.hpp"
#include "nn/optim.hpp"
#include "nn/parallel.hpp"
#include "spaces/catalogue.hpp"
#include "spaces/compress.hpp"
#include "spaces/model_builder.hpp"
#include "spaces/space.hpp"
#include "spaces/workload_builder.hpp"

using namespace hwnas;
using bench::Clock;

namespace {

struct Args {
  std::string space, dump, genomes;
  int samples = 20, batch = 64, steps = 10, warmup = 2, threads = 2;
  std::uint64_t seed = 1;
  bool profile = false;
  bool fmnist = false;        // Fashion-MNIST training batches instead of one fixed random batch
  int float_twin_rounds = 0;  // > 0: time each compressed genome against its float twin
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "missing value for %s\n", k.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (k == "--space")
      a.space = val();
    else if (k == "--dump")
      a.dump = val();
    else if (k == "--genomes")
      a.genomes = val();
    else if (k == "--samples")
      a.samples = std::stoi(val());
    else if (k == "--seed")
      a.seed = std::stoull(val());
    else if (k == "--batch")
      a.batch = std::stoi(val());
    else if (k == "--steps")
      a.steps = std::stoi(val());
    else if (k == "--warmup")
      a.warmup = std::stoi(val());
    else if (k == "--threads")
      a.threads = std::stoi(val());
    else if (k == "--profile")
      a.profile = true;
    else if (k == "--fmnist")
      a.fmnist = true;
    else if (k == "--float-twin")
      a.float_twin_rounds = std::stoi(val());
    else if (k == "--compressed-copy")
      spaces::set_packed_compression(false);
    else {
      std::fprintf(stderr,
                   "usage: %s --space FILE --dump OUT [--samples N] [--seed S]\n"
                   "       %s --genomes FILE [--batch B] [--steps N] [--warmup N] [--threads T] "
                   "[--fmnist] [--profile] [--float-twin ROUNDS] [--compressed-copy]\n",
                   argv[0], argv[0]);
      std::exit(2);
    }
  }
  return a;
}

// Block kind as the profile reports it: compressed (quantised or pruned) weighted layers apart
// (the macro space also attaches bits/prune to weightless nodes such as pools).
std::string profile_label(const spaces::BlockNode& b, nn::Module& m) {
  std::vector<nn::Var> params;
  m.collect_parameters(params);
  if (params.empty()) return b.kind;
  const bool q = b.params.contains("bits") && b.params["bits"].get<int>() < 32;
  const bool p = b.params.contains("prune") && b.params["prune"].get<double>() > 0;
  return b.kind + (q || p ? "[q]" : "");
}

// The genome's model, built node by node as spaces::build_model does, with a probe after every
// node so that time is charged to its block kind.
class ProfiledModel : public nn::Module {
 public:
  ProfiledModel(spaces::Genome g, std::uint64_t seed, bench::Profiler& prof)
      : g_(std::move(g)), prof_(prof) {
    g_.validate();
    spaces::Rng rng(seed);
    order_ = g_.topological_order();
    modules_.resize(g_.num_nodes());
    labels_.resize(g_.num_nodes());
    for (auto v : order_) {
      if (v == g_.input_node()) continue;
      const auto& b = g_.node(v);
      const auto& kind = spaces::catalogue().at(b.kind);
      std::vector<spaces::TensorType> in;
      for (auto u : g_.inputs_of(v)) in.push_back(g_.node(u).out);
      modules_[v] = kind.build(in, kind.resolve(b.params), rng);
      labels_[v] = profile_label(b, *modules_[v]);
    }
  }
  nn::Var forward(const std::vector<nn::Var>& x, nn::ForwardContext& ctx) override {
    std::vector<nn::Var> act(g_.num_nodes());
    for (auto v : order_) {
      if (v == g_.input_node()) {
        act[v] = bench::probe(prof_, x.at(0), "input");
        continue;
      }
      std::vector<nn::Var> in;
      for (auto u : g_.inputs_of(v)) in.push_back(act[u]);
      act[v] = bench::probe(prof_, modules_[v]->forward(in, ctx), labels_[v]);
    }
    return act[g_.output_node()];
  }
  void append_named_parameters(const std::string& prefix,
                               std::vector<nn::NamedParameter>& out) override {
    for (auto v : order_)
      if (modules_[v])
        modules_[v]->append_named_parameters(prefix + "n" + std::to_string(v) + ".", out);
  }
  std::string name() const override { return "profiled_genome"; }

 private:
  spaces::Genome g_;
  bench::Profiler& prof_;
  std::vector<spaces::Genome::NodeId> order_;
  std::vector<std::unique_ptr<nn::Module>> modules_;
  std::vector<std::string> labels_;
};

nn::Shape batch_shape(const spaces::TensorType& t, int batch) {
  std::vector<int> dims{batch};
  for (int d : t.dims) dims.push_back(d);
  return nn::Shape(dims);
}

// The first `count` shuffled batches of Fashion-MNIST's training split (the split the trainer
// trains on; the test files are never opened), drawn once per process and epoch by epoch.
const std::vector<eval::Batch>& fmnist_batches(int batch, int count) {
  static std::map<std::pair<int, int>, std::vector<eval::Batch>> cache;
  auto& out = cache[{batch, count}];
  if (!out.empty()) return out;
  static const eval::TrainValSplit split = [] {
    try {
      return eval::load_fashion_mnist_train_val(10000, 1);
    } catch (const eval::DatasetError& e) {
      std::fprintf(stderr, "--fmnist: %s\n", e.what());
      std::exit(2);
    }
  }();
  eval::BatchIterator it(split.train, batch, /*shuffle=*/true, /*seed=*/7, /*drop_last=*/true);
  for (int epoch = 0; static_cast<int>(out.size()) < count; ++epoch) {
    it.start_epoch(epoch);
    eval::Batch b;
    while (static_cast<int>(out.size()) < count && it.next(b)) out.push_back(b);
  }
  return out;
}

// Trains `model` for warmup + steps steps; returns the timed steps' seconds.
double train(nn::Module& model, const spaces::Genome& g, const Args& a, int classes,
             bench::Profiler* prof) {
  std::mt19937_64 rng(7);
  std::vector<nn::Var> params;
  model.collect_parameters(params);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  nn::Tensor x(batch_shape(g.input_type(), a.batch));
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data()[i] = nd(rng);
  // Per-token readouts (a sequence out, e.g. the sequence_mixers space on MQAR) are trained as
  // the trainer does with a TokenClasses head: one label per token, mean token cross-entropy.
  const bool per_token = g.node(g.output_node()).out.kind == spaces::DataKind::Sequence;
  const std::size_t labels =
      static_cast<std::size_t>(a.batch) *
      static_cast<std::size_t>(per_token ? g.node(g.output_node()).out.dims.front() : 1);
  std::vector<int> y(labels);
  for (auto& v : y) v = static_cast<int>(rng() % static_cast<std::uint64_t>(classes));
  // One output is a regression readout (the mlp_2d space's symbolic task): mean squared error
  // against a random target, as the trainer's regression head (cross-entropy over one class has a
  // zero gradient).
  const bool regression = classes == 1 && !per_token;
  nn::Tensor target(nn::Shape{a.batch, 1});
  for (std::int64_t i = 0; i < target.numel(); ++i) target.data()[i] = nd(rng);
  const eval::Batch* data = nullptr;  // --fmnist: step i trains on data[i]
  if (a.fmnist) {
    if (per_token || regression || classes != 10 ||
        g.input_type().dims != std::vector<int>{1, 28, 28}) {
      std::fprintf(stderr,
                   "--fmnist: genome input %s with %d outputs is not a 28x28 image "
                   "classifier with 10 classes; drop --fmnist for this space\n",
                   g.input_type().str().c_str(), classes);
      std::exit(2);
    }
    data = fmnist_batches(a.batch, a.warmup + a.steps).data();
  }
  int step_index = 0;
  nn::AdamWOptions ao;  // the trainer's optimizer
  ao.lr = 1e-3f;
  ao.weight_decay = 0.01f;
  nn::AdamW opt(params, ao);
  nn::ForwardContext ctx;
  ctx.training = true;
  ctx.rng = &rng;
  // Blocks' auxiliary losses (moe's load balancing) join the loss, as in the trainer.
  std::vector<nn::Var> aux_losses;
  ctx.aux_losses = &aux_losses;
  auto step = [&] {
    opt.zero_grad();
    aux_losses.clear();
    if (prof) prof->last_fwd = Clock::now();
    const eval::Batch* b = data ? &data[step_index++] : nullptr;
    nn::Var out = model.forward({nn::constant(b ? b->x : x)}, ctx);
    nn::Var loss = regression  ? nn::mse(out, nn::constant(target))
                   : per_token ? nn::token_cross_entropy(out, y, -1)
                               : nn::cross_entropy(out, b ? b->y : y);
    for (const nn::Var& a : aux_losses) loss = nn::add(loss, a);
    if (prof) prof->last_bwd = Clock::now(), prof->next_bwd_segment = "loss";
    nn::backward(loss);
    opt.step();
  };
  double secs = 0;
  nn::run_isolated([&] {
    if (prof) prof->on = false;
    for (int i = 0; i < a.warmup; ++i) step();
    if (prof) prof->on = true;
    auto t0 = Clock::now();
    for (int i = 0; i < a.steps; ++i) step();
    secs = std::chrono::duration<double>(Clock::now() - t0).count();
  });
  return secs;
}

// The genome with fake quantisation (`bits`) and/or magnitude pruning (`prune`) removed from every
// node (structured channel pruning stays: it changes the architecture, not the training
// arithmetic).  Returns false when there was nothing to remove.
bool strip_compression(nlohmann::json& j, bool bits, bool prune) {
  bool changed = false;
  for (auto& node : j.at("nodes")) {
    if (!node.contains("params")) continue;
    auto& p = node["params"];
    if (bits && p.contains("bits")) {
      changed = changed || p["bits"].get<int>() < 32;
      p.erase("bits");
    }
    if (prune && p.contains("prune")) {
      changed = changed || p["prune"].get<double>() > 0;
      p.erase("prune");
    }
  }
  return changed;
}

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Issue 17's "compressed training costs at most 5% over float": each compressed genome and its
// float twin train in turn for `rounds` rounds (same data, steps and threads); the fastest round
// of each is kept.  A genome that both quantises and prunes also trains with only its
// quantisation and with only its pruning, which splits its overhead between the two.  The order
// reverses every round, so that no variant always trains first.  (The same genome as both
// variants measures within 2 % of itself, median within 0.2 %, at 400 steps and 4 rounds.)
int compare_float_twins(const Args& a) {
  std::ifstream in(a.genomes);
  std::string line;
  std::vector<double> overheads, quant_only, prune_only;
  for (int idx = 0; std::getline(in, line); ++idx) {
    const nlohmann::json j = nlohmann::json::parse(line);
    nlohmann::json float_json = j, quant_json = j, prune_json = j;
    if (!strip_compression(float_json, true, true)) continue;
    // Both kinds present: the genome without its pruning, and without its quantisation.
    const bool split =
        strip_compression(quant_json, false, true) && strip_compression(prune_json, true, false);
    std::vector<spaces::Genome> variants{spaces::Genome::from_json(j)};
    if (split) {
      variants.push_back(spaces::Genome::from_json(quant_json));
      variants.push_back(spaces::Genome::from_json(prune_json));
    }
    variants.push_back(spaces::Genome::from_json(float_json));
    const int classes = j.at("outputs").get<int>();
    std::vector<double> best(variants.size(), 1e300);
    spaces::reset_prune_selection_stats();
    for (int r = 0; r < a.float_twin_rounds; ++r)
      for (std::size_t t = 0; t < variants.size(); ++t) {
        const std::size_t v = r % 2 ? variants.size() - 1 - t : t;
        auto model = spaces::build_model(variants[v], 1);
        best[v] = std::min(best[v], train(*model, variants[v], a, classes, nullptr));
      }
    const double float_s = best.back();
    auto over = [&](std::size_t v) { return 100.0 * (best[v] / float_s - 1.0); };
    overheads.push_back(over(0));
    std::printf("TWIN idx=%d batch=%d compressed_s=%.4f float_s=%.4f overhead_pct=%.1f", idx,
                a.batch, best[0], float_s, over(0));
    if (split) {
      quant_only.push_back(over(1));
      prune_only.push_back(over(2));
      std::printf(" quant_only_pct=%.1f prune_only_pct=%.1f", over(1), over(2));
    }
    // How the pruning boundary was found over all of this genome's runs (spaces/compress.hpp).
    const spaces::PruneSelectionStats sel = spaces::prune_selection_stats();
    if (sel.band_selections + sel.full_selections > 0)
      std::printf(" band_selections=%llu full_selections=%llu bin_keys_per_band_selection=%.0f",
                  static_cast<unsigned long long>(sel.band_selections),
                  static_cast<unsigned long long>(sel.full_selections),
                  static_cast<double>(sel.bin_keys) /
                      static_cast<double>(std::max<std::uint64_t>(1, sel.band_selections)));
    std::printf("\n");
    std::fflush(stdout);
  }
  if (overheads.empty()) {
    std::printf("TWIN no compressed genome in %s\n", a.genomes.c_str());
    return 0;
  }
  std::printf(
      "TWIN summary: %zu compressed genomes, overhead over the float twin min %.1f%% "
      "median %.1f%% max %.1f%%\n",
      overheads.size(), *std::min_element(overheads.begin(), overheads.end()), median_of(overheads),
      *std::max_element(overheads.begin(), overheads.end()));
  if (!quant_only.empty())
    std::printf(
        "TWIN split: %zu genomes quantise and prune; median overhead with only their "
        "quantisation %.1f%%, with only their pruning %.1f%%\n",
        quant_only.size(), median_of(quant_only), median_of(prune_only));
  return 0;
}

int dump(const Args& a) {
  auto space = spaces::load_space(a.space);
  spaces::Rng rng(a.seed);
  std::ofstream out(a.dump);
  for (int i = 0; i < a.samples; ++i) {
    spaces::Genome g = space->sample(rng);
    nlohmann::json j = g.to_json();
    j["outputs"] = space->num_outputs();
    j["fwd_macs"] = spaces::build_workload(g).total_macs();
    out << j.dump() << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  if (!a.dump.empty()) return dump(a);
  if (a.genomes.empty()) {
    std::fprintf(stderr, "need --genomes FILE (or --space FILE --dump OUT)\n");
    return 2;
  }
  nn::ThreadBudget budget(a.threads);
  if (a.float_twin_rounds > 0) return compare_float_twins(a);
  std::ifstream in(a.genomes);
  std::string line;
  bench::Profiler prof;
  double total_secs = 0;
  int idx = 0;
  for (; std::getline(in, line); ++idx) {
    const nlohmann::json j = nlohmann::json::parse(line);
    const spaces::Genome g = spaces::Genome::from_json(j);
    const int classes = j.at("outputs").get<int>();
    if (a.profile) {
      ProfiledModel m(g, 1, prof);
      total_secs += train(m, g, a, classes, &prof);
      continue;
    }
    auto model = spaces::build_model(g, 1);
    const double secs = train(*model, g, a, classes, nullptr);
    const double sps = a.steps * a.batch / secs;
    const double fwd_flops = 2.0 * j.at("fwd_macs").get<double>();
    std::printf(
        "RESULT impl=hwnas idx=%d batch=%d steps=%d seconds=%.4f samples_per_s=%.1f "
        "gflops=%.3f params=%lld\n",
        idx, a.batch, a.steps, secs, sps, sps * 3.0 * fwd_flops / 1e9,
        static_cast<long long>(model->num_parameters()));
    std::fflush(stdout);
  }
  if (a.profile) {
    // Per block kind over all genomes (probes charge each node's time to its kind).
    std::map<std::string, std::pair<double, double>> by_kind;
    for (auto& [k, ms] : prof.fwd_ms) by_kind[k].first += ms;
    for (auto& [k, ms] : prof.bwd_ms) by_kind[k].second += ms;
    double sum = 0;
    for (auto& [k, t] : by_kind) sum += t.first + t.second;
    std::printf("PROFILE %d genomes, batch %d, %d steps each, %.3f s timed (incl. optimizer)\n",
                idx, a.batch, a.steps, total_secs);
    std::printf("%-22s %10s %10s %7s\n", "block kind", "fwd ms", "bwd ms", "share");
    for (auto& [k, t] : by_kind)
      std::printf("%-22s %10.1f %10.1f %6.1f%%\n", k.c_str(), t.first, t.second,
                  100.0 * (t.first + t.second) / (total_secs * 1e3));
    std::printf("%-22s %10s %10s %6.1f%%\n", "(optimizer, other)", "", "",
                100.0 * (1.0 - sum / (total_secs * 1e3)));
  }
  return 0;
}
