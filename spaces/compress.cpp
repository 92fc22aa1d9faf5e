#include "spaces/compress.hpp"

#include <oneapi/tbb/parallel_for.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "nn/gemm.hpp"
#include "nn/ops.hpp"
#include "nn/x86_targets.hpp"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace hwnas::spaces {

namespace {

// Inference reuses the compressed weights within one no-grad session (validation, latency
// timing), as a deployed model would hold them, instead of re-pruning on every forward pass;
// that per-pass cost would otherwise inflate the measured host latency of compressed nets.
struct CacheEntry {
  std::weak_ptr<nn::Node> source;  // expired or different: the weights it was made from are gone
  std::uint64_t session = 0;
  int bits = 0;
  double prune = 0;
  nn::Var compressed;
};
thread_local std::unordered_map<const nn::Node*, CacheEntry> t_cache;

// prune_selection_stats()'s counters.
struct SelectionCounters {
  std::atomic<std::uint64_t> band_selections{0}, full_selections{0}, band_keys{0}, bin_keys{0};
};
SelectionCounters g_selections;

// set_packed_compression's switch.
std::atomic<bool> g_packing{true};

// Symmetric quantisation needs levels on both sides of zero: 1 bit has none (qmax = 0).
void check_bits(int bits) {
  if (bits < 2)
    throw std::invalid_argument("compress_weight: bits " + std::to_string(bits) +
                                " has no symmetric levels (2^(bits-1) - 1 = 0); use 2 to 8, or "
                                ">= 16 for float");
}

// The scale of a channel whose largest kept magnitude is maxabs: maxabs / qmax, or 1 when that is
// 0 (an all-zero channel, or one whose largest value is a subnormal the division flushes to 0:
// scale 0 would turn its entries into NaN; with 1 they round to 0).
float channel_scale(float maxabs, float qmax) {
  const float s = maxabs / qmax;
  return s > 0 ? s : 1.0f;
}

}  // namespace

std::vector<float> quantisation_scales(const nn::Tensor& w, int bits) {
  if (bits >= 16 || w.numel() == 0) return {};
  check_bits(bits);
  // Per output channel (dim 0 of a dense [out, in] or conv [out, in/g, kh, kw] weight), as
  // int8/int4 deployment runtimes quantise weights: one large channel no longer flattens
  // every other channel's values onto a few levels.  Vectors (biases, scales) get one scale.
  const float qmax = static_cast<float>((1 << (bits - 1)) - 1);
  const std::int64_t channels = w.shape().rank() >= 2 ? w.shape()[0] : 1;
  const std::int64_t per = w.numel() / channels;
  std::vector<float> scales(static_cast<std::size_t>(channels));
  for (std::int64_t c = 0; c < channels; ++c) {
    float maxabs = 0;
    for (std::int64_t i = 0; i < per; ++i)
      maxabs = std::max(maxabs, std::fabs(w.data()[c * per + i]));
    scales[static_cast<std::size_t>(c)] = channel_scale(maxabs, qmax);
  }
  return scales;
}

PruneSelectionStats prune_selection_stats() {
  PruneSelectionStats s;
  s.band_selections = g_selections.band_selections.load(std::memory_order_relaxed);
  s.full_selections = g_selections.full_selections.load(std::memory_order_relaxed);
  s.band_keys = g_selections.band_keys.load(std::memory_order_relaxed);
  s.bin_keys = g_selections.bin_keys.load(std::memory_order_relaxed);
  return s;
}

void reset_prune_selection_stats() {
  g_selections.band_selections.store(0, std::memory_order_relaxed);
  g_selections.full_selections.store(0, std::memory_order_relaxed);
  g_selections.band_keys.store(0, std::memory_order_relaxed);
  g_selections.bin_keys.store(0, std::memory_order_relaxed);
}

int kept_channels(int full, double ratio) {
  return std::max(1, static_cast<int>(std::lround(full * (1.0 - ratio))));
}

namespace {

// ---- magnitude pruning, exact and cheap enough to run on every training step ----
//
// The pruned set is the k entries smallest in (|w|, index) order.  For a non-NaN float the low 31
// bits of its pattern order |w| as the floats do, so (bits << 32 | index) is one integer key per
// entry whose order is exactly that one; the k-th smallest key (the boundary) decides every
// entry: pruned iff its key <= boundary.

using MagnitudeKey = std::uint32_t;
inline MagnitudeKey magnitude_key(float v) { return std::bit_cast<MagnitudeKey>(v) & 0x7fffffffu; }
inline std::uint64_t order_key(MagnitudeKey m, std::int64_t i) {
  return (std::uint64_t{m} << 32) | static_cast<std::uint64_t>(i);
}

// The passes over a weight split it into pieces of this many entries, run in parallel: a pass
// is a few instructions per entry, and the weight was just written by the optimizer's threads.
// Small enough that a small layer's weight (784 x 32) is split too: the step waits for these
// passes, and one thread alone on them left the other idle (2^15: 8-30% slower whole steps on
// such MLPs; 2^12: no faster than 2^13).  Results do not depend on the split.
constexpr std::int64_t kPiece = std::int64_t{1} << 13;
constexpr std::int64_t kMaskPiece = std::int64_t{1} << 15;  // the gradient mask's pieces

// Calls fn(t) for each task t in [0, tasks), in parallel when there are several.
template <class F>
void for_tasks(std::int64_t tasks, F&& fn) {
  if (tasks == 1)
    fn(std::int64_t{0});
  else if (tasks > 1)
    oneapi::tbb::parallel_for(std::int64_t{0}, tasks, fn);
}

// Calls fn(begin, end) over [0, n) in equal pieces (16-entry multiples) of at most about
// max_piece entries, in parallel: equal, so that two pieces keep both threads busy until the end
// (784 x 64 in pieces of 2^15 ran 65 % of it on one thread).
template <class F>
void for_pieces(std::int64_t n, std::int64_t max_piece, F&& fn) {
  const std::int64_t pieces = (n + max_piece - 1) / max_piece;
  auto bound = [&](std::int64_t p) {
    return p == pieces ? n : (n * p / pieces) & ~std::int64_t{15};
  };
  for_tasks(pieces, [&](std::int64_t p) { fn(bound(p), bound(p + 1)); });
}

// For each 8-bit mask, the positions of its set bits packed to the front (the AVX2 left-pack).
struct LeftPackTable {
  alignas(32) std::uint32_t lanes[256][8];
  LeftPackTable() {
    for (int m = 0; m < 256; ++m) {
      int k = 0;
      for (int b = 0; b < 8; ++b)
        if (m >> b & 1) lanes[m][k++] = static_cast<std::uint32_t>(b);
      for (; k < 8; ++k) lanes[m][k] = 0;
    }
  }
};

// Between optimizer steps the weights move a little, so the boundary stays among the entries
// whose magnitudes lay near it last time.  A weight remembers a band of magnitudes [lo, hi) around
// its last boundary, about half_width entries on each side: one vectorised counting pass over the
// weight then finds the boundary among the few entries in the band, and the band is centred on
// the new boundary for the next step.  When the boundary has left the band (or the first time), a
// full selection runs and the band widens; while the boundary stays well inside, it narrows.  The
// band changes only speed, never the result.
struct PruneBand {
  MagnitudeKey lo = 0, hi = 0;
  MagnitudeKey mid = 0;         // the last boundary's magnitude key, where the band's bins split
  std::int64_t half_width = 0;  // in entries, on each side of the boundary
  bool valid = false;
};
thread_local std::unordered_map<const nn::Node*, PruneBand> t_bands;

// A band edge whose rank lies past the keys known this step, extrapolated from the density of
// the keys between the boundary b (at rank `at`) and the old bound, so that a boundary drifting
// steadily one way (pruned weights shrinking under weight decay, say) is still centred next step.
MagnitudeKey extrapolated_lo(float b, MagnitudeKey lo_floor, std::int64_t half_width,
                             std::int64_t at) {
  const float span = b - std::bit_cast<float>(lo_floor);
  const MagnitudeKey lo =
      magnitude_key(std::max(0.0f, b - span * static_cast<float>(half_width) /
                                           static_cast<float>(std::max<std::int64_t>(at, 1))));
  return std::min(lo, lo_floor);
}
MagnitudeKey extrapolated_hi(float b, MagnitudeKey hi_ceiling, std::int64_t half_width,
                             std::int64_t above) {  // `above`: known keys ranked above b
  if (hi_ceiling > 0x7f800000u) return hi_ceiling;  // a ceiling above every key stays
  const float span = std::bit_cast<float>(hi_ceiling - 1) - b;
  const float edge = b + span * static_cast<float>(half_width) /
                             static_cast<float>(std::max<std::int64_t>(above, 1));
  return std::max(hi_ceiling, std::min<MagnitudeKey>(magnitude_key(edge), 0x7f800000u) + 1);
}

// The narrowest band: a miss costs a full selection over n entries (and doubles the band), a
// wide band a histogram over its own entries on every step, so the band never narrows below 1.6%
// of the weight (256 entries a side at least).
std::int64_t min_half_width(std::int64_t n) {
  // (At least 1: a band that never widens would miss on every step of a tiny weight.)
  return std::max<std::int64_t>({1, n / 64, std::min<std::int64_t>(256, n / 16)});
}

// Keys binned into kBins ranges (by a multiply, not a division per key): the boundary is selected
// among one bin's few entries, and the next band's edges are read off the counts.  Bins [0, split)
// divide [lo, mid) equally and bins [split, kBins) divide [mid, hi): a band's bins split at the
// last boundary, because training piles the pruned magnitudes up just under it (weight decay
// shrinks them together, and each step adds the kept entries that fell through): with equal bins
// over the whole band, 1,000-1,700 of a 25k-entry weight's 1,500-2,000 band entries sat in its
// lowest bin, and selecting among them took most of the step's pruning time.
constexpr int kBins = 64;
struct BandBins {
  MagnitudeKey lo, mid, hi;
  int split;
  // Below mid: bin(m) = (m - lo) * mul_lo >> 32, < split for every m < mid; above: split +
  // (m - mid) * mul_hi >> 32, < kBins for every m < hi.  The products stay below split << 32
  // and (kBins - split) << 32 <= 2^38, so 64 bits hold them.
  std::uint64_t mul_lo, mul_hi;
  // kBins equal bins over [lo, hi).
  BandBins(MagnitudeKey lo_, MagnitudeKey hi_) : BandBins(lo_, lo_, hi_, 0) {}
  // split bins under mid and the rest over it; equal bins over [lo, hi) unless lo < mid < hi.
  BandBins(MagnitudeKey lo_, MagnitudeKey mid_, MagnitudeKey hi_, int split_)
      : lo(lo_), mid(mid_), hi(hi_), split(split_) {
    if (!(lo < mid && mid < hi)) {
      mid = lo;
      split = 0;
    }
    mul_lo = split > 0 ? (static_cast<std::uint64_t>(split) << 32) / (std::uint64_t{mid} - lo) : 0;
    mul_hi = (static_cast<std::uint64_t>(kBins - split) << 32) / (std::uint64_t{hi} - mid);
  }
  int bin(MagnitudeKey m) const {
    // The half's operands are selected by masks, then multiplied once: no branch (keys fall on
    // either side of mid unpredictably, and GCC turned ?: selects of them into a branch).
    const std::uint64_t below = 0 - static_cast<std::uint64_t>(m < mid);  // all ones under mid
    const auto base = static_cast<MagnitudeKey>(mid ^ ((lo ^ mid) & below));
    const std::uint64_t mul = mul_hi ^ ((mul_lo ^ mul_hi) & below);
    const auto first = static_cast<int>(static_cast<std::uint64_t>(split) & ~below);
    return first + static_cast<int>(std::uint64_t{m - base} * mul >> 32);
  }
  MagnitudeKey lower_edge(int j) const {  // the smallest key of bin j or above
    // The smallest offset d with d * mul >= i << 32.
    auto offset = [](int i, std::uint64_t mul) {
      return ((static_cast<std::uint64_t>(i) << 32) + mul - 1) / mul;
    };
    if (j < split)
      return static_cast<MagnitudeKey>(std::min<std::uint64_t>(mid, lo + offset(j, mul_lo)));
    return static_cast<MagnitudeKey>(std::min<std::uint64_t>(hi, mid + offset(j - split, mul_hi)));
  }
  MagnitudeKey upper_edge(int j) const {  // above every key of bin j
    return j + 1 < kBins ? lower_edge(j + 1) : hi;
  }
};

// hist[j] += the keys of `keys` in bin j of `bins`.  Into four interleaved tables summed at the
// end: the keys pile up in one bin at the pruning boundary, and one table made each increment wait
// for the previous one's store (a quarter of the band pass's time).
template <class Hist>
void count_bins(const std::vector<std::uint64_t>& keys, const BandBins& bins, Hist& hist) {
  std::array<std::array<std::int32_t, kBins>, 4> part{};
  const std::size_t n = keys.size();
  std::size_t i = 0;
  auto bin = [&](std::size_t at) { return bins.bin(static_cast<MagnitudeKey>(keys[at] >> 32)); };
  for (; i + 4 <= n; i += 4) {
    ++part[0][bin(i)];
    ++part[1][bin(i + 1)];
    ++part[2][bin(i + 2)];
    ++part[3][bin(i + 3)];
  }
  for (; i < n; ++i) ++part[0][bin(i)];
  for (int j = 0; j < kBins; ++j) hist[j] += part[0][j] + part[1][j] + part[2][j] + part[3][j];
}

constexpr std::size_t kGatherSlack = 8;

#if defined(__AVX2__) && defined(HWNAS_X86_TARGETS)
// The AVX-512 loops of this file are compiled (by target attributes; use_avx512 picks them).
#define HWNAS_COMPRESS_AVX512 1
// Whether the AVX-512 loops run: where the GEMM kernels do (nn/gemm.hpp's gemm_isa(), so
// HWNAS_GEMM_ISA and set_gemm_isa pick both).
bool use_avx512() { return nn::detail::gemm_isa() == nn::detail::GemmIsa::kAvx512; }

// gather_range's loop over whole 8-key vectors (vpcompressq, in registers); returns the keys done.
// The keys of a band run to a few thousand, gathered twice in the serial part of a step.
__attribute__((target("avx512f"))) std::size_t gather_range8(const std::uint64_t* keys,
                                                             std::size_t size, std::uint64_t from,
                                                             std::uint64_t width,
                                                             std::uint64_t* dst,
                                                             std::size_t& kept) {
  const __m512i vfrom = _mm512_set1_epi64(static_cast<long long>(from)),
                vwidth = _mm512_set1_epi64(static_cast<long long>(width));
  std::size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    const __m512i k = _mm512_loadu_si512(keys + i);
    const __mmask8 in = _mm512_cmplt_epu64_mask(_mm512_sub_epi64(k, vfrom), vwidth);
    _mm512_storeu_si512(dst + kept, _mm512_maskz_compress_epi64(in, k));
    kept += static_cast<std::size_t>(__builtin_popcount(in));
  }
  return i;
}
#endif

