// hwnas's convolutions against oneDNN's on the convolution layers of sampled candidates (issue
// 17: "a well-kept library from Debian (oneDNN, libdnnl-dev) behind the op if it beats
// hand-written kernels: measure both and say why you chose").
//
//   bench_conv_vs_onednn --genomes cnn.jsonl [--batch 64] [--threads 2] [--reps 10] [--rounds 3]
//
// The genomes are bench_sampled_vs_torch --dump output.  Every conv / dwconv node of every genome
// (and NAS-Bench-201 nor_conv) gives a layer (input shape from the genome's inferred types, "same"
// padding, bias only without batch norm, as block_conv / block_dwconv build it); each distinct
// layer is timed once and counted as often as the genomes hold it.  One training step of a layer is
// the forward pass, the input gradient (not for a first layer: its input is the image) and the
// weight gradient (and bias), on the layer's batch; best round of `rounds` (each the mean of `reps`
// steps), the implementations alternating within each round.
//
// oneDNN (Debian's libdnnl, 2.x, OpenMP threads) runs three ways:
//   plain    its primitives on NCHW / OIHW memory, as they would sit behind nn::conv2d with no
//            layout change;
//   blocked  format "any" (oneDNN picks its blocked layouts: nChw16c and the like), with the
//            reorders a framework holding NCHW tensors needs each step (input, weight, output,
//            output gradient, input gradient, weight gradient) counted in;
//   kernels  the blocked primitives alone, reorders left out: the floor of a framework that keeps
//            every tensor in oneDNN's layouts end to end.
// hwnas's own two forms are also timed apart where both apply (stride 1, ungrouped, 2x2+ kernels
// on grids up to 20 points: nn/conv_spectral.hpp): "direct" (the GEMM formulations) and
// "spectral" (FFT), with the one conv2d's cost model picks; the hwnas column is what it runs.
// Also checked per layer: whether oneDNN's weight gradient is bit-identical with 1 and with
// `threads` threads (hwnas's is, by construction: nn/README's reduction contract).
//
// Prints one "LAYER ..." line per distinct layer and a summary over the space (time summed over
// every layer occurrence of every genome, i.e. the space's convolution time per step).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <oneapi/dnnl/dnnl.hpp>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "nn/autograd.hpp"
#include "nn/conv_spectral.hpp"
#include "nn/ops.hpp"
#include "nn/parallel.hpp"
#include "spaces/genome.hpp"

using namespace hwnas;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
  std::string genomes;
  int batch = 64, threads = 2, reps = 10, rounds = 3;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(k + " needs a value");
      return argv[++i];
    };
    if (k == "--genomes")
      a.genomes = val();
    else if (k == "--batch")
      a.batch = std::stoi(val());
    else if (k == "--threads")
      a.threads = std::stoi(val());
    else if (k == "--reps")
      a.reps = std::stoi(val());
    else if (k == "--rounds")
      a.rounds = std::stoi(val());
    else
      throw std::invalid_argument("unknown flag " + k +
                                  "; usage: bench_conv_vs_onednn --genomes FILE [--batch 64] "
                                  "[--threads 2] [--reps 10] [--rounds 3]");
  }
  if (a.genomes.empty()) throw std::invalid_argument("--genomes FILE is required");
  if (a.batch < 1 || a.threads < 1 || a.reps < 1 || a.rounds < 1)
    throw std::invalid_argument("--batch, --threads, --reps and --rounds must be >= 1");
  return a;
}

// One convolution layer of a candidate.
struct Layer {
  int cin, h, w, cout, kernel, stride, groups;
  bool bias, first;  // first: its input is the image (no input gradient)
  int pad() const { return (kernel - 1) / 2; }
  int out(int size) const { return (size + 2 * pad() - kernel) / stride + 1; }
  auto key() const { return std::tie(cin, h, w, cout, kernel, stride, groups, bias, first); }
  bool operator<(const Layer& o) const { return key() < o.key(); }
  double macs_per_sample() const {
    return double(cout) * out(h) * out(w) * (cin / groups) * kernel * kernel;
  }
  std::string str() const {
    char s[160];
    std::snprintf(s, sizeof s, "%s %d->%d %dx%d s%d on %dx%d%s%s", groups > 1 ? "dw" : "conv", cin,
                  cout, kernel, kernel, stride, h, w, bias ? " +bias" : "",
                  first ? " (first)" : "");
    return s;
  }
};

