#include "spaces/compress.hpp"

#include <oneapi/tbb/parallel_for.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

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

nn::Var compress_uncached(const nn::Var& w, int bits, double prune);

}  // namespace

std::vector<float> quantisation_scales(const nn::Tensor& w, int bits) {
  if (bits >= 16 || w.numel() == 0) return {};
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
    scales[static_cast<std::size_t>(c)] = maxabs > 0 ? maxabs / qmax : 1.0f;
  }
  return scales;
}

int kept_channels(int full, double ratio) {
  return std::max(1, static_cast<int>(std::lround(full * (1.0 - ratio))));
}

nn::Var compress_weight(const nn::Var& w, int bits, double prune) {
  if (bits >= 16 && prune <= 0) return w;
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

// Calls fn(t) for each task t in [0, tasks), in parallel when there are several.
template <class F>
void for_tasks(std::int64_t tasks, F&& fn) {
  if (tasks == 1)
    fn(std::int64_t{0});
  else if (tasks > 1)
    oneapi::tbb::parallel_for(std::int64_t{0}, tasks, fn);
}

// Calls fn(begin, end) over [0, n) in pieces of kPiece (boundaries fixed by n), in parallel.
template <class F>
void for_pieces(std::int64_t n, F&& fn) {
  for_tasks((n + kPiece - 1) / kPiece,
            [&](std::int64_t p) { fn(p * kPiece, std::min(n, (p + 1) * kPiece)); });
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

// Scans w[0..n) (entry indices from base): counts the entries whose magnitude key is below lo and
// appends the order keys of those in [lo, hi) to `inside`.
void scan_band(const float* w, std::int64_t base, std::int64_t n, MagnitudeKey lo, MagnitudeKey hi,
               std::int64_t& below, std::vector<std::uint64_t>& inside) {
  std::int64_t i = 0;
#if defined(__AVX2__)
  static const LeftPackTable table;
  // Positions of in-band entries, packed without a branch per vector: whole 8-lane stores
  // advanced by the number of lanes kept (the band holds a few percent of the entries at
  // unpredictable places).
  thread_local std::vector<std::uint32_t> positions;
  positions.resize(static_cast<std::size_t>(n) + 8);
  std::uint32_t* out = positions.data();
  std::int64_t found = 0;
  // Keys are < 2^31 and lo, hi <= 2^31, so signed 32-bit compares order them (hi - 1 for "<").
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), vlo = _mm256_set1_epi32(int(lo)),
                vhi = _mm256_set1_epi32(int(hi - 1));
  __m256i nb = _mm256_setzero_si256();
  for (; i + 8 <= n; i += 8) {
    const __m256i m =
        _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + i)), abs_mask);
    const __m256i lt = _mm256_cmpgt_epi32(vlo, m);                                // m < lo
    const __m256i out_of_band = _mm256_or_si256(lt, _mm256_cmpgt_epi32(m, vhi));  // or m >= hi
    nb = _mm256_sub_epi32(nb, lt);  // += 1 where m < lo
    const unsigned in_mask =
        ~static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(out_of_band))) & 0xffu;
    const __m256i lanes = _mm256_load_si256(reinterpret_cast<const __m256i*>(table.lanes[in_mask]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + found),
                        _mm256_add_epi32(lanes, _mm256_set1_epi32(static_cast<int>(i))));
    found += __builtin_popcount(in_mask);
  }
  alignas(32) std::int32_t cb[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(cb), nb);
  for (int t = 0; t < 8; ++t) below += cb[t];
  for (std::int64_t f = 0; f < found; ++f)
    inside.push_back(order_key(magnitude_key(w[out[f]]), base + out[f]));
#endif
  for (; i < n; ++i) {
    const MagnitudeKey m = magnitude_key(w[i]);
    below += m < lo;
    if (m >= lo && m < hi) inside.push_back(order_key(m, base + i));
  }
}

