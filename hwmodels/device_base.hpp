// Shared machinery for the built-in device families: field validation with messages that name
// the device and the field, per-category and per-precision tables, and the common base class
// that stores the validated description (so to_json() round-trips) and applies calibration.
#pragma once

#include <array>
#include <cstddef>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "hwmodels/device.hpp"

namespace hwnas::hw {

inline constexpr std::size_t kNumCategories = static_cast<std::size_t>(OpCategory::kCount);
inline std::size_t cat_index(OpCategory c) { return static_cast<std::size_t>(c); }

// Reads fields of one device description by dotted path ("peak_flops.fp16").  Every failure
// throws std::invalid_argument "device 'NAME': field 'PATH' ...".
class FieldReader {
 public:
  FieldReader(const nlohmann::json& j, std::string device) : j_(j), device_(std::move(device)) {}
  const nlohmann::json* find(const std::string& path) const;
  bool has(const std::string& path) const { return find(path) != nullptr; }
  [[noreturn]] void fail(const std::string& path, const std::string& what) const;

  double positive(const std::string& path) const;  // required, > 0
  double positive_or(const std::string& path, double dflt) const;
  double non_negative_or(const std::string& path, double dflt) const;
  double fraction_or(const std::string& path, double dflt) const;  // in (0, 1]
  int positive_int(const std::string& path) const;
  int positive_int_or(const std::string& path, int dflt) const;
  bool boolean_or(const std::string& path, bool dflt) const;
  std::string string_or(const std::string& path, const std::string& dflt) const;
  std::string one_of(const std::string& path, std::initializer_list<const char*> allowed,
                     const std::string& dflt) const;
  const std::string& device() const { return device_; }
  const nlohmann::json& json() const { return j_; }

