// The built-in device families and the fields each one's JSON description may carry.  The
// domains documented here are the ones the family's constructor enforces through FieldReader
// (device_base.hpp); tests/hwmodels check that every preset's values lie in them.
#include <limits>

#include "hwmodels/device_base.hpp"

namespace hwnas::hw {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr int kMaxInt = 1 << 30;  // FieldReader::positive_int's bound

ParamSpec required(ParamSpec p) {
  p.default_value = nullptr;
  return p;
}
ParamSpec positive(std::string name, std::string desc) {
  return required(ParamSpec::float_range(std::move(name), 0, kInf, 0, std::move(desc) + " (> 0)"));
}
ParamSpec positive_or(std::string name, double dflt, std::string desc) {
  return ParamSpec::float_range(std::move(name), 0, kInf, dflt, std::move(desc) + " (> 0)");
}
ParamSpec non_negative(std::string name, double dflt, std::string desc) {
  return ParamSpec::float_range(std::move(name), 0, kInf, dflt, std::move(desc));
}
ParamSpec fraction(std::string name, double dflt, std::string desc) {
  return ParamSpec::float_range(std::move(name), 0, 1, dflt, std::move(desc) + " (> 0)");
}
ParamSpec count(std::string name, std::string desc) {
  return required(ParamSpec::int_range(std::move(name), 1, kMaxInt, 1, std::move(desc)));
}
ParamSpec count_or(std::string name, int dflt, std::string desc) {
  return ParamSpec::int_range(std::move(name), 1, kMaxInt, dflt, std::move(desc));
}
ParamSpec table(std::string name, std::string desc) {
  return required(ParamSpec::any_json(std::move(name), nullptr, std::move(desc)));
}

const char* kPrecisionTable =
    "{\"fp32\", \"fp16\", \"int8\", \"int4\"}; fp32 required; one entry per native precision "
    "(native_precisions); a precision without an entry runs at the next wider native one";
ParamSpec native_precisions(const std::string& dflt) {
  return ParamSpec::any_json(
      "native_precisions", nlohmann::json::array(),
      "precisions the device runs natively, e.g. [\"fp32\", \"fp16\", \"int8\", \"int4\"] "
      "(absent: " +
          dflt +
          "); a node at another precision runs at the narrowest native one at least as wide "
          "(int4 as int8, weights kept packed; fp16 as fp32), noted in the cost's "
          "extra.non_native_precision");
}
const char* kCategoryTable =
    "{\"default\": x, <op category>: x}, each a fraction of peak in (0, 1]; default fills the "
    "categories not listed";

}  // namespace

