// The retro block kind (spaces/blocks/block_retro.cpp): shape rule and refused inputs,
// finite-difference gradients on the input and every parameter, workload counts by hand,
// activity recorded through a model into the workload, and what the devices charge for the
// datastore: held in memory when it fits, read over the host link when not, infeasible without
// a link.
#include <gtest/gtest.h>

#include <filesystem>

#include "hwmodels/device.hpp"
#include "nn/retro.hpp"
#include "spaces/catalogue.hpp"
#include "spaces/model_builder.hpp"
#include "spaces/workload_builder.hpp"
#include "tests/nn/gradcheck.hpp"
#include "tests/spaces/block_test_util.hpp"

using namespace hwnas;
using namespace hwnas::spaces;
using nlohmann::json;
using namespace hwnas::spaces::testing;

namespace {

// A datastore file built from seeded random sequences [S, L, F] with chunk m_s.
std::string store_file(const std::string& name, int S, int L, int F, int chunk, int key_dim) {
  const auto dir = std::filesystem::temp_directory_path() / "hwnas_test_block_retro";
  std::filesystem::create_directories(dir);
  const std::string path = (dir / name).string();
  std::mt19937_64 rng(17);
  nn::save_retro_datastore(
      path, nn::build_retro_datastore(nn::testing::random_tensor(nn::Shape{S, L, F}, rng), chunk,
                                      key_dim, 5));
  return path;
}

}  // namespace

TEST(BlockRetro, ShapeRuleAndRefusedInputs) {
  const BlockKind& k = catalogue().at("retro");
  const std::string ds = store_file("shape.rds", 2, 4, 4, 2, 3);
  const TensorType seq = TensorType::sequence(8, 4);
  EXPECT_EQ(k.infer({seq}, k.resolve({{"datastore", ds}})), seq);
  EXPECT_EQ(k.infer({seq}, k.resolve(json::object())), seq);  // no datastore: identity
  EXPECT_EQ(k.infer({TensorType::sequence(8, 6), seq}, k.resolve({{"datastore", ds}})),
            TensorType::sequence(8, 6));  // the second input gives the keys
  EXPECT_FALSE(k.accepts_kind(DataKind::Vector));
  EXPECT_EQ(k.check_params({{"chunk", 3}}), "param 'chunk' = 3 not in {2,4,8,16,32,64}");
  EXPECT_EQ(k.check_params({{"neighbours", 3}}), "param 'neighbours' = 3 not in {1,2,4,8}");
  expect_message(
      [&] {
        k.infer({TensorType::sequence(8, 6)}, k.resolve({{"datastore", ds}}));
      },
      "field 'features' = 4 but the block's retrieval source has 6 features per row; "
      "rebuild the datastore");
  expect_message(
      [&] {
        k.infer({seq, TensorType::sequence(7, 4)}, k.resolve({{"datastore", ds}}));
      },
      "connect a source of the same length");
  expect_message(
      [&] {
        k.infer({seq}, k.resolve({{"datastore", ds + ".nope"}}));
      },
      "file not found");
  expect_message(
      [&] {
        k.infer({TensorType::sequence(8, 5)}, k.resolve({{"heads", 2}}));
      },
      "not divisible by heads 2");
  expect_message([&] { k.infer({seq}, k.resolve({{"bits", 8}})); }, "use bits 32, prune 0");
}

TEST(BlockRetro, GradientsOnInputAndEveryParameter) {
  // Two entries and k = 2: every lookup returns both, so the finite differences never flip a
  // retrieval (the attention over neighbours does not depend on their order).
  const std::string ds = store_file("grad.rds", 1, 4, 4, 2, 3);
  // One complete chunk of 4 and a partial one (L = 6: the padded query rows).
  check_gradients("retro",
                  {{"chunk", 4}, {"neighbours", 2}, {"encoder_width", 8}, {"datastore", ds}},
                  TensorType::sequence(6, 4));
  // Chunks of 2 with two heads: three lookups, the first token without retrieval.
  check_gradients(
      "retro",
      {{"chunk", 2}, {"neighbours", 2}, {"heads", 2}, {"encoder_width", 8}, {"datastore", ds}},
      TensorType::sequence(5, 4));
}

