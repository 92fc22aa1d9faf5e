// Sequence mixers side by side, for any block kinds that map [L, d] -> [L, d], each inside the
// same two-layer pre-norm residual stack (spaces/mixer_stack.hpp) built through the catalogue:
//   (a) mqar: multi-query associative recall (Zoology) at --seq-len 256 with --pairs 16, model
//       width 64, the same training budget (curriculum, samples, epochs, batch, lr schedule) for
//       every kind; prints the per-query (token) accuracy.
//   (b) scaling: forward + backward time and peak memory of one batch as L doubles over
//       --lengths at fixed width, and the growth exponent p of time ~ L^p (least squares on
//       log-log) per kind.
//
//   bench_sequence_mixers --kinds attention,s4d,mamba [--part mqar|scaling|both]
//       [--params '{"mamba": {"d_state": 16}, "attention": {"heads": 4}}'] [--lr-of kind=lr]
//       [--curriculum 16:2:20000:3:1,64:4:20000:2:0.333] [--final-lr-scale 0.333]
//       [--epochs 2] [--train 10000] [--lr 3e-3] [--batch 32]
//       [--task '{"random_non_queries": false}'] [--position-features 0]
//       [--curve 1] [--lengths 256,512,...,4096] [--threads 2] [--seed 1]
//
// MQAR defaults follow Zoology's own MQAR figure (HazyResearch/zoology,
// experiments/paper_configs/iclr24_zoology_figure2): positions that are neither pairs nor
// queries hold token 0 (random_non_queries false), the learning rate is chosen per kind
// (recurrent models learn recall only in a narrow window, Okpekpe & Orvieto 2025), and the
// model first trains on shorter, easier MQAR configurations, as Zoology's multi-config training
// sets do (--curriculum seq_len:pairs:train:epochs[:lr_scale],...; each stage starts from the
// previous stage's weights; --curriculum "" trains on the final configuration alone).  Stages
// after the first train at a third of the peak lr: a fresh warm-up to the full peak on weights
// that already recall can throw the selective scan off its narrow window (seen: 1.0 -> 0.03).
//
// A kind without an entry in --params gets the defaults below (causal variants where the kind
// has a causal switch, since MQAR queries must not see the future; rotary positions for
// attention, which has no other position signal in this stack), then its catalogue defaults.
// A new kind needs nothing here beyond being registered in the catalogue: name it in --kinds
// and give its params with --params.
#include <malloc.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "evaluators/task_registry.hpp"
#include "evaluators/trainer.hpp"
#include "nn/ops.hpp"
#include "nn/optim.hpp"
#include "nn/parallel.hpp"
#include "nn/state_dict.hpp"
#include "spaces/catalogue.hpp"
#include "spaces/mixer_stack.hpp"
#include "spaces/model_builder.hpp"

using namespace hwnas;
using nlohmann::json;

