// nn/gemm: every kernel family against a double-precision reference on shapes that hit each
// edge (partial MR / NR tiles, several K blocks, several M and N blocks), every operand layout
// (row-major, transposed, generally strided) and both store modes; the AVX-512 and AVX2 kernels
// bit-identical to each other (the promise that makes training reproducible across machines),
// also through a conv2d training step; finished blocks reported once, with their final values; and
// the HWNAS_GEMM_ISA / set_gemm_isa errors.
#include <gtest/gtest.h>

#include <cmath>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "nn/gemm.hpp"
#include "nn/kernels.hpp"
#include "nn/ops.hpp"
#include "tests/nn/gradcheck.hpp"

namespace hwnas::nn {
namespace {

using detail::GemmIsa;
using detail::StridedMatrix;

// Restores the process's kernel family when a test that forces one ends.
struct IsaGuard {
  GemmIsa saved = detail::gemm_isa();
  ~IsaGuard() { detail::set_gemm_isa(saved); }
};

enum class Layout { kRowMajor, kTransposed, kStrided };

// A [rows, cols] operand stored in `buf` in the given layout (strided: every other element of
// a row-major matrix with padded rows).
StridedMatrix make_operand(Layout layout, std::int64_t rows, std::int64_t cols,
                           std::vector<float>& buf, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  StridedMatrix v{};
  switch (layout) {
    case Layout::kRowMajor:
      buf.assign(rows * cols, 0.0f);
      v = {buf.data(), cols, 1};
      break;
    case Layout::kTransposed:
      buf.assign(rows * cols, 0.0f);
      v = {buf.data(), 1, rows};
      break;
    case Layout::kStrided:
      buf.assign(rows * (2 * cols + 3), 0.0f);
      v = {buf.data(), 2 * cols + 3, 2};
      break;
  }
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < cols; ++j) buf[i * v.rs + j * v.cs] = u(rng);
  return v;
}

struct Shape3 {
  std::int64_t m, n, k;
};

// Shapes around the kernels' tile sizes (8x32 and 6x16), the K block (256) and the M / N blocks;
// 1 and 3 rows run the narrower row kernels (a batch-1 dense layer).
const std::vector<Shape3> kShapes = {{1, 1, 1},
                                     {5, 7, 3},
                                     {8, 32, 16},
                                     {6, 16, 256},
                                     {13, 45, 257},
                                     {33, 100, 600},
                                     {97, 31, 70},
                                     {200, 2100, 9},
                                     {17, 3, 513},
                                     {64, 512, 300},
                                     {1, 512, 784},
                                     {3, 40, 20},
                                     // both sides of the in-place row-block threshold (4 tiles)
                                     {24, 70, 40},
                                     {25, 70, 40},
                                     {32, 70, 40},
                                     {33, 70, 40}};

void check_family(GemmIsa isa) {
  IsaGuard guard;
  detail::set_gemm_isa(isa);
  std::mt19937 rng(7);
  for (const Shape3& s : kShapes)
    for (Layout la : {Layout::kRowMajor, Layout::kTransposed, Layout::kStrided})
      for (Layout lb : {Layout::kRowMajor, Layout::kTransposed, Layout::kStrided})
        for (bool accumulate : {false, true}) {
          std::vector<float> abuf, bbuf;
          const StridedMatrix a = make_operand(la, s.m, s.k, abuf, rng);
          const StridedMatrix b = make_operand(lb, s.k, s.n, bbuf, rng);
          const std::int64_t ldc = s.n + 5;  // C with padded rows: the padding must stay put
          std::vector<float> c(s.m * ldc, 0.0f);
          for (float& v : c) v = std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng);
          const std::vector<float> c0 = c;
          detail::sgemm(s.m, s.n, s.k, a, b, c.data(), ldc, accumulate);
          for (std::int64_t i = 0; i < s.m; ++i)
            for (std::int64_t j = 0; j < ldc; ++j) {
              const float got = c[i * ldc + j];
              if (j >= s.n) {
                ASSERT_EQ(got, c0[i * ldc + j]) << "padding column overwritten";
                continue;
              }
              double want = accumulate ? c0[i * ldc + j] : 0.0, mag = std::abs(want);
              for (std::int64_t p = 0; p < s.k; ++p) {
                const double t = double(a.data[i * a.rs + p * a.cs]) * b.data[p * b.rs + j * b.cs];
                want += t;
                mag += std::abs(t);
              }
              ASSERT_NEAR(got, want, 1e-6 * mag + 1e-6)
                  << detail::gemm_isa_name(isa) << " m=" << s.m << " n=" << s.n << " k=" << s.k
                  << " layouts " << int(la) << int(lb) << " accumulate=" << accumulate << " at ("
                  << i << "," << j << ")";
            }
        }
}

