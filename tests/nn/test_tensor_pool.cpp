// The pool behind large tensors: a training-like loop whose working set is far above the pool's
// 256 MiB floor allocates every buffer once, then recycles them step after step (no fresh pages:
// no page faults and no kernel zeroing in the steady state).  Before, the pool emptied itself
// whenever its idle buffers passed 256 MiB, i.e. at the end of every such step.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <vector>

#include "nn/tensor.hpp"

using hwnas::nn::Shape;
using hwnas::nn::Tensor;

namespace {

long minor_faults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

// A "step": 96 activations of 4 MiB alive at once (384 MiB), written, then all released.
void step() {
  std::vector<Tensor> live;
  for (int i = 0; i < 96; ++i) {
    live.emplace_back(Shape{64, 16, 32, 32});
    float* d = live.back().data();
    for (std::int64_t k = 0; k < live.back().numel(); k += 1024) d[k] = 1.0f;  // touch each page
  }
}

}  // namespace

TEST(TensorPool, AWorkingSetAboveTheFloorIsRecycledWithoutFreshPages) {
  step();  // first touch of every buffer
  step();
  const long before = minor_faults();
  for (int i = 0; i < 4; ++i) step();
  const long per_step = (minor_faults() - before) / 4;
  // 384 MiB of fresh 4 KiB pages would be ~98,000 faults a step.
  EXPECT_LT(per_step, 1000) << "page faults per step: the pool does not keep the working set";
}