namespace {

// One MQAR training stage: the model trains on seq_len / pairs data for `epochs` epochs of
// `train` samples, starting from the previous stage's weights.
struct Stage {
  int seq_len, pairs, train, epochs;
  float lr_scale = 1;  // of the kind's peak learning rate
};

struct Args {
  std::vector<std::string> kinds{"attention", "s4d", "mamba"};
  std::string part = "both";
  json params = json::object();
  // Per-kind peak learning rates found by sweeps on this task (bench/README.md).
  std::map<std::string, float> lr_of{{"mamba", 3e-2f}, {"s4d", 1e-2f}};
  int seq_len = 256, pairs = 16, vocab = 64, width = 64, layers = 2;
  int position_features = 0;                    // sinusoidal position features of the mqar input
  json task = {{"random_non_queries", false}};  // further mqar task params (power_a, ...)
  bool curve = false;                           // print validation accuracy after every epoch
  // Stages trained before the --seq-len / --pairs one.
  std::vector<Stage> curriculum{{16, 2, 20000, 3, 1.0f}, {64, 4, 20000, 2, 1.0f / 3}};
  float final_lr_scale = 1.0f / 3;  // the --seq-len / --pairs stage's share of the peak lr
  int epochs = 2, train = 10000, val = 500, batch = 32;
  float lr = 3e-3f;
  std::vector<int> lengths{256, 512, 1024, 2048, 4096};
  int scaling_batch = 1, reps = 3;
  int threads = 2;
  std::uint64_t seed = 1;
};

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (i + 1 >= argc) throw std::invalid_argument("missing value after " + k);
    const std::string v = argv[++i];
    if (k == "--kinds")
      a.kinds = split_list(v);
    else if (k == "--part")
      a.part = v;
    else if (k == "--params")
      a.params = json::parse(v);
    else if (k == "--lr-of") {
      const auto eq = v.find('=');
      if (eq == std::string::npos) throw std::invalid_argument("--lr-of wants kind=lr, got " + v);
      a.lr_of[v.substr(0, eq)] = std::stof(v.substr(eq + 1));
    } else if (k == "--seq-len")
      a.seq_len = std::stoi(v);
    else if (k == "--pairs")
      a.pairs = std::stoi(v);
    else if (k == "--vocab")
      a.vocab = std::stoi(v);
    else if (k == "--width")
      a.width = std::stoi(v);
    else if (k == "--layers")
      a.layers = std::stoi(v);
    else if (k == "--epochs")
      a.epochs = std::stoi(v);
    else if (k == "--train")
      a.train = std::stoi(v);
    else if (k == "--val")
      a.val = std::stoi(v);
    else if (k == "--batch")
      a.batch = std::stoi(v);
    else if (k == "--position-features")
      a.position_features = std::stoi(v);
    else if (k == "--task")
      a.task = json::parse(v);
    else if (k == "--final-lr-scale")
      a.final_lr_scale = std::stof(v);
    else if (k == "--curve")
      a.curve = v != "0";
    else if (k == "--curriculum") {
      a.curriculum.clear();
      for (const auto& item : split_list(v)) {
        Stage st{};
        const int fields = std::sscanf(item.c_str(), "%d:%d:%d:%d:%f", &st.seq_len, &st.pairs,
                                       &st.train, &st.epochs, &st.lr_scale);
        if (fields == 4) st.lr_scale = 1;
        if (fields < 4 || st.lr_scale <= 0)
          throw std::invalid_argument(
              "--curriculum wants seq_len:pairs:train:epochs[:lr_scale],..., got " + item);
        a.curriculum.push_back(st);
      }
    } else if (k == "--lr")
      a.lr = std::stof(v);
    else if (k == "--lengths") {
      a.lengths.clear();
      for (const auto& s : split_list(v)) a.lengths.push_back(std::stoi(s));
    } else if (k == "--scaling-batch")
      a.scaling_batch = std::stoi(v);
    else if (k == "--reps")
      a.reps = std::stoi(v);
    else if (k == "--threads")
      a.threads = std::stoi(v);
    else if (k == "--seed")
      a.seed = std::stoull(v);
    else
      throw std::invalid_argument("unknown option " + k);
  }
  if (a.part != "mqar" && a.part != "scaling" && a.part != "both")
    throw std::invalid_argument("--part must be mqar, scaling or both, got " + a.part);
  return a;
}

