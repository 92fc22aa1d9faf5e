// Validation metrics of the task heads, as plain functions of outputs and targets (each
// hand-checked in tests) and an accumulator that sums them over evaluation batches.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "evaluators/datasets.hpp"
#include "evaluators/task_head.hpp"

namespace hwnas::eval {

// Fraction of rows of logits [N, C] whose arg-max equals the label.
double accuracy(const nn::Tensor& logits, const std::vector<int>& labels);
// Over the labelled positions of target [N, L] (kIgnoreTarget skipped): fraction whose arg-max
// of logits [N, L, C] equals the id.  NaN when nothing is labelled.
double token_accuracy(const nn::Tensor& logits, const nn::Tensor& target);
// sqrt(mean((pred - target)^2)) over all elements; shapes must agree.
double rmse(const nn::Tensor& pred, const nn::Tensor& target);

// Sums the counts behind a head's metrics over batches, so the result equals the metric over the
// whole dataset whatever the batch size.
class MetricAccumulator {
 public:
  explicit MetricAccumulator(HeadKind head) : head_(head) {}
  void add(const nn::Tensor& out, const Batch& b);
  // head_metric_names(head) -> value (NaN if no sample was seen).
  std::map<std::string, double> result() const;

 private:
  HeadKind head_;
  std::int64_t correct_ = 0, counted_ = 0;          // rows / labelled tokens
  std::int64_t seq_correct_ = 0, seq_counted_ = 0;  // sequences with every labelled token right
  double sq_sum_ = 0;
  std::int64_t sq_n_ = 0;
};

}  // namespace hwnas::eval
