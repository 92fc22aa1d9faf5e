#include "evaluators/task_head.hpp"

#include <cmath>
#include <stdexcept>

#include "nn/ops.hpp"

namespace hwnas::eval {

const char* head_kind_name(HeadKind k) {
  switch (k) {
    case HeadKind::Classes:
      return "classes";
    case HeadKind::TokenClasses:
      return "token_classes";
    case HeadKind::Regression:
      return "regression";
  }
  return "?";
}

const std::vector<std::string>& head_metric_names(HeadKind k) {
  static const std::vector<std::string> classes = {"accuracy"};
  static const std::vector<std::string> tokens = {"token_accuracy", "sequence_accuracy"};
  static const std::vector<std::string> regression = {"rmse"};
  switch (k) {
    case HeadKind::Classes:
      return classes;
    case HeadKind::TokenClasses:
      return tokens;
    case HeadKind::Regression:
      return regression;
  }
  return classes;
}

std::string head_primary_metric(HeadKind k) { return head_metric_names(k).front(); }
bool head_primary_maximize(HeadKind k) { return k != HeadKind::Regression; }

void check_head_targets(HeadKind k, const Dataset& d, const std::string& which) {
  const std::string where = "train: " + which + " set ";
  switch (k) {
    case HeadKind::Classes:
      if (d.y.empty() || static_cast<int>(d.y.size()) != d.x.dim(0))
        throw std::invalid_argument(where + "needs one class label per sample for a '" +
                                    std::string(head_kind_name(k)) + "' head, has " +
                                    std::to_string(d.y.size()) + " for x " + d.x.shape().str());
      return;
    case HeadKind::TokenClasses:
    case HeadKind::Regression:
      if (!d.has_target() || d.target.dim(0) != d.x.dim(0) ||
          (k == HeadKind::TokenClasses && d.target.rank() != 2))
        throw std::invalid_argument(
            where + "needs a target tensor with one row per sample for a '" +
            std::string(head_kind_name(k)) + "' head" +
            (k == HeadKind::TokenClasses ? " ([N, L] token ids)" : "") + ", has " +
            (d.has_target() ? d.target.shape().str() : std::string("none")) + " for x " +
            d.x.shape().str());
      return;
  }
}

void check_head_output(HeadKind k, const nn::Shape& out, const Batch& b, const std::string& who) {
  const int n = b.size();
  std::string want;
  bool ok = false;
  switch (k) {
    case HeadKind::Classes:
      ok = out.rank() == 2 && out[0] == n;
      want = "logits [batch, classes]";
      break;
    case HeadKind::TokenClasses:
      ok = out.rank() == 3 && out[0] == n && out[1] == b.target.dim(1);
      want = "per-token logits [batch, " + std::to_string(b.target.dim(1)) + ", classes]";
      break;
    case HeadKind::Regression:
      ok = out == b.target.shape();
      want = "values shaped like the target " + b.target.shape().str();
      break;
  }
  if (!ok)
    throw std::invalid_argument("train: model '" + who + "' returned shape " + out.str() +
                                " for a batch of " + std::to_string(n) + "; expected " + want);
}

nn::Var head_loss(HeadKind k, const nn::Var& out, const Batch& b) {
  switch (k) {
    case HeadKind::Classes:
      return nn::cross_entropy(out, b.y);
    case HeadKind::TokenClasses: {
      std::vector<int> ids(static_cast<std::size_t>(b.target.numel()));
      const float* t = b.target.data();
      for (std::size_t i = 0; i < ids.size(); ++i)
        ids[i] = t[i] == kIgnoreTarget ? -1 : static_cast<int>(t[i]);
      return nn::token_cross_entropy(out, ids, -1);
    }
    case HeadKind::Regression:
      return nn::mse(out, nn::constant(b.target));
  }
  throw std::logic_error("head_loss: unknown head kind");
}

}  // namespace hwnas::eval