TEST(BlockRetro, WorkloadCountsByHand) {
  // L = 8, d = F = 4, chunk m = 4, k = 2, heads 2, e = 8; store: 5 entries (one sequence of 10
  // rows, chunk 2, so r = 4 rows per neighbour), key_dim D = 3.
  const std::string ds = store_file("count.rds", 1, 10, 4, 2, 3);
  Genome g = one_block(
      "retro", TensorType::sequence(8, 4),
      {{"chunk", 4}, {"neighbours", 2}, {"heads", 2}, {"encoder_width", 8}, {"datastore", ds}});
  const hw::NodeWorkload w = build_workload(g).nodes.at(0);
  EXPECT_EQ(w.category, hw::OpCategory::Memory);
  // Params: embed F e 32, pos r e 32, cond d e 32, encoder qkv + out 4 e^2 256, q + out 2 d^2
  // 32, kv 2 e d 64.
  EXPECT_DOUBLE_EQ(w.params, 448);
  EXPECT_EQ(build_model(g, 1)->num_parameters(), 448);
  EXPECT_DOUBLE_EQ(w.weight_bytes, 448 * 4.0);
  // Datastore: embedding F D 12, keys N D 15, neighbours N r F 80 floats.
  EXPECT_DOUBLE_EQ(w.datastore_bytes, 4.0 * (12 + 15 + 80));
  // Two lookups (complete chunks), each scanning 5 keys of 3 floats and reading 2 neighbours
  // of 4 rows x 4 features.
  EXPECT_DOUBLE_EQ(w.datastore_lookups, 2);
  EXPECT_DOUBLE_EQ(w.datastore_bytes_read, 2 * (4.0 * 5 * 3 + 4.0 * 2 * 4 * 4));
  // MACs: query keys and search 2 (F D + N D) = 54; encoder over 4 neighbours x 4 rows = 16
  // rows: 16 (F e + 3 e^2 + 2 r e + e^2) = 5632, condition 2 d e = 64; CCA over 8 query rows:
  // 8 (2 d^2 + 2 k r d) = 768, keys/values 16 x 2 e d = 1024.
  EXPECT_DOUBLE_EQ(w.macs, 54 + 5632 + 64 + 768 + 1024);
  // Other: lookups 2 (m F + 3 D + N (1 + k)) = 80; encoder 16 (3 e + 5 r) = 704 and chunk
  // means 2 m d = 32; CCA softmax 8 x 5 k r H = 640 and residual L d = 32.
  EXPECT_DOUBLE_EQ(w.other_flops, 80 + 704 + 32 + 640 + 32);
  EXPECT_EQ(w.kernels, 11);
  EXPECT_EQ(w.seq_len, 8);
  EXPECT_EQ(hw::Workload::from_json(build_workload(g).to_json()).to_json(),
            build_workload(g).to_json());

  // Without a datastore the block is the identity: parameters, no arithmetic, no datastore.
  const hw::NodeWorkload none =
      build_workload(one_block("retro", TensorType::sequence(8, 4), {{"encoder_width", 8}}))
          .nodes.at(0);
  EXPECT_DOUBLE_EQ(none.macs, 0);
  EXPECT_DOUBLE_EQ(none.datastore_bytes, 0);
  // r = 2 chunk = 8 rows for the position table.
  EXPECT_DOUBLE_EQ(none.params, 4 * 8 + 8 * 8 + 4 * 8 + 4 * 64 + 2 * 16 + 2 * 8 * 4);
}

