/* hwnas device plugin ABI, version 1 (pure C, stable).
 *
 * A plugin is a shared library exporting one function:
 *
 *     const hwnas_plugin_v1* hwnas_plugin_v1_get(void);
 *
 * returning a pointer to a static descriptor whose abi_version is HWNAS_PLUGIN_ABI_VERSION and
 * whose struct_size is sizeof(hwnas_plugin_v1).  hwnas checks both before calling anything else,
 * so a plugin built against another ABI is refused with a clear error instead of crashing.
 * Load one with `--device path/to/libmydevice.so` or {"family": "plugin", "path": ...}.
 *
 * Units: seconds, joules, bytes; counts per sample (batch 1) as in hwmodels/workload.hpp.
 */
#ifndef HWNAS_PLUGIN_ABI_H
#define HWNAS_PLUGIN_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HWNAS_PLUGIN_ABI_VERSION 1u
#define HWNAS_PLUGIN_ENTRY "hwnas_plugin_v1_get"

/* Same order as hwnas::hw::OpCategory (checked by a static_assert on the C++ side). */
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
  int32_t has_activity; /* 0 or 1: the activity fields below were measured */
  int32_t reserved0;
  double macs, other_flops, params, weight_bytes, input_bytes, output_bytes, sparsity;
  double neurons, fan_in, fan_out, synapses;
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
  uint32_t abi_version; /* HWNAS_PLUGIN_ABI_VERSION */
  uint32_t struct_size; /* sizeof(hwnas_plugin_v1) */
  uint32_t flags;       /* HWNAS_PLUGIN_* */
  const char* name;     /* device name */
  const char* description;
  int (*supports)(int32_t category);                                       /* nonzero = yes */
  int (*estimate)(const hwnas_workload_v1* w, hwnas_estimate_v1* out);   /* 0 = success */
} hwnas_plugin_v1;

typedef const hwnas_plugin_v1* (*hwnas_plugin_v1_get_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* HWNAS_PLUGIN_ABI_H */