// Copies the keys k with from <= k < to from keys[0..size) to dst (which may be keys itself),
// keeping their order; returns how many.  Without a branch per key (which keys fall in the range
// is unpredictable): every key is stored and the count advances only for those kept, so a dst
// apart from keys needs kGatherSlack slots past the last key kept (in place, the stores land on
// keys already read).  (The keys of bin j of a BandBins are such a range: bin_floor(bins, j) to
// bin_ceiling(bins, j), exclusive.)
std::size_t gather_range(const std::uint64_t* keys, std::size_t size, std::uint64_t from,
                         std::uint64_t to, std::uint64_t* dst) {
  std::size_t kept = 0, i = 0;
  const std::uint64_t width = to - from;
#if defined(HWNAS_COMPRESS_AVX512)
  if (use_avx512()) i = gather_range8(keys, size, from, width, dst, kept);
#endif
  for (; i < size; ++i) {
    const std::uint64_t key = keys[i];
    dst[kept] = key;
    kept += static_cast<std::size_t>(key - from < width);
  }
  return kept;
}

// The order keys of the magnitudes [lower_edge(j), upper_edge(j)) of bin j.
std::uint64_t bin_floor(const BandBins& bins, int j) {
  return std::uint64_t{bins.lower_edge(j)} << 32;
}
std::uint64_t bin_ceiling(const BandBins& bins, int j) {
  return std::uint64_t{bins.upper_edge(j)} << 32;
}

// The bin of hist holding rank `rank` (0-based) of the entries it counts; `before` (if given)
// receives the number of entries in the bins below it.
template <class Hist>
std::size_t bin_of_rank(const Hist& hist, std::int64_t rank, std::int64_t* before = nullptr) {
  std::int64_t below = 0;
  std::size_t j = 0;
  while (below + hist[j] <= rank) below += hist[j++];
  if (before) *before = below;
  return j;
}

// The order key of rank `at` (0-based) among `keys`, whose magnitude keys all lie in [lo, hi):
// the keys are binned and only the bin holding the rank is kept, until few keys are left or the
// range is narrower than the bins (magnitudes pile up at the pruning boundary during training, so
// one level of bins can hold half of them).  Reorders keys.
std::uint64_t select_rank(std::vector<std::uint64_t>& keys, std::int64_t at, MagnitudeKey lo,
                          MagnitudeKey hi) {
  // Below about a hundred keys nth_element is cheaper than another level of bins (a pass that
  // keeps about 1/64 of them; 512 here left 200-key nth_elements on every training step).
  while (keys.size() > 96 && hi - lo > static_cast<MagnitudeKey>(kBins)) {
    const BandBins bins(lo, hi);
    std::array<std::int64_t, kBins> hist{};
    count_bins(keys, bins, hist);
    std::int64_t before = 0;
    const int j = static_cast<int>(bin_of_rank(hist, at, &before));
    at -= before;
    keys.resize(gather_range(keys.data(), keys.size(), bin_floor(bins, j), bin_ceiling(bins, j),
                             keys.data()));
    lo = bins.lower_edge(j);
    hi = bins.upper_edge(j);
  }
  std::nth_element(keys.begin(), keys.begin() + at, keys.end());
  return keys[static_cast<std::size_t>(at)];
}

// The order_key of the k-th smallest entry of w[0..n), 1 <= k <= n, by a full selection (when a
// weight is new or its boundary left the band): magnitudes are counted in 2048 bins of 1/8 octave
// (the top bits of the key), the boundary is selected among its bin's entries, and the band is
// set to the bins holding the ranks half_width below and above it (refined at the next step).
std::uint64_t kth_smallest_full(const float* w, std::int64_t n, std::int64_t k, PruneBand& band) {
  g_selections.full_selections.fetch_add(1, std::memory_order_relaxed);
  constexpr int kShift = 20;
  std::vector<std::int64_t> hist(std::size_t{1} << (31 - kShift), 0);
  for (std::int64_t i = 0; i < n; ++i) ++hist[magnitude_key(w[i]) >> kShift];
  std::int64_t before = 0;
  const auto j = static_cast<MagnitudeKey>(bin_of_rank(hist, k - 1, &before));
  // Gathered without a branch per entry, as in gather_range (this scalar loop: one slot past the
  // last kept).
  std::vector<std::uint64_t> candidates(static_cast<std::size_t>(hist[j]) + 1);
  std::size_t kept = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const MagnitudeKey m = magnitude_key(w[i]);
    candidates[kept] = order_key(m, i);
    kept += static_cast<std::size_t>(m >> kShift == j);
  }
  candidates.resize(kept);
  const std::uint64_t boundary =
      select_rank(candidates, k - 1 - before, j << kShift, (j + 1) << kShift);
  if (band.half_width == 0) band.half_width = 2 * min_half_width(n);
  band.half_width = std::min(band.half_width, n);
  band.lo = static_cast<MagnitudeKey>(
                bin_of_rank(hist, std::max<std::int64_t>(0, k - 1 - band.half_width)))
            << kShift;
  band.hi =
      static_cast<MagnitudeKey>(bin_of_rank(hist, std::min(n - 1, k - 1 + band.half_width)) + 1)
      << kShift;
  band.mid = static_cast<MagnitudeKey>(boundary >> 32);
  band.valid = true;
  return boundary;
}

// The bins of a band: half of them under its last boundary, half over it.
BandBins band_bins(const PruneBand& band) {
  return BandBins(band.lo, band.mid, band.hi, kBins / 2);
}

// The pruning decision as a boundary key; `none` when nothing is pruned.
struct PruneRule {
  bool none = true;
  MagnitudeKey key = 0;    // entries with smaller magnitude keys are pruned
  std::int64_t index = 0;  // ties at `key`: pruned up to and including this index
  bool pruned(MagnitudeKey m, std::int64_t i) const {
    return !none && (m < key || (m == key && i <= index));
  }
};

PruneRule rule_at(std::uint64_t boundary) {
  PruneRule rule;
  rule.none = false;
  rule.key = static_cast<MagnitudeKey>(boundary >> 32);
  rule.index = static_cast<std::int64_t>(boundary & 0xffffffffu);
  return rule;
}

// std::round (half away from zero), written so that it vectorises: x - trunc(x) is exact.
inline float round_half_away(float x) {
  const float t = std::trunc(x);
  return std::fabs(x - t) >= 0.5f ? t + std::copysign(1.0f, x) : t;
}

