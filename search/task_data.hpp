// The data a search trains on, chosen by task.dataset, shaped to the space's input type.
//
//   fashion_mnist       image [1,28,28]; also [1,32,32] or [3,32,32] (zero-padded to 32x32 and
//                       repeated over channels, so NAS-Bench-201 / DARTS skeletons train on it)
//   fashion_mnist_rows  sequence [28,28]: each image read as 28 tokens of 28 pixels
//   associative_recall  sequence [64,25], generated from the seed (8 classes)
//   marked_majority     sequence [64,16], generated from the seed (2 classes)
// Validation always comes from training data: the Fashion-MNIST test split is never loaded here.
#pragma once

#include <string>
#include <vector>

#include "evaluators/datasets.hpp"
#include "spaces/genome.hpp"

namespace hwnas::search {

std::vector<std::string> task_names();  // the trainable datasets above

// Throws std::invalid_argument if the space's input type or output count cannot be served by
// the dataset, naming both.
void check_task_fits(const std::string& dataset, const spaces::TensorType& input, int outputs);

eval::TrainValSplit load_task(const std::string& dataset, const spaces::TensorType& input,
                              int val_size, int train_subset, std::uint64_t seed);

}  // namespace hwnas::search
