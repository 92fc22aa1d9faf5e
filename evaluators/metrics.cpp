#include "evaluators/metrics.hpp"

#include <cmath>
#include <limits>
#include <stdexcept>

namespace hwnas::eval {

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

int argmax_row(const float* row, int c) {
  int best = 0;
  for (int j = 1; j < c; ++j)
    if (row[j] > row[best]) best = j;
  return best;
}

void require(bool ok, const std::string& msg) {
  if (!ok) throw std::invalid_argument(msg);
}

// Adds a batch's per-token counts; returns nothing, fills the counters.
void count_tokens(const nn::Tensor& logits, const nn::Tensor& target, std::int64_t& correct,
                  std::int64_t& counted, std::int64_t& seq_correct, std::int64_t& seq_counted) {
  require(logits.rank() == 3 && target.rank() == 2 && logits.dim(0) == target.dim(0) &&
              logits.dim(1) == target.dim(1),
          "token_accuracy: logits " + logits.shape().str() + " do not match target " +
              target.shape().str() + " (need [N, L, C] and [N, L])");
  const int n = logits.dim(0), len = logits.dim(1), c = logits.dim(2);
  for (int i = 0; i < n; ++i) {
    bool all = true, any = false;
    for (int t = 0; t < len; ++t) {
      const float id = target.data()[static_cast<std::int64_t>(i) * len + t];
      if (id == kIgnoreTarget) continue;
      any = true;
      ++counted;
      const bool hit = argmax_row(logits.data() + (static_cast<std::int64_t>(i) * len + t) * c,
                                  c) == static_cast<int>(id);
      correct += hit;
      all = all && hit;
    }
    if (any) {
      ++seq_counted;
      seq_correct += all;
    }
  }
}
}  // namespace

double accuracy(const nn::Tensor& logits, const std::vector<int>& labels) {
  require(logits.rank() == 2 && logits.dim(0) == static_cast<int>(labels.size()),
          "accuracy: logits " + logits.shape().str() + " need one row per label (" +
              std::to_string(labels.size()) + ")");
  if (labels.empty()) return kNaN;
  const int c = logits.dim(1);
  std::int64_t correct = 0;
  for (std::size_t i = 0; i < labels.size(); ++i)
    correct += argmax_row(logits.data() + static_cast<std::int64_t>(i) * c, c) == labels[i];
  return static_cast<double>(correct) / static_cast<double>(labels.size());
}

double token_accuracy(const nn::Tensor& logits, const nn::Tensor& target) {
  std::int64_t correct = 0, counted = 0, sc = 0, sn = 0;
  count_tokens(logits, target, correct, counted, sc, sn);
  return counted ? static_cast<double>(correct) / static_cast<double>(counted) : kNaN;
}

double rmse(const nn::Tensor& pred, const nn::Tensor& target) {
  require(pred.shape() == target.shape(), "rmse: prediction " + pred.shape().str() +
                                              " and target " + target.shape().str() + " differ");
  if (pred.numel() == 0) return kNaN;
  double s = 0;
  for (std::int64_t i = 0; i < pred.numel(); ++i) {
    const double d = static_cast<double>(pred.data()[i]) - target.data()[i];
    s += d * d;
  }
  return std::sqrt(s / static_cast<double>(pred.numel()));
}

void MetricAccumulator::add(const nn::Tensor& out, const Batch& b) {
  switch (head_) {
    case HeadKind::Classes: {
      const int c = out.dim(1);
      for (int i = 0; i < b.size(); ++i)
        correct_ += argmax_row(out.data() + static_cast<std::int64_t>(i) * c, c) ==
                    b.y[static_cast<std::size_t>(i)];
      counted_ += b.size();
      break;
    }
    case HeadKind::TokenClasses:
      count_tokens(out, b.target, correct_, counted_, seq_correct_, seq_counted_);
      break;
    case HeadKind::Regression:
      require(out.shape() == b.target.shape(), "rmse: prediction " + out.shape().str() +
                                                   " and target " + b.target.shape().str() +
                                                   " differ");
      for (std::int64_t i = 0; i < out.numel(); ++i) {
        const double d = static_cast<double>(out.data()[i]) - b.target.data()[i];
        sq_sum_ += d * d;
      }
      sq_n_ += out.numel();
      break;
  }
}

std::map<std::string, double> MetricAccumulator::result() const {
  auto ratio = [](std::int64_t a, std::int64_t b) {
    return b ? static_cast<double>(a) / static_cast<double>(b) : kNaN;
  };
  switch (head_) {
    case HeadKind::Classes:
      return {{"accuracy", ratio(correct_, counted_)}};
    case HeadKind::TokenClasses:
      return {{"token_accuracy", ratio(correct_, counted_)},
              {"sequence_accuracy", ratio(seq_correct_, seq_counted_)}};
    case HeadKind::Regression:
      return {{"rmse", sq_n_ ? std::sqrt(sq_sum_ / static_cast<double>(sq_n_)) : kNaN}};
  }
  return {};
}

}  // namespace hwnas::eval
