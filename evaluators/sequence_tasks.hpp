// Sequence-classification tasks generated in code from a seed (nothing is downloaded).
// Every generator returns a Dataset with x shaped [N, L, d] and is a pure function of its
// arguments: the same seed gives bit-identical data on every machine using the same libstdc++.
//
//  - sequential image rows: an image dataset [N,1,H,W] read row by row as H tokens of W
//    features (optionally with a fixed, seeded pixel permutation, the "permuted" variant);
//  - associative recall: key/value pairs scattered over the sequence, the last token asks for
//    the value of one key; the label is that value;
//  - marked majority: each token carries a sign (+1/-1) and a marker bit; the label says
//    whether the marked tokens' signs sum to more than zero (distractor signs elsewhere).
#pragma once

#include <cstdint>
#include <string>

#include "evaluators/datasets.hpp"

namespace hwnas::eval {

// [N,1,H,W] -> [N,H,W].  permute_seed != 0 applies one fixed pixel permutation (the same for
// every image) before splitting into rows, which removes locality.
Dataset sequential_image_rows(const Dataset& images, std::uint64_t permute_seed = 0);

struct AssociativeRecallConfig {
  int samples = 10000;
  int seq_len = 64;    // tokens, including the final query token
  int num_keys = 16;   // key vocabulary
  int num_values = 8;  // classes
  int pairs = 8;       // key/value pairs per sequence (distinct keys), <= min(num_keys, seq_len-1)
};
// Feature layout per token: [key one-hot (num_keys) | value one-hot (num_values) | query flag].
// Pair tokens carry key and value; the query token (last position) carries its key and the flag;
// the other tokens are zero.  d = num_keys + num_values + 1, num_classes = num_values.
Dataset make_associative_recall(const AssociativeRecallConfig& cfg, std::uint64_t seed);

struct MarkedMajorityConfig {
  int samples = 10000;
  int seq_len = 64;
  int features = 16;   // >= 2: [marker, sign, gaussian noise...]
  int min_marked = 3;  // marked tokens per sequence drawn uniformly, odd counts only
  int max_marked = 15;
  float noise = 0.5f;  // std of the noise features
};
// num_classes = 2 (1: marked signs sum > 0).  Classes are balanced in expectation.
Dataset make_marked_majority(const MarkedMajorityConfig& cfg, std::uint64_t seed);

// By name: "associative_recall" | "marked_majority" with default configs and `samples`.
Dataset make_sequence_task(const std::string& name, int samples, std::uint64_t seed);

}  // namespace hwnas::eval
