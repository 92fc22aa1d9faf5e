// `hwnas hw predict`: batch size, many architectures at once (--space --all / --sample, stdin),
// fallbacks shown plainly; and per-device batch sizes in a search config.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "hwmodels/device.hpp"
#include "search/config.hpp"
#include "search/search_loop.hpp"
#include "spaces/space.hpp"
#include "spaces/workload_builder.hpp"

using nlohmann::json;
using namespace hwnas;

namespace {

const std::string kBinary = std::string(HWNAS_BINARY_DIR) + "/hwnas";
const std::string kNb201Space = std::string(HWNAS_SOURCE_DIR) + "/examples/spaces/nb201.json";
const std::string kArch0 =
    "'|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_"
    "connect~2|'";

struct Out {
  int code;
  std::string text;
};

Out run(const std::string& cmd) {
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> v;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) v.push_back(l);
  return v;
}

TEST(HwPredict, BatchIsAParameterOfThePrediction) {
  const Out one = run(kBinary + " hw predict -d rpi4_a72 --format json " + kArch0);
  const Out four = run(kBinary + " hw predict -d rpi4_a72 --batch 4 --format json " + kArch0);
  ASSERT_EQ(one.code, 0) << one.text;
  ASSERT_EQ(four.code, 0) << four.text;
  const json a = json::parse(one.text), b = json::parse(four.text);
  EXPECT_EQ(a["batch"], 1);
  EXPECT_EQ(b["batch"], 4);
  // One pass over the batch: more than one sample's time, less than four separate ones (the
  // per-op dispatch is paid once).
  EXPECT_GT(b["latency_ms"].get<double>(), a["latency_ms"].get<double>());
  EXPECT_LT(b["latency_ms"].get<double>(), 4 * a["latency_ms"].get<double>());
  const Out table = run(kBinary + " hw predict -d rpi4_a72 --batch 4 " + kArch0);
  EXPECT_NE(table.text.find("total (batch 4)"), std::string::npos) << table.text;
}

// The uncalibrated presets against HW-NAS-Bench's measurements of NB201 arch 0 (CIFAR-10
// network, batch 1; Li et al. 2021): each within a factor of 2.  The Edge TPU runs int8 (its
// measurement is of the quantised TFLite model); the TX2's energy is VDD_IN power x time.
TEST(HwPredict, PresetsWithinTwiceOfHwNasBenchArch0) {
  struct Published {
    const char* device;
    const char* flags;
    const char* field;
    double value;
  };
  const Published rows[] = {{"rpi4_a72", "", "latency_ms", 10.48},
                            {"pixel3_a75", "", "latency_ms", 3.61},
                            {"jetson_tx2", "", "latency_ms", 5.81},
                            {"jetson_tx2", "", "energy_mj", 24.2},
                            {"edgetpu_usb", "--bits 8", "latency_ms", 0.96}};
  for (const auto& r : rows) {
    const Out o =
        run(kBinary + " hw predict -d " + r.device + " " + r.flags + " --format json " + kArch0);
    ASSERT_EQ(o.code, 0) << o.text;
    const double predicted = json::parse(o.text)[r.field].get<double>();
    EXPECT_GT(predicted, r.value / 2) << r.device << " " << r.field;
    EXPECT_LT(predicted, r.value * 2) << r.device << " " << r.field;
  }
}

TEST(HwPredict, EdgeTpuFallbackIsShownPlainly) {
  // The NB201 string is fp32: the Edge TPU compiler would leave all of it to the host CPU.
  const Out t = run(kBinary + " hw predict -d edgetpu_usb " + kArch0);
  ASSERT_EQ(t.code, 0) << t.text;
  EXPECT_NE(t.text.find("FALLBACK: "), std::string::npos) << t.text;
  EXPECT_NE(t.text.find("on host CPU rpi4_a72"), std::string::npos) << t.text;
  const Out j = run(kBinary + " hw predict -d edgetpu_usb --format json " + kArch0);
  const json c = json::parse(j.text);
  EXPECT_GT(c["fallback_nodes"].get<int>(), 0);
  EXPECT_NE(c["fallback"].get<std::string>().find("not int8"), std::string::npos);
}