// max |row[i]|, NaN entries ignored as std::max(m, |x|) ignores them (max of non-NaN values is
// exact in any order).  Four running maxima: one would wait on each max's latency.
float max_magnitude(const float* row, std::int64_t n) {
  float m = 0;
  std::int64_t i = 0;
#if defined(__AVX2__)
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 m0 = _mm256_setzero_ps(), m1 = m0, m2 = m0, m3 = m0;
  auto magnitude = [&](std::int64_t at) {
    return _mm256_andnot_ps(sign, _mm256_loadu_ps(row + at));
  };
  for (; i + 32 <= n; i += 32) {  // NaN lanes keep the running maximum (max returns operand 2)
    m0 = _mm256_max_ps(magnitude(i), m0);
    m1 = _mm256_max_ps(magnitude(i + 8), m1);
    m2 = _mm256_max_ps(magnitude(i + 16), m2);
    m3 = _mm256_max_ps(magnitude(i + 24), m3);
  }
  for (; i + 8 <= n; i += 8) m0 = _mm256_max_ps(magnitude(i), m0);
  alignas(32) float t[8];
  _mm256_store_ps(t, _mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3)));
  for (float v : t) m = std::max(m, v);
#endif
  for (; i < n; ++i) m = std::max(m, std::fabs(row[i]));
  return m;
}

// round_half_away(v / scale) * scale for values with |v / scale| <= bound.  Division is the
// slowest instruction of a pass, so where the scale and its reciprocal are normal floats the
// lanes multiply by the reciprocal and round to nearest: v * (1/scale) lies within 3 ulp of
// v / scale, so both round to the same integer unless the product is that close to a
// half-integer (ties included); only vectors with a lane within bound * 2^-20 (>= 8 ulp) of one
// divide and round half away from zero (for 8 bits, bound 128: about 1 vector in 500).
#if defined(__AVX2__)
// round_half_away(v / scale) * scale in 8 lanes by division, exact: Quantiser's path for the
// lanes that may lie near a half-integer, where the reciprocal could round otherwise.
inline __m256 divide_and_round(__m256 v, __m256 scale) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 q = _mm256_div_ps(v, scale);
  const __m256 t = _mm256_round_ps(q, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 away =
      _mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_sub_ps(q, t)), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
  const __m256 step =
      _mm256_and_ps(away, _mm256_or_ps(_mm256_and_ps(q, sign), _mm256_set1_ps(1.0f)));
  // t + step alone would turn round(-0.3) = -0.0 into +0.
  return _mm256_mul_ps(_mm256_or_ps(_mm256_add_ps(t, step), _mm256_and_ps(q, sign)), scale);
}
#endif

struct Quantiser {
  float scale = 1, inv = 1;
  float near_half = 0.5f;  // |q - round(q)| at least this: possibly a tie, divide
  bool by_reciprocal = false;
  Quantiser(float s, float bound)
      : scale(s),
        inv(1.0f / s),
        near_half(0.5f - bound * 0x1p-20f),
        by_reciprocal(std::isnormal(s) && std::isnormal(1.0f / s)) {}
  float operator()(float v) const { return round_half_away(v / scale) * scale; }
#if defined(__AVX2__)
  __m256 operator()(__m256 v) const {
    const __m256 vs = _mm256_set1_ps(scale), sign = _mm256_set1_ps(-0.0f);
    if (by_reciprocal) {
      const __m256 q = _mm256_mul_ps(v, _mm256_set1_ps(inv));
      // Round to nearest keeps the argument's sign (-0.3 -> -0.0), as std::round does.
      const __m256 r = _mm256_round_ps(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      const __m256 off = _mm256_andnot_ps(sign, _mm256_sub_ps(q, r));
      // (A NaN lane compares false and keeps the product's NaN, as division would.)
      if (!_mm256_movemask_ps(_mm256_cmp_ps(off, _mm256_set1_ps(near_half), _CMP_GE_OQ)))
        return _mm256_mul_ps(r, vs);
    }
    return divide_and_round(v, vs);
  }
#endif
};

const Quantiser kNoQuantiser(1.0f, 0.0f);  // for the passes that do not quantise

// The quantiser of a row whose largest magnitude is maxabs (so |v / scale| <= qmax), at qmax.
Quantiser row_quantiser(float maxabs, float qmax) {
  return Quantiser(channel_scale(maxabs, qmax), qmax + 1);
}

#if defined(HWNAS_COMPRESS_AVX512)
// AVX-512 forms of the passes' vector loops (16 lanes, mask registers, vpcompressd for the
// left-pack): about half the instructions per entry of the AVX2 loops.  They run where the GEMM
// kernels run AVX-512 (use_avx512), and apply the same IEEE operations lane by lane: the same
// bits as the AVX2 loops.

// round_half_away(v / scale) * scale in 16 lanes by division, exact (divide_and_round's form).
__attribute__((target("avx512f"))) inline __m512 divide_and_round16(__m512 v, __m512 scale) {
  const __m512i sign = _mm512_set1_epi32(static_cast<int>(0x80000000u));
  const __m512 q = _mm512_div_ps(v, scale);
  const __m512 t = _mm512_roundscale_ps(q, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __mmask16 away =
      _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(q, t)), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
  const __m512i q_sign = _mm512_and_si512(_mm512_castps_si512(q), sign);
  const __m512 step = _mm512_maskz_mov_ps(
      away,
      _mm512_castsi512_ps(_mm512_or_si512(q_sign, _mm512_castps_si512(_mm512_set1_ps(1.0f)))));
  const __m512 sum = _mm512_add_ps(t, step);  // then round(-0.3) keeps its sign: -0.0
  return _mm512_mul_ps(_mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(sum), q_sign)),
                       scale);
}

// Quantiser's lanes, 16 at a time, its constants held in registers across a loop.
struct Quantiser16 {
  __m512 scale, inv, near_half;
  bool by_reciprocal;
  __attribute__((target("avx512f"))) explicit Quantiser16(const Quantiser& z)
      : scale(_mm512_set1_ps(z.scale)),
        inv(_mm512_set1_ps(z.inv)),
        near_half(_mm512_set1_ps(z.near_half)),
        by_reciprocal(z.by_reciprocal) {}
  __attribute__((target("avx512f"))) __m512 operator()(__m512 v) const {
    if (by_reciprocal) {
      const __m512 q = _mm512_mul_ps(v, inv);
      const __m512 r = _mm512_roundscale_ps(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      if (!_mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(q, r)), near_half, _CMP_GE_OQ))
        return _mm512_mul_ps(r, scale);
    }
    return divide_and_round16(v, scale);
  }
};

// emit's loop over whole 16-lane vectors (rule.key <= 0x7fffffff); returns the entries done.
template <bool kQuantise, bool kGradient>
__attribute__((target("avx512f"))) std::int64_t emit16(const float* values, const float* keys_from,
                                                       std::int64_t base, std::int64_t len,
                                                       const Quantiser& quantise,
                                                       const PruneRule& rule, float* dst) {
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), vkey = _mm512_set1_epi32(int(rule.key));
  const Quantiser16 quantise16(quantise);
  std::int64_t i = 0;
  for (; i + 16 <= len; i += 16) {
    __m512 v = _mm512_loadu_ps(values + i);
    if constexpr (kQuantise) v = quantise16(v);
    if (!rule.none) {
      const __m512i m = _mm512_and_si512(_mm512_loadu_si512(keys_from + i), abs_mask);
      const __mmask16 keep = _mm512_cmpge_epi32_mask(m, vkey);  // at the key: ties, below
      if constexpr (kGradient)
        v = _mm512_mul_ps(v, _mm512_maskz_mov_ps(keep, one));
      else
        v = _mm512_maskz_mov_ps(keep, v);
      _mm512_storeu_ps(dst + i, v);
      unsigned ties = _mm512_cmpeq_epi32_mask(m, vkey);
      while (ties) {
        const int t = __builtin_ctz(ties);
        ties &= ties - 1;
        if (base + i + t <= rule.index) dst[i + t] = kGradient ? dst[i + t] * 0.0f : 0.0f;
      }
    } else {
      _mm512_storeu_ps(dst + i, v);
    }
  }
  return i;
}

// emit_scanning_band's loop over whole 16-lane vectors; returns the entries done.
template <bool kQuantise>
__attribute__((target("avx512f"))) std::int64_t scan16(
    const float* w, std::int64_t len, const Quantiser& quantise, MagnitudeKey lo, MagnitudeKey hi,
    MagnitudeKey cut, std::int64_t& below, std::uint32_t* positions, std::int64_t& found,
    float* dst, std::uint8_t* keep, float* max_out) {
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), vlo = _mm512_set1_epi32(int(lo)),
                vhi = _mm512_set1_epi32(int(hi - 1)), vcut = _mm512_set1_epi32(int(cut)),
                lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const Quantiser16 quantise16(quantise);
  std::int64_t i = 0, n_below = 0, n_found = found;  // (locals: no store per vector)
  __m512 vmax = _mm512_setzero_ps();
  for (; i + 16 <= len; i += 16) {
    const __m512 v = _mm512_loadu_ps(w + i);
    const __m512i m = _mm512_and_si512(_mm512_castps_si512(v), abs_mask);
    // (max_magnitude's: a NaN lane keeps the running maximum, the second operand)
    if (max_out) vmax = _mm512_max_ps(_mm512_castsi512_ps(m), vmax);
    const __mmask16 lt = _mm512_cmplt_epi32_mask(m, vlo);
    const __mmask16 in = _mm512_mask_cmple_epi32_mask(static_cast<__mmask16>(~lt), m, vhi);
    n_below += __builtin_popcount(lt);
    const __m512i at = _mm512_add_epi32(lanes, _mm512_set1_epi32(static_cast<int>(i)));
    _mm512_storeu_si512(positions + n_found, _mm512_maskz_compress_epi32(in, at));
    n_found += __builtin_popcount(in);
    const __mmask16 kept = _mm512_cmpge_epi32_mask(m, vcut);
    if (dst) {  // (none when the GEMMs compress the weight as they pack it: PackedCompression)
      __m512 q = v;
      if constexpr (kQuantise) q = quantise16(v);
      _mm512_storeu_ps(dst + i, _mm512_maskz_mov_ps(kept, q));  // pruned: +0
    }
    if (keep)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(keep + i),
                       _mm512_cvtepi32_epi8(_mm512_maskz_mov_epi32(kept, _mm512_set1_epi32(-1))));
  }
  below += n_below;
  found = n_found;
  if (max_out) {
    alignas(64) float t[16];
    _mm512_store_ps(t, vmax);
    for (float v : t) *max_out = std::max(*max_out, v);
  }
  return i;
}
#endif

