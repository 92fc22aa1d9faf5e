// In-memory labelled datasets, the Fashion-MNIST loader and a seeded batch iterator.
//
// A Dataset is a float tensor x shaped [N, ...sample dims] plus its targets: one integer class
// label per sample (classification), and/or a float target tensor [N, ...target dims] for
// regression (values) or per-token classification (class ids stored as floats, kIgnoreTarget
// where a position carries no label, e.g. every MQAR position that is not a query).  Fashion-MNIST
// is read from Debian's dataset-fashion-mnist package (IDX files, gzip compressed) under
// /usr/share/datasets/fashion-mnist, or from $HWNAS_FMNIST_DIR.
//
// Selection discipline: load_fashion_mnist_train_val() only ever opens the 60k TRAIN files and
// splits them into train and validation; the 10k TEST files are read only by the separate,
// explicit load_fashion_mnist_test(), whose numbers must never feed back into selection.
#pragma once

#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "nn/tensor.hpp"

namespace hwnas::eval {

// Per-token class targets use this value for unlabelled positions (losses and metrics skip it).
constexpr float kIgnoreTarget = -1.0f;

struct Dataset {
  nn::Tensor x;         // [N, ...sample dims]
  std::vector<int> y;   // N labels in [0, num_classes); empty when only `target` is used
  nn::Tensor target;    // [N, ...target dims] or empty: regression values / per-token ids
  int num_classes = 0;  // classes of y, or of the per-token ids in target; 0 for regression

  // Samples: the label count, else the target rows, else x's rows.
  int size() const;
  bool has_target() const { return !target.empty(); }
  // Sample shape without the leading N, e.g. [1, 28, 28].
  std::vector<int> sample_dims() const;
  std::int64_t sample_numel() const;
};

// Thrown for unreadable or malformed dataset files; the message names the path.
struct DatasetError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---- IDX (the MNIST file format), gzip-compressed ----
struct IdxArray {
  std::vector<int> dims;           // e.g. {60000, 28, 28}
  std::vector<std::uint8_t> data;  // row-major unsigned bytes
};
// Reads one .gz IDX file of unsigned bytes (type code 0x08).  `expected_rank` (1 for labels,
// 3 for images) is checked against the magic number.  Throws DatasetError for a missing file
// (with the apt-get hint), a bad magic number, or a truncated file.
IdxArray read_idx_gz(const std::string& path, int expected_rank);
// Writes an IDX .gz file (used by tests to build fixtures; also handy for exporting subsets).
void write_idx_gz(const std::string& path, const IdxArray& a);

// ---- Fashion-MNIST ----
constexpr float kFashionMnistMean = 0.2860f;
constexpr float kFashionMnistStd = 0.3530f;
constexpr int kFashionMnistTrainSize = 60000;

// $HWNAS_FMNIST_DIR if set and non-empty, else /usr/share/datasets/fashion-mnist.
std::string fashion_mnist_dir();

// Images + labels IDX pair -> Dataset with x [N,1,H,W], pixels scaled to [0,1] and normalised
// with the Fashion-MNIST mean/std; 10 classes.  Labels must be < 10 and counts must agree.
Dataset load_idx_image_dataset(const std::string& images_path, const std::string& labels_path);

struct TrainValSplit {
  Dataset train;
  Dataset val;
};
// Splits the 60k TRAIN images with a seeded shuffle: the first `val_size` shuffled indices are
// validation, the next `subset` (0: all the rest) are training.  The validation set depends only
// on (val_size, seed), so runs at different subset fidelities are scored on the same samples.
// Never opens the test files.  dir "" means fashion_mnist_dir().
TrainValSplit load_fashion_mnist_train_val(int val_size, std::uint64_t seed, int subset = 0,
                                           const std::string& dir = "");
// The 10k TEST split, for a final reported number only.
Dataset load_fashion_mnist_test(const std::string& dir = "");

// ---- helpers ----
// Rows `indices` of d (in that order).
Dataset take(const Dataset& d, const std::vector<int>& indices);
// [N, ...] -> [N, prod(...)] (shares storage), the input layout of an MLP.
Dataset flatten_samples(const Dataset& d);

struct Batch {
  nn::Tensor x;        // [B, ...sample dims]
  std::vector<int> y;  // empty when the dataset has no class labels
  nn::Tensor target;   // [B, ...target dims] when the dataset has a target tensor
  int size() const { return x.empty() ? 0 : x.dim(0); }
};

// Iterates a dataset in mini-batches.  With shuffle, epoch e uses a permutation drawn from
// (seed, e), so an epoch's order is reproducible on its own and independent of earlier epochs.
// The last batch may be smaller unless drop_last.  Holds a pointer: the dataset must outlive it.
class BatchIterator {
 public:
  BatchIterator(const Dataset& d, int batch_size, bool shuffle, std::uint64_t seed,
                bool drop_last = false);
  void start_epoch(int epoch);
  // Fills `out` with the next batch; false at the end of the epoch.
  bool next(Batch& out);
  int batches_per_epoch() const;

 private:
  const Dataset* d_;
  int batch_size_;
  bool shuffle_;
  std::uint64_t seed_;
  bool drop_last_;
  std::vector<int> order_;
  std::size_t pos_ = 0;
};

// Copies rows `idx[begin, end)` of d (inputs, labels and targets) into a new batch.
Batch gather_batch(const Dataset& d, const std::vector<int>& idx, std::size_t begin,
                   std::size_t end);

}  // namespace hwnas::eval