 private:
  const nlohmann::json& j_;
  std::string device_;
};

// A value per op category read from {"default": x, "conv": y, ...}; unknown keys are errors.
struct CategoryTable {
  std::array<double, kNumCategories> v{};
  double operator[](OpCategory c) const { return v[cat_index(c)]; }
  // Values must lie in (0, max_value]; "default" fills unlisted categories (required unless
  // every category is listed, or dflt >= 0 is given).
  static CategoryTable read(const FieldReader& r, const std::string& path, double max_value,
                            double dflt = -1);
};

// Numeric precision classes that rate tables are keyed by.
enum class Precision { Fp32 = 0, Fp16 = 1, Int8 = 2, Int4 = 3 };
inline constexpr std::size_t kNumPrecisions = 4;
inline constexpr std::array<const char*, kNumPrecisions> kPrecisionNames = {"fp32", "fp16", "int8",
                                                                            "int4"};
inline constexpr std::array<int, kNumPrecisions> kPrecisionBits = {32, 16, 8, 4};
inline const char* precision_name(Precision p) {
  return kPrecisionNames[static_cast<std::size_t>(p)];
}
inline int precision_bits(Precision p) { return kPrecisionBits[static_cast<std::size_t>(p)]; }
// bits <= 4 -> int4, 5..8 -> int8, 9..16 -> fp16 (fp16/bf16), otherwise fp32.
inline Precision precision_of_bits(int bits) {
  return bits <= 4    ? Precision::Int4
         : bits <= 8  ? Precision::Int8
         : bits <= 16 ? Precision::Fp16
                      : Precision::Fp32;
}

// The precisions a device runs natively: its "native_precisions" field (e.g. ["fp32", "fp16",
// "int8", "int4"]), else the family's default (gpu, edge_cpu, mcu: the precisions their rate
// table lists; edge_tpu: int8).  The rule every family applies (docs/hardware.md, "Native
// precisions"): a node at a precision the device does not run natively runs at the narrowest
// native precision at least as wide (int4 as int8, fp16 as fp32): its arithmetic is charged at
// that precision's rate and energy and its activations at that width; its weights stay stored
// at their own width (packed int4, as CMSIS-NN's s4 kernels and TensorRT's weight-only int4
// keep them) unless the family says otherwise (the Edge TPU compiler takes int8 tensors only,
// so 4-bit weights are stored as int8).  When no native precision is wide enough (a float node
// on the int8-only Edge TPU) the family decides: the Edge TPU hands it to its host CPU.  Each
// cost lists such nodes in extra["non_native_precision"].
struct NativePrecisions {
  std::array<bool, kNumPrecisions> native{};
  bool has(Precision p) const { return native[static_cast<std::size_t>(p)]; }
  // The narrowest native precision at least as wide as p (p itself when native); nullopt when
  // none is.
  std::optional<Precision> run_as(Precision p) const;
  std::string list() const;  // "fp32, fp16, int8"
  static NativePrecisions of(std::initializer_list<Precision> ps);
  // The description's "native_precisions" (a non-empty array of distinct names from
  // kPrecisionNames), or dflt when absent; a bad value fails naming the field and the fix.
  static NativePrecisions read(const FieldReader& r, const NativePrecisions& dflt);
};

// A rate per precision read from {"fp32": a, "fp16": b, "int8": c, "int4": d}; fp32 is
// required.  With the device's native precisions (read_native): every native precision needs
// an entry and every entry must be native, and a non-native precision takes the rate of the
// precision it runs as (NativePrecisions::run_as), so v[precision_of_bits(bits)] is the rate a
// node is charged at.  Without a "native_precisions" field the listed entries are the native
// set (so a missing int4 entry means int4 runs as int8, a missing fp16 as fp32).
struct PrecisionTable {
  std::array<double, kNumPrecisions> v{};
  std::array<bool, kNumPrecisions> listed{};
  double operator[](Precision p) const { return v[static_cast<std::size_t>(p)]; }
  static PrecisionTable read(const FieldReader& r, const std::string& path);
  // Reads the table at `path` and the device's native precisions together, checks them
  // against each other and fills the non-native entries; `native` receives the set.
  static PrecisionTable read_native(const FieldReader& r, const std::string& path,
                                    NativePrecisions& native);
};

// Lists, in c.extra["non_native_precision"], every node whose precision the device does not run
// natively and what it runs as ("int4 runs as int8 (native: fp32, fp16, int8)"), or "no native
// precision wide enough: " + `fallback` when none is.  Nothing when every node is native.
void note_non_native_precisions(const Workload& w, const NativePrecisions& native,
                                const std::string& fallback, Cost& c);

// Counts the activity figures a cost used, measured or assumed, and names the mix for
// Cost::activity_source ("measured", "assumed", "mixed", or "none" when nothing was counted).
struct ActivityTally {
  int measured = 0, assumed = 0;
  void add(bool was_measured) { ++(was_measured ? measured : assumed); }
  std::string source() const {
    if (measured > 0 && assumed > 0) return "mixed";
    if (measured > 0) return "measured";
    return assumed > 0 ? "assumed" : "none";
  }
};

// Base of the built-in families.  Holds the validated description and the optional
// "calibration" block written by `hwnas hw calibrate`:
//   {"category_scale": {cat: a}, "per_kernel_s": b, "energy_scale": e,
//    "per_node_s": g, "s_per_flop": {cat: f}, "s_per_byte": {cat: m},
//    "s_per_pruned_param": q, "s_per_quantized_param": u}
// A calibrated node latency is
//   a_cat * body + kernels * b + g + f_cat * FLOPs + m_cat * bytes
//   + q * params [if pruned] + u * params [if bits < 16]
// (body = the family's latency without the per-kernel overhead; FLOPs = batch * (2 MACs + other
// FLOPs), bytes = weight bytes + batch * activation bytes, batch = the description's "batch",
// default 1).  The q and u terms are per forward pass, not per sample: they model engines that
// prune / quantise weights on the fly (as our own does).  The last five terms are optional (0 when
// absent, so older tuned files load unchanged); they are added in estimate() to every node that did
// not fall back to another device.  energy_scale multiplies total energy (legacy: static power
// too).  "dynamic_energy_scale": {cat: e} (written by calibrate instead) keeps static power:
// a node's energy becomes static_power_w() x its calibrated latency + e_cat x its dynamic energy
// (the family's node energy less static_power_w() x the family's node latency).
class DeviceBase : public Device {
 public:
  explicit DeviceBase(const nlohmann::json& description);
  std::string name() const override { return name_; }
  std::string family() const override { return family_; }
  nlohmann::json to_json() const override { return desc_; }
  // Solver nodes are charged their measured function evaluations and routing nodes their
  // measured active experts (charge_measured_activity in workload.hpp) before the family sees
  // the workload, whatever the family.
  Cost estimate(const Workload& w) const override {
    const std::optional<Workload> charged = charge_measured_activity(w);
    const Workload& use = charged ? *charged : w;
    Cost c = run(use, true);
    charge_datastores(use, c);
    if (has_linear_) add_linear_terms(use, c);
    note_function_evals(use, c);
    c.batch = batch_;
    return c;
  }
  Cost estimate_total(const Workload& w) const override {
    const std::optional<Workload> charged = charge_measured_activity(w);
    const Workload& use = charged ? *charged : w;
    if (!has_linear_) {
      Cost c = run(use, false);
      charge_datastores(use, c);
      note_function_evals(use, c);
      c.batch = batch_;
      return c;
    }
    Cost c = run(use, true);  // the linear terms need to know which nodes fell back
    charge_datastores(use, c);
    add_linear_terms(use, c);
    note_function_evals(use, c);
    c.nodes.clear();
    c.batch = batch_;
    return c;
  }
  std::vector<Cost> estimate_many(const std::vector<Workload>& ws) const override {
    std::vector<std::optional<Workload>> charged;
    std::vector<const Workload*> use;
    charged.reserve(ws.size());
    for (const auto& w : ws) charged.push_back(charge_measured_activity(w));
    for (std::size_t i = 0; i < ws.size(); ++i) use.push_back(charged[i] ? &*charged[i] : &ws[i]);
    std::vector<Cost> out = run_many(use);
    for (std::size_t i = 0; i < ws.size(); ++i) {
      charge_datastores(*use[i], out[i]);
      if (has_linear_) add_linear_terms(*use[i], out[i]);
      note_function_evals(*use[i], out[i]);
      out[i].batch = batch_;
    }
    return out;
  }
  // Whether latency is a sum over nodes (so `hw calibrate` can fit per-category scales).
  virtual bool calibratable() const { return true; }
  // Power drawn whatever the work (idle / static), W: charged over every second of latency,
  // including the calibrated terms; never scaled by calibration.  0: the family states none.
  virtual double static_power_w() const { return 0; }

