#include "nn/parallel.hpp"

#include <thread>

namespace hwnas::nn {

ThreadBudget::ThreadBudget(int threads)
    : threads_(threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency())) {
  control_ = std::make_unique<oneapi::tbb::global_control>(
      oneapi::tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(threads_));
}

}  // namespace hwnas::nn
