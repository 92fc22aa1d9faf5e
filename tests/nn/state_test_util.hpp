// Shared by the module-state tests: a small conv net with every kind of named tensor
// (conv and linear weights, batch-norm parameters and running statistics, layer norm), a
// seeded training step, bit-exact comparison and per-test temporary paths.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <string>

#include "nn/layers.hpp"
#include "nn/optim.hpp"
#include "nn/state_dict.hpp"
#include "tests/temp_files.hpp"

namespace hwnas::nn::testing {

// x [N,1,6,6] -> conv(channels) -> bn -> relu -> global pool -> ln -> fc(3)
class TinyNet : public Module {
 public:
  TinyNet(std::uint64_t seed, int channels = 4)
      : rng_(seed),
        conv(1, channels, 3, Conv2dOptions{1, 1, 1}, true, rng_),
        bn(channels),
        ln(channels),
        fc(channels, 3, true, rng_) {}
  Var forward(const Var& x, bool training) {
    Var h = relu(bn.forward(conv.forward(x), training));
    return fc.forward(ln.forward(global_avg_pool(h)));
  }
  Var forward(const std::vector<Var>& in, ForwardContext& ctx) override {
    return forward(in.at(0), ctx.training);
  }
  void append_named_parameters(const std::string& prefix,
                               std::vector<NamedParameter>& out) override {
    conv.append_named_parameters(prefix + "conv.", out);
    bn.append_named_parameters(prefix + "bn.", out);
    ln.append_named_parameters(prefix + "ln.", out);
    fc.append_named_parameters(prefix + "fc.", out);
  }
  void append_named_buffers(const std::string& prefix, std::vector<NamedBuffer>& out) override {
    bn.append_named_buffers(prefix + "bn.", out);
  }
  std::string name() const override { return "tiny_net"; }

 private:
  std::mt19937_64 rng_;  // initialisation only; declared first so it is built first

 public:
  Conv2d conv;
  BatchNorm bn;
  LayerNorm ln;
  Linear fc;
};

inline Tensor draw(const Shape& s, std::mt19937_64& rng) {
  std::normal_distribution<float> d(0.0f, 1.0f);
  Tensor t(s);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = d(rng);
  return t;
}

// One step on a batch drawn from `data_rng`: regression of the 3 outputs onto fixed targets.
inline float train_step(TinyNet& net, Optimizer& opt, std::mt19937_64& data_rng) {
  Tensor x = draw(Shape{4, 1, 6, 6}, data_rng);
  Tensor y = draw(Shape{4, 3}, data_rng);
  opt.zero_grad();
  Var d = sub(net.forward(constant(x), true), constant(y));
  Var loss = mean(mul(d, d));
  backward(loss);
  opt.step();
  return loss.value().item();
}

inline bool bit_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() &&
         std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.numel()) * sizeof(float)) == 0;
}

inline void expect_same_state(Module& a, Module& b) {
  StateDict sa = state_dict(a), sb = state_dict(b);
  ASSERT_EQ(sa.size(), sb.size());
  for (const auto& [name, t] : sa) {
    ASSERT_TRUE(sb.count(name)) << name;
    EXPECT_TRUE(bit_equal(t, sb.at(name))) << name << " differs";
  }
}

// A fresh path under the system temp directory, removed (with its temporary siblings) on
// destruction.
class TempPath {
 public:
  explicit TempPath(const std::string& stem)
      : path_((std::filesystem::temp_directory_path() /
               ("hwnas_" + stem + "_" + std::to_string(::getpid()) + ".bin"))
                  .string()) {}
  ~TempPath() {
    std::error_code ec;
    std::filesystem::remove(path_, ec);
    hwnas::test::remove_temp_siblings(path_);
  }
  const std::string& str() const { return path_; }

 private:
  std::string path_;
};

}  // namespace hwnas::nn::testing