// One pass over entries base .. base + len: dst[i] = values[i], quantised by `quantise`
// (round_half_away(v / scale) * scale) when kQuantise, and 0 where the rule prunes the entry
// (its magnitude read from keys_from[i]).  The forward pass emits the compressed weight
// (values = keys_from = the weight); the backward pass masks the gradient (values = dst = the
// gradient, keys_from = the weight).
//
// A pruned entry becomes +0 in the forward pass (kGradient false) and values[i] * 0 in the
// backward pass (kGradient true: the definition's g * mask, whose zeros keep g's sign).
template <bool kQuantise, bool kGradient = false>
void emit(const float* values, const float* keys_from, std::int64_t base, std::int64_t len,
          const Quantiser& quantise, const PruneRule& rule, float* dst) {
  auto pruned_value = [](float v) { return kGradient ? v * 0.0f : 0.0f; };
  if (!rule.none && rule.key > 0x7fffffffu) {  // every entry pruned
    for (std::int64_t i = 0; i < len; ++i) dst[i] = pruned_value(values[i]);
    return;
  }
  std::int64_t i = 0;
#if defined(HWNAS_COMPRESS_AVX512)
  if (use_avx512())
    i = emit16<kQuantise, kGradient>(values, keys_from, base, len, quantise, rule, dst);
#endif
#if defined(__AVX2__)
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), vkey = _mm256_set1_epi32(int(rule.key)),
                vkey_minus_1 = _mm256_set1_epi32(int(rule.key) - 1);
  for (; i + 8 <= len; i += 8) {
    __m256 v = _mm256_loadu_ps(values + i);
    if constexpr (kQuantise) v = quantise(v);
    if (!rule.none) {
      // Entries below the boundary magnitude go; those at it (the boundary itself, rare ties)
      // are settled by index one by one.
      const __m256i m = _mm256_and_si256(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(keys_from + i)), abs_mask);
      const __m256 keep = _mm256_castsi256_ps(_mm256_cmpgt_epi32(m, vkey_minus_1));
      if constexpr (kGradient)
        v = _mm256_mul_ps(v, _mm256_and_ps(keep, one));
      else
        v = _mm256_and_ps(v, keep);
      _mm256_storeu_ps(dst + i, v);
      unsigned ties = static_cast<unsigned>(
          _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(m, vkey))));
      while (ties) {
        const int t = __builtin_ctz(ties);
        ties &= ties - 1;
        if (base + i + t <= rule.index) dst[i + t] = pruned_value(dst[i + t]);
      }
    } else {
      _mm256_storeu_ps(dst + i, v);
    }
  }
#endif
  for (; i < len; ++i) {
    float v = values[i];
    if constexpr (kQuantise) v = quantise(v);
    dst[i] = rule.pruned(magnitude_key(keys_from[i]), base + i) ? pruned_value(v) : v;
  }
}

// The band pass over entries [base, base + len) of w: counts the entries whose magnitude key is
// below lo, appends the order keys of those in [lo, hi) to `inside`, and writes dst as if exactly
// the entries below cut (lo <= cut < hi: the predicted boundary) were pruned (the rest quantised
// when kQuantise), all in one read.  With `keep`, also writes keep[i] = 0 for the entries below
// cut and 0xff for the rest (the gradient's byte mask, KeepBytes).  With max_out, raises
// *max_out to max_magnitude of the entries (a packed step's row scale, from the same read).
template <bool kQuantise>
void emit_scanning_band(const float* w, std::int64_t base, std::int64_t len,
                        const Quantiser& quantise, MagnitudeKey lo, MagnitudeKey hi,
                        MagnitudeKey cut, std::int64_t& below, std::vector<std::uint64_t>& inside,
                        float* dst, std::uint8_t* keep, float* max_out = nullptr) {
  std::int64_t i = 0;
#if defined(__AVX2__)
  static const LeftPackTable table;
  // Positions of in-band entries, packed without a branch per vector: whole 8-lane stores
  // advanced by the number of lanes kept (the band holds a few percent of the entries at
  // unpredictable places).
  thread_local std::vector<std::uint32_t> positions;
  positions.resize(static_cast<std::size_t>(len) + 16);
  std::uint32_t* out = positions.data();
  std::int64_t found = 0;
#if defined(HWNAS_COMPRESS_AVX512)
  if (use_avx512())
    i = scan16<kQuantise>(w, len, quantise, lo, hi, cut, below, out, found, dst, keep, max_out);
#endif
  // Keys are < 2^31 and lo <= cut < hi <= 2^31, so signed 32-bit compares order them (hi - 1
  // for "<").
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), vlo = _mm256_set1_epi32(int(lo)),
                vhi = _mm256_set1_epi32(int(hi - 1)), vcut = _mm256_set1_epi32(int(cut));
  __m256i nb = _mm256_setzero_si256();
  __m256 vmax = _mm256_setzero_ps();
  for (; i + 8 <= len; i += 8) {
    const __m256 v = _mm256_loadu_ps(w + i);
    const __m256i m = _mm256_and_si256(_mm256_castps_si256(v), abs_mask);
    if (max_out) vmax = _mm256_max_ps(_mm256_castsi256_ps(m), vmax);  // (NaN: keeps vmax)
    const __m256i lt = _mm256_cmpgt_epi32(vlo, m);                    // m < lo
    const __m256i out_of_band = _mm256_or_si256(lt, _mm256_cmpgt_epi32(m, vhi));  // or m >= hi
    nb = _mm256_sub_epi32(nb, lt);  // += 1 where m < lo
    const unsigned in_mask =
        ~static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(out_of_band))) & 0xffu;
    const __m256i lanes = _mm256_load_si256(reinterpret_cast<const __m256i*>(table.lanes[in_mask]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + found),
                        _mm256_add_epi32(lanes, _mm256_set1_epi32(static_cast<int>(i))));
    found += __builtin_popcount(in_mask);
    const __m256i pruned = _mm256_cmpgt_epi32(vcut, m);  // m < cut
    if (dst) {
      __m256 q = v;
      if constexpr (kQuantise) q = quantise(v);
      _mm256_storeu_ps(dst + i, _mm256_andnot_ps(_mm256_castsi256_ps(pruned), q));  // pruned: +0
    }
    if (keep) {  // the 8 lanes' compare results narrowed to bytes
      const __m256i words = _mm256_packs_epi32(_mm256_xor_si256(pruned, _mm256_set1_epi32(-1)),
                                               _mm256_setzero_si256());
      const __m256i bytes = _mm256_packs_epi16(words, _mm256_setzero_si256());
      // (packs work per 128-bit half: bytes 0-3 and 16-19 hold lanes 0-3 and 4-7)
      const std::uint32_t lo4 = static_cast<std::uint32_t>(_mm256_extract_epi32(bytes, 0)),
                          hi4 = static_cast<std::uint32_t>(_mm256_extract_epi32(bytes, 4));
      std::memcpy(keep + i, &lo4, 4);
      std::memcpy(keep + i + 4, &hi4, 4);
    }
  }
  alignas(32) std::int32_t cb[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(cb), nb);
  for (int t = 0; t < 8; ++t) below += cb[t];
  if (max_out) {
    alignas(32) float t[8];
    _mm256_store_ps(t, vmax);
    for (float v : t) *max_out = std::max(*max_out, v);
  }
  // Sized once and written in place: push_back's capacity check and size store per key cost as
  // much as the vector pass itself.
  const std::size_t at = inside.size();
  inside.resize(at + static_cast<std::size_t>(found));
  std::uint64_t* keys = inside.data() + at;
  for (std::int64_t f = 0; f < found; ++f)
    keys[f] = order_key(magnitude_key(w[out[f]]), base + out[f]);
#endif
  for (; i < len; ++i) {
    const MagnitudeKey m = magnitude_key(w[i]);
    below += m < lo;
    if (m >= lo && m < hi) inside.push_back(order_key(m, base + i));
    if (dst) dst[i] = m < cut ? 0.0f : kQuantise ? quantise(w[i]) : w[i];
    if (keep) keep[i] = m < cut ? 0 : 0xff;
    if (max_out) *max_out = std::max(*max_out, std::fabs(w[i]));
  }
}

// How the passes walk a weight: segment s covers entries [s * len, min(n, (s + 1) * len)).  A
// quantised weight's segments are its output channels (one scale each); an unquantised one's are
// pieces of kPiece.  A parallel task takes per_task consecutive segments (about kPiece entries).
struct Segments {
  std::int64_t n = 0, len = 1, per_task = 1;
  float qmax = 0;  // 0: no quantisation
  std::int64_t count() const { return (n + len - 1) / len; }
  std::int64_t tasks() const { return (count() + per_task - 1) / per_task; }
  std::int64_t begin(std::int64_t s) const { return s * len; }
  std::int64_t end(std::int64_t s) const { return std::min(n, (s + 1) * len); }
  // The entries of task t: whole segments.
  std::int64_t task_begin(std::int64_t t) const { return begin(t * per_task); }
  std::int64_t task_end(std::int64_t t) const {
    return end(std::min(count(), (t + 1) * per_task) - 1);
  }
  // The entries that must be written together (one scale): what an optimizer chunk holds whole.
  std::int64_t granule() const { return qmax > 0 ? len : 1; }
};

Segments segments_of(const nn::Tensor& x, int bits) {
  Segments seg;
  seg.n = x.numel();
  if (bits >= 16 || seg.n == 0) {
    seg.len = kPiece;
    return seg;
  }
  const std::int64_t channels = x.shape().rank() >= 2 ? x.shape()[0] : 1;
  seg.len = std::max<std::int64_t>(1, seg.n / channels);
  seg.per_task = std::max<std::int64_t>(1, kPiece / seg.len);
  seg.qmax = static_cast<float>((1 << (bits - 1)) - 1);
  return seg;
}

// The largest magnitude among the entries of segment s that the rule keeps: the scale of a
// quantised segment (quantisation_scales of the pruned weight) is this over qmax.  The row's
// largest magnitude, unless that entry itself may be pruned (then every entry is checked).
float kept_max_magnitude(const float* x, const Segments& seg, std::int64_t s,
                         const PruneRule& rule) {
  const std::int64_t b = seg.begin(s), len = seg.end(s) - b;
  const float* row = x + b;
  float maxabs = max_magnitude(row, len);
  if (!rule.none && magnitude_key(maxabs) <= rule.key) {
    maxabs = 0;
    for (std::int64_t i = 0; i < len; ++i)
      if (!rule.pruned(magnitude_key(row[i]), b + i)) maxabs = std::max(maxabs, std::fabs(row[i]));
  }
  return maxabs;
}

// Writes segment s of the compressed weight under the exact rule.
void emit_segment(const float* x, const Segments& seg, std::int64_t s, const PruneRule& rule,
                  float* out) {
  const std::int64_t b = seg.begin(s), len = seg.end(s) - b;
  const float* row = x + b;
  if (seg.qmax == 0) {
    emit<false>(row, row, b, len, kNoQuantiser, rule, out + b);
    return;
  }
  emit<true>(row, row, b, len, row_quantiser(kept_max_magnitude(x, seg, s, rule), seg.qmax), rule,
             out + b);
}

// Writes entries [b, e) (whole segments when quantised) of the compressed weight.
void emit_range(const float* x, const Segments& seg, std::int64_t b, std::int64_t e,
                const PruneRule& rule, float* out) {
  if (seg.qmax == 0) {
    emit<false>(x + b, x + b, b, e - b, kNoQuantiser, rule, out + b);
    return;
  }
  for (std::int64_t s = b / seg.len; s < seg.count() && seg.begin(s) < e; ++s)
    emit_segment(x, seg, s, rule, out);
}

void emit_all(const float* x, const Segments& seg, const PruneRule& rule, float* out) {
  for_tasks(seg.tasks(), [&](std::int64_t t) {
    emit_range(x, seg, seg.task_begin(t), seg.task_end(t), rule, out);
  });
}

