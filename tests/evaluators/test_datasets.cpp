// IDX loader on hand-written .gz fixtures, train/val split discipline, batch iteration and the
// generated sequence tasks.
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <set>
#include <string>

#include "evaluators/datasets.hpp"
#include "evaluators/sequence_tasks.hpp"

namespace fs = std::filesystem;
using namespace hwnas::eval;

namespace {

// A fresh temporary directory, removed with its contents at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() /
           ("hwnas_ds_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
  static int& counter() {
    static int c = 0;
    return c;
  }
};

void write_raw_gz(const std::string& path, const std::vector<unsigned char>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  gzclose(f);
}

// n images of h x w whose first two pixels encode the image id (id / 256, id % 256), the rest
// a fixed pattern; labels id % 10.
void write_fake_split(const TempDir& dir, const std::string& prefix, int n, int h = 4, int w = 4) {
  IdxArray img{{n, h, w}, {}};
  IdxArray lab{{n}, {}};
  for (int i = 0; i < n; ++i) {
    for (int p = 0; p < h * w; ++p) {
      unsigned char v = p == 0   ? static_cast<unsigned char>(i / 256)
                        : p == 1 ? static_cast<unsigned char>(i % 256)
                                 : static_cast<unsigned char>((p * 37 + i) % 256);
      img.data.push_back(v);
    }
    lab.data.push_back(static_cast<unsigned char>(i % 10));
  }
  write_idx_gz(dir.file(prefix + "-images-idx3-ubyte.gz"), img);
  write_idx_gz(dir.file(prefix + "-labels-idx1-ubyte.gz"), lab);
}

// Recovers the id written by write_fake_split from a normalised sample.
int sample_id(const Dataset& d, int row) {
  const float* x = d.x.data() + row * d.sample_numel();
  auto byte = [](float v) {
    return static_cast<int>(std::lround((v * kFashionMnistStd + kFashionMnistMean) * 255.0f));
  };
  return byte(x[0]) * 256 + byte(x[1]);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(IdxLoader, RoundTripAndNormalisation) {
  TempDir dir;
  IdxArray img{{2, 2, 3}, {0, 255, 128, 1, 2, 3, 10, 20, 30, 40, 50, 60}};
  IdxArray lab{{2}, {7, 3}};
  write_idx_gz(dir.file("i.gz"), img);
  write_idx_gz(dir.file("l.gz"), lab);

  IdxArray back = read_idx_gz(dir.file("i.gz"), 3);
  EXPECT_EQ(back.dims, img.dims);
  EXPECT_EQ(back.data, img.data);

  Dataset d = load_idx_image_dataset(dir.file("i.gz"), dir.file("l.gz"));
  EXPECT_EQ(d.x.shape(), (hwnas::nn::Shape{2, 1, 2, 3}));
  EXPECT_EQ(d.y, (std::vector<int>{7, 3}));
  EXPECT_EQ(d.num_classes, 10);
  for (std::size_t i = 0; i < img.data.size(); ++i) {
    float want = (img.data[i] / 255.0f - kFashionMnistMean) / kFashionMnistStd;
    EXPECT_NEAR(d.x.data()[i], want, 1e-5f) << "element " << i;
  }
}

TEST(IdxLoader, BadMagicNumberIsReported) {
  TempDir dir;
  // A rank-3 image header where a rank-1 label file is expected.
  write_raw_gz(dir.file("labels.gz"), {0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 5});
  std::string msg = error_of([&] { read_idx_gz(dir.file("labels.gz"), 1); });
  EXPECT_NE(msg.find("bad magic number 0x00000803"), std::string::npos) << msg;
  EXPECT_NE(msg.find("expected 0x00000801"), std::string::npos) << msg;
  EXPECT_NE(msg.find(dir.file("labels.gz")), std::string::npos) << msg;
  // A float IDX (type code 0x0D) is not an unsigned-byte file either.
  write_raw_gz(dir.file("f.gz"), {0, 0, 0x0d, 1, 0, 0, 0, 0});
  EXPECT_THROW(read_idx_gz(dir.file("f.gz"), 1), DatasetError);
}

TEST(IdxLoader, TruncatedFileIsReported) {
  TempDir dir;
  // Header promises 10 labels; only 4 follow.
  write_raw_gz(dir.file("short.gz"), {0, 0, 8, 1, 0, 0, 0, 10, 1, 2, 3, 4});
  std::string msg = error_of([&] { read_idx_gz(dir.file("short.gz"), 1); });
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  EXPECT_NE(msg.find(dir.file("short.gz")), std::string::npos) << msg;
  EXPECT_NE(msg.find("expected 10 bytes"), std::string::npos) << msg;

  // A header cut short inside the dimensions.
  write_raw_gz(dir.file("hdr.gz"), {0, 0, 8, 3, 0, 0});
  msg = error_of([&] { read_idx_gz(dir.file("hdr.gz"), 3); });
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;

  // A gzip stream cut in the middle (the bytes of a valid file, minus its tail).
  IdxArray big{{1000}, std::vector<std::uint8_t>(1000)};
  for (int i = 0; i < 1000; ++i)
    big.data[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(i * 7919 % 251);
  write_idx_gz(dir.file("full.gz"), big);
  auto size = fs::file_size(dir.file("full.gz"));
  fs::copy_file(dir.file("full.gz"), dir.file("cut.gz"));
  fs::resize_file(dir.file("cut.gz"), size / 2);
  msg = error_of([&] { read_idx_gz(dir.file("cut.gz"), 1); });
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
}

TEST(IdxLoader, MissingFileNamesPathAndPackage) {
  TempDir dir;
  std::string msg = error_of([&] { load_fashion_mnist_test(dir.path.string()); });
  EXPECT_NE(msg.find(dir.file("t10k-images-idx3-ubyte.gz")), std::string::npos) << msg;
  EXPECT_NE(msg.find("apt-get install dataset-fashion-mnist"), std::string::npos) << msg;
}

TEST(IdxLoader, LabelCountMismatchIsReported) {
  TempDir dir;
  write_idx_gz(dir.file("i.gz"), IdxArray{{2, 1, 1}, {1, 2}});
  write_idx_gz(dir.file("l.gz"), IdxArray{{3}, {1, 2, 3}});
  std::string msg = error_of([&] { load_idx_image_dataset(dir.file("i.gz"), dir.file("l.gz")); });
  EXPECT_NE(msg.find("2 images"), std::string::npos) << msg;
}

TEST(FashionMnist, DirectoryFromEnvironment) {
  const char* old = std::getenv("HWNAS_FMNIST_DIR");
  std::string saved = old ? old : "";
  ::setenv("HWNAS_FMNIST_DIR", "/tmp/somewhere", 1);
  EXPECT_EQ(fashion_mnist_dir(), "/tmp/somewhere");
  ::unsetenv("HWNAS_FMNIST_DIR");
  EXPECT_EQ(fashion_mnist_dir(), "/usr/share/datasets/fashion-mnist");
  if (old) ::setenv("HWNAS_FMNIST_DIR", saved.c_str(), 1);
}

TEST(FashionMnist, TrainValSplitIsDisjointDeterministicAndNeverReadsTest) {
  TempDir dir;
  write_fake_split(dir, "train", 300);
  // Test files that would fail loudly if the train/val loader ever opened them.
  write_raw_gz(dir.file("t10k-images-idx3-ubyte.gz"), {0xde, 0xad});
  write_raw_gz(dir.file("t10k-labels-idx1-ubyte.gz"), {0xde, 0xad});

  TrainValSplit a = load_fashion_mnist_train_val(50, 7, 0, dir.path.string());
  ASSERT_EQ(a.val.size(), 50);
  ASSERT_EQ(a.train.size(), 250);
  EXPECT_EQ(a.train.x.shape(), (hwnas::nn::Shape{250, 1, 4, 4}));
  std::set<int> val_ids, train_ids;
  for (int i = 0; i < a.val.size(); ++i) {
    int id = sample_id(a.val, i);
    val_ids.insert(id);
    EXPECT_EQ(a.val.y[static_cast<std::size_t>(i)], id % 10);  // label travels with its image
  }
  for (int i = 0; i < a.train.size(); ++i) train_ids.insert(sample_id(a.train, i));
  EXPECT_EQ(val_ids.size(), 50u);
  EXPECT_EQ(train_ids.size(), 250u);
  for (int id : val_ids) EXPECT_EQ(train_ids.count(id), 0u) << "id " << id << " in both splits";

  // Same seed -> same split; another seed -> another validation set.
  TrainValSplit b = load_fashion_mnist_train_val(50, 7, 0, dir.path.string());
  EXPECT_EQ(a.val.x.to_vector(), b.val.x.to_vector());
  EXPECT_EQ(a.train.y, b.train.y);
  TrainValSplit c = load_fashion_mnist_train_val(50, 8, 0, dir.path.string());
  EXPECT_NE(a.val.x.to_vector(), c.val.x.to_vector());

  // A training subset keeps the same validation set (comparable scores across fidelities).
  TrainValSplit s = load_fashion_mnist_train_val(50, 7, 100, dir.path.string());
  EXPECT_EQ(s.train.size(), 100);
  EXPECT_EQ(s.val.x.to_vector(), a.val.x.to_vector());
  for (int i = 0; i < s.train.size(); ++i) EXPECT_EQ(val_ids.count(sample_id(s.train, i)), 0u);

  EXPECT_THROW(load_fashion_mnist_train_val(300, 7, 0, dir.path.string()), std::invalid_argument);
  EXPECT_THROW(load_fashion_mnist_train_val(50, 7, 251, dir.path.string()), std::invalid_argument);
  // The test split is a separate call, and here it is deliberately broken.
  EXPECT_THROW(load_fashion_mnist_test(dir.path.string()), DatasetError);
}

TEST(FashionMnist, RealTrainAndTestFilesWhenInstalled) {
  const std::string dir = fashion_mnist_dir();
  if (!fs::exists(dir + "/train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "dataset-fashion-mnist not installed";
  TrainValSplit s = load_fashion_mnist_train_val(5000, 1, 0);
  EXPECT_EQ(s.train.x.shape(), (hwnas::nn::Shape{55000, 1, 28, 28}));
  EXPECT_EQ(s.val.size(), 5000);
  double sum = 0, sq = 0;
  for (float v : s.train.x.to_vector()) {
    sum += v;
    sq += double(v) * v;
  }
  const double n = static_cast<double>(s.train.x.numel());
  EXPECT_NEAR(sum / n, 0.0, 0.02);  // the published mean and std
  EXPECT_NEAR(std::sqrt(sq / n - (sum / n) * (sum / n)), 1.0, 0.02);
  std::vector<int> counts(10);
  for (int y : s.train.y) ++counts[static_cast<std::size_t>(y)];
  for (int c : counts) EXPECT_NEAR(c, 5500, 300);
  Dataset t = load_fashion_mnist_test();
  EXPECT_EQ(t.size(), 10000);
}

TEST(Helpers, FlattenAndTake) {
  Dataset d;
  d.num_classes = 3;
  d.x =
      hwnas::nn::Tensor::from(hwnas::nn::Shape{3, 1, 2, 2}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11});
  d.y = {0, 1, 2};
  Dataset f = flatten_samples(d);
  EXPECT_EQ(f.x.shape(), (hwnas::nn::Shape{3, 4}));
  EXPECT_EQ(f.sample_numel(), 4);
  Dataset t = take(d, {2, 0});
  EXPECT_EQ(t.y, (std::vector<int>{2, 0}));
  EXPECT_EQ(t.x.to_vector(), (std::vector<float>{8, 9, 10, 11, 0, 1, 2, 3}));
  EXPECT_THROW(take(d, {3}), std::out_of_range);
}

TEST(Helpers, BatchIteratorCoversEveryRowOncePerEpochWithSeededOrder) {
  Dataset d;
  d.num_classes = 100;
  const int n = 103;
  d.x = hwnas::nn::Tensor(hwnas::nn::Shape{n, 2});
  for (int i = 0; i < n; ++i) {
    d.x.data()[2 * i] = static_cast<float>(i);
    d.x.data()[2 * i + 1] = -static_cast<float>(i);
    d.y.push_back(i);
  }
  auto epoch_order = [&](std::uint64_t seed, int epoch, bool drop_last) {
    BatchIterator it(d, 10, true, seed, drop_last);
    it.start_epoch(epoch);
    std::vector<int> order;
    Batch b;
    while (it.next(b)) {
      for (int i = 0; i < b.size(); ++i) {
        EXPECT_EQ(b.x.data()[2 * i], static_cast<float>(b.y[static_cast<std::size_t>(i)]));
        order.push_back(b.y[static_cast<std::size_t>(i)]);
      }
    }
    return order;
  };
  std::vector<int> e0 = epoch_order(5, 0, false);
  ASSERT_EQ(e0.size(), static_cast<std::size_t>(n));
  EXPECT_EQ(std::set<int>(e0.begin(), e0.end()).size(), static_cast<std::size_t>(n));
  EXPECT_EQ(e0, epoch_order(5, 0, false));
  EXPECT_NE(e0, epoch_order(5, 1, false));
  EXPECT_NE(e0, epoch_order(6, 0, false));
  EXPECT_EQ(epoch_order(5, 0, true).size(), 100u);
  BatchIterator it(d, 10, false, 0);
  EXPECT_EQ(it.batches_per_epoch(), 11);
  EXPECT_THROW(BatchIterator(d, 0, false, 0), std::invalid_argument);
}

TEST(SequenceTasks, SequentialImageRows) {
  Dataset img;
  img.num_classes = 10;
  img.x = hwnas::nn::Tensor(hwnas::nn::Shape{2, 1, 3, 4});
  for (int i = 0; i < 24; ++i) img.x.data()[i] = static_cast<float>(i);
  img.y = {4, 5};
  Dataset rows = sequential_image_rows(img);
  EXPECT_EQ(rows.x.shape(), (hwnas::nn::Shape{2, 3, 4}));
  EXPECT_EQ(rows.x.to_vector(), img.x.to_vector());
  EXPECT_EQ(rows.y, img.y);
  Dataset p1 = sequential_image_rows(img, 42), p2 = sequential_image_rows(img, 42);
  EXPECT_EQ(p1.x.to_vector(), p2.x.to_vector());
  EXPECT_NE(p1.x.to_vector(), img.x.to_vector());
  // The same permutation for every image: image 1 is image 0 shifted by 12.
  for (int p = 0; p < 12; ++p) EXPECT_EQ(p1.x.data()[12 + p], p1.x.data()[p] + 12);
}

TEST(SequenceTasks, AssociativeRecallIsDeterministicAndConsistent) {
  AssociativeRecallConfig c;
  c.samples = 300;
  Dataset a = make_associative_recall(c, 11), b = make_associative_recall(c, 11);
  Dataset other = make_associative_recall(c, 12);
  const int d = c.num_keys + c.num_values + 1;
  EXPECT_EQ(a.x.shape(), (hwnas::nn::Shape{300, 64, d}));
  EXPECT_EQ(a.num_classes, c.num_values);
  EXPECT_EQ(a.x.to_vector(), b.x.to_vector());
  EXPECT_EQ(a.y, b.y);
  EXPECT_NE(a.x.to_vector(), other.x.to_vector());
  std::vector<int> counts(static_cast<std::size_t>(c.num_values));
  for (int s = 0; s < c.samples; ++s) {
    const float* seq = a.x.data() + static_cast<std::int64_t>(s) * 64 * d;
    const float* q = seq + 63 * d;
    ASSERT_EQ(q[d - 1], 1.0f);
    int key = -1;
    for (int k = 0; k < c.num_keys; ++k)
      if (q[k] == 1.0f) key = k;
    ASSERT_GE(key, 0);
    int pairs = 0, answer = -1;
    for (int t = 0; t < 63; ++t) {
      const float* tok = seq + t * d;
      if (tok[key] == 1.0f)
        for (int v = 0; v < c.num_values; ++v)
          if (tok[c.num_keys + v] == 1.0f) answer = v;
      for (int k = 0; k < c.num_keys; ++k) pairs += tok[k] == 1.0f;
    }
    EXPECT_EQ(pairs, c.pairs);
    EXPECT_EQ(answer, a.y[static_cast<std::size_t>(s)]);
    ++counts[static_cast<std::size_t>(answer)];
  }
  for (int n : counts) EXPECT_GT(n, 10);
  c.pairs = 17;
  EXPECT_THROW(make_associative_recall(c, 1), std::invalid_argument);
}

TEST(SequenceTasks, MarkedMajorityIsDeterministicAndBalanced) {
  MarkedMajorityConfig c;
  c.samples = 2000;
  Dataset a = make_marked_majority(c, 3), b = make_marked_majority(c, 3);
  EXPECT_EQ(a.x.shape(), (hwnas::nn::Shape{2000, 64, 16}));
  EXPECT_EQ(a.x.to_vector(), b.x.to_vector());
  EXPECT_EQ(a.y, b.y);
  EXPECT_NE(a.x.to_vector(), make_marked_majority(c, 4).x.to_vector());
  int ones = 0;
  for (int s = 0; s < c.samples; ++s) {
    const float* seq = a.x.data() + static_cast<std::int64_t>(s) * 64 * 16;
    int marked = 0, total = 0;
    for (int t = 0; t < 64; ++t)
      if (seq[t * 16] == 1.0f) {
        ++marked;
        total += seq[t * 16 + 1] > 0 ? 1 : -1;
      }
    EXPECT_EQ(marked % 2, 1);
    EXPECT_EQ(a.y[static_cast<std::size_t>(s)], total > 0 ? 1 : 0);
    ones += a.y[static_cast<std::size_t>(s)];
  }
  EXPECT_NEAR(ones, 1000, 120);
  EXPECT_EQ(make_sequence_task("marked_majority", 10, 1).size(), 10);
  EXPECT_THROW(make_sequence_task("nope", 10, 1), std::invalid_argument);
}
