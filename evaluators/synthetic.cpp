#include "evaluators/synthetic.hpp"

#include <chrono>
#include <random>
#include <thread>

#include "evaluators/seeded_random.hpp"
#include "spaces/workload_builder.hpp"

namespace hwnas::eval {

double SyntheticEvaluator::accuracy_of(const std::string& architecture_hash) {
  // The hash is 16 hex digits of a 64-bit FNV-1a; the splitmix64 finaliser spreads it evenly
  // over [0, 1) before it becomes an accuracy.
  std::uint64_t z = std::stoull(architecture_hash, nullptr, 16) + 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return 0.5 + 0.45 * static_cast<double>(z >> 11) * 0x1.0p-53;
}

double SyntheticEvaluator::duration_of(std::uint64_t seed) const {
  std::mt19937_64 rng(seed);
  return o_.seconds * (1.0 + o_.spread * (2.0 * seeded::uniform01_double(rng) - 1.0));
}

EvalResult SyntheticEvaluator::evaluate(const spaces::Genome& g, const Fidelity&,
                                        std::uint64_t seed) {
  const auto t0 = std::chrono::steady_clock::now();
  EvalResult r;
  r.workload = spaces::build_workload(g);
  r.metrics["val_accuracy"] = accuracy_of(g.hash());
  double params = 0;
  for (const auto& n : r.workload.nodes) params += n.params;
  r.metrics["params"] = params;
  // Sleep until the job's duration has passed since it started, so the bookkeeping above is
  // part of the duration rather than added to it.
  std::this_thread::sleep_until(t0 + std::chrono::duration<double>(duration_of(seed)));
  r.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace hwnas::eval