// What one parallel task of the in-band pass found in its segments.
struct BandTask {
  std::int64_t below = 0;                  // entries under band.lo
  std::vector<std::uint64_t> inside;       // order keys of the entries in the band
  std::vector<std::int64_t> deferred;      // segments whose scale waits for the boundary
  std::array<std::int32_t, kBins> hist{};  // `inside` per bin
};

// The band pass over entries [b, e) of x (whole segments when quantised), one parallel task's
// share: counts the entries under the band, collects those in it, and writes every segment as
// if the entries with magnitudes under bins.mid (the last boundary's magnitude, its ties written
// as kept; lo when the bins do not split) were the pruned ones; finish_band then corrects the few
// between it and the new boundary.  A segment whose largest entry may be pruned (its scale
// depends on the boundary, rare) is listed for finish_band to write again; the others' largest
// magnitudes go to seg_max (when quantised), for those corrections.
void scan_band(const float* x, const Segments& seg, std::int64_t b, std::int64_t e,
               const BandBins& bins, BandTask& task, float* out, float* seg_max,
               std::uint8_t* keep = nullptr) {
  if (seg.qmax == 0) {
    // In pieces of kPiece: the pass's thread-local position list grows to a piece, not to a
    // whole optimizer chunk.
    for (std::int64_t pb = b; pb < e; pb += kPiece) {
      const std::int64_t len = std::min(kPiece, e - pb);
      emit_scanning_band<false>(x + pb, pb, len, kNoQuantiser, bins.lo, bins.hi, bins.mid,
                                task.below, task.inside, out ? out + pb : nullptr,
                                keep ? keep + pb : nullptr);
    }
  } else {
    for (std::int64_t s = b / seg.len; s < seg.count() && seg.begin(s) < e; ++s) {
      const std::int64_t sb = seg.begin(s), len = seg.end(s) - sb;
      if (!out && !keep) {  // packed: the row's scale from the scan's own read (no quantiser)
        float maxabs = 0;
        emit_scanning_band<false>(x + sb, sb, len, kNoQuantiser, bins.lo, bins.hi, bins.mid,
                                  task.below, task.inside, nullptr, nullptr, &maxabs);
        if (magnitude_key(maxabs) < bins.hi) task.deferred.push_back(s);
        seg_max[s] = maxabs;
        continue;
      }
      const float maxabs = max_magnitude(x + sb, len);
      const bool deferred = magnitude_key(maxabs) < bins.hi;
      if (deferred) task.deferred.push_back(s);
      seg_max[s] = maxabs;
      emit_scanning_band<true>(
          x + sb, sb, len, deferred ? Quantiser(1.0f, maxabs + 1) : row_quantiser(maxabs, seg.qmax),
          bins.lo, bins.hi, bins.mid, task.below, task.inside, out ? out + sb : nullptr,
          keep ? keep + sb : nullptr);
    }
  }
  count_bins(task.inside, bins, task.hist);
}

// After every scan_band of one compression: the boundary is selected among the band's entries,
// the in-band entries between it and bins.mid are written again (pruned or kept, as the scan
// guessed otherwise), the deferred segments are written again, and the band is moved for the
// next step.  Returns false, having changed only the band's width, when the boundary has left
// the band (the caller then runs the full selection).  Without `out` (the scans wrote no
// compressed weight: PackedCompression) nothing is written again (nor gathered for it), and the
// deferred segments' kept maxima go to seg_max.
bool finish_band(const float* x, const Segments& seg, std::int64_t k, PruneBand& band,
                 const BandBins& bins, const std::vector<BandTask>& tasks, PruneRule& rule,
                 float* out, float* seg_max, std::uint8_t* keep = nullptr) {
  std::int64_t below = 0, size = 0;
  std::array<std::int64_t, kBins> hist{};
  for (const BandTask& task : tasks) {
    below += task.below;
    size += static_cast<std::int64_t>(task.inside.size());
    for (int j = 0; j < kBins; ++j) hist[j] += task.hist[j];
  }
  if (!(below < k && k <= below + size)) {
    band.half_width *= 2;  // the weights moved further than the band reached: widen it
    return false;
  }
  // The bin holding rank `at` of the band's entries; the boundary is selected among its keys.
  const std::int64_t at = k - below - 1;
  std::int64_t before = 0;
  const int j = static_cast<int>(bin_of_rank(hist, at, &before));
  // Scratch for the keys gathered (with gather_range's slack).
  thread_local std::vector<std::uint64_t> picked;
  picked.resize(static_cast<std::size_t>(size) + kGatherSlack);
  std::size_t kept = 0;
  for (const BandTask& task : tasks)
    kept += gather_range(task.inside.data(), task.inside.size(), bin_floor(bins, j),
                         bin_ceiling(bins, j), picked.data() + kept);
  picked.resize(kept);
  g_selections.band_selections.fetch_add(1, std::memory_order_relaxed);
  g_selections.band_keys.fetch_add(static_cast<std::uint64_t>(size), std::memory_order_relaxed);
  g_selections.bin_keys.fetch_add(kept, std::memory_order_relaxed);
  const std::uint64_t boundary =
      select_rank(picked, at - before, bins.lower_edge(j), bins.upper_edge(j));
  rule = rule_at(boundary);
  // The scan pruned the keys under guess = mid << 32; the keys under boundary + 1 are the pruned
  // ones.  Those in between (those the boundary moved past since the last step, a few percent of
  // the band) are written again.
  const std::uint64_t guess = std::uint64_t{bins.mid} << 32, exact = boundary + 1;
  if (out) {
    picked.resize(static_cast<std::size_t>(size) + kGatherSlack);
    kept = 0;
    for (const BandTask& task : tasks)
      kept += gather_range(task.inside.data(), task.inside.size(), std::min(guess, exact),
                           std::max(guess, exact), picked.data() + kept);
    for (std::size_t f = 0; f < kept; ++f) {
      const std::uint64_t key = picked[f];
      const auto i = static_cast<std::int64_t>(key & 0xffffffffu);
      const bool pruned = key < exact;
      if (keep) keep[i] = pruned ? 0 : 0xff;
      if (pruned)
        out[i] = 0.0f;
      else if (seg.qmax == 0)
        out[i] = x[i];
      else  // (a deferred segment is written whole below)
        out[i] = row_quantiser(seg_max[i / seg.len], seg.qmax)(x[i]);
    }
  }
  for (const BandTask& task : tasks)
    for (std::int64_t s : task.deferred) {
      if (out)
        emit_segment(x, seg, s, rule, out);
      else
        seg_max[s] = kept_max_magnitude(x, seg, s, rule);
    }

  // Narrow the band while the boundary moves less than a quarter of it per step; centre it on
  // the boundary (edges at bin resolution, extrapolated past the band's own entries).
  if (std::min(at, size - 1 - at) > band.half_width * 3 / 4)
    band.half_width = std::max(min_half_width(seg.n), band.half_width * 15 / 16);
  const float b = std::bit_cast<float>(rule.key);
  const std::int64_t lo_rank = at - band.half_width, hi_rank = at + band.half_width;
  band.lo = lo_rank >= 0 ? bins.lower_edge(static_cast<int>(bin_of_rank(hist, lo_rank)))
                         : extrapolated_lo(b, bins.lo, band.half_width, at);
  band.hi = hi_rank < size ? bins.upper_edge(static_cast<int>(bin_of_rank(hist, hi_rank)))
                           : extrapolated_hi(b, bins.hi, band.half_width, size - 1 - at);
  band.mid = rule.key;
  return true;
}

// The band path of one compression, when the band holds the boundary: one parallel band pass,
// then finish_band.
bool compress_in_band(const float* x, const Segments& seg, std::int64_t k, PruneBand& band,
                      PruneRule& rule, float* out) {
  const BandBins bins = band_bins(band);
  std::vector<BandTask> tasks(static_cast<std::size_t>(seg.tasks()));
  std::vector<float> seg_max(seg.qmax > 0 ? static_cast<std::size_t>(seg.count()) : 0);
  for_tasks(seg.tasks(), [&](std::int64_t t) {
    scan_band(x, seg, seg.task_begin(t), seg.task_end(t), bins, tasks[static_cast<std::size_t>(t)],
              out, seg_max.data());
  });
  return finish_band(x, seg, k, band, bins, tasks, rule, out, seg_max.data());
}

// The number of entries pruned, and the rule when it needs no selection (none, or all).
struct PruneCount {
  std::int64_t k = 0;
  bool select = false;  // 0 < k < n: the boundary must be found
  PruneRule fixed;      // the rule when !select
};

PruneCount prune_count(std::int64_t n, double prune) {
  PruneCount c;
  c.k = static_cast<std::int64_t>(std::floor(prune * static_cast<double>(n)));
  if (prune > 0 && c.k >= n) {
    c.fixed.none = false;
    c.fixed.key = 0xffffffffu;  // every entry
  }
  c.select = prune > 0 && c.k > 0 && c.k < n;
  return c;
}

// Writes the compressed weight of x to `out` with `band` as the starting guess; returns the
// pruning rule its gradient mask uses.
PruneRule compress_into(const float* x, const Segments& seg, double prune, PruneBand& band,
                        float* out) {
  const PruneCount count = prune_count(seg.n, prune);
  if (!count.select) {
    emit_all(x, seg, count.fixed, out);
    return count.fixed;
  }
  PruneRule rule;
  if (!band.valid || !compress_in_band(x, seg, count.k, band, rule, out)) {
    rule = rule_at(kth_smallest_full(x, seg.n, count.k, band));
    emit_all(x, seg, rule, out);
  }
  return rule;
}

// The gradient's pruning mask as one byte per weight entry (0 pruned, 0xff kept), made by the
// optimizer step's band pass and settled with the boundary, or written from the rule after a
// full selection (CompressionState).  The gradient mask reads it instead of the weight: a
// quarter of the bytes, where the weight-gradient GEMM splits dW by columns while the optimizer
// wrote the weight by rows, so that about half of the lines the mask reads were last written by
// the other core (mlp genomes: 0.4-0.9 points less overhead over float, median, stop 42).  The
// same bits as deciding from the weight at the forward pass.
using KeepBytes = std::shared_ptr<const std::vector<std::uint8_t>>;

#if defined(HWNAS_COMPRESS_AVX512)
// mask_by_bytes's loop over whole 16-lane vectors; returns the entries done.
__attribute__((target("avx512f"))) std::int64_t mask_by_bytes16(float* g, const std::uint8_t* keep,
                                                                std::int64_t len) {
  const __m512 one = _mm512_set1_ps(1.0f);
  std::int64_t i = 0;
  for (; i + 16 <= len; i += 16) {
    const auto kept = static_cast<__mmask16>(
        _mm_movemask_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(keep + i))));
    _mm512_storeu_ps(g + i, _mm512_mul_ps(_mm512_loadu_ps(g + i), _mm512_maskz_mov_ps(kept, one)));
  }
  return i;
}
#endif