std::map<Layer, int> layers_of(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    throw std::runtime_error(path +
                             ": cannot open (write it with bench_sampled_vs_torch "
                             "--space SPACE --dump FILE)");
  std::map<Layer, int> count;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    spaces::Genome g = spaces::Genome::from_json(nlohmann::json::parse(line));
    g.validate();
    for (spaces::Genome::NodeId v : g.topological_order()) {
      const spaces::BlockNode& node = g.node(v);
      // NAS-Bench-201's nor_conv_KxK: stride 1, channels kept, batch norm (no bias).
      const bool nor = node.kind == "nor_conv_1x1" || node.kind == "nor_conv_3x3";
      if (node.kind != "conv" && node.kind != "dwconv" && !nor) continue;
      const spaces::Genome::NodeId from = g.inputs_of(v).at(0);
      const spaces::TensorType& t = g.node(from).out;
      Layer l{t.dims[0],
              t.dims[1],
              t.dims[2],
              node.out.dims[0],
              nor ? node.kind.back() - '0' : node.params.value("kernel", 3),
              nor ? 1 : node.params.value("stride", 1),
              node.kind == "dwconv" ? t.dims[0] : 1,
              !nor && !node.params.value("batch_norm", true),
              from == g.input_node()};
      ++count[l];
    }
  }
  return count;
}

