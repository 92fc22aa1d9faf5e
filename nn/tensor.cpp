#include "nn/tensor.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <cstring>
#include <mutex>
#include <sstream>
#include <unordered_map>
#include <vector>

namespace hwnas::nn {

Shape::Shape(std::initializer_list<int> dims) : Shape(std::vector<int>(dims)) {}

Shape::Shape(const std::vector<int>& dims) {
  if (dims.size() > static_cast<std::size_t>(kMaxRank))
    throw std::invalid_argument("Shape: rank " + std::to_string(dims.size()) + " exceeds 4");
  rank_ = static_cast<int>(dims.size());
  for (int i = 0; i < rank_; ++i) {
    if (dims[static_cast<std::size_t>(i)] < 0)
      throw std::invalid_argument("Shape: negative dimension");
    dims_[static_cast<std::size_t>(i)] = dims[static_cast<std::size_t>(i)];
  }
}

std::int64_t Shape::numel() const {
  std::int64_t n = 1;
  for (int i = 0; i < rank_; ++i) n *= dims_[static_cast<std::size_t>(i)];
  return n;
}

std::string Shape::str() const {
  std::ostringstream os;
  os << '[';
  for (int i = 0; i < rank_; ++i) os << (i ? ", " : "") << dims_[static_cast<std::size_t>(i)];
  os << ']';
  return os.str();
}

bool Shape::operator==(const Shape& o) const {
  if (rank_ != o.rank_) return false;
  for (int i = 0; i < rank_; ++i)
    if (dims_[static_cast<std::size_t>(i)] != o.dims_[static_cast<std::size_t>(i)]) return false;
  return true;
}

namespace {
// Buffers of at least kPoolMinBytes are recycled through a process-wide pool keyed by exact
// size instead of going back to malloc: fresh large blocks cost page faults and kernel zeroing
// for each large activation and gradient (a quarter of a CNN/encoder step, and a fifth of a
// DARTS-cell step when the pool was emptied every step).  Training reuses the same shapes every
// step, so exact-size buckets hit almost always.  Idle buffers may total up to the peak of
// buffers in use seen so far (a steady training loop holds its whole working set at the end of
// backward, when all of it is released), at least 256 MiB and at most a quarter of physical
// memory, and idle plus in use up to twice that; beyond it the least recently used sizes are
// freed first (a search moving on to
// other shapes drops the old ones).  Thread-safe; recycled contents are never relied upon
// (Tensor(shape) is documented as uninitialised).
constexpr std::size_t kPoolMinBytes = std::size_t{1} << 16;
constexpr std::size_t kPoolMinCapBytes = std::size_t{256} << 20;

std::size_t physical_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<std::size_t>(pages) * static_cast<std::size_t>(page)
                               : std::size_t{4} << 30;
}

class BufferPool {
 public:
  void* take(std::size_t bytes) {
    std::vector<void*> evicted;
    {
      std::lock_guard<std::mutex> lock(mu_);
      in_use_ += bytes;
      peak_in_use_ = std::max(peak_in_use_, in_use_);
      auto it = free_.find(bytes);
      if (it != free_.end() && !it->second.buffers.empty()) {
        void* p = it->second.buffers.back();
        it->second.buffers.pop_back();
        if (it->second.buffers.empty()) free_.erase(it);  // no empty classes left to scan
        idle_ -= bytes;
        return p;
      }
      // A miss allocates: keep what the pool holds (idle + in use) within twice the cap, so
      // shapes no longer used do not stay pinned beside new ones (a steady loop, whose idle
      // buffers are its own next step's, stays under it and never evicts here).
      evict_lru_until(2 * cap(), in_use_, evicted);
    }
    for (void* q : evicted) std::free(q);
    void* p = std::aligned_alloc(64, bytes);
    if (!p) {
      std::lock_guard<std::mutex> lock(mu_);
      in_use_ -= bytes;
    }
    return p;
  }
  void give(void* p, std::size_t bytes) {
    std::vector<void*> evicted;
    {
      std::lock_guard<std::mutex> lock(mu_);
      in_use_ -= bytes;
      if (bytes > cap()) {
        evicted.push_back(p);
      } else {
        evict_lru_until(cap() - bytes, 0, evicted);  // idle + bytes <= cap
        SizeClass& c = free_[bytes];
        c.buffers.push_back(p);
        c.last_use = ++tick_;
        idle_ += bytes;
      }
    }
    for (void* q : evicted) std::free(q);
  }