// g[i] * 0 where keep[i] is 0, as emit<false, true> masks a gradient (vector lanes multiply by 1
// or 0, the last few entries multiply only the pruned ones).
void mask_by_bytes(float* g, const std::uint8_t* keep, std::int64_t len) {
  std::int64_t i = 0;
#if defined(HWNAS_COMPRESS_AVX512)
  if (use_avx512()) i = mask_by_bytes16(g, keep, len);
#endif
#if defined(__AVX2__)
  const __m256 one = _mm256_set1_ps(1.0f);
  for (; i + 8 <= len; i += 8) {
    const __m256i kept =  // 0xff -> -1 (all bits), 0 -> 0
        _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(keep + i)));
    _mm256_storeu_ps(g + i, _mm256_mul_ps(_mm256_loadu_ps(g + i),
                                          _mm256_and_ps(_mm256_castsi256_ps(kept), one)));
  }
#endif
  for (; i < len; ++i)
    if (!keep[i]) g[i] *= 0.0f;
}

// keep[i] = 0 where the rule prunes x[i], 0xff elsewhere: the byte mask after a full selection
// (the first step, or a miss; the band pass writes it otherwise).
void write_keep_bytes(const float* x, std::int64_t n, const PruneRule& rule, std::uint8_t* keep) {
  for_pieces(n, kPiece, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) keep[i] = rule.pruned(magnitude_key(x[i]), i) ? 0 : 0xff;
  });
}

// Masks gradient entries [at, at + len) (g points at entry `at`): by the bytes when given, else
// by the rule on the weight w's entries.
void mask_gradient(float* g, std::int64_t at, std::int64_t len, const PruneRule& rule,
                   const KeepBytes& keep, const float* w) {
  if (keep)
    mask_by_bytes(g, keep->data() + at, len);
  else
    emit<false, true>(g, w + at, at, len, kNoQuantiser, rule, g);
}

// The compressed weight as an op: the gradient passes straight through, zero on pruned entries.
// With `keep` (a weight the optimizer step prepared) the pruned entries are those of this
// forward pass; without, they are decided again from the weight's value at backward time, which
// is the same unless something writes the weight in between (a graph kept across an optimizer
// step, say).
nn::Var straight_through(const nn::Var& w, nn::Tensor compressed, const PruneRule& rule,
                         KeepBytes keep = nullptr) {
  nn::Var out = nn::make_result(std::move(compressed), {w}, [rule, keep](nn::Node& self) {
    nn::Node& parent = *self.parents[0];
    if (!parent.requires_grad) return;
    nn::Tensor g = std::move(self.grad);
    // (Unless its only consumer masked the gradient as it wrote it: Node::grad_mask.)
    if (!rule.none && !(self.masked_grad == g.data() && self.consumers == 1)) {
      float* gd = g.data();
      const float* wd = parent.value.data();
      // One multiply per entry: below kMaskPiece entries the pool's fork and join cost more
      // than a second thread saves (784 x 32 weight: 3.3 -> 1.6 us per step serially).
      for_pieces(g.numel(), kMaskPiece, [&](std::int64_t b, std::int64_t e) {
        mask_gradient(gd + b, b, e - b, rule, keep, wd);
      });
    }
    if (parent.grad.empty() || parent.grad.shape() != parent.value.shape())
      parent.grad = std::move(g);
    else
      parent.grad.array() += g.array();
  });
  if (nn::Node* node = out.node(); node && node->backward_fn && !rule.none) {
    const nn::Node* parent = w.node();  // (alive while the graph is: a parent of `node`)
    node->grad_mask = [rule, parent, keep](float* g, std::int64_t ld, std::int64_t r0,
                                           std::int64_t r1, std::int64_t c0, std::int64_t c1) {
      for (std::int64_t r = r0; r < r1; ++r)
        mask_gradient(g + r * ld + c0, r * ld + c0, c1 - c0, rule, keep, parent->value.data());
    };
  }
  return out;
}

// Writes w's compression into out, starting from the band this thread last used for w.
PruneRule compress_with_band(const nn::Var& w, int bits, double prune, nn::Tensor& out) {
  const nn::Tensor& x = w.value();
  // A copy of the band, written back after: the passes' parallel loops may run other tasks on
  // this thread that use (and clear) the thread-local map.
  PruneBand band;
  if (auto it = t_bands.find(w.node()); it != t_bands.end()) band = it->second;
  const PruneRule rule = compress_into(x.data(), segments_of(x, bits), prune, band, out.data());
  if (prune_count(x.numel(), prune).select) {
    if (t_bands.size() > 4096) t_bands.clear();  // bound it when many models come and go
    t_bands[w.node()] = band;
  }
  return rule;
}

nn::Var compress_uncached(const nn::Var& w, int bits, double prune) {
  nn::Tensor out(w.value().shape());
  const PruneRule rule = compress_with_band(w, bits, prune, out);
  return straight_through(w, std::move(out), rule);
}

// A compressed weight as compressed_linear's GEMMs read it (nn::WeightView): each packed entry
// pruned by the rule and quantised with its row's scale where the GEMM packed it, the values emit
// writes into a compressed copy, bit for bit, without the copy.  (Rewritten in the packed panel,
// where it lies in L1: emitting W's rows into a buffer for the packing to read cost 6 points more
// of a pruned mlp genome's step.)
class PackedCompression final : public nn::WeightView {
 public:
  // `w`: the weight's node [rows, cols] (it outlives every graph that holds this view, where it
  // is linear's parent); row_max: each row's largest kept magnitude (quantised, qmax > 0) or
  // empty.
  PackedCompression(const nn::Node& w, const PruneRule& rule, float qmax,
                    const std::vector<float>& row_max)
      : w_(&w),
        cols_(w.value.numel() / std::max(1, w.value.shape()[0])),
        rule_(rule),
        quantise_(!row_max.empty()) {
    if (!quantise_) return;
    // Padded past the last row: a transposed panel's lanes beyond it hold zeros (scale 1).
    const std::size_t padded = row_max.size() + kLanePad;
    scale_.assign(padded, 1.0f);
    inv_.assign(padded, 1.0f);
    divide_.assign(padded, 0);
    for (std::size_t r = 0; r < row_max.size(); ++r) {
      const Quantiser z = row_quantiser(row_max[r], qmax);
      scale_[r] = z.scale;
      inv_[r] = z.inv;
      divide_[r] = z.by_reciprocal ? 0 : -1;
      near_half_ = z.near_half;  // (the same for every row: it depends on qmax only)
    }
  }

  void pack(bool transposed, std::int64_t p0, std::int64_t kc, std::int64_t j0, std::int64_t nc,
            int nr, float* dst) const override {
    const std::int64_t panels = (nc + nr - 1) / nr;
    if (!rule_.none && rule_.key > 0x7fffffffu) {  // every entry pruned
      std::fill(dst, dst + panels * nr * kc, 0.0f);
      return;
    }
    for (std::int64_t r = 0; r < panels; ++r) {
      const std::int64_t first = j0 + r * nr;  // the column of B at lane 0
      pack_panel(dst + r * nr * kc, kc, nr, transposed, transposed ? first : p0,
                 transposed ? p0 : first);
    }
  }

  void mask_gradient(float* g, std::int64_t ld, std::int64_t r0, std::int64_t r1, std::int64_t c0,
                     std::int64_t c1) const override {
    if (rule_.none) return;  // quantisation alone passes the gradient straight through
    const float* w = w_->value.data();
#if defined(HWNAS_COMPRESS_AVX512)
    // (The GEMM reports each finished 32-column panel: its constants held across the block's rows.)
    if (use_avx512() && rule_.key <= 0x7fffffffu) return mask_block16(g, ld, w, r0, r1, c0, c1);
#endif
    for (std::int64_t r = r0; r < r1; ++r)
      spaces::mask_gradient(g + r * ld + c0, r * cols_ + c0, c1 - c0, rule_, nullptr, w);
  }

 private:
  static constexpr std::size_t kLanePad = 64;  // >= the widest panel (32 lanes) plus a vector

  // One panel: kc packed rows of nr lanes.  Transposed (B = W^T), lane jj of packed row p is W's
  // entry (row + jj, col + p): W's rows run across the lanes, each with its own scale; else it is
  // (row + p, col + jj).  Whole 16-lane groups with AVX-512 (where the GEMMs run it: their
  // 32-lane panels have no other lanes), else whole 8-lane groups with AVX2; the rest one by one.
  void pack_panel(float* panel, std::int64_t kc, int nr, bool transposed, std::int64_t row,
                  std::int64_t col) const {
    auto index = [&](std::int64_t p, int jj) {
      return transposed ? (row + jj) * cols_ + col + p : (row + p) * cols_ + col + jj;
    };
    int scalar_from = 0;  // the lanes past the vector groups
#if defined(HWNAS_COMPRESS_AVX512)
    if (use_avx512()) scalar_from = pack_panel16(panel, kc, nr, transposed, row, col);
#endif
#if defined(__AVX2__)
    const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff),
                  vkey = _mm256_set1_epi32(static_cast<int>(rule_.key)),
                  vkey_minus_1 = _mm256_set1_epi32(static_cast<int>(rule_.key) - 1);
    // The 8 lanes at v (lane jj of packed row p on): quantised with the given scales, pruned
    // (+0) below the boundary magnitude, and at it (the boundary itself, rare ties) settled by
    // index, as emit does.
    auto lanes = [&](float* v, std::int64_t p, int jj, __m256 scale, __m256 inv, __m256i divide) {
      const __m256 x = _mm256_loadu_ps(v);
      const __m256 q = quantise_ ? quantise8(x, scale, inv, divide) : x;
      if (rule_.none) {
        _mm256_storeu_ps(v, q);
        return;
      }
      const __m256i m = _mm256_and_si256(_mm256_castps_si256(x), abs_mask);
      const __m256i kept = _mm256_cmpgt_epi32(m, vkey_minus_1);
      _mm256_storeu_ps(v, _mm256_and_ps(q, _mm256_castsi256_ps(kept)));
      unsigned ties = static_cast<unsigned>(
          _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(m, vkey))));
      while (ties) {
        const int t = __builtin_ctz(ties);
        ties &= ties - 1;
        if (index(p, jj + t) <= rule_.index) v[t] = 0.0f;
      }
    };
    const int vector_lanes = scalar_from + (nr - scalar_from) / 8 * 8;
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256i never = _mm256_setzero_si256();
    if (transposed) {
      for (int jj = scalar_from; jj < vector_lanes; jj += 8) {  // 8 rows of W, their scales held
        const std::size_t at = static_cast<std::size_t>(row + jj);
        const __m256 scale = quantise_ ? _mm256_loadu_ps(&scale_[at]) : one;
        const __m256 inv = quantise_ ? _mm256_loadu_ps(&inv_[at]) : one;
        const __m256i divide =
            quantise_ ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(&divide_[at])) : never;
        for (std::int64_t p = 0; p < kc; ++p) lanes(panel + p * nr + jj, p, jj, scale, inv, divide);
      }
    } else {
      for (std::int64_t p = 0; p < kc; ++p) {  // one row of W per packed row
        const std::size_t at = static_cast<std::size_t>(row + p);
        const __m256 scale = quantise_ ? _mm256_set1_ps(scale_[at]) : one;
        const __m256 inv = quantise_ ? _mm256_set1_ps(inv_[at]) : one;
        const __m256i divide = quantise_ ? _mm256_set1_epi32(divide_[at]) : never;
        for (int jj = scalar_from; jj < vector_lanes; jj += 8)
          lanes(panel + p * nr + jj, p, jj, scale, inv, divide);
      }
    }
    scalar_from = vector_lanes;