// Between optimizer steps the weights move a little, so the boundary stays among the entries
// whose magnitudes lay near it last time.  A weight remembers a band of magnitudes [lo, hi) around
// its last boundary, about half_width entries on each side: one vectorised counting pass over the
// weight then finds the boundary among the few entries in the band, and the band is centred on
// the new boundary for the next step.  When the boundary has left the band (or the first time), a
// full selection runs and the band widens; while the boundary stays well inside, it narrows.  The
// band changes only speed, never the result.
struct PruneBand {
  MagnitudeKey lo = 0, hi = 0;
  std::int64_t half_width = 0;  // in entries, on each side of the boundary
  bool valid = false;
};
thread_local std::unordered_map<const nn::Node*, PruneBand> t_bands;

// Sets band.lo / band.hi to the magnitudes half_width ranks below and above position `at` of
// keys[0..size) (partitioned around `at` by nth_element).  keys holds every entry between
// lo_floor and hi_ceiling; an edge whose rank lies outside keys is extrapolated past the old
// bound, so that a boundary drifting steadily one way (pruned weights shrinking under weight
// decay, say) is still centred on the next step.
void centre_band(std::vector<std::uint64_t>& keys, std::int64_t at, PruneBand& band,
                 MagnitudeKey lo_floor, MagnitudeKey hi_ceiling) {
  const auto size = static_cast<std::int64_t>(keys.size());
  const auto nth = keys.begin() + at;
  const std::int64_t lo_rank = at - band.half_width, hi_rank = at + band.half_width;
  const bool has_lo = lo_rank >= 0, has_hi = hi_rank < size;
  MagnitudeKey lo = lo_floor, hi = hi_ceiling;
  if (has_lo) {
    std::nth_element(keys.begin(), keys.begin() + lo_rank, nth);
    lo = static_cast<MagnitudeKey>(keys[static_cast<std::size_t>(lo_rank)] >> 32);
  }
  if (has_hi) {
    std::nth_element(nth + 1, keys.begin() + hi_rank, keys.end());
    hi = static_cast<MagnitudeKey>(keys[static_cast<std::size_t>(hi_rank)] >> 32) + 1;
  }
  // An edge whose rank lies past the known keys is extrapolated from the density of the keys
  // between the boundary and the old bound.
  const float b = std::bit_cast<float>(static_cast<MagnitudeKey>(*nth >> 32));
  const auto width = static_cast<float>(band.half_width);
  if (!has_lo) {
    const float span = b - std::bit_cast<float>(lo_floor);
    lo = magnitude_key(
        std::max(0.0f, b - span * width / static_cast<float>(std::max<std::int64_t>(at, 1))));
    lo = std::min(lo, lo_floor);
  }
  if (!has_hi && hi_ceiling <= 0x7f800000u) {  // (a ceiling above every key stays)
    const float span = std::bit_cast<float>(hi_ceiling - 1) - b;
    const float edge =
        b + span * width / static_cast<float>(std::max<std::int64_t>(size - 1 - at, 1));
    hi = std::max(hi_ceiling, std::min<MagnitudeKey>(magnitude_key(edge), 0x7f800000u) + 1);
  }
  band.lo = lo;
  band.hi = hi;
  band.valid = true;
}

// The narrowest band: a miss costs a full selection over n entries (and doubles the band), a
// wide band three selections over its own entries on every step, so the band never narrows
// below 1.6% of the weight (256 entries a side at least).
std::int64_t min_half_width(std::int64_t n) { return std::max<std::int64_t>(256, n / 64); }