 private:
  std::size_t cap() const { return std::clamp(peak_in_use_, kPoolMinCapBytes, max_cap_); }
  // Frees whole size classes, least recently used first, until idle + extra <= limit (or
  // nothing idle is left).  Called with mu_ held; the buffers are freed by the caller.
  void evict_lru_until(std::size_t limit, std::size_t extra, std::vector<void*>& out) {
    while (!free_.empty() && idle_ + extra > limit) {
      auto victim = free_.begin();
      for (auto it = free_.begin(); it != free_.end(); ++it)
        if (it->second.last_use < victim->second.last_use) victim = it;
      idle_ -= victim->first * victim->second.buffers.size();
      out.insert(out.end(), victim->second.buffers.begin(), victim->second.buffers.end());
      free_.erase(victim);
    }
  }

  struct SizeClass {
    std::vector<void*> buffers;
    std::uint64_t last_use = 0;
  };
  std::mutex mu_;
  std::unordered_map<std::size_t, SizeClass> free_;
  std::size_t idle_ = 0, in_use_ = 0, peak_in_use_ = 0;
  std::uint64_t tick_ = 0;
  const std::size_t max_cap_ = std::max(kPoolMinCapBytes, physical_memory_bytes() / 4);
};

// Never destroyed: tensors with static storage duration may release buffers during exit.
BufferPool& pool() {
  static BufferPool* p = [] {
#if defined(__GLIBC__)
    // glibc serves blocks above its mmap threshold (128 KiB at start) with fresh mmaps, and only
    // raises that threshold after such a block is freed.  Pooled tensors are never freed, so it
    // would stay at 128 KiB and every other large temporary (Eigen's GEMM packing buffers, for
    // one) would page-fault on each call.  Fix both thresholds to what the dynamic rule would
    // reach: blocks up to 32 MiB come from the heap, which is not trimmed below 64 MiB free.
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
#endif
    return new BufferPool;
  }();
  return *p;
}

// 64-byte alignment matches Eigen::Aligned64 maps and AVX-512 loads.
std::shared_ptr<float[]> allocate(std::int64_t n) {
  std::size_t bytes = static_cast<std::size_t>(std::max<std::int64_t>(n, 1)) * sizeof(float);
  bytes = (bytes + 63) / 64 * 64;
  if (bytes >= kPoolMinBytes) {
    auto* p = static_cast<float*>(pool().take(bytes));
    if (!p) throw std::bad_alloc();
    return std::shared_ptr<float[]>(p, [bytes](float* q) { pool().give(q, bytes); });
  }
  auto* p = static_cast<float*>(std::aligned_alloc(64, bytes));
  if (!p) throw std::bad_alloc();
  return std::shared_ptr<float[]>(p, [](float* q) { std::free(q); });
}
}  // namespace

Tensor::Tensor(const Shape& shape) : storage_(allocate(shape.numel())), shape_(shape) {}

Tensor::Tensor(const Shape& shape, float fill) : Tensor(shape) { this->fill(fill); }

Tensor Tensor::from(const Shape& shape, const std::vector<float>& values) {
  if (static_cast<std::int64_t>(values.size()) != shape.numel())
    throw std::invalid_argument("Tensor::from: " + std::to_string(values.size()) +
                                " values for shape " + shape.str());
  Tensor t(shape);
  std::memcpy(t.data(), values.data(), values.size() * sizeof(float));
  return t;
}

float Tensor::item() const {
  if (numel() != 1) throw std::logic_error("Tensor::item on shape " + shape_.str());
  return data()[0];
}

MatrixMap Tensor::matrix() { return matrix(rank() > 0 ? rank() - 1 : 0); }
ConstMatrixMap Tensor::matrix() const { return matrix(rank() > 0 ? rank() - 1 : 0); }

MatrixMap Tensor::matrix(int split) {
  std::int64_t rows = 1;
  for (int i = 0; i < split; ++i) rows *= shape_[i];
  std::int64_t cols = rows ? numel() / rows : 0;
  return {data(), rows, cols};
}

ConstMatrixMap Tensor::matrix(int split) const {
  std::int64_t rows = 1;
  for (int i = 0; i < split; ++i) rows *= shape_[i];
  std::int64_t cols = rows ? numel() / rows : 0;
  return {data(), rows, cols};
}

Tensor Tensor::clone() const {
  Tensor t(shape_);
  if (numel()) std::memcpy(t.data(), data(), static_cast<std::size_t>(numel()) * sizeof(float));
  return t;
}

Tensor Tensor::reshaped(const Shape& shape) const {
  if (shape.numel() != numel())
    throw std::invalid_argument("reshape: " + shape_.str() + " -> " + shape.str() +
                                " changes the element count");
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

}  // namespace hwnas::nn
