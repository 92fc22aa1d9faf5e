// The device-family registry: built-ins listed, the standard unknown-name message, misspelt
// fields refused with the known ones (in a file: the file named too), and each family's
// declared fields agreeing with what its factory reads (every preset's values lie in the
// declared domains, required fields are required, the others may be left out).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include "hwmodels/device.hpp"

using namespace hwnas;
using namespace hwnas::hw;
using nlohmann::json;

namespace {

const std::string kPlugin =
    std::string(HWNAS_BINARY_DIR) + "/examples/plugins/libhwnas_example_plugin.so";

std::string error_of(const json& d) {
  try {
    make_device(d);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

json preset(const std::string& name) {
  std::ifstream in(preset_dir() + "/" + name + ".json");
  return json::parse(in);
}

// One valid description per family.
json example_of(const std::string& family) {
  if (family == "gpu") return preset("h100_sxm");
  if (family == "edge_cpu") return preset("rpi4_a72");
  if (family == "edge_tpu") return preset("edgetpu_usb");
  if (family == "mcu") return preset("stm32h743");
  if (family == "neuromorphic") return preset("loihi2");
  if (family == "host") return preset("host");
  if (family == "lut") {
    std::ifstream in(std::string(HWNAS_SOURCE_DIR) + "/examples/devices/my_npu_lut.json");
    return json::parse(in);
  }
  return {{"name", "p"}, {"family", "plugin"}, {"path", kPlugin}};
}

// "power.tdp_w" as a JSON pointer "/power/tdp_w".
json::json_pointer pointer(const std::string& dotted) {
  std::string p = "/" + dotted;
  std::replace(p.begin(), p.end(), '.', '/');
  return json::json_pointer(p);
}

const json* at_path(const json& j, const std::string& dotted) {
  const auto ptr = pointer(dotted);
  return j.contains(ptr) ? &j.at(ptr) : nullptr;
}

void erase_path(json& j, const std::string& dotted) {
  const auto ptr = pointer(dotted);
  j.at(ptr.parent_pointer()).erase(ptr.back());
}

json tiny_gpu() {
  return {{"name", "tiny_gpu"},
          {"family", "gpu"},
          {"peak_flops", {{"fp32", 1e12}}},
          {"vector_flops", 1e12},
          {"mem_bw", 1e11},
          {"efficiency", {{"default", 0.5}}},
          {"memory_bytes", 1e6},
          {"power", {{"idle_w", 10}, {"tdp_w", 110}}}};
}

TEST(DeviceFamilies, ListsTheBuiltins) {
  const auto& reg = device_families();
  EXPECT_EQ(reg.family(), "device family");
  EXPECT_EQ(reg.names(),
            (std::vector<std::string>{"edge_cpu", "edge_tpu", "external", "gpu", "host", "learned",
                                      "lut", "mcu", "neuromorphic", "plugin"}));
  EXPECT_EQ(family_names(), reg.names());
  for (const auto& [name, f] : reg.entries()) {
    EXPECT_FALSE(f.description.empty()) << name;
    EXPECT_TRUE(f.make) << name;
    std::set<std::string> seen;
    for (const auto& p : f.params) {
      EXPECT_TRUE(seen.insert(p.name).second) << name << " declares " << p.name << " twice";
      EXPECT_FALSE(p.description.empty()) << name << "." << p.name;
      if (!p.default_value.is_null() && p.type != ParamType::Json) {
        EXPECT_EQ(p.check(p.default_value), "") << name << "." << p.name;
      }
    }
    for (const auto& c : common_device_params())
      EXPECT_TRUE(seen.count(c.name)) << name << " " << c.name;
  }
  Registry<DeviceFamily> again("device family");
  register_builtin_device_families(again);
  EXPECT_THROW(register_builtin_device_families(again), std::logic_error);
}

TEST(DeviceFamilies, MissingFamilyListsTheKnownOnes) {
  json d = tiny_gpu();
  d.erase("family");
  EXPECT_EQ(
      error_of(d),
      "device 'tiny_gpu': field 'family' is required (known: edge_cpu, edge_tpu, external, gpu, "
      "host, learned, lut, mcu, neuromorphic, plugin)");
}

TEST(DeviceFamilies, MisspeltFieldIsRefusedWithTheKnownFields) {
  EXPECT_EQ(error_of(tiny_gpu()), "");
  json d = tiny_gpu();
  d["mem_bww"] = 1e11;
  EXPECT_EQ(error_of(d),
            "device 'tiny_gpu': unknown field 'mem_bww' (known: batch, calibration, "
            "calibration_report, description, efficiency, family, fusion, host_link_bw, launch_s, "
            "matrix_categories, mem_bw, mem_efficiency, memory_bytes, name, native_precisions, "
            "peak_flops, power, source, sources, tf32_flops, tf32_for_fp32, vector_flops)");
  // Nested objects are checked against their declared members.
  d = tiny_gpu();
  d["power"]["tdp_W"] = 110;
  EXPECT_EQ(error_of(d),
            "device 'tiny_gpu': unknown field 'power.tdp_W' (known: power.idle_w, power.model, "
            "power.tdp_w)");
  d = tiny_gpu();
  d["power"] = 110;
  EXPECT_EQ(error_of(d), "device 'tiny_gpu': field 'power' must be an object");
  d = tiny_gpu();
  d["calibration"] = {{"energy_scal", 0.5}};
  const std::string e = error_of(d);
  EXPECT_EQ(e.rfind("device 'tiny_gpu': unknown field 'calibration.energy_scal' (known: "
                    "calibration.category_scale, calibration.dynamic_energy_scale, "
                    "calibration.energy_scale, ",
                    0),
            0u)
      << e;
  // A field of another family is not a field of this one.
  d = tiny_gpu();
  d["sram_bytes"] = 1e5;
  EXPECT_NE(error_of(d).find("unknown field 'sram_bytes'"), std::string::npos);
  // Documentation keys are accepted everywhere.
  d = tiny_gpu();
  d["description"] = "a small GPU";
  d["sources"] = {{"mem_bw", "datasheet [S]"}};
  d["source"] = "vendor whitepaper";
  EXPECT_EQ(error_of(d), "");
  // Nested devices are checked too.
  json t = example_of("edge_tpu");
  t["host_cpu"] = preset("rpi4_a72");
  t["host_cpu"]["freq_hzz"] = 1;
  EXPECT_NE(error_of(t).find("field 'host_cpu' is not a valid device: device 'rpi4_a72': unknown "
                             "field 'freq_hzz' (known: "),
            std::string::npos)
      << error_of(t);
}

// Every family, the external one included, refuses a key it does not declare, listing the known
// ones; so does a lookup table's entry (whose keys the family cannot declare one by one).
TEST(DeviceFamilies, EveryFamilyRefusesAMisspeltField) {
  for (const auto& [name, f] : device_families().entries()) {
    if (name == "plugin" && !std::filesystem::exists(kPlugin)) continue;
    json d = name == "external" ? json{{"name", "x"}, {"family", "external"}, {"command", {"true"}}}
                                : example_of(name);
    d["batchh"] = 1;
    const std::string e = error_of(d);
    EXPECT_NE(e.find("unknown field 'batchh' (known: "), std::string::npos) << name << ": " << e;
  }
  json lut = example_of("lut");
  lut["table"]["pool"]["macss"] = 10;
  EXPECT_EQ(error_of(lut),
            "device 'my_npu_lut': table.pool.macss: unknown parameter (known: latency_us, "
            "energy_uj, macs)");
  lut = example_of("lut");
  lut["table"]["pool"] = 15;
  EXPECT_EQ(error_of(lut),
            "device 'my_npu_lut': field 'table.pool' must be an object {latency_us, energy_uj, "
            "macs}");
}

TEST(DeviceFamilies, MisspeltFieldInAFileNamesTheFile) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("hwnas_misspelt_device_" + std::to_string(::getpid()) + ".json");
  json d = preset("stm32h743");
  d["sram_byte"] = 1;
  std::ofstream(path) << d.dump(2);
  try {
    load_device(path.string());
    FAIL() << "accepted a misspelt field";
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("unknown field 'sram_byte' (known: "), std::string::npos) << msg;
    EXPECT_NE(msg.find("sram_bytes"), std::string::npos) << msg;
    EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
  }
  std::filesystem::remove(path);
}

TEST(DeviceFamilies, EveryPresetFitsItsFamilysDeclaredFields) {
  ASSERT_FALSE(preset_names().empty());
  for (const auto& n : preset_names()) {
    const json d = preset(n);
    ASSERT_NO_THROW(load_device(n)) << n;
    const DeviceFamily& f = device_families().at(d["family"]);
    for (const auto& p : f.params) {
      const json* v = at_path(d, p.name);
      if (p.default_value.is_null()) {
        EXPECT_NE(v, nullptr) << n << ": required " << p.name;
      }
      if (v && p.type != ParamType::Json) {
        EXPECT_EQ(p.check(*v), "") << n << "." << p.name;
      }
    }
  }
}

TEST(DeviceFamilies, RequiredFieldsAreRequiredAndTheOthersOptional) {
  for (const auto& [name, f] : device_families().entries()) {
    if (name == "plugin" && !std::filesystem::exists(kPlugin)) continue;
    const json base = example_of(name);
    ASSERT_EQ(error_of(base), "") << name;
    for (const auto& p : f.params) {
      if (!at_path(base, p.name)) continue;
      json without = base;
      erase_path(without, p.name);
      const std::string e = error_of(without);
      if (p.default_value.is_null()) {
        EXPECT_NE(e.find("'" + p.name + "'"), std::string::npos)
            << name << "." << p.name << ": " << e;
      } else if (!e.empty()) {
        // Only a conditionally required field (documented "required with ...") may be missed.
        EXPECT_NE(p.description.find("required"), std::string::npos)
            << name << "." << p.name << ": " << e;
        EXPECT_NE(e.find("'" + p.name + "'"), std::string::npos)
            << name << "." << p.name << ": " << e;
      }
    }
  }
}

}  // namespace
