#include "nn/fftw.hpp"

namespace hwnas::nn::detail {

std::mutex& fftw_planner_mutex() {
  static auto* mu = new std::mutex;  // never destroyed: ops may run during static teardown
  return *mu;
}

}  // namespace hwnas::nn::detail
