/* Example hwnas device plugin (ABI v2): a toy event-driven accelerator that skips zero inputs.
 * Each node costs 1 nJ per MAC whose input is non-zero, i.e. MACs x input_density when the
 * evaluation measured it (else every MAC, an assumption), and takes 1 us + 1 ns per such MAC.
 * It reports whether its figures were measured or assumed.  Build: any C compiler,
 * `-shared -fPIC`, against hwmodels/plugin_abi.h.
 * Use: `hwnas hw predict --device build/examples/plugins/libhwnas_example_activity_plugin.so ARCH`.
 */
#include <string.h>

#include "hwmodels/plugin_abi.h"

static int activity_supports(int32_t category) {
  (void)category;
  return 1;
}

/* The named measured scalar of a node, or -1 when it was not measured. */
static double find_scalar(const hwnas_node_v2* n, const char* name) {
  for (size_t i = 0; i < n->n_scalars; ++i)
    if (strcmp(n->scalars[i].name, name) == 0) return n->scalars[i].value;
  return -1;
}

static int activity_estimate(const hwnas_workload_v2* w, hwnas_estimate_v2* out) {
  double t = 0, e = 0, weights = 0;
  int measured = 0, assumed = 0;
  for (size_t i = 0; i < w->n_nodes; ++i) {
    const hwnas_node_v2* n = &w->nodes[i];
    double density = find_scalar(n, "input_density");
    if (density < 0) {
      density = 1;
      ++assumed;
    } else {
      ++measured;
    }
    double events = n->base.macs * density;
    double tn = 1e-6 + events * 1e-9;
    double en = events * 1e-9;
    if (out->base.node_latency_s) out->base.node_latency_s[i] = tn;
    if (out->base.node_energy_j) out->base.node_energy_j[i] = en;
    t += tn;
    e += en;
    weights += n->base.weight_bytes;
  }
  out->base.latency_s = t;
  out->base.energy_j = e;
  out->base.memory_bytes = weights;
  out->base.feasible = 1;
  out->activity_source = measured && assumed ? HWNAS_ACTIVITY_MIXED
                         : measured          ? HWNAS_ACTIVITY_MEASURED
                         : assumed           ? HWNAS_ACTIVITY_ASSUMED
                                             : HWNAS_ACTIVITY_NONE;
  return 0;
}

static const hwnas_plugin_v2 kPlugin = {
    HWNAS_PLUGIN_ABI_V2,
    sizeof(hwnas_plugin_v2),
    HWNAS_PLUGIN_THREAD_SAFE,
    "example_event_accel",
    "toy event-driven accelerator: 1 nJ per non-zero-input MAC (examples/plugins)",
    activity_supports,
    activity_estimate};

const hwnas_plugin_v2* hwnas_plugin_v2_get(void) { return &kPlugin; }