#endif
    for (std::int64_t p = 0; p < kc; ++p)
      for (int jj = scalar_from; jj < nr; ++jj) {
        float* v = panel + p * nr + jj;
        const float x = *v;
        float q = x;
        if (quantise_) {
          const auto at = static_cast<std::size_t>(transposed ? row + jj : row + p);
          q = round_half_away(x / scale_[at]) * scale_[at];  // (Quantiser's definition)
        }
        *v = rule_.pruned(magnitude_key(x), index(p, jj)) ? 0.0f : q;
      }
  }

#if defined(HWNAS_COMPRESS_AVX512)
  // pack_panel's whole 16-lane groups; returns the lanes done.  Packed row by packed row, all
  // groups of a row before the next (a transposed panel's groups hold their rows' scales in
  // registers), so a [256, 32] panel (32 KB) is read once rather than once per group.
  __attribute__((target("avx512f"))) int pack_panel16(float* panel, std::int64_t kc, int nr,
                                                      bool transposed, std::int64_t row,
                                                      std::int64_t col) const {
    const int groups = nr / 16;
    const __m512 near_half = _mm512_set1_ps(near_half_), one = _mm512_set1_ps(1.0f);
    const __m512i vkey = _mm512_set1_epi32(static_cast<int>(rule_.key)),
                  zero = _mm512_setzero_si512();
    // Entry (p, jj + t) of the panel is W's entry at + t * step: its index for ties.
    const std::int64_t step = transposed ? cols_ : 1;
    for (int g0 = 0; g0 < groups; g0 += 2) {
      const int held = std::min(2, groups - g0);
      __m512 scale[2] = {one, one}, inv[2] = {one, one};
      __mmask16 divide[2] = {0, 0};
      if (transposed && quantise_)
        for (int h = 0; h < held; ++h) {
          const std::size_t at = static_cast<std::size_t>(row + (g0 + h) * 16);
          scale[h] = _mm512_loadu_ps(&scale_[at]);
          inv[h] = _mm512_loadu_ps(&inv_[at]);
          divide[h] = _mm512_cmpneq_epi32_mask(_mm512_loadu_si512(&divide_[at]), zero);
        }
      for (std::int64_t p = 0; p < kc; ++p) {
        if (!transposed && quantise_) {  // one row of W per packed row
          const std::size_t at = static_cast<std::size_t>(row + p);
          scale[0] = scale[1] = _mm512_set1_ps(scale_[at]);
          inv[0] = inv[1] = _mm512_set1_ps(inv_[at]);
          divide[0] = divide[1] = divide_[at] ? 0xffff : 0;
        }
        for (int h = 0; h < held; ++h) {
          const int jj = (g0 + h) * 16;
          const std::int64_t at =
              transposed ? (row + jj) * cols_ + col + p : (row + p) * cols_ + col + jj;
          lanes16(panel + p * nr + jj, at, step, scale[h], inv[h], divide[h], near_half, vkey);
        }
      }
    }
    return groups * 16;
  }

  // mask_gradient's block in 16-lane vectors, a row's last few columns by masked loads and
  // stores: emit16<false, true>'s arithmetic (g * 1 kept, g * 0 pruned, ties by index).
  __attribute__((target("avx512f"))) void mask_block16(float* g, std::int64_t ld, const float* w,
                                                       std::int64_t r0, std::int64_t r1,
                                                       std::int64_t c0, std::int64_t c1) const {
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff),
                  vkey = _mm512_set1_epi32(static_cast<int>(rule_.key));
    for (std::int64_t r = r0; r < r1; ++r) {
      float* gr = g + r * ld;
      const std::int64_t row_at = r * cols_;  // W's entry (r, 0)
      for (std::int64_t c = c0; c < c1; c += 16) {
        const __mmask16 lanes =
            c + 16 <= c1 ? __mmask16{0xffff} : static_cast<__mmask16>((1u << (c1 - c)) - 1);
        const __m512 v = _mm512_maskz_loadu_ps(lanes, gr + c);
        const __m512i m = _mm512_and_si512(
            _mm512_castps_si512(_mm512_maskz_loadu_ps(lanes, w + row_at + c)), abs_mask);
        _mm512_mask_storeu_ps(
            gr + c, lanes,
            _mm512_mul_ps(v, _mm512_maskz_mov_ps(_mm512_cmpge_epi32_mask(m, vkey), one)));
        unsigned ties = _mm512_mask_cmpeq_epi32_mask(lanes, m, vkey);
        while (ties) {
          const int t = __builtin_ctz(ties);
          ties &= ties - 1;
          if (row_at + c + t <= rule_.index) gr[c + t] *= 0.0f;
        }
      }
    }
  }

  // The 16 lanes at v, W's entries at + t * step: quantised with the given scales, pruned (+0)
  // below the boundary magnitude, and at it (rare ties) settled by index, as emit16 does.
  __attribute__((target("avx512f"))) void lanes16(float* v, std::int64_t at, std::int64_t step,
                                                  __m512 scale, __m512 inv, __mmask16 divide,
                                                  __m512 near_half, __m512i vkey) const {
    const __m512 x = _mm512_loadu_ps(v);
    __m512 q = x;
    if (quantise_) {  // quantise8's arithmetic in 16 lanes
      const __m512 by_inv = _mm512_mul_ps(x, inv);
      const __m512 r = _mm512_roundscale_ps(by_inv, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      const __mmask16 slow =
          _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(by_inv, r)), near_half, _CMP_GE_OQ) |
          divide;
      q = _mm512_mul_ps(r, scale);
      if (slow) q = _mm512_mask_blend_ps(slow, q, divide_and_round16(x, scale));
    }
    if (rule_.none) {
      _mm512_storeu_ps(v, q);
      return;
    }
    const __m512i m = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(0x7fffffff));
    _mm512_storeu_ps(v, _mm512_maskz_mov_ps(_mm512_cmpge_epi32_mask(m, vkey), q));
    unsigned ties = _mm512_cmpeq_epi32_mask(m, vkey);
    while (ties) {
      const int t = __builtin_ctz(ties);
      ties &= ties - 1;
      if (at + t * step <= rule_.index) v[t] = 0.0f;
    }
  }
#endif

#if defined(__AVX2__)
  // Quantiser's vector operator with a scale per lane: the reciprocal where it rounds as division
  // would, division in the lanes where it might not (near a half-integer, or a scale whose
  // reciprocal is not normal: divide all ones).  Each lane gets round_half_away(v / scale) *
  // scale, as Quantiser gives it.
  __m256 quantise8(__m256 v, __m256 scale, __m256 inv, __m256i divide) const {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 q = _mm256_mul_ps(v, inv);
    const __m256 r = _mm256_round_ps(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 off = _mm256_andnot_ps(sign, _mm256_sub_ps(q, r));
    const __m256 slow = _mm256_or_ps(_mm256_cmp_ps(off, _mm256_set1_ps(near_half_), _CMP_GE_OQ),
                                     _mm256_castsi256_ps(divide));
    const __m256 fast = _mm256_mul_ps(r, scale);
    if (!_mm256_movemask_ps(slow)) return fast;
    return _mm256_blendv_ps(fast, divide_and_round(v, scale), slow);
  }
#endif

  const nn::Node* w_;
  std::int64_t cols_;
  PruneRule rule_;
  bool quantise_;
  float near_half_ = 0.5f;
  std::vector<float> scale_, inv_;    // per row (quantised)
  std::vector<std::int32_t> divide_;  // per row: -1 where the reciprocal cannot stand in
};

// ---- compression fused into the optimizer step ----
//
// A trainable weight's compression state, kept on its node as the optimizer's update hook: each
// step the optimizer's threads compress the rows they have just updated (the band pass, or the
// whole emit when nothing needs selecting), and after() settles the boundary.  The next forward
// pass then finds the compressed weight ready instead of reading the weight again in one more
// parallel pass.  The result is the same either way (compress_into on the updated weight); it is
// served only while nothing visible wrote the weight since: the same storage, shared with no
// other live tensor (another parameter over the same storage could be updated unseen), no
// non-const access since (Node::version) and no weights_changed() (weights_epoch()); other
// writers must call weights_changed() (spaces/compress.hpp).
class CompressionState final : public nn::UpdateHook {
 public:
  // The weight compressed after the last update, and what it is current for.
  struct Prepared {
    nn::Tensor source, compressed;
    std::uint64_t version = 0, epoch = 0;
    int bits = 0;
    double prune = 0;
    PruneRule rule;
    KeepBytes keep;  // the gradient mask as bytes (a selected boundary; null: none or all)
    // No compressed copy (null otherwise): compressed_linear's GEMMs compress the weight as
    // they pack it, through this view of it (PackedCompression).
    std::shared_ptr<const nn::WeightView> packed;
  };

  // Records the settings of a forward pass's compress_weight call; the next steps prepare them
  // only while consecutive calls agree (a supernet alternating settings would never be served),
  // without a compressed copy when the last call came from a consumer that packs the rule itself
  // (compressed_linear).  Under g_states.
  void request(int bits, double prune, bool packed) {
    stable_ = bits == bits_ && prune == prune_;
    bits_ = bits;
    prune_ = prune;
    packed_ = packed;
  }
  bool wanted() const { return stable_ && (bits_ < 16 || prune_ > 0); }

  // The prepared weight if it is current for `node` at these settings (and has a compressed
  // copy, unless the consumer packs the rule itself).  Under g_states.
  std::optional<Prepared> current(const nn::Node& node, int bits, double prune,
                                  bool packed_consumer) const {
    const auto& p = prepared_;
    if (p && p->bits == bits && p->prune == prune && (packed_consumer || !p->packed) &&
        p->source.data() == node.value.data() && p->source.shape() == node.value.shape() &&
        p->source.use_count() == 2 && p->version == node.version.load(std::memory_order_relaxed) &&
        p->epoch == nn::weights_epoch())
      return p;
    return std::nullopt;
  }

  // A frozen weight's compression (no optimizer runs this hook), computed by a forward pass
  // outside g_states: served like a prepared one while nothing wrote the weight since `version`
  // and `epoch`, which were read before it was computed.  Under g_states.
  void offer(Prepared p) {
    if (p.bits == bits_ && p.prune == prune_) prepared_ = std::move(p);
  }

