// pool: max or average pooling over image windows (padding (kernel-1)/2).
#include "spaces/blocks/block_util.hpp"

namespace hwnas::spaces {
using namespace blocks;

namespace {
class PoolModule : public nn::Module {
 public:
  PoolModule(bool max, int kernel, int stride) : max_(max), kernel_(kernel), stride_(stride) {}
  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext&) override {
    int pad = same_padding(kernel_);
    return max_ ? nn::max_pool2d(in.at(0), kernel_, stride_, pad)
                : nn::avg_pool2d(in.at(0), kernel_, stride_, pad);
  }
  void collect_parameters(std::vector<nn::Var>&) override {}
  std::string name() const override { return max_ ? "max_pool" : "avg_pool"; }

 private:
  bool max_;
  int kernel_, stride_;
};
}  // namespace

void register_block_pool(Catalogue& c) {
  BlockKind k;
  k.name = "pool";
  k.description = "max or average pooling (padding (kernel-1)/2; averages exclude padding)";
  k.params = {ParamSpec::choice("op", {"max", "avg"}, "max", "pooling operation"),
              ParamSpec::int_set("kernel", {2, 3}, 2, "window size"),
              ParamSpec::int_set("stride", {1, 2}, 2, "stride")};
  k.accepts = {DataKind::Image};
  k.infer = [](const std::vector<TensorType>& in, const json& p) {
    const TensorType& t = single_input(in);
    int kk = pint(p, "kernel"), s = pint(p, "stride"), pad = same_padding(kk);
    return TensorType::image(t.dims[0], conv_out_size(t.dims[1], kk, s, pad),
                             conv_out_size(t.dims[2], kk, s, pad));
  };
  k.build = [](const std::vector<TensorType>&, const json& p, Rng&) {
    return std::make_unique<PoolModule>(pstr(p, "op") == "max", pint(p, "kernel"),
                                        pint(p, "stride"));
  };
  k.count = [](const std::vector<TensorType>&, const TensorType& out, const json& p,
               hw::NodeWorkload& w) {
    const double kk = pint(p, "kernel");
    w.category = hw::OpCategory::Pool;
    w.other_flops = static_cast<double>(out.numel()) * kk * kk;
    w.neurons = static_cast<double>(out.numel());
    w.fan_in = kk * kk;
    w.window = pint(p, "kernel");
    w.stride = pint(p, "stride");
    // Same counts, different kernels: a max pool compares, an average pool adds and divides by
    // a window size that varies at the padded border.
    w.kernel_type = pstr(p, "op") == "max" ? "max_pool" : "avg_pool";
  };
  c.add(std::move(k));
}

}  // namespace hwnas::spaces