TEST(BlockRetro, ModelRecordsLookupsIntoTheWorkload) {
  const std::string ds = store_file("activity.rds", 1, 10, 4, 2, 3);
  Genome g = one_block("retro", TensorType::sequence(8, 4),
                       {{"chunk", 4}, {"neighbours", 2}, {"encoder_width", 8}, {"datastore", ds}});
  auto model = build_model(g, 3);
  std::mt19937_64 rng(5);
  nn::ActivityRecorder rec;
  nn::ForwardContext ctx;
  ctx.training = false;
  ctx.recorder = &rec;
  (void)model->forward(nn::constant(nn::testing::random_tensor(nn::Shape{3, 8, 4}, rng)), ctx);
  const hw::Workload wl = build_workload(g, &rec);
  const hw::NodeWorkload& n = wl.nodes.at(0);
  EXPECT_DOUBLE_EQ(n.activity.scalar_or("datastore_lookups", -1), n.datastore_lookups);
  EXPECT_DOUBLE_EQ(n.activity.scalar_or("datastore_bytes_read", -1), n.datastore_bytes_read);
  EXPECT_DOUBLE_EQ(n.activity.scalar_or("neighbours_used", -1), 4);
  ASSERT_NE(n.activity.find_series("retrieved_neighbours"), nullptr);
  EXPECT_EQ(*n.activity.find_series("retrieved_neighbours"), (std::vector<double>{2, 2}));
  // The measurement agrees with the static count: nothing to re-charge.
  EXPECT_FALSE(hw::charge_measured_activity(wl).has_value());
}

TEST(BlockRetro, DevicesHoldTheDatastoreOrPayTheHostLink) {
  const std::string ds = store_file("devices.rds", 1, 10, 4, 2, 3);
  Genome g = one_block("retro", TensorType::sequence(8, 4),
                       {{"chunk", 4}, {"neighbours", 2}, {"encoder_width", 8}, {"datastore", ds}});
  const hw::Workload base = build_workload(g);
  hw::Workload bare = base;
  bare.nodes[0].datastore_bytes = bare.nodes[0].datastore_lookups = 0;
  bare.nodes[0].datastore_bytes_read = 0;

  // A GPU holds a small store in its memory: memory grows by its bytes, latency is unchanged.
  auto gpu = hw::load_device("jetson_orin_nano");
  const hw::Cost held = gpu->estimate(base), without = gpu->estimate(bare);
  EXPECT_TRUE(held.feasible);
  EXPECT_DOUBLE_EQ(held.memory_bytes - without.memory_bytes, 428);
  EXPECT_DOUBLE_EQ(held.latency_ms, without.latency_ms);
  EXPECT_EQ(held.extra.at("datastore_resident"), true);

  // A 3 MB store does not fit the STM32H743's 2 MB flash.  Without a host link: infeasible,
  // naming the node and the fix.
  hw::Workload big = base;
  big.nodes[0].datastore_bytes = 3e6;
  big.nodes[0].datastore_bytes_read = 2 * 1.5e6;  // two lookups scanning the keys
  auto mcu = hw::load_device("stm32h743");
  const hw::Cost no_link = mcu->estimate(big);
  EXPECT_FALSE(no_link.feasible);
  EXPECT_NE(no_link.infeasible_reason.find("datastore of n1:retro (3.00 MB) does not fit"),
            std::string::npos)
      << no_link.infeasible_reason;
  EXPECT_NE(no_link.infeasible_reason.find("set host_link_bw"), std::string::npos);
  // With a 50 MB/s link (a test value, not a preset) every sample reads its 3 MB over it:
  // 3e6 / 50e6 s = 60 ms on top of the compute.
  json desc = mcu->to_json();
  desc["host_link_bw"] = 50e6;
  auto linked = hw::make_device(desc);
  const double compute_ms = mcu->estimate(bare).latency_ms;
  const hw::Cost paid = linked->estimate(big);
  EXPECT_TRUE(paid.feasible) << paid.infeasible_reason;
  EXPECT_NEAR(paid.latency_ms, compute_ms + 60.0, 1e-9);
  EXPECT_EQ(paid.extra.at("datastore_resident"), false);
  EXPECT_DOUBLE_EQ(paid.extra.at("datastore_link_bytes").get<double>(), 3e6);
  double node_s = 0;
  for (const auto& nc : paid.nodes) node_s += nc.latency_s;
  EXPECT_NEAR(node_s * 1e3, paid.latency_ms, 1e-9);
  // At batch 4, four samples' reads.
  desc["batch"] = 4;
  EXPECT_NEAR(hw::make_device(desc)->estimate(big).latency_ms, 4 * (compute_ms + 60.0), 1e-9);
  // A measured read (an evaluation whose store had half the entries) is charged instead.
  big.nodes[0].activity.scalars["datastore_bytes_read"] = 1.5e6;
  EXPECT_NEAR(linked->estimate(big).latency_ms, compute_ms + 30.0, 1e-9);
  // The small store fits the flash next to the weights: nothing added but the flash figure.
  const hw::Cost small = mcu->estimate(base);
  EXPECT_TRUE(small.feasible);
  EXPECT_DOUBLE_EQ(small.latency_ms, compute_ms);
  EXPECT_DOUBLE_EQ(small.extra.at("flash_bytes_used").get<double>(), 448 * 4.0 + 428);

  // The Edge TPU reads a store beyond its 8 MB parameter cache over USB (usb_bw 320 MB/s,
  // HARDWARE.md section 2: USB 3.0 about 300-640 MB/s).  An int8 dense node carrying a 10 MB
  // store that reads 3.2 MB per sample pays 3.2e6 / 320e6 s = 10 ms more.
  auto tpu = hw::load_device("edgetpu_usb");
  hw::Workload t;
  t.input_bytes = 16;
  hw::NodeWorkload n;
  n.name = "n1:dense";
  n.category = hw::OpCategory::Dense;
  n.bits = 8;
  n.macs = 256;
  n.weight_bytes = 256;
  n.input_bytes = n.output_bytes = 16;
  t.nodes.push_back(n);
  const double tpu_ms = tpu->estimate(t).latency_ms;
  t.nodes[0].datastore_bytes = 10e6;
  t.nodes[0].datastore_bytes_read = 3.2e6;
  EXPECT_NEAR(tpu->estimate(t).latency_ms, tpu_ms + 10.0, 1e-9);
  t.nodes[0].datastore_bytes = 1e6;  // fits the cache next to 256 weight bytes
  EXPECT_NEAR(tpu->estimate(t).latency_ms, tpu_ms, 1e-12);

  // A GPU without room and without a link is infeasible.
  hw::Workload huge = base;
  huge.nodes[0].datastore_bytes = 9e9;
  EXPECT_FALSE(gpu->estimate(huge).feasible);
}

