// Shared pieces of the built-in task files: their registration functions, parameter access,
// the train/validation seeding rule and reshaping to the requested input type.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "evaluators/seeded_random.hpp"
#include "evaluators/task_registry.hpp"

namespace hwnas::eval::tasks {

using nlohmann::json;
using spaces::DataKind;
using spaces::TensorType;

void register_task_fashion_mnist(Registry<TaskEntry>& r);
void register_task_fashion_mnist_rows(Registry<TaskEntry>& r);
void register_task_associative_recall(Registry<TaskEntry>& r);
void register_task_marked_majority(Registry<TaskEntry>& r);
void register_task_mqar(Registry<TaskEntry>& r);
void register_task_selective_copying(Registry<TaskEntry>& r);
void register_task_irregular_oscillation(Registry<TaskEntry>& r);
void register_task_spiral(Registry<TaskEntry>& r);
void register_task_damped_oscillator(Registry<TaskEntry>& r);
void register_task_symbolic(Registry<TaskEntry>& r);

inline int pint(const json& p, const char* k) { return p.at(k).get<int>(); }
inline float pfloat(const json& p, const char* k) { return p.at(k).get<float>(); }

// Throws std::invalid_argument "task <task>.<field>: <why>" unless ok.
void require_param(bool ok, const std::string& task, const std::string& field,
                   const std::string& why);

// Generated tasks: training data from seed*2+1, validation from seed*2+2 (disjoint streams, the
// rule the first generated tasks used, so existing runs keep their data).
TrainValSplit generated_split(const SplitSizes& sizes, int default_train, std::uint64_t seed,
                              const std::function<Dataset(int n, std::uint64_t seed)>& make);

// Reshapes x of both splits to [N, ...input.dims] (e.g. a sequence [L, d] served as a vector
// [L*d]); the element count per sample must agree.
TrainValSplit reshape_inputs(TrainValSplit s, const TensorType& input);

// Allocates a dataset of n samples: x [n, ...x_dims] zeros, target [n, ...t_dims] filled with
// `fill` (empty t_dims: no target).
Dataset alloc_dataset(int n, const std::vector<int>& x_dims, const std::vector<int>& t_dims = {},
                      float fill = 0.0f);

}  // namespace hwnas::eval::tasks
