// Internal helpers shared by the op implementations (nn/ops_*.cpp): shape-error messages,
// deterministic chunked parallel loops and a chunked GEMM.  Not part of the public API.
//
// Determinism: every parallel loop here splits its range into chunks whose boundaries depend only
// on the problem size (never on the thread count or on scheduling), and each output element is
// written by exactly one chunk.  Reductions across chunks, where needed, are done serially in
// chunk order by the caller.  So a training run is bit-identical for a seed whatever the pool size.
#pragma once

// GCC 12 reports false -Wmaybe-uninitialized inside its own AVX-512 intrinsics when Eigen's
// vectorised exp/tanh/max are inlined (GCC bug 105593); silence it for the op files only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/partitioner.h>

#include <algorithm>
#include <cstdint>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "nn/autograd.hpp"
#include "nn/parallel.hpp"
#include "nn/tensor.hpp"

namespace hwnas::nn::detail {

[[noreturn]] inline void shape_error(const char* op, const Shape& a, const Shape& b,
                                     const std::string& why) {
  throw std::invalid_argument(std::string(op) + ": incompatible shapes " + a.str() + " and " +
                              b.str() + " (" + why + ")");
}
[[noreturn]] inline void shape_error(const char* op, const Shape& a, const std::string& why) {
  throw std::invalid_argument(std::string(op) + ": bad shape " + a.str() + " (" + why + ")");
}

// Upper bound on chunks per loop: enough to keep a many-core pool busy; fixed so that chunk
// boundaries never depend on the machine.
constexpr std::int64_t kMaxChunks = 16;

// Minimum multiply-adds per GEMM chunk (a 64x256x784 dense layer runs as two chunks).
constexpr std::int64_t kGemmChunkMacs = std::int64_t{1} << 22;

// Number of chunks for `n` items costing `cost` scalar ops each.
inline std::int64_t chunk_count(std::int64_t n, std::int64_t cost) {
  const std::int64_t work = n * std::max<std::int64_t>(cost, 1);
  if (n < 2 || work < 2 * kParallelGrainFlops) return 1;
  return std::min({n, kMaxChunks, work / kParallelGrainFlops});
}

// Per-thread scratch buffers reused across calls (im2col matrices, attention score tiles), one
// per slot so an op can hold several at once: avoids per-call heap churn.  Contents never carry
// over between uses, so reuse does not affect results.  Buffers start on a 64-byte boundary:
// Eigen peels an unaligned head into scalar code whose exp/tanh differ from the vector path in
// the last bit, so an address-dependent alignment would make results vary from run to run.
inline float* scratch(std::size_t n, int slot = 0) {
  struct Buffer {
    float* data = nullptr;
    std::size_t size = 0;
    ~Buffer() { ::operator delete[](data, std::align_val_t(64)); }
  };
  thread_local Buffer buffers[3];
  Buffer& b = buffers[slot];
  if (b.size < n) {
    ::operator delete[](b.data, std::align_val_t(64));
    b.data = static_cast<float*>(::operator new[](n * sizeof(float), std::align_val_t(64)));
    b.size = n;
  }
  return b.data;
}

// Calls fn(begin, end) over [0, n) in deterministic chunks, in parallel when worth it.
template <class F>
void parallel_range(std::int64_t n, std::int64_t cost_per_item, F&& fn) {
  const std::int64_t chunks = chunk_count(n, cost_per_item);
  if (chunks <= 1) {
    if (n > 0) fn(std::int64_t{0}, n);
    return;
  }
  oneapi::tbb::parallel_for(
      oneapi::tbb::blocked_range<std::int64_t>(0, chunks, 1),
      [&](const oneapi::tbb::blocked_range<std::int64_t>& r) {
        for (std::int64_t c = r.begin(); c < r.end(); ++c) fn(n * c / chunks, n * (c + 1) / chunks);
      },
      oneapi::tbb::simple_partitioner());
}

// Calls fn(chunk, begin, end) for each of the chunk_count(n, cost_per_item) fixed chunks of
// [0, n), in parallel when there is more than one, and returns the chunk count.  For reductions:
// fn writes per-chunk partials that the caller then combines in chunk order.
template <class F>
std::int64_t parallel_chunks(std::int64_t n, std::int64_t cost_per_item, F&& fn) {
  const std::int64_t chunks = std::max<std::int64_t>(1, chunk_count(n, cost_per_item));
  if (chunks == 1) {
    fn(std::int64_t{0}, std::int64_t{0}, n);
    return 1;
  }
  oneapi::tbb::parallel_for(
      oneapi::tbb::blocked_range<std::int64_t>(0, chunks, 1),
      [&](const oneapi::tbb::blocked_range<std::int64_t>& r) {
        for (std::int64_t c = r.begin(); c < r.end(); ++c)
          fn(c, n * c / chunks, n * (c + 1) / chunks);
      },
      oneapi::tbb::simple_partitioner());
  return chunks;
}

// C (= or +=) A * B where A is [m,k] and B is [k,n] (any Eigen expressions with direct access,
// transposes included).  Splits the larger of m and n so that the operand repacked per chunk
// is the smaller one.
//
// row_bias (length n, only with accumulate == false): c = bias (broadcast over rows) + A * B, each
// chunk initialising its own block just before its GEMM adds into it (cache-warm, in parallel).
template <class CM, class AM, class BM>
void gemm(CM&& c, const AM& a, const BM& b, bool accumulate, const float* row_bias = nullptr) {
  const std::int64_t m = c.rows(), n = c.cols(), k = a.cols();
  if (m == 0 || n == 0) return;
  auto init = [&](auto&& block, std::int64_t col0) {
    block.rowwise() = Eigen::Map<const Eigen::RowVectorXf>(row_bias + col0, block.cols());
  };
  if (row_bias) accumulate = true;
  if (k == 0) {
    if (row_bias)
      init(c, 0);
    else if (!accumulate)
      c.setZero();
    return;
  }
  const std::int64_t macs = m * n * k;
  // Long reductions into a small output (weight gradients g^T x over a large batch): splitting
  // m or n would make every chunk repack the whole of the other k-long operand, so split k
  // instead into per-chunk partial products, summed into c in chunk order (deterministic).
  if (k >= 8 * std::max(m, n) && macs >= 2 * kGemmChunkMacs && k >= 512) {
    std::int64_t kchunks = 2;
    while (kchunks * 2 <= kMaxChunks && macs / (kchunks * 2) >= kGemmChunkMacs &&
           k / (kchunks * 2) >= 256)
      kchunks *= 2;
    Tensor part_buf(Shape{static_cast<int>(kchunks * m * n)});  // pooled, every element written
    float* part = part_buf.data();
    oneapi::tbb::parallel_for(
        oneapi::tbb::blocked_range<std::int64_t>(0, kchunks, 1),
        [&](const oneapi::tbb::blocked_range<std::int64_t>& r) {
          for (std::int64_t ch = r.begin(); ch < r.end(); ++ch) {
            const std::int64_t k0 = k * ch / kchunks, k1 = k * (ch + 1) / kchunks;
            Eigen::Map<RowMatrix> pm(part + ch * m * n, m, n);
            pm.noalias() = a.middleCols(k0, k1 - k0) * b.middleRows(k0, k1 - k0);
          }
        },
        oneapi::tbb::simple_partitioner());
    if (row_bias) init(c, 0);
    if (!accumulate)
      c = Eigen::Map<const RowMatrix>(part, m, n);
    else
      c += Eigen::Map<const RowMatrix>(part, m, n);
    for (std::int64_t ch = 1; ch < kchunks; ++ch)
      c += Eigen::Map<const RowMatrix>(part + ch * m * n, m, n);
    return;
  }
  const bool split_rows = m >= n;
  const std::int64_t len = split_rows ? m : n;
  // Every chunk repacks the unsplit operand, so chunks are kept large: at least kGemmChunkMacs
  // multiply-adds and 32 rows/cols each, and a power of two so that two or four threads share
  // the chunks evenly.
  std::int64_t chunks = 1;
  while (chunks * 2 <= kMaxChunks && macs / (chunks * 2) >= kGemmChunkMacs &&
         len / (chunks * 2) >= 32)
    chunks *= 2;
  if (chunks <= 1) {
    if (row_bias) init(c, 0);
    if (accumulate)
      c.noalias() += a * b;
    else
      c.noalias() = a * b;
    return;
  }
  oneapi::tbb::parallel_for(
      oneapi::tbb::blocked_range<std::int64_t>(0, chunks, 1),
      [&](const oneapi::tbb::blocked_range<std::int64_t>& r) {
        for (std::int64_t ch = r.begin(); ch < r.end(); ++ch) {
          const std::int64_t b0 = len * ch / chunks, b1 = len * (ch + 1) / chunks;
          if (split_rows) {
            auto cb = c.middleRows(b0, b1 - b0);
            if (row_bias) init(cb, 0);
            if (accumulate)
              cb.noalias() += a.middleRows(b0, b1 - b0) * b;
            else
              cb.noalias() = a.middleRows(b0, b1 - b0) * b;
          } else {
            auto cb = c.middleCols(b0, b1 - b0);
            if (row_bias) init(cb, b0);
            if (accumulate)
              cb.noalias() += a * b.middleCols(b0, b1 - b0);
            else
              cb.noalias() = a * b.middleCols(b0, b1 - b0);
          }
        }
      },
      oneapi::tbb::simple_partitioner());
}

// Adds g into the node's gradient, stealing g's buffer when the gradient is still empty.
inline void accumulate_owned(Node& node, Tensor&& g) {
  if (!node.requires_grad) return;
  if (node.grad.empty() || node.grad.shape() != node.value.shape()) {
    node.grad = g.shape() == node.value.shape() ? std::move(g) : g.reshaped(node.value.shape());
    return;
  }
  node.grad.array() += g.array();
}

inline Node& parent(Node& self, std::size_t i) { return *self.parents[i]; }

// Full multi-head self-attention on a fused projection qkv = [B, L, 3*d_model] (q, k, v side by
// side along the last dim, as MultiHeadSelfAttention's single in-projection produces them).
// Same values as split + multi_head_attention, without the three split copies, their backward
// scatters and the zero-filled q/k/v gradients (nn/ops_attention.cpp).
Var fused_qkv_attention(const Var& qkv, int heads, bool causal);

// The node's gradient buffer for an op to write into.  When the node has no gradient yet a fresh,
// uninitialised buffer is installed and `fresh` is set: the caller must then overwrite every
// element (no zero-fill pass); otherwise the existing gradient is returned and the caller adds.
inline float* grad_buffer(Node& node, bool& fresh) {
  fresh = node.grad.empty() || node.grad.shape() != node.value.shape();
  if (fresh) node.grad = Tensor(node.value.shape());
  return node.grad.data();
}

}  // namespace hwnas::nn::detail