TEST(Gemm, EigenFallbackMatchesTheReference) { check_family(GemmIsa::kEigen); }

TEST(Gemm, Avx2KernelMatchesTheReference) {
  if (!detail::gemm_isa_supported(GemmIsa::kAvx2)) GTEST_SKIP() << "no AVX2+FMA on this CPU";
  check_family(GemmIsa::kAvx2);
}

TEST(Gemm, Avx512KernelMatchesTheReference) {
  if (!detail::gemm_isa_supported(GemmIsa::kAvx512)) GTEST_SKIP() << "no AVX-512 on this CPU";
  check_family(GemmIsa::kAvx512);
}

std::string shape_text(const Shape3& s) {
  return " m=" + std::to_string(s.m) + " n=" + std::to_string(s.n) + " k=" + std::to_string(s.k);
}

// Records what a BlockDone is told: how often each element of C was reported, and its value then
// (which must already be the final one: an elementwise pass at that moment sees the result).
struct BlockLog {
  std::int64_t m, n, ldc;
  const float* c;
  std::vector<int> times;
  std::vector<float> seen;
  BlockLog(std::int64_t m_, std::int64_t n_, std::int64_t ldc_, const float* c_)
      : m(m_), n(n_), ldc(ldc_), c(c_), times(m_ * n_, 0), seen(m_ * n_, 0.0f) {}
  void operator()(std::int64_t r0, std::int64_t r1, std::int64_t c0, std::int64_t c1) {
    ASSERT_TRUE(0 <= r0 && r0 <= r1 && r1 <= m && 0 <= c0 && c0 <= c1 && c1 <= n)
        << "block [" << r0 << ", " << r1 << ") x [" << c0 << ", " << c1 << ") outside C";
    for (std::int64_t i = r0; i < r1; ++i)
      for (std::int64_t j = c0; j < c1; ++j) {
        ++times[i * n + j];
        seen[i * n + j] = c[i * ldc + j];
      }
  }
  // This log as a BlockDone (sgemm's callback).
  detail::BlockDone reporter() {
    return {
        [](const void* ctx, std::int64_t r0, std::int64_t r1, std::int64_t c0, std::int64_t c1) {
          (*static_cast<BlockLog*>(const_cast<void*>(ctx)))(r0, r1, c0, c1);
        },
        this};
  }
  void expect_final(const std::string& where) const {
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) {
        ASSERT_EQ(times[i * n + j], 1) << where << ": element (" << i << "," << j << ") reported";
        ASSERT_EQ(seen[i * n + j], c[i * ldc + j])
            << where << ": (" << i << "," << j << ") reported before its last K block";
      }
  }
};