std::vector<ParamSpec> common_device_params() {
  return {
      required(
          ParamSpec::string("name", "", "the device's name (results and costs are keyed by it)")),
      required(ParamSpec::string("family", "", "the family: one of `hwnas hw families`")),
      ParamSpec::string("description", "", "free text shown by `hwnas hw list`"),
      ParamSpec::any_json("sources", nlohmann::json::object(),
                          "{field: citation [tag]}: where each constant comes from"),
      ParamSpec::any_json("source", "", "a single citation for the whole description"),
      // The calibration block written by `hwnas hw calibrate` (DeviceBase in device_base.hpp).
      ParamSpec::any_json("calibration.category_scale", nlohmann::json::object(),
                          "{\"default\": a, <op category>: a}: multiplies the family's node "
                          "latency (before overheads)"),
      non_negative("calibration.per_kernel_s", 0,
                   "replaces the family's per-kernel overhead, s (absent: keep it)"),
      positive_or("calibration.energy_scale", 1.0,
                  "multiplies total energy, static power included (legacy; calibrate now writes "
                  "dynamic_energy_scale)"),
      ParamSpec::any_json("calibration.dynamic_energy_scale", nlohmann::json::object(),
                          "{\"default\": e, <op category>: e}: multiplies each node's dynamic "
                          "energy; static power x latency is kept"),
      non_negative("calibration.per_node_s", 0, "added per node, s"),
      ParamSpec::any_json("calibration.s_per_flop", nlohmann::json::object(),
                          "{<op category>: s per FLOP} added per node"),
      ParamSpec::any_json("calibration.s_per_byte", nlohmann::json::object(),
                          "{<op category>: s per byte moved} added per node"),
      non_negative("calibration.s_per_pruned_param", 0, "s per parameter of a pruned node"),
      non_negative("calibration.s_per_quantized_param", 0,
                   "s per parameter of a node below 16 bits"),
      ParamSpec::any_json("calibration_report", nlohmann::json::object(),
                          "written by `hwnas hw calibrate`: fit quality, seed, ridge (not read)"),
      non_negative("host_link_bw", 0,
                   "bytes/s of the link to the host (PCIe, USB, QSPI) over which a retrieval "
                   "datastore the device cannot hold is read every inference (0: none, such a "
                   "datastore makes the cost infeasible; edge_tpu defaults to usb_bw)"),
      count_or("batch", 1,
               "samples per inference: gpu and edge_cpu cost the batch as one pass (weights read "
               "once); edge_tpu, mcu, neuromorphic and lut run the samples one after another; "
               "host reads the measurement at that batch (else scales the batch-1 one)"),
      ParamSpec::choice("fusion", {"fused", "eager"}, "fused",
                        "the runtime's kernel fusion rule: \"fused\" (TensorRT, TFLite, "
                        "edgetpu_compiler, TinyEngine: batch norm folded into the conv, an "
                        "activation into its producer) or \"eager\" (PyTorch eager: conv, norm, "
                        "activation and add each a kernel); picks NodeWorkload::kernels or "
                        "eager_kernels"),
  };
}