// The order_key of the k-th smallest entry of w[0..n), 1 <= k <= n.
std::uint64_t kth_smallest(const float* w, std::int64_t n, std::int64_t k, PruneBand& band) {
  if (band.valid) {
    const std::int64_t pieces = (n + kPiece - 1) / kPiece;
    std::vector<std::int64_t> piece_below(static_cast<std::size_t>(pieces), 0);
    std::vector<std::vector<std::uint64_t>> piece_inside(static_cast<std::size_t>(pieces));
    for_pieces(n, [&](std::int64_t b, std::int64_t e) {
      const auto p = static_cast<std::size_t>(b / kPiece);
      scan_band(w + b, b, e - b, band.lo, band.hi, piece_below[p], piece_inside[p]);
    });
    std::int64_t below = 0;
    std::vector<std::uint64_t> inside;
    for (std::size_t p = 0; p < piece_below.size(); ++p) {
      below += piece_below[p];
      inside.insert(inside.end(), piece_inside[p].begin(), piece_inside[p].end());
    }
    if (below < k && k <= below + static_cast<std::int64_t>(inside.size())) {
      const std::int64_t at = k - below - 1;
      std::nth_element(inside.begin(), inside.begin() + at, inside.end());
      const std::uint64_t boundary = inside[static_cast<std::size_t>(at)];
      // Narrow the band while the boundary moves less than a quarter of it per step.
      const std::int64_t margin =
          std::min<std::int64_t>(at, static_cast<std::int64_t>(inside.size()) - 1 - at);
      if (margin > band.half_width * 3 / 4)
        band.half_width = std::max(min_half_width(n), band.half_width * 15 / 16);
      centre_band(inside, at, band, band.lo, band.hi);
      return boundary;
    }
    band.half_width *= 2;  // the weights moved further than the band reached: widen it
  }
  std::vector<std::uint64_t> all(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i)
    all[static_cast<std::size_t>(i)] = order_key(magnitude_key(w[i]), i);
  std::nth_element(all.begin(), all.begin() + (k - 1), all.end());
  const std::uint64_t boundary = all[static_cast<std::size_t>(k - 1)];
  if (band.half_width == 0) band.half_width = 2 * min_half_width(n);
  band.half_width = std::min(band.half_width, n);
  centre_band(all, k - 1, band, 0, 0x80000000u);
  return boundary;
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

PruneRule prune_rule(const nn::Var& w, double prune) {
  const std::int64_t n = w.value().numel();
  const auto k = static_cast<std::int64_t>(std::floor(prune * static_cast<double>(n)));
  PruneRule rule;
  if (prune <= 0 || k <= 0) return rule;
  rule.none = false;
  if (k >= n) {
    rule.key = 0xffffffffu;  // every entry
    return rule;
  }
  // A copy of the band, written back after: the selection's parallel loops may run other tasks
  // on this thread that use (and clear) the thread-local map.
  PruneBand band;
  if (auto it = t_bands.find(w.node()); it != t_bands.end()) band = it->second;
  const std::uint64_t b = kth_smallest(w.value().data(), n, k, band);
  if (t_bands.size() > 4096) t_bands.clear();  // bound it when many models come and go
  t_bands[w.node()] = band;
  rule.key = static_cast<MagnitudeKey>(b >> 32);
  rule.index = static_cast<std::int64_t>(b & 0xffffffffu);
  return rule;
}

// std::round (half away from zero), written so that it vectorises: x - trunc(x) is exact.
inline float round_half_away(float x) {
  const float t = std::trunc(x);
  return std::fabs(x - t) >= 0.5f ? t + std::copysign(1.0f, x) : t;
}

// max |row[i]|, NaN entries ignored as std::max(m, |x|) ignores them (max of non-NaN values is
// exact in any order).
float max_magnitude(const float* row, std::int64_t n) {
  float m = 0;
  std::int64_t i = 0;
#if defined(__AVX2__)
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 vm = _mm256_setzero_ps();
  for (; i + 8 <= n; i += 8)
    vm = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(row + i)), vm);  // NaN: keeps vm
  alignas(32) float t[8];
  _mm256_store_ps(t, vm);
  for (float v : t) m = std::max(m, v);
#endif
  for (; i < n; ++i) m = std::max(m, std::fabs(row[i]));
  return m;
}

