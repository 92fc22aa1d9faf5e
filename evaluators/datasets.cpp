#include "evaluators/datasets.hpp"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <numeric>

namespace hwnas::eval {

int Dataset::size() const {
  if (!y.empty()) return static_cast<int>(y.size());
  if (!target.empty()) return target.dim(0);
  return x.empty() ? 0 : x.dim(0);
}

std::vector<int> Dataset::sample_dims() const {
  std::vector<int> d = x.shape().to_vector();
  if (!d.empty()) d.erase(d.begin());
  return d;
}

std::int64_t Dataset::sample_numel() const {
  std::int64_t n = 1;
  for (int v : sample_dims()) n *= v;
  return n;
}

namespace {

struct GzCloser {
  void operator()(gzFile_s* f) const {
    if (f) gzclose(f);
  }
};
using GzHandle = std::unique_ptr<gzFile_s, GzCloser>;

std::string hex32(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

std::string missing_hint(const std::string& path) {
  return "dataset file not found: " + path +
         " (install Fashion-MNIST with `apt-get install dataset-fashion-mnist`, or point "
         "HWNAS_FMNIST_DIR at a directory holding the IDX .gz files)";
}

// Reads exactly n bytes or explains why not.
void read_exact(gzFile f, void* dst, std::size_t n, const std::string& path, const char* what) {
  auto* p = static_cast<unsigned char*>(dst);
  std::size_t got = 0;
  while (got < n) {
    // gzread takes an unsigned count; read in chunks to stay far below its limit.
    unsigned chunk = static_cast<unsigned>(std::min<std::size_t>(n - got, 1u << 30));
    int r = gzread(f, p + got, chunk);
    if (r < 0) {
      int errnum = 0;
      const char* msg = gzerror(f, &errnum);
      throw DatasetError("truncated or corrupt file " + path + " while reading " + what + ": " +
                         (msg ? msg : "zlib error") + " (got " + std::to_string(got) + " of " +
                         std::to_string(n) + " bytes)");
    }
    if (r == 0) break;
    got += static_cast<std::size_t>(r);
  }
  if (got < n)
    throw DatasetError("truncated file " + path + ": expected " + std::to_string(n) + " bytes of " +
                       what + ", got " + std::to_string(got));
}

}  // namespace

IdxArray read_idx_gz(const std::string& path, int expected_rank) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw DatasetError(missing_hint(path));
  GzHandle f(gzopen(path.c_str(), "rb"));
  if (!f) {
    throw DatasetError(errno == ENOENT ? missing_hint(path)
                                       : "cannot open " + path + ": " + std::strerror(errno));
  }
  unsigned char magic[4];
  read_exact(f.get(), magic, 4, path, "the magic number");
  std::uint32_t m = (std::uint32_t(magic[0]) << 24) | (std::uint32_t(magic[1]) << 16) |
                    (std::uint32_t(magic[2]) << 8) | std::uint32_t(magic[3]);
  std::uint32_t want = 0x0800u | static_cast<std::uint32_t>(expected_rank);
  if (m != want)
    throw DatasetError("bad magic number " + hex32(m) + " in " + path + " (expected " +
                       hex32(want) + ": unsigned-byte IDX of rank " +
                       std::to_string(expected_rank) + ")");
  IdxArray a;
  std::size_t total = 1;
  for (int i = 0; i < expected_rank; ++i) {
    unsigned char b[4];
    read_exact(f.get(), b, 4, path, "the header");
    std::uint32_t d = (std::uint32_t(b[0]) << 24) | (std::uint32_t(b[1]) << 16) |
                      (std::uint32_t(b[2]) << 8) | std::uint32_t(b[3]);
    if (d > (1u << 28))
      throw DatasetError("implausible dimension " + std::to_string(d) + " in " + path);
    a.dims.push_back(static_cast<int>(d));
    total *= d;
  }
  a.data.resize(total);
  read_exact(f.get(), a.data.data(), total, path, "data");
  return a;
}

void write_idx_gz(const std::string& path, const IdxArray& a) {
  GzHandle f(gzopen(path.c_str(), "wb"));
  if (!f) throw DatasetError("cannot create " + path + ": " + std::strerror(errno));
  unsigned char magic[4] = {0, 0, 0x08, static_cast<unsigned char>(a.dims.size())};
  std::vector<unsigned char> header(magic, magic + 4);
  std::size_t total = 1;
  for (int d : a.dims) {
    auto u = static_cast<std::uint32_t>(d);
    header.insert(header.end(),
                  {static_cast<unsigned char>(u >> 24), static_cast<unsigned char>(u >> 16),
                   static_cast<unsigned char>(u >> 8), static_cast<unsigned char>(u)});
    total *= static_cast<std::size_t>(d);
  }
  if (total != a.data.size())
    throw std::invalid_argument("write_idx_gz: dims hold " + std::to_string(total) +
                                " elements but data has " + std::to_string(a.data.size()));
  if (gzwrite(f.get(), header.data(), static_cast<unsigned>(header.size())) !=
          static_cast<int>(header.size()) ||
      (total &&
       gzwrite(f.get(), a.data.data(), static_cast<unsigned>(total)) != static_cast<int>(total)))
    throw DatasetError("write failed: " + path);
}

std::string fashion_mnist_dir() {
  const char* env = std::getenv("HWNAS_FMNIST_DIR");
  if (env && *env) return env;
  return "/usr/share/datasets/fashion-mnist";
}

Dataset load_idx_image_dataset(const std::string& images_path, const std::string& labels_path) {
  IdxArray img = read_idx_gz(images_path, 3);
  IdxArray lab = read_idx_gz(labels_path, 1);
  if (img.dims[0] != lab.dims[0])
    throw DatasetError(images_path + " holds " + std::to_string(img.dims[0]) + " images but " +
                       labels_path + " holds " + std::to_string(lab.dims[0]) + " labels");
  const int n = img.dims[0], h = img.dims[1], w = img.dims[2];
  Dataset d;
  d.num_classes = 10;
  d.x = nn::Tensor(nn::Shape{n, 1, h, w});
  // One pass: scale to [0,1], then standardise, fused into a multiply-add.
  const float a = 1.0f / (255.0f * kFashionMnistStd);
  const float b = -kFashionMnistMean / kFashionMnistStd;
  float* dst = d.x.data();
  for (std::size_t i = 0; i < img.data.size(); ++i) dst[i] = img.data[i] * a + b;
  d.y.resize(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    int label = lab.data[static_cast<std::size_t>(i)];
    if (label >= d.num_classes)
      throw DatasetError("label " + std::to_string(label) + " at index " + std::to_string(i) +
                         " of " + labels_path + " is outside [0, 10)");
    d.y[static_cast<std::size_t>(i)] = label;
  }
  return d;
}

TrainValSplit load_fashion_mnist_train_val(int val_size, std::uint64_t seed, int subset,
                                           const std::string& dir) {
  const std::string root = dir.empty() ? fashion_mnist_dir() : dir;
  Dataset all = load_idx_image_dataset(root + "/train-images-idx3-ubyte.gz",
                                       root + "/train-labels-idx1-ubyte.gz");
  const int n = all.size();
  if (val_size < 0 || val_size >= n)
    throw std::invalid_argument("load_fashion_mnist_train_val: val_size " +
                                std::to_string(val_size) + " must be in [0, " + std::to_string(n) +
                                ")");
  if (subset < 0 || subset > n - val_size)
    throw std::invalid_argument("load_fashion_mnist_train_val: subset " + std::to_string(subset) +
                                " must be in [0, " + std::to_string(n - val_size) + "]");
  std::vector<int> perm(static_cast<std::size_t>(n));
  std::iota(perm.begin(), perm.end(), 0);
  std::mt19937_64 rng(seed);
  std::shuffle(perm.begin(), perm.end(), rng);
  const auto vs = static_cast<std::ptrdiff_t>(val_size);
  const auto te = subset ? vs + subset : static_cast<std::ptrdiff_t>(n);
  TrainValSplit s;
  s.val = take(all, std::vector<int>(perm.begin(), perm.begin() + vs));
  s.train = take(all, std::vector<int>(perm.begin() + vs, perm.begin() + te));
  return s;
}

Dataset load_fashion_mnist_test(const std::string& dir) {
  const std::string root = dir.empty() ? fashion_mnist_dir() : dir;
  return load_idx_image_dataset(root + "/t10k-images-idx3-ubyte.gz",
                                root + "/t10k-labels-idx1-ubyte.gz");
}

Dataset take(const Dataset& d, const std::vector<int>& indices) {
  Dataset out;
  out.num_classes = d.num_classes;
  Batch b = gather_batch(d, indices, 0, indices.size());
  out.x = std::move(b.x);
  out.y = std::move(b.y);
  out.target = std::move(b.target);
  return out;
}

Dataset flatten_samples(const Dataset& d) {
  Dataset out = d;
  out.x = d.x.reshaped(nn::Shape{d.size(), static_cast<int>(d.sample_numel())});
  return out;
}

Batch gather_batch(const Dataset& d, const std::vector<int>& idx, std::size_t begin,
                   std::size_t end) {
  std::vector<int> dims = d.x.shape().to_vector();
  const std::int64_t per = d.sample_numel();
  dims[0] = static_cast<int>(end - begin);
  Batch b;
  b.x = nn::Tensor(nn::Shape(dims));
  if (!d.y.empty()) b.y.resize(end - begin);
  std::int64_t tper = 0;
  if (d.has_target()) {
    std::vector<int> tdims = d.target.shape().to_vector();
    tper = d.target.numel() / std::max(1, tdims[0]);
    tdims[0] = static_cast<int>(end - begin);
    b.target = nn::Tensor(nn::Shape(tdims));
  }
  const float* src = d.x.data();
  float* dst = b.x.data();
  for (std::size_t i = begin; i < end; ++i) {
    int r = idx[i];
    if (r < 0 || r >= d.size())
      throw std::out_of_range("gather_batch: index " + std::to_string(r) + " outside [0, " +
                              std::to_string(d.size()) + ")");
    std::memcpy(dst + static_cast<std::int64_t>(i - begin) * per, src + r * per,
                static_cast<std::size_t>(per) * sizeof(float));
    if (!d.y.empty()) b.y[i - begin] = d.y[static_cast<std::size_t>(r)];
    if (tper)
      std::memcpy(b.target.data() + static_cast<std::int64_t>(i - begin) * tper,
                  d.target.data() + r * tper, static_cast<std::size_t>(tper) * sizeof(float));
  }
  return b;
}

BatchIterator::BatchIterator(const Dataset& d, int batch_size, bool shuffle, std::uint64_t seed,
                             bool drop_last)
    : d_(&d), batch_size_(batch_size), shuffle_(shuffle), seed_(seed), drop_last_(drop_last) {
  if (batch_size <= 0)
    throw std::invalid_argument("BatchIterator: batch_size " + std::to_string(batch_size) +
                                " must be positive");
  order_.resize(static_cast<std::size_t>(d.size()));
  start_epoch(0);
}

void BatchIterator::start_epoch(int epoch) {
  std::iota(order_.begin(), order_.end(), 0);
  if (shuffle_) {
    // Mix epoch into the seed so that each epoch's order stands alone (seed_seq decorrelates).
    std::seed_seq ss{static_cast<std::uint32_t>(seed_), static_cast<std::uint32_t>(seed_ >> 32),
                     static_cast<std::uint32_t>(epoch), 0x6a09e667u};
    std::mt19937_64 rng(ss);
    std::shuffle(order_.begin(), order_.end(), rng);
  }
  pos_ = 0;
}

bool BatchIterator::next(Batch& out) {
  const std::size_t n = order_.size();
  if (pos_ >= n) return false;
  std::size_t end = std::min(n, pos_ + static_cast<std::size_t>(batch_size_));
  if (drop_last_ && end - pos_ < static_cast<std::size_t>(batch_size_)) {
    pos_ = n;
    return false;
  }
  out = gather_batch(*d_, order_, pos_, end);
  pos_ = end;
  return true;
}

int BatchIterator::batches_per_epoch() const {
  int n = static_cast<int>(order_.size());
  return drop_last_ ? n / batch_size_ : (n + batch_size_ - 1) / batch_size_;
}

}  // namespace hwnas::eval
