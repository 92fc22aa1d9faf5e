// Named parameters and buffers, and the module state format: bit-exact round trips through a
// file and through an in-memory snapshot (restoring the best weights), and one clear refusal
// for each kind of bad state.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "nn/checkpoint.hpp"
#include "nn/state_dict.hpp"
#include "nn/state_file.hpp"
#include "tests/nn/gradcheck.hpp"
#include "tests/nn/state_test_util.hpp"

namespace hwnas::nn {
namespace {
using testing::bit_equal;
using testing::expect_invalid;
using testing::TempPath;
using testing::TinyNet;

std::vector<std::string> names_of(Module& m) {
  std::vector<std::string> out;
  for (const NamedParameter& p : m.named_parameters()) out.push_back(p.name);
  return out;
}

std::string read_bytes(const std::string& path) { return read_whole_file(path); }
void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

TEST(StateNames, EveryLayerNamesItsParametersAndBuffers) {
  std::mt19937_64 rng(1);
  Linear lin(3, 2, true, rng);
  EXPECT_EQ(names_of(lin), (std::vector<std::string>{"weight", "bias"}));
  Linear nobias(3, 2, false, rng);
  EXPECT_EQ(names_of(nobias), (std::vector<std::string>{"weight"}));
  Conv2d conv(2, 4, 3, Conv2dOptions{}, true, rng);
  EXPECT_EQ(names_of(conv), (std::vector<std::string>{"weight", "bias"}));
  BatchNorm bn(4);
  EXPECT_EQ(names_of(bn), (std::vector<std::string>{"gamma", "beta"}));
  std::vector<NamedBuffer> bufs = bn.named_buffers();
  ASSERT_EQ(bufs.size(), 2u);
  EXPECT_EQ(bufs[0].name, "running_mean");
  EXPECT_EQ(bufs[0].tensor, &bn.state.running_mean);
  EXPECT_EQ(bufs[1].name, "running_var");
  EXPECT_EQ(bufs[1].tensor, &bn.state.running_var);
  LayerNorm ln(4);
  EXPECT_EQ(names_of(ln), (std::vector<std::string>{"gamma", "beta"}));
  EXPECT_TRUE(ln.named_buffers().empty());
  MultiHeadSelfAttention attn(4, 2, false, 0, rng);
  EXPECT_EQ(names_of(attn),
            (std::vector<std::string>{"qkv.weight", "qkv.bias", "out.weight", "out.bias"}));
  TinyNet net(1);
  EXPECT_EQ(names_of(net),
            (std::vector<std::string>{"conv.weight", "conv.bias", "bn.gamma", "bn.beta", "ln.gamma",
                                      "ln.beta", "fc.weight", "fc.bias"}));
}

TEST(StateNames, CollectParametersFollowsTheNamedOrder) {
  TinyNet net(1);
  std::vector<Var> ps;
  net.collect_parameters(ps);
  std::vector<NamedParameter> named = net.named_parameters();
  ASSERT_EQ(ps.size(), named.size());
  for (std::size_t i = 0; i < ps.size(); ++i)
    EXPECT_EQ(ps[i].node(), named[i].var.node()) << named[i].name;
}

// A module written before names existed: only collect_parameters.
class LegacyModule : public Module {
 public:
  explicit LegacyModule(std::mt19937_64& rng) : a(2, 2, true, rng) {}
  Var forward(const std::vector<Var>& in, ForwardContext&) override { return a.forward(in.at(0)); }
  void collect_parameters(std::vector<Var>& out) override { a.collect_parameters(out); }
  std::string name() const override { return "legacy"; }
  Linear a;
};
// A module without parameters that overrides neither method.
class ParameterFree : public Module {
 public:
  Var forward(const std::vector<Var>& in, ForwardContext&) override { return in.at(0); }
  std::string name() const override { return "free"; }
};
class Parent : public Module {
 public:
  explicit Parent(std::mt19937_64& rng) : legacy(rng) {}
  Var forward(const std::vector<Var>& in, ForwardContext&) override { return in.at(0); }
  void append_named_parameters(const std::string& prefix,
                               std::vector<NamedParameter>& out) override {
    legacy.append_named_parameters(prefix + "legacy.", out);
    free.append_named_parameters(prefix + "free.", out);
  }
  std::string name() const override { return "parent"; }
  LegacyModule legacy;
  ParameterFree free;
};

TEST(StateNames, LegacyModulesAreNamedByPositionAndEmptyOnesHaveNone) {
  std::mt19937_64 rng(2);
  Parent p(rng);
  EXPECT_EQ(names_of(p), (std::vector<std::string>{"legacy.0", "legacy.1"}));
  std::vector<Var> ps;
  p.collect_parameters(ps);
  ASSERT_EQ(ps.size(), 2u);
  EXPECT_EQ(ps[0].node(), p.legacy.a.weight.node());
  ParameterFree f;
  std::vector<Var> none;
  f.collect_parameters(none);
  EXPECT_TRUE(none.empty());
  EXPECT_TRUE(f.named_parameters().empty());
}

TEST(StateDict, SnapshotIsADeepCopyOfParametersAndBuffers) {
  TinyNet net(3);
  StateDict sd = state_dict(net);
  EXPECT_EQ(sd.size(), 10u);  // 8 parameters + 2 running statistics
  ASSERT_TRUE(sd.count("bn.running_mean"));
  EXPECT_NE(sd.at("conv.weight").data(), net.conv.weight.value().data());
  net.conv.weight.value().fill(7.0f);
  EXPECT_NE(sd.at("conv.weight").data()[0], 7.0f);
}

TEST(StateDict, FileRoundTripIsBitExactInValuesAndOutputs) {
  TinyNet trained(4);
  {
    std::vector<Var> ps;
    trained.collect_parameters(ps);
    AdamW o(ps, AdamWOptions{0.05f});
    std::mt19937_64 data(9);
    for (int i = 0; i < 5; ++i) testing::train_step(trained, o, data);  // moves the BN statistics
  }
  TempPath path("roundtrip");
  save_state(trained, path.str());
  EXPECT_FALSE(hwnas::test::temp_sibling_exists(path.str()));
  TinyNet fresh(5);  // different initial weights
  load_state(fresh, path.str());
  testing::expect_same_state(trained, fresh);
  EXPECT_FALSE(bit_equal(trained.bn.state.running_mean, Tensor::zeros(Shape{4})));
  std::mt19937_64 data(11);
  Tensor x = testing::draw(Shape{3, 1, 6, 6}, data);
  NoGradGuard ng;
  EXPECT_TRUE(bit_equal(trained.forward(constant(x), false).value(),
                        fresh.forward(constant(x), false).value()));
}

TEST(StateDict, RestoringASnapshotRestoresTheBestWeights) {
  TinyNet net(6);
  std::vector<Var> ps;
  net.collect_parameters(ps);
  Sgd opt(ps, SgdOptions{0.1f, 0.9f});
  std::mt19937_64 data(1);
  testing::train_step(net, opt, data);
  const StateDict best = state_dict(net);
  std::mt19937_64 xr(2);
  const Tensor x = testing::draw(Shape{2, 1, 6, 6}, xr);
  Tensor best_out;
  {
    NoGradGuard ng;
    best_out = net.forward(constant(x), false).value().clone();
  }
  for (int i = 0; i < 3; ++i) testing::train_step(net, opt, data);
  EXPECT_FALSE(bit_equal(net.fc.weight.value(), best.at("fc.weight")));
  {
    NoGradGuard ng;  // restoring inside an inference session must not serve stale derived weights
    load_state_dict(net, best);
    EXPECT_TRUE(bit_equal(net.forward(constant(x), false).value(), best_out));
  }
  for (const auto& [name, t] : state_dict(net)) EXPECT_TRUE(bit_equal(t, best.at(name))) << name;
  // The optimizer still holds the same parameters: training continues from the restored values.
  EXPECT_EQ(opt.params()[0].node(), net.conv.weight.node());
}

TEST(StateDict, RefusesAMissingTensorByName) {
  TinyNet net(1);
  StateDict sd = state_dict(net);
  sd.erase("bn.running_var");
  const Tensor before = net.conv.weight.value().clone();
  expect_invalid([&] { load_state_dict(net, sd); },
                 "tensor 'bn.running_var' of model 'tiny_net' is missing");
  EXPECT_TRUE(bit_equal(before, net.conv.weight.value()));  // all or nothing
}

TEST(StateDict, RefusesAnUnexpectedTensorByName) {
  TinyNet net(1);
  StateDict sd = state_dict(net);
  sd["fc2.weight"] = Tensor::zeros(Shape{2, 2});
  TempPath path("unexpected");
  save_state_dict(sd, path.str());
  expect_invalid([&] { load_state(net, path.str()); },
                 "unexpected tensor 'fc2.weight' in the file");
}

TEST(StateDict, RefusesAMismatchedShapeNamingBothShapes) {
  TinyNet small(1, 8), big(1, 16);
  TempPath path("shape");
  save_state(small, path.str());
  expect_invalid([&] { load_state(big, path.str()); },
                 "conv.weight: shape [8, 1, 3, 3] in file, [16, 1, 3, 3] in model");
}

TEST(StateDict, RefusesAWrongMagicVersionTruncationAndCorruption) {
  TinyNet net(1);
  TempPath path("bad");
  save_state(net, path.str());
  const std::string good = read_bytes(path.str());

  write_bytes(path.str(), "GIF89a..........................");
  expect_invalid([&] { load_state(net, path.str()); }, "not an hwnas state file");

  std::string v = good;
  v[8] = 7;  // version field, little-endian u32 after the 8-byte magic
  write_bytes(path.str(), v);
  expect_invalid([&] { load_state(net, path.str()); }, "format version 7 is not supported");

  write_bytes(path.str(), good.substr(0, good.size() / 2));
  expect_invalid([&] { load_state(net, path.str()); }, "truncated state file");
  write_bytes(path.str(), good.substr(0, 10));
  expect_invalid([&] { load_state(net, path.str()); }, "truncated state file");

  std::string c = good;
  c[good.size() - 20] ^= 0x10;  // a payload bit of the last tensor
  write_bytes(path.str(), c);
  expect_invalid([&] { load_state(net, path.str()); }, "checksum mismatch");

  expect_invalid([&] { load_state(net, path.str() + ".absent"); }, "cannot open state file");

  TrainingCheckpoint ck;
  ck.model = state_dict(net);
  save_checkpoint(ck, path.str());
  expect_invalid([&] { load_state(net, path.str()); },
                 "is a training checkpoint file, expected a model state");
}

TEST(StateFile, TwoWritersOfOnePathNeverMixTheirBytes) {
  // A given-up worker that still finishes and the one re-running its candidate both write the
  // same checkpoint: whichever rename comes last, the file is one writer's whole content.
  TempPath path("two_writers");
  const std::string a(1 << 20, 'a'), b(1 << 20, 'b');
  for (int round = 0; round < 20; ++round) {
    std::thread first([&] { write_file_atomically(path.str(), a); });
    std::thread second([&] { write_file_atomically(path.str(), b); });
    first.join();
    second.join();
    const std::string got = read_whole_file(path.str());
    EXPECT_TRUE(got == a || got == b) << "round " << round << ": a mixed file";
  }
  EXPECT_FALSE(hwnas::test::temp_sibling_exists(path.str()));
}

TEST(StateDict, FreshFilesHaveTheDocumentedHeader) {
  TinyNet net(1);
  TempPath path("header");
  save_state(net, path.str());
  const std::string b = read_bytes(path.str());
  EXPECT_EQ(b.substr(0, 8), std::string("HWNASSD\0", 8));
  std::uint32_t version;
  std::uint64_t count;
  std::memcpy(&version, b.data() + 8, 4);
  std::memcpy(&count, b.data() + 12, 8);
  EXPECT_EQ(version, kStateFileVersion);
  EXPECT_EQ(count, 10u);
}

}  // namespace
}  // namespace hwnas::nn