void register_builtin_device_families(Registry<DeviceFamily>& r) {
  // Appends the common fields, so each entry below lists only its own.
  auto add = [&r](DeviceFamily f) {
    for (auto& p : common_device_params()) f.params.push_back(std::move(p));
    r.add(std::move(f));
  };
  add({"gpu",
       "roofline GPU (device_gpu.cpp): per node max(FLOPs / (efficiency x peak), bytes / "
       "bandwidth) + kernel launches; energy = idle power + busy power over the roofline time",
       {table("peak_flops", std::string("matrix-unit peak FLOP/s ") + kPrecisionTable),
        ParamSpec::boolean("tf32_for_fp32", false, "fp32 matrix ops run as TF32 at tf32_flops"),
        non_negative("tf32_flops", 0, "TF32 matrix peak FLOP/s (required with tf32_for_fp32)"),
        positive("vector_flops", "vector-unit peak FLOP/s, for categories off the matrix units"),
        positive("mem_bw", "DRAM bandwidth, bytes/s"),
        fraction("mem_efficiency", 1.0, "achieved fraction of mem_bw"),
        table("efficiency", kCategoryTable),
        non_negative("launch_s", 0, "overhead per kernel launch, s"),
        positive("memory_bytes", "device memory, bytes"),
        non_negative("power.idle_w", 0, "idle power, W (at most power.tdp_w)"),
        positive("power.tdp_w", "board power when busy, W"),
        ParamSpec::choice("power.model", {"idle_plus_busy"}, "idle_plus_busy", "energy model"),
        native_precisions("the peak_flops keys"),
        ParamSpec::any_json("matrix_categories", nlohmann::json{"dense", "conv", "attention"},
                            "op categories that run on the matrix units (tensor cores)")},
       make_gpu_device});
  add({"edge_cpu",
       "edge CPU (device_edge_cpu.cpp): roofline on cores x freq x flops_per_cycle against DRAM "
       "bandwidth + per-op overhead; Horowitz 45 nm energies scaled to the process + DRAM + "
       "static power",
       {count("cores", "cores used"), positive("freq_hz", "clock, Hz"),
        table("flops_per_cycle", std::string("FLOPs per cycle per core ") + kPrecisionTable),
        native_precisions("the flops_per_cycle keys"),
        positive("mem_bw", "measured (STREAM) DRAM bandwidth, bytes/s"),
        table("efficiency", kCategoryTable),
        non_negative("op_overhead_s", 0, "interpreter dispatch per kernel, s"),
        positive("memory_bytes", "RAM available to the model, bytes"),
        ParamSpec::choice("energy.model", {"horowitz45_scaled"}, "horowitz45_scaled",
                          "energy model"),
        positive("energy.process_nm", "process node, nm"),
        positive("energy.vdd", "core voltage, V"),
        positive("energy.dram_pj_per_byte", "DRAM access energy, pJ/byte"),
        non_negative("energy.static_w", 0, "static power, W")},
       make_edge_cpu_device});
  add({"edge_tpu",
       "Google Edge TPU (device_edgetpu.cpp): int8 ops in supported categories on the TPU, the "
       "rest from the first unsupported node on the host CPU; parameters beyond the on-chip "
       "cache stream over USB",
       {positive("peak_ops", "peak int8 ops/s"), table("efficiency", kCategoryTable),
        non_negative("param_cache_bytes", 0, "on-chip parameter cache, bytes"),
        positive("usb_bw", "USB bandwidth, bytes/s"),
        non_negative("op_overhead_s", 0, "overhead per on-TPU kernel, s"),
        non_negative("invoke_overhead_s", 0,
                     "fixed cost per invocation (host runtime, USB / PCIe round trip), s"),
        positive("active_power_w", "power while active, W"),
        table("supported_categories", "op categories the TPU runs (non-empty array of names)"),
        table("host_cpu", "the fallback host: a device object or a preset name"),
        native_precisions("[\"int8\"]; integer precisions only: float nodes fall back to "
                          "host_cpu, int4 runs as int8 with int8 weights unless listed")},
       make_edge_tpu_device});
  add({"mcu",
       "Cortex-M microcontroller (device_mcu.cpp): MACs / (macs_per_cycle x freq) + other ops; "
       "activations must fit SRAM and weights flash, else infeasible",
       {positive("freq_hz", "clock, Hz"),
        table("macs_per_cycle", std::string("sustained MACs per cycle ") + kPrecisionTable),
        native_precisions("the macs_per_cycle keys"),
        positive("other_ops_per_cycle", "sustained non-MAC ops per cycle"),
        positive("sram_bytes", "SRAM, bytes"), positive("flash_bytes", "flash, bytes"),
        non_negative("runtime_sram_bytes", 0, "SRAM the runtime reserves, bytes (< sram_bytes)"),
        positive("active_power_w", "power while active, W"),
        non_negative("op_overhead_s", 0, "overhead per kernel, s")},
       make_mcu_device});
  add({"neuromorphic",
       "neuromorphic chip (device_neuromorphic.cpp): core mapping under per-core neuron, fan-in "
       "and synapse-memory limits; event-driven energy from synaptic ops, spikes, hops and "
       "neuron updates",
       {count("neurons_per_core", "neurons per core"),
        count("max_fan_in", "axons (inputs) per neuron"),
        positive("synapse_mem_bits_per_core", "synapse memory per core, bits"),
        count("max_weight_bits", "widest weight a synapse holds, bits"),
        count("cores_per_chip", "cores per chip"),
        count_or("chips", 1, "chips"),
        count_or("cores_per_router", 1, "cores sharing one mesh router"),
        positive("energy_pj.synaptic_op", "energy per synaptic op, pJ"),
        non_negative("energy_pj.spike_out", 0, "energy per emitted spike, pJ"),
        non_negative("energy_pj.hop", 0, "energy per spike per router hop, pJ"),
        non_negative("energy_pj.neuron_update", 0, "energy per neuron update, pJ"),
        non_negative("time_ns.synaptic_op", 0,
                     "time per synaptic op per core, ns (this or fixed_step_s is required)"),
        non_negative("time_ns.neuron_update", 0, "time per neuron update per core, ns"),
        non_negative("time_ns.hop", 0, "time per router hop, ns"),
        non_negative("time_ns.sync", 0, "barrier synchronisation per step, ns"),
        non_negative("fixed_step_s", 0, "fixed real-time tick, s (0 = event-driven steps)"),
        non_negative("static_power_per_core_w", 0, "static power per used core, W"),
        ParamSpec::choice("non_spiking", {"infeasible", "rate_code"}, "infeasible",
                          "what a non-spiking node does: make the architecture infeasible, or "
                          "run rate-coded"),
        ParamSpec::int_range("rate_code.timesteps", 1, kMaxInt, 1,
                             "rate-code steps T (required with non_spiking = rate_code)"),
        fraction("rate_code.rate", 0,
                 "rate-code spike rate r (required with non_spiking = rate_code)"),
        fraction("default_spike_rate", 0.1,
                 "spike rate assumed for spiking nodes without measured activity")},
       make_neuromorphic_device});
  add({"host",
       "this machine (device_host.cpp): latency measured by the evaluator, energy = power_w x "
       "latency",
       {ParamSpec::string("measurement_key", "host_latency_ms",
                          "workload.measured key holding the latency, ms"),
        positive("power_w", "package power while running, W"),
        positive_or("memory_bytes", 1e18, "memory available, bytes")},
       make_host_device});
  add({"lut",
       "lookup table (device_lut.cpp): per-op latencies measured on the target, by block kind "
       "else op category, scaled by MACs; unmatched nodes go to the fallback device",
       {table("table",
              "{block kind or op category: {\"latency_us\" > 0, \"energy_uj\" >= 0, \"macs\" >= "
              "0}}"),
        non_negative("power_w", 0, "power while running (for entries without energy_uj), W"),
        positive_or("memory_bytes", 1e18, "memory available, bytes"),
        ParamSpec::any_json("fallback", "",
                            "device (object or preset name) for nodes without an entry; absent: "
                            "such architectures are infeasible")},
       make_lut_device});
  add({"learned",
       "learned kernel-level latency model (device_learned.cpp, learned_predictor.hpp): per-node "
       "regressors (boosted trees or MLP per kernel type) fitted by `hwnas hw fit` to "
       "measurements, summed over the nodes; energy = power_w x latency",
       {required(ParamSpec::string("model", "",
                                   "the model file `hwnas hw fit` wrote (a relative path is "
                                   "relative to the device JSON's folder)")),
        non_negative("power_w", 0,
                     "power while running, W (0: energy not reported, Cost::energy_mj is 0)"),
        positive_or("memory_bytes", 1e18, "memory available, bytes")},
       make_learned_device});
  add({"plugin",
       "a shared library implementing the C ABI of hwmodels/plugin_abi.h",
       {required(ParamSpec::string("path", "", "the plugin .so")),
        ParamSpec::boolean("isolate", true,
                           "run each estimate() in a child process, so a crash or hang fails "
                           "that cost instead of the search"),
        ParamSpec::float_range("timeout_s", 0.001, 86400, 60,
                               "isolated calls running longer are killed (cost infeasible)")},
       make_plugin_device});
  add({"external",
       "a cost model in any language: a process speaking hwnas's JSON-lines protocol on "
       "stdin/stdout (device_external.cpp, examples/devices/external/)",
       {required(ParamSpec::any_json("command", nullptr,
                                     "the program and its arguments, e.g. [\"python3\", "
                                     "\"my_device.py\"]")),
        ParamSpec::string("cwd", "",
                          "working directory of the process (default: the device file's "
                          "folder; hwnas's own for a device given inline)"),
        ParamSpec::any_json("env", nlohmann::json::object(),
                            "environment variables added for the process {NAME: value}"),
        ParamSpec::float_range("timeout_s", 0.001, 86400, 60,
                               "an answer taking longer fails the cost; the process is killed "
                               "and restarted"),
        ParamSpec::int_range("concurrency", 1, 256, 1,
                             "processes started for this device, each answering one request at "
                             "a time (requests from several threads are spread over them)"),
        ParamSpec::boolean("cache", true,
                           "keep answers in the results database's cost cache (by architecture, "
                           "device description and batch) so a rescore, resume or second run "
                           "never asks twice; false for a model that reads measured activity")},
       make_external_device});
}

const Registry<DeviceFamily>& device_families() {
  static const Registry<DeviceFamily> r = [] {
    Registry<DeviceFamily> k("device family");
    register_builtin_device_families(k);
    return k;
  }();
  return r;
}

}  // namespace hwnas::hw