// One pass over entries base .. base + len: dst[i] = values[i], quantised with `scale`
// (round_half_away(v / scale) * scale) when kQuantise, and 0 where the rule prunes the entry
// (its magnitude read from keys_from[i]).  The forward pass emits the compressed weight
// (values = keys_from = the weight); the backward pass masks the gradient (values = dst = the
// gradient, keys_from = the weight).
//
// A pruned entry becomes +0 in the forward pass (kGradient false) and values[i] * 0 in the
// backward pass (kGradient true: the definition's g * mask, whose zeros keep g's sign).
template <bool kQuantise, bool kGradient = false>
void emit(const float* values, const float* keys_from, std::int64_t base, std::int64_t len,
          float scale, const PruneRule& rule, float* dst) {
  auto pruned_value = [](float v) { return kGradient ? v * 0.0f : 0.0f; };
  if (!rule.none && rule.key > 0x7fffffffu) {  // every entry pruned
    for (std::int64_t i = 0; i < len; ++i) dst[i] = pruned_value(values[i]);
    return;
  }
  std::int64_t i = 0;
#if defined(__AVX2__)
  const __m256 vs = _mm256_set1_ps(scale), sign = _mm256_set1_ps(-0.0f),
               half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), vkey = _mm256_set1_epi32(int(rule.key)),
                vkey_minus_1 = _mm256_set1_epi32(int(rule.key) - 1);
  for (; i + 8 <= len; i += 8) {
    __m256 v = _mm256_loadu_ps(values + i);
    if constexpr (kQuantise) {
      const __m256 q = _mm256_div_ps(v, vs);
      const __m256 t = _mm256_round_ps(q, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
      const __m256 away =
          _mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_sub_ps(q, t)), half, _CMP_GE_OQ);
      const __m256 step = _mm256_and_ps(away, _mm256_or_ps(_mm256_and_ps(q, sign), one));
      // round keeps the sign of its argument (-0.3 -> -0.0): t + step alone would give +0.
      v = _mm256_mul_ps(_mm256_or_ps(_mm256_add_ps(t, step), _mm256_and_ps(q, sign)), vs);
    }
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
    if constexpr (kQuantise) v = round_half_away(v / scale) * scale;
    dst[i] = rule.pruned(magnitude_key(keys_from[i]), base + i) ? pruned_value(v) : v;
  }
}

nn::Var compress_uncached(const nn::Var& w, int bits, double prune) {
  const nn::Tensor& x = w.value();
  const std::int64_t n = x.numel();
  const float* xd = x.data();
  const PruneRule rule = prune_rule(w, prune);
  nn::Tensor out(x.shape());
  float* od = out.data();
  if (bits >= 16 || n == 0) {
    for_pieces(n, [&](std::int64_t b, std::int64_t e) {
      emit<false>(xd + b, xd + b, b, e - b, 0.0f, rule, od + b);
    });
  } else {
    // Per output channel (dim 0), as quantisation_scales: rows of `per` entries, several rows
    // per parallel task.
    const std::int64_t channels = x.shape().rank() >= 2 ? x.shape()[0] : 1;
    const std::int64_t per = n / channels;
    const float qmax = static_cast<float>((1 << (bits - 1)) - 1);
    const std::int64_t rows_per_task =
        std::max<std::int64_t>(1, kPiece / std::max<std::int64_t>(per, 1));
    for_tasks((channels + rows_per_task - 1) / rows_per_task, [&](std::int64_t t) {
      const std::int64_t c0 = t * rows_per_task, c1 = std::min(channels, c0 + rows_per_task);
      for (std::int64_t c = c0; c < c1; ++c) {
        const float* row = xd + c * per;
        // The scale of the kept entries (quantisation_scales of the pruned weight): the row's
        // largest magnitude, unless that entry itself may be pruned (then every entry is
        // checked).
        float maxabs = max_magnitude(row, per);
        if (!rule.none && magnitude_key(maxabs) <= rule.key) {
          maxabs = 0;
          for (std::int64_t i = 0; i < per; ++i)
            if (!rule.pruned(magnitude_key(row[i]), c * per + i))
              maxabs = std::max(maxabs, std::fabs(row[i]));
        }
        const float scale = maxabs > 0 ? maxabs / qmax : 1.0f;
        emit<true>(row, row, c * per, per, scale, rule, od + c * per);
      }
    });
  }
  // Straight-through gradient, zero on pruned entries (decided again from the weight's value,
  // which no op changes between this forward and its backward).
  return nn::make_result(std::move(out), {w}, [rule](nn::Node& self) {
    nn::Node& parent = *self.parents[0];
    if (!parent.requires_grad) return;
    nn::Tensor g = std::move(self.grad);
    if (!rule.none) {
      float* gd = g.data();
      const float* wd = parent.value.data();
      for_pieces(g.numel(), [&](std::int64_t b, std::int64_t e) {
        emit<false, true>(gd + b, wd + b, b, e - b, 0.0f, rule, gd + b);
      });
    }
    if (parent.grad.empty() || parent.grad.shape() != parent.value.shape())
      parent.grad = std::move(g);
    else
      parent.grad.array() += g.array();
  });
}

}  // namespace

}  // namespace hwnas::spaces