TEST(HwPredict, ManyArchitecturesFromASpaceAndFromStdin) {
  const Out s =
      run(kBinary + " hw predict -d pixel3_a75 --space " + kNb201Space + " --sample 5 --seed 3");
  ASSERT_EQ(s.code, 0) << s.text;
  auto rows = lines(s.text);
  ASSERT_EQ(rows.size(), 6u) << s.text;
  EXPECT_EQ(rows[0].rfind("architecture,device,batch,feasible,latency_ms", 0), 0u);
  EXPECT_NE(rows[1].find(",pixel3_a75,1,1,"), std::string::npos) << rows[1];

  // Strings on stdin, JSON lines out; the same string twice costs the same (cached cell), and
  // matches the one-architecture prediction.
  const std::string a =
      "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|";
  const Out in = run("printf '%s\\n%s\\n' '" + a + "' '" + a + "' | " + kBinary +
                     " hw predict -d jetson_tx2 --format jsonl -");
  ASSERT_EQ(in.code, 0) << in.text;
  auto js = lines(in.text);
  ASSERT_EQ(js.size(), 2u) << in.text;
  const json r0 = json::parse(js[0]), r1 = json::parse(js[1]);
  EXPECT_EQ(r0["architecture"], a);
  EXPECT_EQ(r0["latency_ms"], r1["latency_ms"]);
  const json single =
      json::parse(run(kBinary + " hw predict -d jetson_tx2 --format json '" + a + "'").text);
  EXPECT_DOUBLE_EQ(r0["latency_ms"].get<double>(), single["latency_ms"].get<double>());

  // A bad line names its number.
  const Out bad =
      run("printf '%s\\n|bogus|\\n' '" + a + "' | " + kBinary + " hw predict -d jetson_tx2 -");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.text.find("stdin line 2"), std::string::npos) << bad.text;
}

TEST(HwPredict, AllOfNb201) {
  const Out s = run(kBinary + " hw predict -d rpi4_a72 --space " + kNb201Space + " --all");
  ASSERT_EQ(s.code, 0) << s.text.substr(0, 500);
  EXPECT_EQ(lines(s.text).size(), 15626u);
}

TEST(StoredCosts, CarryBatchAndFallback) {
  // What a search stores (the totals-only path it uses): batch and fallback in every cost.
  auto space = spaces::make_space(json{{"type", "nb201"}});
  const hw::Workload w = spaces::build_workload(space->at(1234));
  auto tpu = hw::load_device("edgetpu_usb", 2);
  const db::CostRecord r = search::to_record("edgetpu_usb", tpu->estimate_total(w));
  EXPECT_EQ(r.detail["batch"], 2);
  EXPECT_EQ(r.detail["fallback_nodes"].get<int>(), static_cast<int>(w.nodes.size()));
  EXPECT_NE(r.detail["fallback"].get<std::string>().find("host CPU rpi4_a72"), std::string::npos);
  const db::CostRecord g =
      search::to_record("h100_sxm", hw::load_device("h100_sxm")->estimate_total(w));
  EXPECT_EQ(g.detail["batch"], 1);
  EXPECT_FALSE(g.detail.contains("fallback_nodes"));
}

TEST(SearchConfigDevices, PerDeviceBatch) {
  std::ifstream in(std::string(HWNAS_TEST_DIR) + "/fixtures/tiny.json");
  json j = json::parse(in);
  j["space"] = std::string(HWNAS_SOURCE_DIR) + "/examples/spaces/mlp.json";
  j["evaluator"]["host_latency_reps"] = 0;
  j["devices"] = json::array({json{{"device", "rpi4_a72"}, {"batch", 8}}, "h100_sxm"});
  search::SearchConfig c = search::parse_config(j, "");
  ASSERT_EQ(c.devices.size(), 2u);
  EXPECT_EQ(c.devices[0], "rpi4_a72");
  EXPECT_EQ(c.device_batches, (std::vector<int>{8, 0}));
  j["devices"] = json::array({json{{"device", "rpi4_a72"}, {"batch", 0}}});
  try {
    (void)search::parse_config(j, "");
    FAIL() << "accepted batch 0";
  } catch (const search::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("config.devices[0].batch"), std::string::npos) << e.what();
  }
  j["devices"] = json::array({json{{"device", "rpi4_a72"}, {"batches", 2}}});
  EXPECT_THROW((void)search::parse_config(j, ""), search::ConfigError);
}

}  // namespace
