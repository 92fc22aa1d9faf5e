/* hwnas device plugin ABI, versions 1 and 2 (pure C, stable; both are supported).
 *
 * A plugin is a shared library exporting one of
 *
 *     const hwnas_plugin_v2* hwnas_plugin_v2_get(void);   (version 2: sees measured activity)
 *     const hwnas_plugin_v1* hwnas_plugin_v1_get(void);   (version 1: static counts only)
 *
 * returning a pointer to a static descriptor whose abi_version is HWNAS_PLUGIN_ABI_V2 (resp.
 * HWNAS_PLUGIN_ABI_V1) and whose struct_size is sizeof(hwnas_plugin_v2) (resp. v1).  hwnas
 * looks for the v2 entry first, then v1, and checks both fields before calling anything else,
 * so a plugin built against another ABI is refused with a clear error instead of crashing.
 * Version 1 plugins built before version 2 existed load and work unchanged; when rebuilding one
 * against this header, set its abi_version to HWNAS_PLUGIN_ABI_V1 (HWNAS_PLUGIN_ABI_VERSION now
 * names the newest version).
 * Load one with `--device path/to/libmydevice.so` or {"family": "plugin", "path": ...}.
 *
 * Units: seconds, joules, bytes; counts per sample (batch 1) as in hwmodels/workload.hpp.
 * Op categories are append-only: a new category gets the next number, existing ones never move.
 */
#ifndef HWNAS_PLUGIN_ABI_H
#define HWNAS_PLUGIN_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HWNAS_PLUGIN_ABI_V1 1u
#define HWNAS_PLUGIN_ABI_V2 2u
#define HWNAS_PLUGIN_ABI_VERSION HWNAS_PLUGIN_ABI_V2 /* the newest version */
#define HWNAS_PLUGIN_ENTRY_V1 "hwnas_plugin_v1_get"
#define HWNAS_PLUGIN_ENTRY_V2 "hwnas_plugin_v2_get"
#define HWNAS_PLUGIN_ENTRY HWNAS_PLUGIN_ENTRY_V1 /* kept for version 1 sources */

/* Same order as hwnas::hw::OpCategory (checked by a static_assert on the C++ side).
 * Append-only: new categories go before HWNAS_OP_COUNT and existing values never change. */
enum hwnas_op_category {
  HWNAS_OP_DENSE = 0,
  HWNAS_OP_CONV,
  HWNAS_OP_DEPTHWISE_CONV,
  HWNAS_OP_POOL,
  HWNAS_OP_NORM,
  HWNAS_OP_ELEMENTWISE,
  HWNAS_OP_ATTENTION,
  HWNAS_OP_EMBEDDING,
  HWNAS_OP_RECURRENT,
  HWNAS_OP_FFT,
  HWNAS_OP_SPIKING,
  HWNAS_OP_ROUTING,
  HWNAS_OP_MEMORY,
  HWNAS_OP_OTHER,
  HWNAS_OP_COUNT
};

typedef struct hwnas_node_v1 {
  const char* name;
  const char* block_kind;
  int32_t category; /* enum hwnas_op_category */
  int32_t bits;
  int32_t kernels;
  int32_t seq_len;
  int32_t timesteps;
  int32_t spiking;      /* 0 or 1 */
  int32_t has_activity; /* 0 or 1: the node has measured activity (v2: see hwnas_node_v2) */
  int32_t reserved0;
  double macs, other_flops, params, weight_bytes, input_bytes, output_bytes, sparsity;
  double neurons, fan_in, fan_out, synapses;
  /* Measured per-sample "spikes", "synaptic_ops", "active_experts", "function_evals" (0 when
   * not measured), and the static number of experts. */
  double spikes, synaptic_ops, active_experts, total_experts, function_evals;
} hwnas_node_v1;

typedef struct hwnas_workload_v1 {
  size_t n_nodes;
  const hwnas_node_v1* nodes; /* execution order */
  double input_bytes;
} hwnas_workload_v1;

