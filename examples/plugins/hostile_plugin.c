/* A deliberately misbehaving device plugin for hwnas's tests (not an example to copy): what it
 * does in estimate() is chosen by the environment variable HWNAS_HOSTILE_MODE:
 *   ok (default) | segv | abort | exit | hang | nan | inf | negative | node_nan
 * hwnas must turn every misbehaviour into an infeasible cost that names the plugin, and keep
 * running (the isolated call runs in a child process). */
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hwmodels/plugin_abi.h"

static int hostile_supports(int32_t category) {
  (void)category;
  return 1;
}

static int hostile_estimate(const hwnas_workload_v1* w, hwnas_estimate_v1* out) {
  const char* mode = getenv("HWNAS_HOSTILE_MODE");
  if (!mode) mode = "ok";
  if (strcmp(mode, "segv") == 0) raise(SIGSEGV);
  if (strcmp(mode, "abort") == 0) abort();
  if (strcmp(mode, "exit") == 0) exit(7);
  if (strcmp(mode, "hang") == 0)
    for (;;) pause();
  double t = 0;
  for (size_t i = 0; i < w->n_nodes; ++i) {
    const double tn = w->nodes[i].macs * 1e-9 + 1e-6;
    if (out->node_latency_s) out->node_latency_s[i] = strcmp(mode, "node_nan") == 0 ? NAN : tn;
    if (out->node_energy_j) out->node_energy_j[i] = tn;
    t += tn;
  }
  out->latency_s = strcmp(mode, "nan") == 0 ? NAN : t;
  out->energy_j = strcmp(mode, "negative") == 0 ? -1.0 : t;
  out->memory_bytes = strcmp(mode, "inf") == 0 ? INFINITY : 1e6;
  out->feasible = 1;
  return 0;
}

static const hwnas_plugin_v1 kPlugin = {HWNAS_PLUGIN_ABI_V1,
                                        sizeof(hwnas_plugin_v1),
                                        0,
                                        "hostile",
                                        "misbehaves on purpose (tests only)",
                                        hostile_supports,
                                        hostile_estimate};

const hwnas_plugin_v1* hwnas_plugin_v1_get(void) { return &kPlugin; }