// The kernels report column panels as their last K block lands (nn/gemm.hpp's BlockDone); the
// chunked gemm (nn/kernels.hpp) maps them to C's coordinates, and its K-split path reports C once
// the partial products are summed.  Every family, every shape above (one and several K blocks,
// the panel and the blocked loop nests), both store modes; and the chunked gemm on shapes that
// split rows, columns and K over threads.
TEST(Gemm, FinishedBlocksAreReportedOnceWithTheirFinalValues) {
  std::mt19937 rng(5);
  for (GemmIsa isa : {GemmIsa::kEigen, GemmIsa::kAvx2, GemmIsa::kAvx512}) {
    if (!detail::gemm_isa_supported(isa)) continue;
    IsaGuard guard;
    detail::set_gemm_isa(isa);
    std::vector<Shape3> shapes = kShapes;
    shapes.push_back({100, 40, 600});  // the blocked loop nest (m > 96) over several K blocks
    for (const Shape3& s : shapes)
      for (bool accumulate : {false, true}) {
        std::vector<float> abuf, bbuf;
        const StridedMatrix a = make_operand(Layout::kRowMajor, s.m, s.k, abuf, rng);
        const StridedMatrix b = make_operand(Layout::kTransposed, s.k, s.n, bbuf, rng);
        const std::int64_t ldc = s.n + 3;
        std::vector<float> c(s.m * ldc, 0.25f);
        BlockLog log(s.m, s.n, ldc, c.data());
        detail::sgemm(s.m, s.n, s.k, a, b, c.data(), ldc, accumulate, log.reporter());
        log.expect_final(std::string(detail::gemm_isa_name(isa)) + " sgemm" + shape_text(s));
      }
    // Through sgemm_transformed (its own Eigen fallback), and products with nothing to multiply.
    struct Identity final : detail::PackTransform {
      void apply(std::int64_t, std::int64_t, std::int64_t, std::int64_t, int,
                 float*) const override {}
    } identity;
    for (const Shape3& s : std::vector<Shape3>{
             {33, 100, 600}, {100, 40, 600}, {5, 7, 3}, {4, 5, 0}, {0, 5, 3}, {4, 0, 3}}) {
      std::vector<float> abuf, bbuf;
      const StridedMatrix a = make_operand(Layout::kRowMajor, s.m, s.k, abuf, rng);
      const StridedMatrix b = make_operand(Layout::kTransposed, s.k, s.n, bbuf, rng);
      for (bool transformed : {false, true}) {
        std::vector<float> c(s.m * s.n, 0.25f);
        BlockLog log(s.m, s.n, s.n, c.data());
        if (transformed)
          detail::sgemm_transformed(s.m, s.n, s.k, a, b, identity, 0, 0, c.data(), s.n, false,
                                    log.reporter());
        else
          detail::sgemm(s.m, s.n, s.k, a, b, c.data(), s.n, false, log.reporter());
        log.expect_final(std::string(detail::gemm_isa_name(isa)) +
                         (transformed ? " sgemm_transformed" : " sgemm") + shape_text(s));
      }
    }
    // 64x32 by K 784 splits K; 32x784 by K 64 splits columns; 784x32 by K 64 splits rows.
    for (const Shape3& s : std::vector<Shape3>{{64, 32, 784}, {32, 784, 64}, {784, 32, 64}}) {
      Eigen::MatrixXf a = Eigen::MatrixXf::Random(s.m, s.k), b = Eigen::MatrixXf::Random(s.k, s.n);
      Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> c(s.m, s.n);
      std::mutex lock;  // (the chunks report from their own threads)
      BlockLog log(s.m, s.n, s.n, c.data());
      detail::gemm(c, a, b, false, nullptr,
                   [&](std::int64_t r0, std::int64_t r1, std::int64_t c0, std::int64_t c1) {
                     std::lock_guard<std::mutex> hold(lock);
                     log(r0, r1, c0, c1);
                   });
      log.expect_final(std::string(detail::gemm_isa_name(isa)) + " chunked gemm" + shape_text(s));
    }
  }
}

std::vector<float> run_family(GemmIsa isa, const Shape3& s, bool accumulate) {
  IsaGuard guard;
  detail::set_gemm_isa(isa);
  std::mt19937 rng(11);
  std::vector<float> abuf, bbuf;
  const StridedMatrix a = make_operand(Layout::kRowMajor, s.m, s.k, abuf, rng);
  const StridedMatrix b = make_operand(Layout::kTransposed, s.k, s.n, bbuf, rng);
  std::vector<float> c(s.m * s.n, 0.5f);
  detail::sgemm(s.m, s.n, s.k, a, b, c.data(), s.n, accumulate);
  return c;
}

