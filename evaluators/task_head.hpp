// What a task's model outputs and how it is trained and scored: the output head kind, its loss,
// its metrics and the primary metric that early stopping and selection use.
//
//   classes        logits [B, C] against one class label per sample; cross-entropy; accuracy
//   token_classes  logits [B, L, C] against per-token ids (kIgnoreTarget = unlabelled);
//                  per-token cross-entropy; token_accuracy (labelled positions) and
//                  sequence_accuracy (every labelled position of a sequence right)
//   regression     values [B, D] against the target tensor [B, D]; mean squared error; rmse
#pragma once

#include <map>
#include <string>
#include <vector>

#include "evaluators/datasets.hpp"
#include "nn/autograd.hpp"

namespace hwnas::eval {

enum class HeadKind { Classes, TokenClasses, Regression };
const char* head_kind_name(HeadKind k);  // "classes" | "token_classes" | "regression"

// The metrics a head reports (without the "val_" prefix), primary metric first.
const std::vector<std::string>& head_metric_names(HeadKind k);
// The primary metric and whether larger is better: accuracy / token_accuracy (max), rmse (min).
std::string head_primary_metric(HeadKind k);
bool head_primary_maximize(HeadKind k);

// Throws std::invalid_argument if `out` (the model's output for batch b) has the wrong shape for
// the head, or the batch lacks the targets the head needs; `who` names the model in the message.
void check_head_output(HeadKind k, const nn::Shape& out, const Batch& b, const std::string& who);
// Throws std::invalid_argument if the dataset lacks the targets the head needs.
void check_head_targets(HeadKind k, const Dataset& d, const std::string& which);

// The training loss of the head on one batch (a scalar Var): cross_entropy,
// token_cross_entropy with kIgnoreTarget ignored, or mse.
nn::Var head_loss(HeadKind k, const nn::Var& out, const Batch& b);

}  // namespace hwnas::eval