  std::int64_t granule(const nn::Node& node) const override {
    return wanted() ? segments_of(node.value, bits_).granule() : 0;
  }

  void before(const nn::Node& node, std::int64_t chunks) override {
    prepared_.reset();
    failed_.store(false, std::memory_order_relaxed);
    epoch_ = nn::weights_epoch();  // (a weights_changed() during the step makes it stale)
    try {
      seg_ = segments_of(node.value, bits_);
      step_bits_ = bits_;
      step_prune_ = prune_;
      step_packed_ = packed_ && g_packing.load(std::memory_order_relaxed);
      count_ = prune_count(seg_.n, prune_);
      if (!step_packed_) out_ = nn::Tensor(node.value.shape());
      in_band_ = count_.select && band_.valid;
      // The byte mask of every selected boundary; last step's buffer is written again once
      // nothing (a graph that still masks a gradient with it) holds it any more.
      keep_.reset();
      if (count_.select && !step_packed_) {  // (a packed step masks by the weight itself)
        if (!(keep_spare_ && keep_spare_.use_count() == 1 &&
              keep_spare_->size() == static_cast<std::size_t>(seg_.n)))
          keep_spare_ = std::make_shared<std::vector<std::uint8_t>>(seg_.n);
        keep_ = keep_spare_;
      }
      // Emptied, not freed: the tasks' key lists keep their capacity from step to step.
      tasks_.resize(in_band_ ? static_cast<std::size_t>(chunks) : 0);
      seg_max_.resize(
          (in_band_ || step_packed_) && seg_.qmax > 0 ? static_cast<std::size_t>(seg_.count()) : 0);
      for (BandTask& task : tasks_) {
        task.below = 0;
        task.inside.clear();
        task.deferred.clear();
        task.hist.fill(0);
      }
      bins_ = in_band_ ? band_bins(band_) : BandBins(0, 1);
    } catch (...) {
      failed_.store(true, std::memory_order_relaxed);  // this step prepares nothing
    }
  }

  void chunk(const nn::Node& node, std::int64_t c, std::int64_t b,
             std::int64_t e) noexcept override {
    if (failed_.load(std::memory_order_relaxed)) return;
    try {
      const float* x = node.value.data();
      if (!count_.select) {
        if (!step_packed_)
          emit_range(x, seg_, b, e, count_.fixed, out_.data());
        else if (seg_.qmax > 0 && count_.fixed.none)  // (all pruned: no scale needed)
          for (std::int64_t s = b / seg_.len; s < seg_.count() && seg_.begin(s) < e; ++s)
            seg_max_[s] = max_magnitude(x + seg_.begin(s), seg_.end(s) - seg_.begin(s));
      } else if (in_band_) {
        scan_band(x, seg_, b, e, bins_, tasks_[static_cast<std::size_t>(c)],
                  step_packed_ ? nullptr : out_.data(), seg_max_.data(),
                  keep_ ? keep_->data() : nullptr);
      }
      // (otherwise the full selection in after() needs every entry first)
    } catch (...) {  // (allocation of the band's key lists)
      failed_.store(true, std::memory_order_relaxed);
    }
  }

  void after(const nn::Node& node) override {
    if (failed_.load(std::memory_order_relaxed)) {
      out_ = nn::Tensor();
      keep_.reset();
      return;
    }
    try {
      const float* x = node.value.data();
      PruneRule rule = count_.fixed;
      if (count_.select &&
          !(in_band_ && finish_band(x, seg_, count_.k, band_, bins_, tasks_, rule,
                                    step_packed_ ? nullptr : out_.data(), seg_max_.data(),
                                    keep_ ? keep_->data() : nullptr))) {
        rule = rule_at(kth_smallest_full(x, seg_.n, count_.k, band_));
        if (!step_packed_) {
          emit_all(x, seg_, rule, out_.data());
          write_keep_bytes(x, seg_.n, rule, keep_->data());
        } else if (seg_.qmax > 0) {
          for (std::int64_t s = 0; s < seg_.count(); ++s)
            seg_max_[s] = kept_max_magnitude(x, seg_, s, rule);
        }
      }
      prepared_ = Prepared{
          node.value,
          std::move(out_),
          node.version.load(std::memory_order_relaxed),
          epoch_,
          step_bits_,
          step_prune_,
          rule,
          std::move(keep_),
          step_packed_ ? std::make_shared<const PackedCompression>(node, rule, seg_.qmax, seg_max_)
                       : nullptr};
    } catch (...) {
      prepared_.reset();
    }
    out_ = nn::Tensor();
    keep_.reset();
  }

 private:
  int bits_ = 32;
  double prune_ = 0;
  bool stable_ = false;
  bool packed_ = false;
  std::optional<Prepared> prepared_;
  std::atomic<bool> failed_{false};
  PruneBand band_;  // kept from step to step, as t_bands is for the unfused path
  // The step in progress (its settings are fixed at before()).
  std::uint64_t epoch_ = 0;
  Segments seg_;
  int step_bits_ = 32;
  double step_prune_ = 0;
  bool step_packed_ = false;
  PruneCount count_;
  bool in_band_ = false;
  BandBins bins_{0, 1};
  std::vector<BandTask> tasks_;
  // The quantised segments' largest (kept) magnitudes: scan_band's, and a packed step's scales.
  std::vector<float> seg_max_;
  nn::Tensor out_;
  std::shared_ptr<std::vector<std::uint8_t>> keep_, keep_spare_;
};

// Guards the compression state of weight nodes against concurrent forward passes over shared
// weights (install, settings, reading the prepared weight).  Optimizers run the hooks outside
// forward passes and do not take it.
std::mutex g_states;

// The weight compressed for (bits, prune) by the last optimizer step (or, for a frozen weight,
// by an earlier forward pass), if it is current; installs the fused state on a leaf in grad mode
// the first time (from then on each step prepares the settings the forward passes keep asking
// for).  Sets offer_frozen when the caller should compute a frozen weight's compression and
// offer it to the state: a frozen weight (LoRA's base, a fine-tuned network's fixed layers) does
// not change from step to step, and compressing it again on every forward pass cost 9-33 % of
// the step of LoRA genomes with int4 / int8 512-unit layers (compression space, stop 36).
std::optional<CompressionState::Prepared> prepared_compression(const nn::Var& w, int bits,
                                                               double prune, bool packed_consumer,
                                                               bool& offer_frozen) {
  offer_frozen = false;
  nn::Node* node = w.node();
  if (!node || !node->parents.empty() || node->backward_fn) return std::nullopt;  // not a leaf
  std::lock_guard<std::mutex> lock(g_states);
  auto* state = dynamic_cast<CompressionState*>(node->update_hook.get());
  if (!state) {
    if (node->update_hook || nn::no_grad_session() != 0)
      return std::nullopt;  // another hook's, or not being trained here
    auto fresh = std::make_shared<CompressionState>();
    state = fresh.get();
    nn::set_update_hook(w, std::move(fresh));
  }
  state->request(bits, prune, packed_consumer);
  if (auto p = state->current(*node, bits, prune, packed_consumer)) {
    // Without the copy of the source: held past the lock it would make the weight's storage
    // look shared (current()) to a concurrent forward pass, which would compress again.
    p->source = nn::Tensor();
    return p;
  }
  offer_frozen = !node->requires_grad && nn::no_grad_session() == 0;
  return std::nullopt;
}

// A frozen weight's compression, offered to its state for the next forward passes.
// (From the band of the last compression of w, as compress_uncached: a frozen weight whose
// settings alternate, or which is written between calls, is compressed on every call.)
nn::Var compress_frozen(const nn::Var& w, int bits, double prune) {
  nn::Node* node = w.node();
  // The storage, version and epoch the offer is for, read before computing: a counted write or
  // an announced one meanwhile leaves the offer stale, never served.
  const nn::Tensor source = w.value();
  const std::uint64_t version = node->version.load(std::memory_order_relaxed),
                      epoch = nn::weights_epoch();
  nn::Tensor out(source.shape());
  const PruneRule rule = compress_with_band(w, bits, prune, out);
  {
    std::lock_guard<std::mutex> lock(g_states);
    if (auto* state = dynamic_cast<CompressionState*>(node->update_hook.get()))
      state->offer(CompressionState::Prepared{source, out, version, epoch, bits, prune, rule,
                                              nullptr, nullptr});
  }
  return straight_through(w, std::move(out), rule);
}

// A float request (bits >= 16, prune 0) on a weight with a fused state: the optimizer stops
// compressing it.
void request_float(const nn::Var& w) {
  nn::Node* node = w.node();
  if (!node || !node->versioned.load(std::memory_order_relaxed)) return;  // never had a hook
  std::lock_guard<std::mutex> lock(g_states);
  if (auto* state = dynamic_cast<CompressionState*>(node->update_hook.get()))
    state->request(32, 0.0, false);
}

// compress_weight's work.  With `view` (a consumer that applies a WeightView as it packs:
// compressed_linear), a weight that the optimizer step prepared without a compressed copy comes
// back as *view, and the returned Var is w itself.
nn::Var compress_for(const nn::Var& w, int bits, double prune,
                     std::shared_ptr<const nn::WeightView>* view) {
  if (bits >= 16 && prune <= 0) {
    request_float(w);
    return w;
  }
  if (bits < 16) check_bits(bits);
  bool offer_frozen = false;
  if (auto ready = prepared_compression(w, bits, prune, view != nullptr, offer_frozen)) {
    if (ready->packed) {
      *view = std::move(ready->packed);
      return w;
    }
    return straight_through(w, std::move(ready->compressed), ready->rule, std::move(ready->keep));
  }
  if (offer_frozen) return compress_frozen(w, bits, prune);
  const std::uint64_t session = nn::no_grad_session();
  if (session == 0) return compress_uncached(w, bits, prune);
  if (auto it = t_cache.find(w.node()); it != t_cache.end()) {
    const CacheEntry& e = it->second;
    if (e.session == session && e.bits == bits && e.prune == prune &&
        e.source.lock() == w.node_ptr())
      return e.compressed;
  }
  // No reference into the cache is held across compress_uncached: its parallel loops may run
  // other tasks on this thread, which may use (and clear) the same thread-local cache.
  nn::Var compressed = compress_uncached(w, bits, prune);
  if (t_cache.size() > 4096) t_cache.clear();  // bound it when many models come and go
  t_cache[w.node()] = CacheEntry{w.node_ptr(), session, bits, prune, compressed};
  return compressed;
}

}  // namespace

nn::Var compress_weight(const nn::Var& w, int bits, double prune) {
  return compress_for(w, bits, prune, nullptr);
}

nn::Var compressed_linear(const nn::Var& x, const nn::Var& w, const nn::Var& b, int bits,
                          double prune) {
  std::shared_ptr<const nn::WeightView> view;
  const nn::Var weight = compress_for(w, bits, prune, &view);
  return nn::linear(x, weight, b, std::move(view));
}

void set_packed_compression(bool on) { g_packing.store(on, std::memory_order_relaxed); }

}  // namespace hwnas::spaces