TEST(Gemm, Avx512AndAvx2KernelsAgreeBitForBit) {
  if (!detail::gemm_isa_supported(GemmIsa::kAvx512))
    GTEST_SKIP() << "needs a CPU with AVX-512 (to run both kernels)";
  for (const Shape3& s : kShapes)
    for (bool accumulate : {false, true})
      ASSERT_EQ(run_family(GemmIsa::kAvx512, s, accumulate),
                run_family(GemmIsa::kAvx2, s, accumulate))
          << "m=" << s.m << " n=" << s.n << " k=" << s.k;
}

// One conv2d + linear training step's loss and gradients under a kernel family.
std::vector<float> conv_step(GemmIsa isa) {
  IsaGuard guard;
  detail::set_gemm_isa(isa);
  std::mt19937_64 rng(3);
  Var x = constant(testing::random_tensor(Shape{6, 5, 12, 12}, rng));
  Var w = parameter(testing::random_tensor(Shape{16, 5, 3, 3}, rng));
  Var b = parameter(testing::random_tensor(Shape{16}, rng));
  Var lw = parameter(testing::random_tensor(Shape{10, 16 * 6 * 6}, rng));
  Conv2dOptions o;
  o.stride = 2;
  o.padding = 1;
  Var h = relu(conv2d(x, w, b, o));
  Var logits = linear(reshape(h, Shape{6, 16 * 6 * 6}), lw, Var());
  Var loss = sum(mul(logits, logits));
  backward(loss);
  std::vector<float> out{loss.value().data()[0]};
  for (const Var* v : {&w, &b, &lw})
    out.insert(out.end(), v->grad().data(), v->grad().data() + v->grad().numel());
  return out;
}

TEST(Gemm, ConvTrainingStepIsBitIdenticalAcrossKernelFamilies) {
  if (!detail::gemm_isa_supported(GemmIsa::kAvx512))
    GTEST_SKIP() << "needs a CPU with AVX-512 (to run both kernels)";
  EXPECT_EQ(conv_step(GemmIsa::kAvx512), conv_step(GemmIsa::kAvx2));
}

// sgemm_dot_segments (a batch-minor convolution's weight gradient): every kernel family against
// a double-precision reference, on shapes with edge tiles (m, n not multiples of 4 x 6 or 2 x 3),
// segments not a multiple of 16 long (masked tails) and both store modes; and the families bit
// for bit equal, since they share one summation order.
std::vector<float> dot_family(GemmIsa isa, std::int64_t m, std::int64_t n, std::int64_t segments,
                              std::int64_t len, bool accumulate, std::vector<double>* reference) {
  IsaGuard guard;
  detail::set_gemm_isa(isa);
  std::mt19937 rng(static_cast<unsigned>(m * 131 + n * 7 + len));
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const std::int64_t lda = segments * len + 3, ldc = n + 2;
  std::vector<float> a(static_cast<std::size_t>(m * lda)), c(static_cast<std::size_t>(m * ldc));
  std::vector<std::vector<float>> rows(static_cast<std::size_t>(segments * n));
  std::vector<const float*> b_rows;
  for (float& v : a) v = u(rng);
  for (float& v : c) v = u(rng);
  for (auto& r : rows) {
    r.resize(static_cast<std::size_t>(len));
    for (float& v : r) v = u(rng);
    b_rows.push_back(r.data());
  }
  if (reference) {
    reference->assign(static_cast<std::size_t>(m * n), 0.0);
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) {
        double sum = accumulate ? c[static_cast<std::size_t>(i * ldc + j)] : 0.0;
        for (std::int64_t seg = 0; seg < segments; ++seg)
          for (std::int64_t k = 0; k < len; ++k)
            sum += static_cast<double>(a[static_cast<std::size_t>(i * lda + seg * len + k)]) *
                   rows[static_cast<std::size_t>(seg * n + j)][static_cast<std::size_t>(k)];
        (*reference)[static_cast<std::size_t>(i * n + j)] = sum;
      }
  }
  detail::sgemm_dot_segments(m, n, segments, len, a.data(), lda, len, b_rows.data(), c.data(), ldc,
                             accumulate);
  std::vector<float> out;
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j) out.push_back(c[static_cast<std::size_t>(i * ldc + j)]);
  return out;
}