std::vector<float> random_floats(std::size_t n, std::mt19937& rng) {
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

nn::Tensor tensor_of(const std::vector<float>& v, nn::Shape shape) {
  nn::Tensor t(shape);
  std::copy(v.begin(), v.end(), t.data());
  return t;
}

// ---- hwnas: nn::conv2d forward and backward, as a training step runs them ----
class HwnasLayer {
 public:
  HwnasLayer(const Layer& l, int batch, std::mt19937& rng) : l_(l) {
    const int ho = l.out(l.h), wo = l.out(l.w);
    x_ = l.first
             ? nn::constant(tensor_of(random_floats(std::size_t(batch) * l.cin * l.h * l.w, rng),
                                      nn::Shape{batch, l.cin, l.h, l.w}))
             : nn::parameter(tensor_of(random_floats(std::size_t(batch) * l.cin * l.h * l.w, rng),
                                       nn::Shape{batch, l.cin, l.h, l.w}));
    w_ = nn::parameter(tensor_of(
        random_floats(std::size_t(l.cout) * (l.cin / l.groups) * l.kernel * l.kernel, rng),
        nn::Shape{l.cout, l.cin / l.groups, l.kernel, l.kernel}));
    if (l.bias) b_ = nn::parameter(tensor_of(random_floats(l.cout, rng), nn::Shape{l.cout}));
    dy_ = tensor_of(random_floats(std::size_t(batch) * l.cout * ho * wo, rng),
                    nn::Shape{batch, l.cout, ho, wo});
  }
  void step() {
    nn::Var y = nn::conv2d(x_, w_, b_, nn::Conv2dOptions{l_.stride, l_.pad(), l_.groups});
    // The loss's gradient at y is dy_: a seed op hands it over without a copy.
    const nn::Tensor dy = dy_;
    nn::Var seed = nn::make_result(nn::Tensor(nn::Shape{1}), {y},
                                   [dy](nn::Node& self) { self.parents[0]->grad = dy; });
    nn::backward(seed);
    // Gradients are consumed (the optimizer reads them); drop them so the next step allocates
    // them as a training step does.
    w_.grad() = nn::Tensor();
    if (b_.defined()) b_.grad() = nn::Tensor();
    if (!l_.first) x_.grad() = nn::Tensor();
  }

 private:
  Layer l_;
  nn::Var x_, w_, b_;
  nn::Tensor dy_;
};

// ---- oneDNN ----
using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

class OneDnnLayer {
 public:
  enum class Mode { Plain, Blocked };

  OneDnnLayer(const Layer& l, int batch, Mode mode, dnnl::engine& eng, std::mt19937& rng)
      : l_(l), eng_(eng), s_(eng) {
    const int ho = l.out(l.h), wo = l.out(l.w), g = l.groups;
    const memory::dims src_d{batch, l.cin, l.h, l.w}, dst_d{batch, l.cout, ho, wo}, bias_d{l.cout},
        strides{l.stride, l.stride}, pad{l.pad(), l.pad()};
    const memory::dims wei_d = g > 1 ? memory::dims{g, l.cout / g, l.cin / g, l.kernel, l.kernel}
                                     : memory::dims{l.cout, l.cin, l.kernel, l.kernel};
    const tag wei_tag = g > 1 ? tag::goihw : tag::oihw;
    // The user's tensors: NCHW / OIHW, as hwnas holds them.
    user_src_ = filled({src_d, dt::f32, tag::nchw}, rng);
    user_wei_ = filled({wei_d, dt::f32, wei_tag}, rng);
    user_bias_ = filled({bias_d, dt::f32, tag::x}, rng);
    user_dst_ = memory({dst_d, dt::f32, tag::nchw}, eng);
    user_ddst_ = filled({dst_d, dt::f32, tag::nchw}, rng);
    user_dsrc_ = memory({src_d, dt::f32, tag::nchw}, eng);
    user_dwei_ = memory({wei_d, dt::f32, wei_tag}, eng);
    user_dbias_ = memory({bias_d, dt::f32, tag::x}, eng);

    const tag act = mode == Mode::Plain ? tag::nchw : tag::any;
    const tag wt = mode == Mode::Plain ? wei_tag : tag::any;
    const memory::desc src_md(src_d, dt::f32, act), dst_md(dst_d, dt::f32, act),
        wei_md(wei_d, dt::f32, wt), bias_md(bias_d, dt::f32, tag::x);
    const memory::desc no_bias;
    const auto alg = dnnl::algorithm::convolution_direct;
    fwd_pd_ = dnnl::convolution_forward::primitive_desc(
        dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, alg, src_md, wei_md,
                                        l.bias ? bias_md : no_bias, dst_md, strides, pad, pad),
        eng);
    if (!l.first)
      bwd_data_pd_ = dnnl::convolution_backward_data::primitive_desc(
          dnnl::convolution_backward_data::desc(alg, src_md, wei_md, dst_md, strides, pad, pad),
          eng, fwd_pd_);
    bwd_wei_pd_ = dnnl::convolution_backward_weights::primitive_desc(
        dnnl::convolution_backward_weights::desc(alg, src_md, wei_md, l.bias ? bias_md : no_bias,
                                                 dst_md, strides, pad, pad),
        eng, fwd_pd_);
    fwd_ = dnnl::convolution_forward(fwd_pd_);
    if (!l.first) bwd_data_ = dnnl::convolution_backward_data(bwd_data_pd_);
    bwd_wei_ = dnnl::convolution_backward_weights(bwd_wei_pd_);

    // The primitives' own memories: the user's where the layouts agree, else reorder targets.
    src_ = own(fwd_pd_.src_desc(), user_src_);
    wei_ = own(fwd_pd_.weights_desc(), user_wei_);
    dst_ = own(fwd_pd_.dst_desc(), user_dst_);
    ddst_ = own(bwd_wei_pd_.diff_dst_desc(), user_ddst_);
    dwei_ = own(bwd_wei_pd_.diff_weights_desc(), user_dwei_);
    if (!l.first) {
      dsrc_ = own(bwd_data_pd_.diff_src_desc(), user_dsrc_);
      wei_bwd_ = own(bwd_data_pd_.weights_desc(), user_wei_);
      ddst_bwd_ = own(bwd_data_pd_.diff_dst_desc(), user_ddst_);
    }
    // One reorder of the input (and of its weight and output gradient) per step at most: the
    // backward passes reuse the forward's and each other's blocked copies where they agree.
    impl_ = fwd_pd_.impl_info_str();
  }

  // The primitives' implementations ("jit:avx512_core", "gemm:jit", ...).
  std::string impl() const { return impl_; }

  void step(bool with_reorders) {
    if (with_reorders) {
      reorder(user_src_, src_);
      reorder(user_wei_, wei_);
    }
    exec_fwd();
    if (with_reorders) {
      reorder(dst_, user_dst_);
      reorder(user_ddst_, ddst_);
    }
    if (!l_.first) {
      if (with_reorders) {
        if (ddst_bwd_ != ddst_) reorder(user_ddst_, ddst_bwd_);
        if (wei_bwd_ != wei_) reorder(user_wei_, wei_bwd_);
      }
      bwd_data_.execute(s_, {{DNNL_ARG_DIFF_DST, ddst_bwd_},
                             {DNNL_ARG_WEIGHTS, wei_bwd_},
                             {DNNL_ARG_DIFF_SRC, dsrc_}});
      if (with_reorders) reorder(dsrc_, user_dsrc_);
    }
    exec_bwd_weights();
    if (with_reorders) reorder(dwei_, user_dwei_);
    s_.wait();
  }

  // The weight gradient on the user's layout, after one step without reorder timing concerns.
  std::vector<float> weight_gradient() {
    step(true);
    const auto* p = static_cast<const float*>(user_dwei_.get_data_handle());
    return std::vector<float>(p, p + user_dwei_.get_desc().get_size() / sizeof(float));
  }

 private:
  memory filled(const memory::desc& md, std::mt19937& rng) {
    memory m(md, eng_);
    const std::vector<float> v = random_floats(md.get_size() / sizeof(float), rng);
    std::memcpy(m.get_data_handle(), v.data(), md.get_size());
    return m;
  }
  memory own(const memory::desc& md, const memory& user) {
    return md == user.get_desc() ? user : memory(md, eng_);
  }
  // Reorder primitives are made once per pair (a framework caches them as it caches the convs).
  void reorder(memory from, memory to) {
    if (from == to) return;
    auto key = std::make_pair(from.get(), to.get());
    auto it = reorders_.find(key);
    if (it == reorders_.end()) it = reorders_.emplace(key, dnnl::reorder(from, to)).first;
    it->second.execute(s_, from, to);
  }
  void exec_fwd() {
    std::unordered_map<int, memory> args{
        {DNNL_ARG_SRC, src_}, {DNNL_ARG_WEIGHTS, wei_}, {DNNL_ARG_DST, dst_}};
    if (l_.bias) args[DNNL_ARG_BIAS] = user_bias_;
    fwd_.execute(s_, args);
  }
  void exec_bwd_weights() {
    std::unordered_map<int, memory> args{
        {DNNL_ARG_SRC, src_}, {DNNL_ARG_DIFF_DST, ddst_}, {DNNL_ARG_DIFF_WEIGHTS, dwei_}};
    if (l_.bias) args[DNNL_ARG_DIFF_BIAS] = user_dbias_;
    bwd_wei_.execute(s_, args);
  }

  Layer l_;
  dnnl::engine& eng_;
  dnnl::stream s_;
  memory user_src_, user_wei_, user_bias_, user_dst_, user_ddst_, user_dsrc_, user_dwei_,
      user_dbias_;
  memory src_, wei_, dst_, ddst_, dwei_, dsrc_, wei_bwd_, ddst_bwd_;
  dnnl::convolution_forward::primitive_desc fwd_pd_;
  dnnl::convolution_backward_data::primitive_desc bwd_data_pd_;
  dnnl::convolution_backward_weights::primitive_desc bwd_wei_pd_;
  dnnl::convolution_forward fwd_;
  dnnl::convolution_backward_data bwd_data_;
  dnnl::convolution_backward_weights bwd_wei_;
  std::string impl_;
  std::map<std::pair<dnnl_memory_t, dnnl_memory_t>, dnnl::reorder> reorders_;
};