// Params of a kind: --params entry, else a causal default where the kind has the switch.
json params_of(const Args& a, const std::string& kind) {
  if (a.params.contains(kind)) return a.params.at(kind);
  const spaces::BlockKind& k = spaces::catalogue().at(kind);
  json p = json::object();
  if (k.find_param("causal")) p["causal"] = true;
  if (k.find_param("heads")) p["heads"] = 4;
  if (k.find_param("rope")) p["rope"] = true;
  return p;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::vector<Stage> stages_of(const Args& a) {
  std::vector<Stage> stages = a.curriculum;
  stages.push_back({a.seq_len, a.pairs, a.train, a.epochs, a.final_lr_scale});
  return stages;
}

eval::TaskSpec mqar_task(const Args& a, const Stage& st) {
  json tp = a.task;
  tp["seq_len"] = st.seq_len;
  tp["num_kv_pairs"] = st.pairs;
  tp["vocab_size"] = a.vocab;
  tp["position_features"] = a.position_features;
  return eval::resolve_task("mqar", tp);
}

void run_mqar(const Args& a) {
  const std::vector<Stage> stages = stages_of(a);
  std::vector<eval::TrainValSplit> data;
  std::printf(
      "# (a) mqar, vocab %d, %d position features, width %d, %d layers, batch %d, %d threads",
      a.vocab, a.position_features, a.width, a.layers, a.batch, a.threads);
  if (!a.task.empty()) std::printf(", task %s", a.task.dump().c_str());
  std::printf("\n");
  for (std::size_t i = 0; i < stages.size(); ++i) {
    const Stage& st = stages[i];
    const eval::TaskSpec t = mqar_task(a, st);
    data.push_back(
        eval::make_task_data(t, t.entry->inputs(t.params).at(0), a.seed + i, {st.train, a.val}));
    std::printf("#   stage %zu: seq_len %d, %d pairs, %d train x %d epochs, %d val, lr x %.3g\n",
                i + 1, st.seq_len, st.pairs, st.train, st.epochs, a.val, st.lr_scale);
  }
  std::printf("%-22s %10s %8s %12s %10s  %s\n", "kind", "params", "lr", "query_acc", "train_s",
              "block params");
  for (const auto& kind : a.kinds) {
    const json p = params_of(a, kind);
    const float lr = a.lr_of.count(kind) ? a.lr_of.at(kind) : a.lr;
    std::vector<eval::TrainStage> plan;
    for (std::size_t i = 0; i < stages.size(); ++i) {
      eval::TrainStage st{&data[i].train, &data[i].val, {}};
      eval::TrainConfig& c = st.config;
      c.head = eval::HeadKind::TokenClasses;
      c.epochs = stages[i].epochs;
      c.batch_size = a.batch;
      c.lr = lr * stages[i].lr_scale;
      c.weight_decay = 0.1f;
      c.warmup_epochs = 1;
      c.clip_grad_norm = 1.0f;
      c.seed = a.seed + i;
      if (a.curve) {
        c.eval_every_epoch = true;
        c.on_epoch_end = [&kind, i](int epoch, double train_loss, double, double val_acc) {
          std::printf("#   %s stage %zu epoch %d: train loss %.4f, val query acc %.4f\n",
                      kind.c_str(), i + 1, epoch, train_loss, val_acc);
          std::fflush(stdout);
        };
      }
      plan.push_back(std::move(st));
    }
    std::int64_t params = 0;
    const auto t0 = std::chrono::steady_clock::now();
    // Every kind here has length-independent weights except those sized by L (a kernel or
    // filter of length L); those refuse a curriculum with load_state_dict's shape message.
    const eval::TrainReport r = eval::train_stages(
        plan,
        [&](std::size_t i) -> std::unique_ptr<nn::Module> {
          const eval::TaskSpec t = mqar_task(a, stages[i]);
          return spaces::build_model(
              spaces::mixer_stack(t.entry->inputs(t.params).at(0), a.width, a.layers, kind, p,
                                  t.entry->outputs(t.params)),
              a.seed + 1);
        },
        [&](std::size_t i, nn::Module& model, const eval::TrainReport& stage) {
          if (stages.size() > 1 && !a.curve)
            std::printf("#   %s stage %zu: val query acc %.4f\n", kind.c_str(), i + 1,
                        stage.val_metrics.at("token_accuracy"));
          params = static_cast<spaces::GenomeModel&>(model).num_parameters();
        });
    std::printf("%-22s %10lld %8.1e %12.4f %10.1f  %s\n", kind.c_str(),
                static_cast<long long>(params), lr, r.val_metrics.at("token_accuracy"),
                seconds_since(t0), p.dump().c_str());
    std::fflush(stdout);
  }
}

// Resident-set peak since the last reset, in MiB (Linux: writing 5 to clear_refs resets VmHWM).
void reset_peak_rss() {
  malloc_trim(0);
  std::ofstream("/proc/self/clear_refs") << "5";
}
double status_mib(const char* field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const std::string key = std::string(field) + ":";
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) return std::stod(line.substr(key.size())) / 1024.0;  // kB
  return 0;
}

