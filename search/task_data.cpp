#include "search/task_data.hpp"

#include <stdexcept>

#include "evaluators/sequence_tasks.hpp"

namespace hwnas::search {
namespace {

using spaces::DataKind;
using spaces::TensorType;

// Zero-pads [N,1,28,28] to [N,C,32,32], repeating the grey channel C times.
eval::Dataset pad_to_32(const eval::Dataset& d, int channels) {
  const int n = d.size();
  eval::Dataset out;
  out.y = d.y;
  out.num_classes = d.num_classes;
  // Padding value: the normalised value of a black pixel, so the border looks like background.
  const float background = (0.0f - eval::kFashionMnistMean) / eval::kFashionMnistStd;
  out.x = nn::Tensor(nn::Shape{n, channels, 32, 32}, background);
  for (int i = 0; i < n; ++i)
    for (int c = 0; c < channels; ++c)
      for (int r = 0; r < 28; ++r)
        std::copy(
            d.x.data() + (static_cast<std::int64_t>(i) * 28 + r) * 28,
            d.x.data() + (static_cast<std::int64_t>(i) * 28 + r) * 28 + 28,
            out.x.data() + ((static_cast<std::int64_t>(i) * channels + c) * 32 + r + 2) * 32 + 2);
  return out;
}

struct Expected {
  std::vector<TensorType> inputs;
  int classes;
};

Expected expected(const std::string& dataset) {
  if (dataset == "fashion_mnist")
    return {{{DataKind::Image, {1, 28, 28}},
             {DataKind::Image, {1, 32, 32}},
             {DataKind::Image, {3, 32, 32}}},
            10};
  if (dataset == "fashion_mnist_rows") return {{{DataKind::Sequence, {28, 28}}}, 10};
  if (dataset == "associative_recall") return {{{DataKind::Sequence, {64, 25}}}, 8};
  if (dataset == "marked_majority") return {{{DataKind::Sequence, {64, 16}}}, 2};
  throw std::invalid_argument("unknown dataset '" + dataset + "'");
}

}  // namespace

std::vector<std::string> task_names() {
  return {"fashion_mnist", "fashion_mnist_rows", "associative_recall", "marked_majority"};
}

void check_task_fits(const std::string& dataset, const TensorType& input, int outputs) {
  Expected e = expected(dataset);
  bool ok = false;
  std::string allowed;
  for (const auto& t : e.inputs) {
    ok = ok || t == input;
    allowed += (allowed.empty() ? "" : " or ") + t.str();
  }
  if (!ok || outputs != e.classes)
    throw std::invalid_argument("space input " + input.str() + " with " + std::to_string(outputs) +
                                " outputs does not fit task.dataset '" + dataset + "' (needs " +
                                allowed + " with " + std::to_string(e.classes) + " outputs)");
}

eval::TrainValSplit load_task(const std::string& dataset, const TensorType& input, int val_size,
                              int train_subset, std::uint64_t seed) {
  if (dataset == "fashion_mnist" || dataset == "fashion_mnist_rows") {
    eval::TrainValSplit s = eval::load_fashion_mnist_train_val(val_size, seed, train_subset);
    if (dataset == "fashion_mnist_rows") {
      s.train = eval::sequential_image_rows(s.train);
      s.val = eval::sequential_image_rows(s.val);
    } else if (input.dims.size() == 3 && input.dims[1] == 32) {
      s.train = pad_to_32(s.train, input.dims[0]);
      s.val = pad_to_32(s.val, input.dims[0]);
    }
    return s;
  }
  // Generated tasks: train and validation are drawn from disjoint seeds.
  const int train_n = train_subset > 0 ? train_subset : 10000;
  eval::TrainValSplit s;
  s.train = eval::make_sequence_task(dataset, train_n, seed * 2 + 1);
  s.val = eval::make_sequence_task(dataset, val_size, seed * 2 + 2);
  return s;
}

}  // namespace hwnas::search