 protected:
  // Retrieval datastores (NodeWorkload::datastore_bytes), the one rule every family shares:
  // the family says whether its memory holds `bytes` more next to what run() put in `c`
  // (hold_datastore: it then counts them in c.memory_bytes or its own figures and returns
  // true).  If not, every sample reads its datastore_bytes_read over the host link
  // (host_link_bw(), bytes/s): batch x bytes / bandwidth is added to the latency and to the
  // node's breakdown, and Cost::extra gets datastore_bytes and datastore_link_bytes.  Without
  // a link the cost is infeasible, naming the datastore and the fix.  Default: holds nothing.
  virtual bool hold_datastore(const Workload& /*w*/, double /*bytes*/, Cost& /*c*/) const {
    return false;
  }
  // For families with one memory of `capacity` bytes holding weights, activations and any
  // datastore: hold_datastore's rule (counts `bytes` in c.memory_bytes if they fit), and the
  // feasibility check of c.memory_bytes ("<what> <bytes> > <memory> <capacity>").
  static bool hold_within(double capacity, double bytes, Cost& c) {
    if (c.memory_bytes + bytes > capacity) return false;
    c.memory_bytes += bytes;
    return true;
  }
  static void check_capacity(double capacity, const char* what, const char* memory, Cost& c) {
    if (c.memory_bytes <= capacity) return;
    c.feasible = false;
    c.infeasible_reason = std::string(what) + " " + format_bytes(c.memory_bytes) + " > " + memory +
                          " " + format_bytes(capacity);
  }
  // The description's "host_link_bw" (0: none); a family may supply its own link (edge_tpu: USB).
  virtual double host_link_bw() const { return host_link_bw_; }
  void charge_datastores(const Workload& w, Cost& c) const;

