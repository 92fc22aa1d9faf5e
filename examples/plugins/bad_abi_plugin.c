/* A plugin that claims a future ABI version: hwnas must refuse it with a clear error (test). */
#include "hwmodels/plugin_abi.h"

static int bad_supports(int32_t c) {
  (void)c;
  return 1;
}
static int bad_estimate(const hwnas_workload_v1* w, hwnas_estimate_v1* out) {
  (void)w;
  (void)out;
  return 0;
}
static const hwnas_plugin_v1 kBad = {
    99u, sizeof(hwnas_plugin_v1), 0u, "bad_abi", "wrong ABI", bad_supports, bad_estimate};
const hwnas_plugin_v1* hwnas_plugin_v1_get(void) { return &kBad; }
