// Single-threaded SGEMM on strided views, with kernels chosen at run time by the CPU (AVX-512 or
// AVX2+FMA on x86-64; Eigen elsewhere).  Internal to nn/: callers split the work into chunks
// themselves (detail::gemm in nn/kernels.hpp, the conv ops), so this never spawns threads.
//
// Why not Eigen's product: the library is built for a portable ISA level (x86-64-v3, AVX2), so
// Eigen's GEMM cannot use AVX-512 where the CPU has it, and two copies of Eigen compiled for two
// ISAs cannot share a program (their template instances would be merged by the linker).  These
// kernels carry their ISA in a per-function target attribute instead.
//
// Same numbers on every CPU: both x86 kernels sum each output element in the same order (K in
// fixed blocks of kGemmKc, one fused multiply-add per term in ascending k inside a block, blocks
// added to C in order), so AVX-512 and AVX2 machines train bit-identical models.  Only the
// non-x86 / pre-AVX2 fallback (Eigen) rounds differently.
#pragma once

#include <cstdint>

namespace hwnas::nn::detail {

// Element (i, j) of a matrix view is data[i * rs + j * cs].
struct StridedMatrix {
  const float* data;
  std::int64_t rs, cs;
};

// The K block length of the x86 kernels: it fixes each output element's summation order.
constexpr std::int64_t kGemmKc = 256;

enum class GemmIsa { kEigen, kAvx2, kAvx512 };

// Told of each block of C, rows [r0, r1) and columns [c0, c1) relative to c, as soon as the block
// holds its final result, on the thread that computed it; the blocks cover C exactly once.  The
// x86 kernels report each column panel (at most 96 x 32 floats) once its last K block is stored,
// so an elementwise pass over the result (a gradient mask) finds it in L1 rather than after the
// whole product.  Empty (fn null): nothing is called.  The callback runs while the kernels' pack
// buffers (per thread) are in use: it must not start parallel work or a GEMM of its own (a task
// the thread picked up while waiting could run another GEMM over those buffers).
struct BlockDone {
  void (*fn)(const void* ctx, std::int64_t r0, std::int64_t r1, std::int64_t c0,
             std::int64_t c1) = nullptr;
  const void* ctx = nullptr;
  void operator()(std::int64_t r0, std::int64_t r1, std::int64_t c0, std::int64_t c1) const {
    if (fn) fn(ctx, r0, r1, c0, c1);
  }
};

// c[i*ldc + j] = (accumulate ? c[i*ldc + j] : 0) + sum_p a(i, p) * b(p, j) for i < m, j < n;
// `done` hears of C's blocks as they are finished (BlockDone).
void sgemm(std::int64_t m, std::int64_t n, std::int64_t k, StridedMatrix a, StridedMatrix b,
           float* c, std::int64_t ldc, bool accumulate, const BlockDone& done = {});
// The same product through Eigen's (the build's ISA), whatever the kernel family: less fixed cost
// than the blocked kernels for tiny products (attention pairs of a short sequence), and not
// bit-identical to sgemm.
void sgemm_eigen(std::int64_t m, std::int64_t n, std::int64_t k, StridedMatrix a, StridedMatrix b,
                 float* c, std::int64_t ldc, bool accumulate);

// A function of B's entries applied as the kernels pack them (spaces/compress.cpp prunes and
// quantises a weight this way, instead of in a compressed copy that the optimizer's threads would
// write and every GEMM thread read again).
class PackTransform {
 public:
  virtual ~PackTransform() = default;
  // dst holds the block of B's rows [p0, p0 + kc) and columns [j0, j0 + nc) in panels nr wide:
  // dst[r * nr * kc + p * nr + jj] = b(p0 + p, j0 + r * nr + jj), zero past column j0 + nc
  // (coordinates of the transform's whole matrix).  Rewrites the block's entries in place; the
  // zero padding must stay zero.
  virtual void apply(std::int64_t p0, std::int64_t kc, std::int64_t j0, std::int64_t nc, int nr,
                     float* dst) const = 0;
};

// sgemm with `transform` applied to B's entries as they are packed; b(0, 0) is entry
// (p_base, j_base) of the transform's matrix.  The same kernels and order of terms as sgemm.
void sgemm_transformed(std::int64_t m, std::int64_t n, std::int64_t k, StridedMatrix a,
                       StridedMatrix b, const PackTransform& transform, std::int64_t p_base,
                       std::int64_t j_base, float* c, std::int64_t ldc, bool accumulate,
                       const BlockDone& done = {});

// B given by pointers: per column (B(p, j) = b_cols[j][p]), or per row in `blocks` blocks of
// block_n columns side by side, each with its own k row pointers (n = block_n * blocks,
// B(p, q*block_n + j) = b_rows[q*k + p][j]; one block is plain row pointers).  These are the
// shifted views of padded images that a stride-1 convolution's column matrix consists of,
// without copying them into one (nn/ops_conv.cpp); one GEMM over several samples' views packs A
// once for all of them.  Same kernels and summation order as the strided form.
void sgemm_b_cols(std::int64_t m, std::int64_t n, std::int64_t k, StridedMatrix a,
                  const float* const* b_cols, float* c, std::int64_t ldc, bool accumulate);
void sgemm_b_row_blocks(std::int64_t m, std::int64_t block_n, std::int64_t blocks, std::int64_t k,
                        StridedMatrix a, const float* const* b_rows, float* c, std::int64_t ldc,
                        bool accumulate);

// c[i*ldc + j] = (accumulate ? c[i*ldc + j] : 0) + sum over s < segments, k < len of
// a[i*lda + s*a_step + k] * b_rows[s*n + j][k], for i < m, j < n: both operands run along k, as
// dY's rows and the tap views do in a batch-minor convolution's weight gradient.  Register-blocked
// dot products read both in place (nothing is packed); nn/gemm_dot.cpp gives the summation order,
// the same for every kernel family (not the order of sgemm; a NaN result's sign may differ).
// c must not overlap a or the rows.
void sgemm_dot_segments(std::int64_t m, std::int64_t n, std::int64_t segments, std::int64_t len,
                        const float* a, std::int64_t lda, std::int64_t a_step,
                        const float* const* b_rows, float* c, std::int64_t ldc, bool accumulate);

// dst[j*ldd + i] = src[i*lds + j] for i < rows, j < cols: 8 x 8 blocks through registers where
// the CPU has AVX2 (the packing's transposes; partial blocks with masked loads and stores), else
// element by element.  Exact data movement; nothing else in dst is written.
void transpose(std::int64_t rows, std::int64_t cols, const float* src, std::int64_t lds, float* dst,
               std::int64_t ldd);

// The kernel family sgemm uses: the best the CPU supports, unless HWNAS_GEMM_ISA (eigen, avx2,
// avx512) asks for another at start-up or set_gemm_isa() was called.
GemmIsa gemm_isa();
// Whether this CPU (and build) can run `isa`.
bool gemm_isa_supported(GemmIsa isa);
// Forces a kernel family (tests and benches); throws std::invalid_argument if unsupported.
// Not thread-safe against concurrent sgemm calls: set it before training starts.
void set_gemm_isa(GemmIsa isa);
const char* gemm_isa_name(GemmIsa isa);

}  // namespace hwnas::nn::detail