TEST(Gemm, DotSegmentsMatchTheReferenceAndAgreeAcrossFamilies) {
  struct Case {
    std::int64_t m, n, segments, len;
  };
  const Case cases[] = {{1, 1, 1, 1},      {4, 6, 1, 16}, {9, 13, 3, 37},
                        {24, 600, 7, 112}, {5, 7, 2, 8},  {3, 2, 0, 5}};
  for (const Case& k : cases)
    for (bool accumulate : {false, true}) {
      std::vector<double> want;
      const std::vector<float> portable =
          dot_family(GemmIsa::kEigen, k.m, k.n, k.segments, k.len, accumulate, &want);
      for (std::size_t e = 0; e < want.size(); ++e)
        ASSERT_NEAR(portable[e], want[e], 1e-4 * (1 + std::sqrt(k.segments * k.len)))
            << "m=" << k.m << " n=" << k.n << " entry " << e;
      for (GemmIsa isa : {GemmIsa::kAvx2, GemmIsa::kAvx512}) {
        if (!detail::gemm_isa_supported(isa)) continue;
        EXPECT_EQ(dot_family(isa, k.m, k.n, k.segments, k.len, accumulate, nullptr), portable)
            << detail::gemm_isa_name(isa) << " m=" << k.m << " n=" << k.n
            << " segments=" << k.segments << " len=" << k.len;
      }
    }
}

// B as a table of row pointers or of column pointers gives the strided form's numbers bit for
// bit (the conv's shifted image views use these).
TEST(Gemm, PointerTableOperandsGiveTheStridedNumbers) {
  for (GemmIsa isa : {GemmIsa::kEigen, GemmIsa::kAvx2, GemmIsa::kAvx512}) {
    if (!detail::gemm_isa_supported(isa)) continue;
    IsaGuard guard;
    detail::set_gemm_isa(isa);
    std::mt19937 rng(21);
    for (const Shape3& s : kShapes)
      for (bool accumulate : {false, true}) {
        std::vector<float> abuf, rbuf, cbuf;
        const StridedMatrix a = make_operand(Layout::kRowMajor, s.m, s.k, abuf, rng);
        const StridedMatrix br = make_operand(Layout::kRowMajor, s.k, s.n, rbuf, rng);
        const StridedMatrix bc = make_operand(Layout::kTransposed, s.k, s.n, cbuf, rng);
        std::vector<const float*> rows(static_cast<std::size_t>(s.k)),
            cols(static_cast<std::size_t>(s.n));
        for (std::int64_t p = 0; p < s.k; ++p)
          rows[static_cast<std::size_t>(p)] = br.data + p * br.rs;
        for (std::int64_t j = 0; j < s.n; ++j)
          cols[static_cast<std::size_t>(j)] = bc.data + j * bc.cs;
        std::vector<float> want(s.m * s.n, 0.5f), got(s.m * s.n, 0.5f);
        detail::sgemm(s.m, s.n, s.k, a, br, want.data(), s.n, accumulate);
        // B by row pointers, whole (one block) and cut into column blocks with a row table each
        // (several samples' grids side by side); panels straddle block edges whenever the block
        // width is not a multiple of the kernel's.  Shapes up to four row tiles tall read B in
        // place (full panels unpacked, a block's partial panel packed), taller ones pack it:
        // both must equal sgemm bit for bit.
        for (std::int64_t blocks : {1, 2, 3, 5, 7}) {
          if (s.n % blocks != 0) continue;
          const std::int64_t block_n = s.n / blocks;
          // Every block row in its own allocation of exactly block_n floats, so a read past a
          // row's end is a read out of bounds (caught under ASan), not a neighbour's values.
          std::vector<std::vector<float>> own;
          std::vector<const float*> block_rows;
          for (std::int64_t q = 0; q < blocks; ++q)
            for (std::int64_t p = 0; p < s.k; ++p) {
              own.emplace_back(rows[p] + q * block_n, rows[p] + (q + 1) * block_n);
              block_rows.push_back(own.back().data());
            }
          std::fill(got.begin(), got.end(), 0.5f);
          detail::sgemm_b_row_blocks(s.m, block_n, blocks, s.k, a, block_rows.data(), got.data(),
                                     s.n, accumulate);
          ASSERT_EQ(got, want) << "row blocks " << detail::gemm_isa_name(isa) << " m=" << s.m
                               << " n=" << s.n << " k=" << s.k << " blocks=" << blocks;
        }
        std::fill(want.begin(), want.end(), 0.5f);
        std::fill(got.begin(), got.end(), 0.5f);
        detail::sgemm(s.m, s.n, s.k, a, bc, want.data(), s.n, accumulate);
        detail::sgemm_b_cols(s.m, s.n, s.k, a, cols.data(), got.data(), s.n, accumulate);
        ASSERT_EQ(got, want) << "cols " << detail::gemm_isa_name(isa) << " m=" << s.m
                             << " n=" << s.n << " k=" << s.k;
      }
  }
}