/* Filled by estimate().  hwnas zero-initialises it and sets node_latency_s / node_energy_j to
 * arrays of n_nodes doubles (or NULL when no breakdown is wanted). */
typedef struct hwnas_estimate_v1 {
  int32_t feasible; /* 1 = feasible */
  char reason[256]; /* NUL-terminated, when !feasible */
  double latency_s;
  double energy_j;
  double memory_bytes;
  double* node_latency_s;
  double* node_energy_j;
} hwnas_estimate_v1;

#define HWNAS_PLUGIN_THREAD_SAFE 1u /* estimate() may be called concurrently */

typedef struct hwnas_plugin_v1 {
  uint32_t abi_version; /* HWNAS_PLUGIN_ABI_V1 */
  uint32_t struct_size; /* sizeof(hwnas_plugin_v1) */
  uint32_t flags;       /* HWNAS_PLUGIN_* */
  const char* name;     /* device name */
  const char* description;
  int (*supports)(int32_t category);                                   /* nonzero = yes */
  int (*estimate)(const hwnas_workload_v1* w, hwnas_estimate_v1* out); /* 0 = success */
} hwnas_plugin_v1;

typedef const hwnas_plugin_v1* (*hwnas_plugin_v1_get_fn)(void);

/* ---- version 2: version 1 plus the node's open measured activity --------------------------- */

/* One measured per-sample figure, e.g. {"activation_density", 0.42}. */
typedef struct hwnas_activity_scalar {
  const char* name;
  double value;
} hwnas_activity_scalar;

/* One measured per-index vector, e.g. "spikes_per_step" (per time step) or "tokens_per_expert". */
typedef struct hwnas_activity_series {
  const char* name;
  size_t size;
  const double* values;
} hwnas_activity_series;

/* Names hwnas itself produces (nn/activity.hpp lists them all): "activation_density" and
 * "input_density" (share of non-zero outputs / inputs, every node), "spikes", "synaptic_ops",
 * "active_experts", "function_evals"; series "spikes_per_step", "tokens_per_expert",
 * "retrieved_neighbours".  Arrays are sorted by name; all pointers are valid only during
 * estimate(). */
typedef struct hwnas_node_v2 {
  hwnas_node_v1 base;      /* static counts as in version 1 */
  double activity_samples; /* validation samples the activity averages cover (0: unknown) */
  size_t n_scalars;
  const hwnas_activity_scalar* scalars;
  size_t n_series;
  const hwnas_activity_series* series;
} hwnas_node_v2;

typedef struct hwnas_workload_v2 {
  size_t n_nodes;
  const hwnas_node_v2* nodes; /* execution order */
  double input_bytes;
} hwnas_workload_v2;

/* Where the activity behind an estimate came from (stored with the cost). */
enum hwnas_activity_source {
  HWNAS_ACTIVITY_NONE = 0, /* the model uses no activity */
  HWNAS_ACTIVITY_MEASURED = 1,
  HWNAS_ACTIVITY_ASSUMED = 2,
  HWNAS_ACTIVITY_MIXED = 3
};

typedef struct hwnas_estimate_v2 {
  hwnas_estimate_v1 base;  /* as in version 1 */
  int32_t activity_source; /* enum hwnas_activity_source; zero-initialised to NONE */
  int32_t reserved0;
} hwnas_estimate_v2;

typedef struct hwnas_plugin_v2 {
  uint32_t abi_version; /* HWNAS_PLUGIN_ABI_V2 */
  uint32_t struct_size; /* sizeof(hwnas_plugin_v2) */
  uint32_t flags;       /* HWNAS_PLUGIN_* */
  const char* name;
  const char* description;
  int (*supports)(int32_t category);                                   /* nonzero = yes */
  int (*estimate)(const hwnas_workload_v2* w, hwnas_estimate_v2* out); /* 0 = success */
} hwnas_plugin_v2;

typedef const hwnas_plugin_v2* (*hwnas_plugin_v2_get_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* HWNAS_PLUGIN_ABI_H */