// Mean seconds of one step over `reps` steps.  Each library's idle threads spin for a while
// after its last parallel region (OpenMP's default wait policy, oneTBB's workers) and would take
// the cores from the other's first steps: a pause first lets them go to sleep.
template <class F>
double mean_step_seconds(F&& step, int reps) {
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  step();  // (grows pools, warms caches)
  const auto t0 = Clock::now();
  for (int r = 0; r < reps; ++r) step();
  return std::chrono::duration<double>(Clock::now() - t0).count() / reps;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n == 0 ? 0 : n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

int main(int argc, char** argv) try {
  const Args a = parse(argc, argv);
  const std::map<Layer, int> layers = layers_of(a.genomes);
  nn::ThreadBudget budget(a.threads);
  omp_set_num_threads(a.threads);
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  std::mt19937 rng(1);
  std::printf(
      "[conv_vs_onednn] %zu distinct conv layers from %s, batch %d, %d threads, oneDNN "
      "%d.%d.%d\n",
      layers.size(), a.genomes.c_str(), a.batch, a.threads, dnnl_version()->major,
      dnnl_version()->minor, dnnl_version()->patch);

  double sum_hwnas = 0, sum_plain = 0, sum_blocked = 0, sum_kernels = 0, macs = 0;
  std::vector<double> r_plain, r_blocked, r_kernels;
  int deterministic = 0, checked = 0;
  int two_form_layers = 0, worse_pick = 0;  // where the cost model picked the slower form
  for (const auto& [l, count] : layers) {
    HwnasLayer hw(l, a.batch, rng);
    OneDnnLayer plain(l, a.batch, OneDnnLayer::Mode::Plain, eng, rng);
    OneDnnLayer blocked(l, a.batch, OneDnnLayer::Mode::Blocked, eng, rng);
    double t_hw = 1e30, t_plain = 1e30, t_blocked = 1e30, t_kernels = 1e30;
    double t_direct = 1e30, t_spectral = 1e30;
    const nn::detail::SpectralConvShape shape{a.batch,  l.cin,    l.h,     l.w,      l.cout,
                                              l.kernel, l.kernel, l.pad(), !l.first, true};
    const bool both_forms =
        l.stride == 1 && l.groups == 1 && nn::detail::spectral_conv_eligible(shape);
    const bool picks_spectral = both_forms && nn::detail::spectral_conv_pays(shape);
    auto time_form = [&](nn::detail::ConvAlgorithm form) {
      const nn::detail::ConvAlgorithm chosen =
          nn::detail::conv_algorithm();  // HWNAS_CONV_ALGORITHM
      nn::detail::set_conv_algorithm(form);
      const double t = mean_step_seconds([&] { hw.step(); }, a.reps);
      nn::detail::set_conv_algorithm(chosen);
      return t;
    };
    for (int round = 0; round < a.rounds; ++round) {
      t_hw = std::min(t_hw, mean_step_seconds([&] { hw.step(); }, a.reps));
      if (both_forms) {
        t_direct = std::min(t_direct, time_form(nn::detail::ConvAlgorithm::kDirect));
        t_spectral = std::min(t_spectral, time_form(nn::detail::ConvAlgorithm::kSpectral));
      }
      t_plain = std::min(t_plain, mean_step_seconds([&] { plain.step(true); }, a.reps));
      t_blocked = std::min(t_blocked, mean_step_seconds([&] { blocked.step(true); }, a.reps));
      t_kernels = std::min(t_kernels, mean_step_seconds([&] { blocked.step(false); }, a.reps));
    }
    // Reductions over the batch in the weight gradient: same bits with 1 thread and with all?
    omp_set_num_threads(1);
    const std::vector<float> one = blocked.weight_gradient();
    omp_set_num_threads(a.threads);
    const std::vector<float> all = blocked.weight_gradient();
    const bool same = one.size() == all.size() &&
                      std::memcmp(one.data(), all.data(), one.size() * sizeof(float)) == 0;
    deterministic += same;
    ++checked;

    const double gflop = 2.0 * l.macs_per_sample() * a.batch * (l.first ? 2 : 3) / 1e9;
    if (both_forms) {
      std::printf(
          "FORMS %-34s direct %7.3f ms  spectral %7.3f ms  (direct / spectral %.2fx; "
          "conv2d picks %s)\n",
          l.str().c_str(), t_direct * 1e3, t_spectral * 1e3, t_direct / t_spectral,
          picks_spectral ? "spectral" : "direct");
      if (picks_spectral ? t_spectral > t_direct : t_direct > t_spectral) ++worse_pick;
      ++two_form_layers;
    }
    std::printf(
        "LAYER %-34s x%-2d hwnas %7.3f ms (%5.1f GFLOP/s)  onednn plain %7.3f  blocked "
        "%7.3f  kernels %7.3f ms  hwnas/onednn-best speed %.2fx  [%s]  dW 1 vs %d "
        "threads: %s\n",
        l.str().c_str(), count, t_hw * 1e3, gflop / t_hw, t_plain * 1e3, t_blocked * 1e3,
        t_kernels * 1e3, std::min(t_plain, t_blocked) / t_hw,
        plain.impl() == blocked.impl() ? plain.impl().c_str()
                                       : (plain.impl() + " / " + blocked.impl()).c_str(),
        a.threads, same ? "same bits" : "DIFFERENT bits");
    sum_hwnas += count * t_hw;
    sum_plain += count * t_plain;
    sum_blocked += count * t_blocked;
    sum_kernels += count * t_kernels;
    macs += count * l.macs_per_sample();
    r_plain.push_back(t_plain / t_hw);
    r_blocked.push_back(t_blocked / t_hw);
    r_kernels.push_back(t_kernels / t_hw);
  }
  auto range = [](const std::vector<double>& r) {
    char s[96];
    std::snprintf(s, sizeof s, "%.2f / %.2f / %.2f", *std::min_element(r.begin(), r.end()),
                  median(r), *std::max_element(r.begin(), r.end()));
    return std::string(s);
  };
  if (layers.empty()) {
    std::printf("[conv_vs_onednn] no conv layers in %s\n", a.genomes.c_str());
    return 0;
  }
  std::printf(
      "SUMMARY space conv time per step (every layer of every genome): hwnas %.1f ms, "
      "oneDNN plain %.1f ms (%.2fx hwnas's), blocked with reorders %.1f ms (%.2fx), "
      "blocked kernels alone %.1f ms (%.2fx)\n",
      sum_hwnas * 1e3, sum_plain * 1e3, sum_plain / sum_hwnas, sum_blocked * 1e3,
      sum_blocked / sum_hwnas, sum_kernels * 1e3, sum_kernels / sum_hwnas);
  std::printf(
      "SUMMARY per layer, oneDNN time / hwnas time (min / median / max; > 1: hwnas "
      "faster): plain %s, blocked %s, kernels alone %s\n",
      range(r_plain).c_str(), range(r_blocked).c_str(), range(r_kernels).c_str());
  std::printf(
      "SUMMARY hwnas's cost model picked the slower of its two forms on %d of %d layers where "
      "both apply\n",
      worse_pick, two_form_layers);
  std::printf(
      "SUMMARY oneDNN weight gradients bit-identical with 1 and %d threads: %d of %d "
      "layers\n",
      a.threads, deterministic, checked);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_conv_vs_onednn: %s\n", e.what());
  return 1;
}