  virtual Cost run(const Workload& w, bool breakdown) const = 0;
  // run() on each, with a breakdown; a family that batches requests overrides.
  virtual std::vector<Cost> run_many(const std::vector<const Workload*>& ws) const {
    std::vector<Cost> out;
    out.reserve(ws.size());
    for (const Workload* w : ws) out.push_back(run(*w, true));
    return out;
  }
  // Node latency after calibration; `overhead_per_kernel` is the family's own uncalibrated value.
  double node_latency(OpCategory c, double body_s, int kernels, double overhead_per_kernel) const {
    return scale_[cat_index(c)] * body_s +
           kernels * (has_per_kernel_ ? per_kernel_s_ : overhead_per_kernel);
  }
  double node_overhead(int kernels, double overhead_per_kernel) const {
    return kernels * (has_per_kernel_ ? per_kernel_s_ : overhead_per_kernel);
  }
  double energy_scale() const { return energy_scale_; }
  // Samples per inference (the description's "batch", default 1).  Each family says how it
  // honours it: a whole batch as one pass (gpu, edge_cpu) or sequential samples (edge_tpu, mcu,
  // neuromorphic, lut).
  int batch() const { return batch_; }
  // The runtime's fusion rule (the description's "fusion"): true for "eager" (every conv, norm,
  // activation and add its own kernel), false for "fused" (TensorRT / TFLite style).
  bool eager() const { return eager_; }
  int kernels_of(const NodeWorkload& n) const { return n.kernels_for(eager_); }
  const FieldReader& reader() const { return reader_; }
  [[noreturn]] void fail(const std::string& path, const std::string& what) const {
    reader_.fail(path, what);
  }

  nlohmann::json desc_;
  std::string name_, family_;

 private:
  // Folds the solver nodes' evaluation-count source into c.activity_source.
  static void note_function_evals(const Workload& w, Cost& c) {
    const std::string s = function_evals_source(w);
    if (s == "none" || s == c.activity_source) return;
    c.activity_source = c.activity_source == "none" ? s : "mixed";
  }
  // Adds the calibrated per-node, per-FLOP and per-byte terms (see above) to a breakdown, with
  // static power over the added time, and applies dynamic_energy_scale.
  void add_linear_terms(const Workload& w, Cost& c) const;

  FieldReader reader_;  // refers to desc_
  std::array<double, kNumCategories> scale_{};
  bool has_linear_ = false;
  int batch_ = 1;
  bool eager_ = false;
  double per_node_s_ = 0, s_per_pruned_param_ = 0, s_per_quantized_param_ = 0;
  std::array<double, kNumCategories> s_per_flop_{}, s_per_byte_{};
  double host_link_bw_ = 0;
  bool has_per_kernel_ = false;
  double per_kernel_s_ = 0;
  double energy_scale_ = 1;
  std::array<double, kNumCategories> dynamic_energy_scale_{};  // 1 where not calibrated
  bool has_dynamic_energy_scale_ = false;
};

// Family factories (one file each).
std::unique_ptr<Device> make_gpu_device(const nlohmann::json& d);
std::unique_ptr<Device> make_edge_cpu_device(const nlohmann::json& d);
std::unique_ptr<Device> make_edge_tpu_device(const nlohmann::json& d);
std::unique_ptr<Device> make_mcu_device(const nlohmann::json& d);
std::unique_ptr<Device> make_neuromorphic_device(const nlohmann::json& d);
std::unique_ptr<Device> make_host_device(const nlohmann::json& d);
std::unique_ptr<Device> make_lut_device(const nlohmann::json& d);
std::unique_ptr<Device> make_plugin_device(const nlohmann::json& d);
std::unique_ptr<Device> make_external_device(const nlohmann::json& d);
std::unique_ptr<Device> make_learned_device(const nlohmann::json& d);
// Loads a plugin shared library directly (load_device("x.so")).
std::unique_ptr<Device> load_plugin_device(const std::string& path);

// A nested device given either as a JSON object or as a preset name / path string
// (Edge TPU host CPU, LUT fallback).
std::unique_ptr<Device> make_nested_device(const FieldReader& r, const std::string& path);

}  // namespace hwnas::hw
