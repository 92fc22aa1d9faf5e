// fashion_mnist: Debian's Fashion-MNIST images, classified into 10 classes.  Validation is held
// out of the 60k TRAIN split by a seeded shuffle; the test files are never opened.  Besides its
// native [1,28,28] it feeds [1,32,32] and [3,32,32] (padded, grey repeated over channels), so
// NAS-Bench-201 and DARTS skeletons train on it.
#include "evaluators/tasks/task_util.hpp"

namespace hwnas::eval::tasks {
namespace {

// Zero-pads [N,1,28,28] to [N,C,32,32], repeating the grey channel C times.
Dataset pad_to_32(const Dataset& d, int channels) {
  const int n = d.size();
  Dataset out;
  out.y = d.y;
  out.num_classes = d.num_classes;
  // Padding value: the normalised value of a black pixel, so the border looks like background.
  const float background = (0.0f - kFashionMnistMean) / kFashionMnistStd;
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

}  // namespace

void register_task_fashion_mnist(Registry<TaskEntry>& r) {
  TaskEntry e;
  e.name = "fashion_mnist";
  e.description =
      "Fashion-MNIST images (Debian's dataset-fashion-mnist; validation held out of the 60k "
      "training images, the test split is never loaded), 10 classes";
  e.head = HeadKind::Classes;
  e.default_train = 0;  // all images not held out
  e.max_samples = kFashionMnistTrainSize;
  e.inputs = [](const json&) {
    return std::vector<TensorType>{TensorType::image(1, 28, 28), TensorType::image(1, 32, 32),
                                   TensorType::image(3, 32, 32)};
  };
  e.outputs = [](const json&) { return 10; };
  e.generate = [](const json&, const TensorType& input, std::uint64_t seed,
                  const SplitSizes& sizes) {
    TrainValSplit s = load_fashion_mnist_train_val(sizes.val, seed, sizes.train);
    if (input.dims[1] == 32) {
      s.train = pad_to_32(s.train, input.dims[0]);
      s.val = pad_to_32(s.val, input.dims[0]);
    }
    return s;
  };
  r.add(std::move(e));
}

}  // namespace hwnas::eval::tasks
