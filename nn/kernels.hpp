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
#include <type_traits>
#include <utility>
#include <vector>

#include "nn/autograd.hpp"
#include "nn/gemm.hpp"
#include "nn/parallel.hpp"
#include "nn/scratch.hpp"
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
// The causal long convolutions' operands (causal_fft_conv, causal_direct_conv): u [B, L, C],
// k [taps, C] with 1 <= taps <= L.
inline void check_causal_conv_shapes(const char* op, const Shape& su, const Shape& sk) {
  if (su.rank() != 3) shape_error(op, su, "u must be [batch, length, channels]");
  if (sk.rank() != 2 || sk[1] != su[2] || sk[0] < 1 || sk[0] > su[1])
    shape_error(op, sk, "k must be [taps, channels] with 1 <= taps <= length, for u " + su.str());
}

// Upper bound on chunks per loop: enough to keep a many-core pool busy; fixed so that chunk
// boundaries never depend on the machine.
constexpr std::int64_t kMaxChunks = 16;

// Minimum multiply-adds per GEMM chunk: a 64x32x784 dense layer (1.6M) runs as two chunks, a
// 64x256x784 one (12.8M) as four.  At 2^22 (stop 46 and before) GEMMs under 8.4M ran on one
// thread: the first layer of a small MLP took 42 us of a 96 us step while the other core
// waited, and the mlp / attention spaces trained at 8.3x / 3.1x PyTorch (median) instead of
// 9.7x / 4.4x at 2^19 (bench/README.md, stop 47).  Chunk bounds depend on the shape only, so
// results stay the same for every thread count.
constexpr std::int64_t kGemmChunkMacs = std::int64_t{1} << 19;

// Number of chunks for `n` items costing `cost` scalar ops each.
inline std::int64_t chunk_count(std::int64_t n, std::int64_t cost) {
  const std::int64_t work = n * std::max<std::int64_t>(cost, 1);
  if (n < 2 || work < 2 * kParallelGrainFlops) return 1;
  return std::min({n, kMaxChunks, work / kParallelGrainFlops});
}

// Per-thread scratch buffers for the ops (im2col matrices, attention score tiles), three slots
// so an op can hold several at once (nn/scratch.hpp).
struct OpScratch;
inline float* scratch(std::size_t n, int slot = 0) { return thread_scratch<OpScratch, 3>(n, slot); }

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

// Strided view of an Eigen expression with direct access (maps, blocks, their transposes).
template <class E>
StridedMatrix strided(const E& e) {
  constexpr bool row_major = (std::decay_t<E>::Flags & Eigen::RowMajorBit) != 0;
  const std::int64_t inner = e.innerStride(), outer = e.outerStride();
  return row_major ? StridedMatrix{e.data(), outer, inner} : StridedMatrix{e.data(), inner, outer};
}

// gemm's `done` when nothing is to be told of finished blocks.
struct NoBlockDone {
  void operator()(std::int64_t, std::int64_t, std::int64_t, std::int64_t) const {}
};

