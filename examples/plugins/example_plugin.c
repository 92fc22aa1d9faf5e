/* Example hwnas device plugin (ABI v1, kept so that version 1 stays built and tested; see
 * example_activity_plugin.c for v2): a toy accelerator that does 1 GMAC/s per node, 1 nJ per
 * MAC, supports dense and conv only, and refuses workloads with more than 1 GB of weights.
 * Build: any C compiler, `-shared -fPIC`, against hwmodels/plugin_abi.h.
 * Use: `hwnas hw predict --device build/examples/plugins/libhwnas_example_plugin.so ARCH`. */
#include <stdio.h>

#include "hwmodels/plugin_abi.h"

static int example_supports(int32_t category) {
  return category == HWNAS_OP_DENSE || category == HWNAS_OP_CONV;
}

static int example_estimate(const hwnas_workload_v1* w, hwnas_estimate_v1* out) {
  double t = 0, e = 0, weights = 0;
  for (size_t i = 0; i < w->n_nodes; ++i) {
    const hwnas_node_v1* n = &w->nodes[i];
    double tn = n->macs / 1e9 + 1e-6; /* 1 GMAC/s + 1 us per node */
    double en = n->macs * 1e-9;       /* 1 nJ per MAC */
    if (out->node_latency_s) out->node_latency_s[i] = tn;
    if (out->node_energy_j) out->node_energy_j[i] = en;
    t += tn;
    e += en;
    weights += n->weight_bytes;
  }
  out->latency_s = t;
  out->energy_j = e;
  out->memory_bytes = weights;
  out->feasible = weights <= 1e9;
  if (!out->feasible) snprintf(out->reason, sizeof out->reason, "weights %.0f B > 1 GB", weights);
  return 0;
}

static const hwnas_plugin_v1 kPlugin = {HWNAS_PLUGIN_ABI_V1,
                                        sizeof(hwnas_plugin_v1),
                                        HWNAS_PLUGIN_THREAD_SAFE,
                                        "example_accel",
                                        "toy accelerator: 1 GMAC/s, 1 nJ/MAC (examples/plugins)",
                                        example_supports,
                                        example_estimate};

const hwnas_plugin_v1* hwnas_plugin_v1_get(void) { return &kPlugin; }