TEST(Gemm, ForcingAnUnsupportedFamilyIsRefusedAndTheNamesRoundTrip) {
  EXPECT_STREQ(detail::gemm_isa_name(GemmIsa::kAvx512), "avx512");
  EXPECT_STREQ(detail::gemm_isa_name(GemmIsa::kAvx2), "avx2");
  EXPECT_STREQ(detail::gemm_isa_name(GemmIsa::kEigen), "eigen");
  EXPECT_TRUE(detail::gemm_isa_supported(GemmIsa::kEigen));
  for (GemmIsa isa : {GemmIsa::kAvx2, GemmIsa::kAvx512}) {
    if (detail::gemm_isa_supported(isa)) continue;
    try {
      detail::set_gemm_isa(isa);
      ADD_FAILURE() << "set_gemm_isa accepted an unsupported family";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(detail::gemm_isa_name(isa)), std::string::npos);
    }
  }
}

TEST(Gemm, EmptyReductionZeroesOrKeepsC) {
  std::vector<float> c = {1, 2, 3, 4};
  detail::sgemm(2, 2, 0, {nullptr, 0, 1}, {nullptr, 2, 1}, c.data(), 2, true);
  EXPECT_EQ(c, (std::vector<float>{1, 2, 3, 4}));
  detail::sgemm(2, 2, 0, {nullptr, 0, 1}, {nullptr, 2, 1}, c.data(), 2, false);
  EXPECT_EQ(c, (std::vector<float>{0, 0, 0, 0}));
}

// Every remainder of the 8 x 8 register blocks in both directions, padded strides: each element
// lands where it belongs and the padding around it (which masked stores must skip) is untouched.
TEST(Gemm, TransposeMovesEveryElementAndNothingElse) {
  for (std::int64_t rows = 1; rows <= 19; ++rows)
    for (std::int64_t cols = 1; cols <= 19; ++cols) {
      const std::int64_t lds = cols + 3, ldd = rows + 5;
      std::vector<float> src(static_cast<std::size_t>(rows * lds));
      for (std::size_t i = 0; i < src.size(); ++i) src[i] = static_cast<float>(i) + 0.5f;
      std::vector<float> dst(static_cast<std::size_t>(cols * ldd + 8), -1.0f);
      detail::transpose(rows, cols, src.data(), lds, dst.data(), ldd);
      for (std::int64_t j = 0; j < cols; ++j)
        for (std::int64_t i = 0; i < ldd; ++i)
          ASSERT_EQ(dst[j * ldd + i], i < rows ? src[i * lds + j] : -1.0f)
              << rows << "x" << cols << " at (" << j << ", " << i << ")";
      for (std::int64_t t = cols * ldd; t < static_cast<std::int64_t>(dst.size()); ++t)
        ASSERT_EQ(dst[t], -1.0f) << rows << "x" << cols;
    }
}

}  // namespace
}  // namespace hwnas::nn