void run_scaling(const Args& a) {
  std::printf(
      "# (b) forward+backward of one batch of %d, width %d, %d layers, %d threads; "
      "median of %d after a warm-up; peak = resident-set growth during the step\n",
      a.scaling_batch, a.width, a.layers, a.threads, a.reps);
  std::printf("%-22s %6s %12s %12s\n", "kind", "L", "fwd_bwd_ms", "peak_MiB");
  const int features = 16, outputs = 16;
  for (const auto& kind : a.kinds) {
    const json p = params_of(a, kind);
    std::vector<double> logl, logt;
    for (int L : a.lengths) {
      const spaces::Genome g = spaces::mixer_stack(spaces::TensorType::sequence(L, features),
                                                   a.width, a.layers, kind, p, outputs);
      auto model = spaces::build_model(g, a.seed);
      std::mt19937_64 rng(a.seed);
      std::normal_distribution<float> nd(0.0f, 1.0f);
      nn::Tensor x(nn::Shape{a.scaling_batch, L, features});
      for (std::int64_t i = 0; i < x.numel(); ++i) x.data()[i] = nd(rng);
      std::vector<int> labels(static_cast<std::size_t>(a.scaling_batch) * L);
      for (auto& l : labels) l = static_cast<int>(rng() % outputs);
      std::vector<nn::Var> params;
      model->collect_parameters(params);
      nn::ForwardContext ctx;
      std::vector<double> ms;
      double peak = 0;
      for (int r = 0; r <= a.reps; ++r) {
        nn::zero_grad(params);
        reset_peak_rss();
        const double base = status_mib("VmRSS");
        const auto t0 = std::chrono::steady_clock::now();
        nn::run_isolated([&] {
          nn::backward(nn::token_cross_entropy(model->forward(nn::constant(x), ctx), labels));
        });
        const double sec = seconds_since(t0);
        peak = std::max(peak, status_mib("VmHWM") - base);
        if (r > 0) ms.push_back(1e3 * sec);  // r = 0 warms caches and FFT plans
      }
      std::sort(ms.begin(), ms.end());
      const double med = ms[ms.size() / 2];
      std::printf("%-22s %6d %12.2f %12.1f\n", kind.c_str(), L, med, peak);
      std::fflush(stdout);
      logl.push_back(std::log(static_cast<double>(L)));
      logt.push_back(std::log(med));
    }
    // Least-squares slope of log time on log L.
    const double n = static_cast<double>(logl.size());
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (std::size_t i = 0; i < logl.size(); ++i) {
      sx += logl[i];
      sy += logt[i];
      sxx += logl[i] * logl[i];
      sxy += logl[i] * logt[i];
    }
    const double slope = n > 1 ? (n * sxy - sx * sy) / (n * sxx - sx * sx) : 0.0;
    std::printf("%-22s growth exponent %.2f (time ~ L^p over L = %d..%d)\n", kind.c_str(), slope,
                a.lengths.front(), a.lengths.back());
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args a = parse(argc, argv);
    for (const auto& k : a.kinds) (void)spaces::catalogue().at(k);  // unknown kinds fail early
    nn::ThreadBudget budget(a.threads);
    if (a.part != "scaling") run_mqar(a);
    if (a.part != "mqar") run_scaling(a);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_sequence_mixers: %s\n", e.what());
    return 1;
  }
  return 0;
}