TEST(BlockRetro, TwoInputsTakeKeysFromTheRawSequence) {
  // input [8, 4] -> dense(6) -> retro(dense, input): the keys come from the raw rows (F = 4)
  // while the block processes the dense features (d = 6).
  const std::string ds = store_file("two.rds", 2, 8, 4, 2, 3);
  Genome g(TensorType::sequence(8, 4));
  auto h = g.add_node("dense", {{"units", 6}, {"activation", "tanh"}});
  g.add_edge(0, h);
  auto r =
      g.add_node("retro", {{"chunk", 2}, {"heads", 2}, {"encoder_width", 8}, {"datastore", ds}});
  g.add_edge(h, r);
  g.add_edge(0, r);
  g.validate();
  EXPECT_EQ(g.node(r).out, TensorType::sequence(8, 6));
  auto model = build_model(g, 2);
  std::mt19937_64 rng(3);
  nn::ForwardContext ctx;
  const nn::Var y =
      model->forward(nn::constant(nn::testing::random_tensor(nn::Shape{2, 8, 4}, rng)), ctx);
  EXPECT_EQ(y.shape(), (nn::Shape{2, 8, 6}));
  const hw::NodeWorkload w = build_workload(g).nodes.at(1);
  // embed reads F = 4 features per neighbour row: F e = 32 of the params.
  EXPECT_DOUBLE_EQ(w.params, 4 * 8 + 4 * 8 + 6 * 8 + 4 * 64 + 2 * 36 + 2 * 8 * 6);
}