// C (= or +=) A * B where A is [m,k] and B is [k,n] (any Eigen expressions with direct access,
// transposes included; C row-major).  Splits the larger of m and n so that the operand repacked
// per chunk is the smaller one.  Each chunk runs sgemm (nn/gemm.hpp), whose per-element
// summation order does not depend on the chunk bounds.
//
// row_bias (length n, only with accumulate == false): c = bias (broadcast over rows) + A * B, each
// chunk initialising its own block just before its GEMM adds into it (cache-warm, in parallel).
//
// done(r0, r1, c0, c1) is called once for each block of rows [r0, r1) x columns [c0, c1) of C as
// soon as it holds its result, on the thread that computed it (blocks cover C exactly once; the
// kernels report column panels of at most 96 x 32, nn/gemm.hpp's BlockDone): an elementwise pass
// over the result (a gradient mask) then reads it from L1.  NoBlockDone: none.  done runs inside
// the kernels, so it must not start parallel work or a GEMM (BlockDone).
//
// b_transform (if given) applies to B's entries as they are packed, in B's coordinates
// (sgemm_transformed): the product is then A * f(B).
template <class CM, class AM, class BM, class Done>
void gemm(CM&& c, const AM& a, const BM& b, bool accumulate, const float* row_bias, Done&& done,
          const PackTransform* b_transform = nullptr) {
  static_assert((std::decay_t<CM>::Flags & Eigen::RowMajorBit) != 0, "gemm: C must be row-major");
  const std::int64_t m = c.rows(), n = c.cols(), k = a.cols();
  if (m == 0 || n == 0) return;
  float* cd = c.data();
  const std::int64_t ldc = c.outerStride();
  const StridedMatrix av = strided(a), bv = strided(b);
  // One chunk's product, whose B starts at B's entry (p0, j0); `blocks` hears of its finished
  // blocks (chunk_done).
  auto product = [b_transform](std::int64_t m_, std::int64_t n_, std::int64_t k_, StridedMatrix a_,
                               StridedMatrix b_, std::int64_t p0, std::int64_t j0, float* c_,
                               std::int64_t ldc_, bool accumulate_, const BlockDone& blocks) {
    if (b_transform)
      sgemm_transformed(m_, n_, k_, a_, b_, *b_transform, p0, j0, c_, ldc_, accumulate_, blocks);
    else
      sgemm(m_, n_, k_, a_, b_, c_, ldc_, accumulate_, blocks);
  };
  // `done` for a chunk whose C starts at C's entry (at.r, at.c): the kernels report each panel
  // as it is finished (BlockDone), in the chunk's coordinates.
  struct Offset {
    std::remove_reference_t<Done>* done;
    std::int64_t r, c;
  };
  auto chunk_done = [](const Offset& at) {
    BlockDone blocks;
    if constexpr (!std::is_same_v<std::decay_t<Done>, NoBlockDone>)
      blocks = {
          [](const void* ctx, std::int64_t r0, std::int64_t r1, std::int64_t c0, std::int64_t c1) {
            const auto& o = *static_cast<const Offset*>(ctx);
            (*o.done)(o.r + r0, o.r + r1, o.c + c0, o.c + c1);
          },
          &at};
    return blocks;
  };
  // Rows [r0, r1) x columns [c0, c1) of C.
  auto init = [&](std::int64_t r0, std::int64_t r1, std::int64_t c0, std::int64_t c1) {
    for (std::int64_t i = r0; i < r1; ++i)
      std::copy(row_bias + c0, row_bias + c1, cd + i * ldc + c0);
  };
  if (row_bias) accumulate = true;
  if (k == 0) {
    if (row_bias)
      init(0, m, 0, n);
    else if (!accumulate)
      sgemm(m, n, 0, av, bv, cd, ldc, false);
    done(std::int64_t{0}, m, std::int64_t{0}, n);
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
            product(m, n, k1 - k0, {av.data + k0 * av.cs, av.rs, av.cs},
                    {bv.data + k0 * bv.rs, bv.rs, bv.cs}, k0, 0, part + ch * m * n, n, false,
                    BlockDone{});  // (partial sums: C is finished below)
          }
        },
        oneapi::tbb::simple_partitioner());
    if (row_bias) init(0, m, 0, n);
    for (std::int64_t ch = 0; ch < kchunks; ++ch)
      for (std::int64_t i = 0; i < m; ++i) {
        float* dst = cd + i * ldc;
        const float* src = part + (ch * m + i) * n;
        if (ch == 0 && !accumulate)
          std::copy(src, src + n, dst);
        else
          for (std::int64_t j = 0; j < n; ++j) dst[j] += src[j];
      }
    done(std::int64_t{0}, m, std::int64_t{0}, n);
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
  auto run_chunk = [&](std::int64_t b0, std::int64_t b1) {
    if (split_rows) {
      if (row_bias) init(b0, b1, 0, n);
      const Offset at{&done, b0, 0};
      product(b1 - b0, n, k, {av.data + b0 * av.rs, av.rs, av.cs}, bv, 0, 0, cd + b0 * ldc, ldc,
              accumulate, chunk_done(at));
    } else {
      if (row_bias) init(0, m, b0, b1);
      const Offset at{&done, 0, b0};
      product(m, b1 - b0, k, av, {bv.data + b0 * bv.cs, bv.rs, bv.cs}, 0, b0, cd + b0, ldc,
              accumulate, chunk_done(at));
    }
  };
  if (chunks <= 1) {
    run_chunk(0, len);
    return;
  }
  oneapi::tbb::parallel_for(
      oneapi::tbb::blocked_range<std::int64_t>(0, chunks, 1),
      [&](const oneapi::tbb::blocked_range<std::int64_t>& r) {
        for (std::int64_t ch = r.begin(); ch < r.end(); ++ch)
          run_chunk(len * ch / chunks, len * (ch + 1) / chunks);
      },
      oneapi::tbb::simple_partitioner());
}

template <class CM, class AM, class BM>
void gemm(CM&& c, const AM& a, const BM& b, bool accumulate, const float* row_bias = nullptr) {
  gemm(std::forward<CM>(c), a, b, accumulate, row_bias, NoBlockDone{});
}

// dst[i] += src[i] over n floats, on both threads for large gradients (each element is one
// independent add, so the result does not depend on the split).
inline void add_into(float* dst, const float* src, std::int64_t n) {
  parallel_range(n, 1, [&](std::int64_t i0, std::int64_t i1) {
    Eigen::Map<Eigen::ArrayXf>(dst + i0, i1 - i0) +=
        Eigen::Map<const Eigen::ArrayXf>(src + i0, i1 - i0);
  });
}

// Adds g into the node's gradient, stealing g's buffer when the gradient is still empty.
inline void accumulate_owned(Node& node, Tensor&& g) {
  if (!node.requires_grad) return;
  if (g.numel() != node.value.numel())
    throw std::logic_error("accumulate_owned: gradient " + g.shape().str() + " for a value of " +
                           node.value.shape().str());
  if (node.grad.empty() || node.grad.shape() != node.value.shape()) {
    node.grad = g.shape() == node.value.shape() ? std::move(g) : g.reshaped(node.value.shape());
    return;
  }
  add_into(node.grad.data(), g.data(), g.numel());
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
