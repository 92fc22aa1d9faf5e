// fashion_mnist_rows: each Fashion-MNIST image read as a sequence of 28 rows of 28 pixels
// (sequential MNIST-style); "permute" applies one fixed pixel permutation drawn from the seed.
#include "evaluators/sequence_tasks.hpp"
#include "evaluators/tasks/task_util.hpp"

namespace hwnas::eval::tasks {

void register_task_fashion_mnist_rows(Registry<TaskEntry>& r) {
  TaskEntry e;
  e.name = "fashion_mnist_rows";
  e.description =
      "Fashion-MNIST read row by row: 28 tokens of 28 pixels (optionally pixel-permuted), "
      "10 classes";
  e.params = {ParamSpec::boolean("permute", false,
                                 "apply one fixed, seeded pixel permutation before reading rows "
                                 "(removes locality)")};
  e.head = HeadKind::Classes;
  e.default_train = 0;
  e.max_samples = kFashionMnistTrainSize;
  e.inputs = [](const json&) { return std::vector<TensorType>{TensorType::sequence(28, 28)}; };
  e.outputs = [](const json&) { return 10; };
  e.generate = [](const json& p, const TensorType&, std::uint64_t seed, const SplitSizes& sizes) {
    TrainValSplit s = load_fashion_mnist_train_val(sizes.val, seed, sizes.train);
    // The permutation is a property of the task, the same for train and validation.
    const std::uint64_t perm = p.at("permute").get<bool>() ? seed * 2 + 3 : 0;
    s.train = sequential_image_rows(s.train, perm);
    s.val = sequential_image_rows(s.val, perm);
    return s;
  };
  r.add(std::move(e));
}

}  // namespace hwnas::eval::tasks
