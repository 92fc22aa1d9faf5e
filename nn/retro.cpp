#include "nn/retro.hpp"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <numeric>
#include <stdexcept>

#include "nn/activity.hpp"
#include "nn/ops.hpp"
#include "nn/state_file.hpp"

namespace hwnas::nn {
namespace {

constexpr const char* kFix = "rebuild it with nn::build_retro_datastore + save_retro_datastore";

std::string where(const std::string& path) { return "retro datastore '" + path + "'"; }

[[noreturn]] void bad(const std::string& source, const std::string& field, const std::string& what,
                      const std::string& fix) {
  throw std::invalid_argument(source + ": field '" + field + "' " + what + "; " + fix);
}

StateRecord floats(std::string name, const std::vector<float>& v, std::vector<std::int64_t> shape) {
  StateRecord r{std::move(name), RecordType::Float32, std::move(shape), {}};
  r.data.assign(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
  return r;
}

}  // namespace

double RetroDatastore::bytes() const {
  return 4.0 * (static_cast<double>(embedding.size()) + static_cast<double>(keys.size()) +
                static_cast<double>(neighbours.size()));
}

void RetroDatastore::check(const std::string& source) const {
  const std::string fix = kFix;
  if (chunk < 1) bad(source, "chunk", "= " + std::to_string(chunk) + " must be >= 1", fix);
  if (features < 1) bad(source, "features", "= " + std::to_string(features) + " must be >= 1", fix);
  if (key_dim < 1) bad(source, "key_dim", "= " + std::to_string(key_dim) + " must be >= 1", fix);
  if (embedding.size() != static_cast<std::size_t>(features) * key_dim)
    bad(source, "embedding",
        "holds " + std::to_string(embedding.size()) + " values, features x key_dim needs " +
            std::to_string(static_cast<std::size_t>(features) * key_dim),
        fix);
  if (keys.size() % static_cast<std::size_t>(key_dim) != 0)
    bad(source, "keys",
        "holds " + std::to_string(keys.size()) + " values, not a multiple of key_dim", fix);
  const std::size_t want = static_cast<std::size_t>(size()) * neighbour_rows() * features;
  if (neighbours.size() != want)
    bad(source, "neighbours",
        "holds " + std::to_string(neighbours.size()) +
            " values, entries x 2 chunk x features needs " + std::to_string(want),
        fix);
}

void RetroDatastore::finish() {
  const int n = size();
  key_norms.assign(static_cast<std::size_t>(n), 0.0f);
  for (int i = 0; i < n; ++i) {
    const float* k = keys.data() + static_cast<std::size_t>(i) * key_dim;
    float s = 0;
    for (int j = 0; j < key_dim; ++j) s += k[j] * k[j];
    key_norms[static_cast<std::size_t>(i)] = s;
  }
}

std::vector<float> retro_embedding(int features, int key_dim, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f / std::sqrt(static_cast<float>(key_dim)));
  std::vector<float> e(static_cast<std::size_t>(features) * key_dim);
  for (float& v : e) v = dist(rng);
  return e;
}

void retro_embed_chunk(const float* rows, int m, const RetroDatastore& s, float* out) {
  const int F = s.features, D = s.key_dim;
  std::vector<float> mean(static_cast<std::size_t>(F), 0.0f);
  for (int t = 0; t < m; ++t)
    for (int f = 0; f < F; ++f) mean[static_cast<std::size_t>(f)] += rows[t * F + f];
  for (float& v : mean) v /= static_cast<float>(m);
  double norm = 0;
  for (int j = 0; j < D; ++j) {
    float acc = 0;
    for (int f = 0; f < F; ++f)
      acc += mean[static_cast<std::size_t>(f)] * s.embedding[static_cast<std::size_t>(f) * D + j];
    out[j] = acc;
    norm += static_cast<double>(acc) * acc;
  }
  if (norm > 0) {
    const float inv = static_cast<float>(1.0 / std::sqrt(norm));
    for (int j = 0; j < D; ++j) out[j] *= inv;
  }
}

std::vector<int> retro_nearest(const RetroDatastore& s, const float* query, int k) {
  const int n = s.size(), D = s.key_dim;
  k = std::min(k, n);
  if (k <= 0) return {};
  // ||q - k_i||^2 = ||q||^2 + ||k_i||^2 - 2 q.k_i; ||q||^2 is the same for every i.
  using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Eigen::Map<const RowMat> K(s.keys.data(), n, D);
  Eigen::Map<const Eigen::VectorXf> q(query, D);
  Eigen::VectorXf dist = -2.0f * (K * q);
  for (int i = 0; i < n; ++i) dist[i] += s.key_norms[static_cast<std::size_t>(i)];
  std::vector<int> idx(static_cast<std::size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int a, int b) {
    return dist[a] < dist[b] || (dist[a] == dist[b] && a < b);
  });
  idx.resize(static_cast<std::size_t>(k));
  return idx;
}

RetroDatastore build_retro_datastore(const Tensor& seqs, int chunk, int key_dim,
                                     std::uint64_t seed) {
  if (seqs.shape().rank() != 3)
    throw std::invalid_argument("build_retro_datastore: sequences must be [S, L, F], got " +
                                seqs.shape().str());
  if (chunk < 1 || key_dim < 1)
    throw std::invalid_argument("build_retro_datastore: chunk and key_dim must be >= 1, got " +
                                std::to_string(chunk) + " and " + std::to_string(key_dim));
  const int S = seqs.shape()[0], L = seqs.shape()[1], F = seqs.shape()[2];
  if (L < chunk)
    throw std::invalid_argument("build_retro_datastore: sequences of " + std::to_string(L) +
                                " rows hold no chunk of " + std::to_string(chunk));
  RetroDatastore s = empty_retro_datastore(chunk, F, key_dim, seed);
  const int per = L / chunk, rows = 2 * chunk;
  s.keys.resize(static_cast<std::size_t>(S) * per * key_dim);
  s.neighbours.assign(static_cast<std::size_t>(S) * per * rows * F, 0.0f);
  for (int i = 0; i < S; ++i)
    for (int u = 0; u < per; ++u) {
      const std::size_t e = static_cast<std::size_t>(i) * per + u;
      const float* start = seqs.data() + (static_cast<std::size_t>(i) * L + u * chunk) * F;
      retro_embed_chunk(start, chunk, s, s.keys.data() + e * key_dim);
      const int take = std::min(rows, L - u * chunk);  // zero rows past the sequence's end
      std::memcpy(s.neighbours.data() + e * rows * F, start,
                  static_cast<std::size_t>(take) * F * sizeof(float));
    }
  s.finish();
  return s;
}

RetroDatastore empty_retro_datastore(int chunk, int features, int key_dim, std::uint64_t seed) {
  RetroDatastore s;
  s.chunk = chunk;
  s.features = features;
  s.key_dim = key_dim;
  s.embedding = retro_embedding(features, key_dim, seed);
  return s;
}

void save_retro_datastore(const std::string& path, const RetroDatastore& s) {
  s.check(where(path));
  const std::int64_t n = s.size();
  std::vector<StateRecord> recs = {StateRecord::from_int("format_version", kRetroFormatVersion),
                                   StateRecord::from_int("chunk", s.chunk),
                                   StateRecord::from_int("features", s.features),
                                   StateRecord::from_int("key_dim", s.key_dim),
                                   StateRecord::from_int("entries", n),
                                   floats("embedding", s.embedding, {s.features, s.key_dim})};
  if (n > 0) {
    recs.push_back(floats("keys", s.keys, {n, s.key_dim}));
    recs.push_back(floats("neighbours", s.neighbours, {n, s.neighbour_rows(), s.features}));
  }
  write_file_atomically(path, encode_state_file(kRetroMagic, recs));
}

RetroDatastore load_retro_datastore(const std::string& path) {
  const std::string src = where(path);
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw std::invalid_argument(src +
                                ": file not found; build it with nn::build_retro_datastore + "
                                "save_retro_datastore, or set the block's 'datastore' param to "
                                "an existing file");
  const std::string bytes = read_whole_file(path);
  if (bytes.compare(0, kRetroMagic.size(), kRetroMagic) != 0) {
    std::string got;
    for (char c : bytes.substr(0, kRetroMagic.size()))
      got += (c >= 32 && c < 127) ? std::string(1, c) : "\\" + std::to_string(+c & 0xff);
    bad(src, "magic", "is '" + got + "', expected 'HWNASRT\\0' (not a retro datastore)",
        "pass a file written by save_retro_datastore");
  }
  std::vector<StateRecord> recs;
  try {
    recs = decode_state_file(kRetroMagic, bytes, src);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string(e.what()) + "; " + kFix);
  }
  std::map<std::string, const StateRecord*> by;
  for (const auto& r : recs) by[r.name] = &r;
  auto rec = [&](const char* f) -> const StateRecord& {
    auto it = by.find(f);
    if (it == by.end()) bad(src, f, "is missing", kFix);
    return *it->second;
  };
  auto integer = [&](const char* f) {
    try {
      return rec(f).to_int();
    } catch (const std::invalid_argument& e) {
      if (by.count(f)) bad(src, f, "is not one int64", kFix);
      throw;
    }
  };
  const std::int64_t version = integer("format_version");
  if (version != kRetroFormatVersion)
    bad(src, "format_version",
        "= " + std::to_string(version) + " is not supported (this build reads " +
            std::to_string(kRetroFormatVersion) + ")",
        std::string("rebuild the datastore with this build (") + kFix + ")");
  RetroDatastore s;
  auto small = [&](const char* f) {
    const std::int64_t v = integer(f);
    if (v < 1 || v > (1 << 20))
      bad(src, f, "= " + std::to_string(v) + " must be in [1, 2^20]", kFix);
    return static_cast<int>(v);
  };
  s.chunk = small("chunk");
  s.features = small("features");
  s.key_dim = small("key_dim");
  const std::int64_t n = integer("entries");
  if (n < 0) bad(src, "entries", "= " + std::to_string(n) + " must be >= 0", kFix);
  auto tensor = [&](const char* f, std::vector<std::int64_t> shape) {
    const StateRecord& r = rec(f);
    if (r.type != RecordType::Float32 || r.shape != shape) {
      std::string want, got;
      for (auto d : shape) want += (want.empty() ? "" : ", ") + std::to_string(d);
      for (auto d : r.shape) got += (got.empty() ? "" : ", ") + std::to_string(d);
      bad(src, f, "has shape [" + got + "], expected float32 [" + want + "] from the header", kFix);
    }
    std::vector<float> v(r.data.size() / sizeof(float));
    if (!v.empty()) std::memcpy(v.data(), r.data.data(), r.data.size());
    return v;
  };
  s.embedding = tensor("embedding", {s.features, s.key_dim});
  if (n > 0) {
    s.keys = tensor("keys", {n, s.key_dim});
    s.neighbours = tensor("neighbours", {n, 2 * s.chunk, s.features});
  }
  s.check(src);
  s.finish();
  return s;
}

std::shared_ptr<const RetroDatastore> cached_retro_datastore(const std::string& path) {
  // A file is the same if its size, modification time and trailing checksum are: a store
  // written over it within the clock's resolution and of the same size still differs in its
  // checksum.
  struct Key {
    std::uintmax_t size = 0;
    std::filesystem::file_time_type mtime;
    std::string tail;
    bool operator==(const Key&) const = default;
  };
  struct Entry {
    Key key;
    std::shared_ptr<const RetroDatastore> store;
  };
  static std::mutex mu;
  static std::map<std::string, Entry> cache;
  std::error_code ec1, ec2;
  Key key;
  key.size = std::filesystem::file_size(path, ec1);
  key.mtime = std::filesystem::last_write_time(path, ec2);
  const bool known = !ec1 && !ec2 && key.size >= 8;
  if (known) {
    std::ifstream f(path, std::ios::binary);
    f.seekg(static_cast<std::streamoff>(key.size - 8));
    key.tail.resize(8);
    f.read(key.tail.data(), 8);
  }
  std::lock_guard<std::mutex> lock(mu);
  if (known) {
    auto it = cache.find(path);
    if (it != cache.end() && it->second.key == key) return it->second.store;
  }
  auto store = std::make_shared<const RetroDatastore>(load_retro_datastore(path));
  if (known) cache[path] = Entry{key, store};
  return store;
}

void RetroConfig::validate() const {
  auto fail = [](const std::string& m) { throw std::invalid_argument("retro: " + m); };
  if (d < 1) fail("model dimension must be >= 1, got " + std::to_string(d));
  if (features < 1) fail("retrieval source width must be >= 1, got " + std::to_string(features));
  if (chunk < 1) fail("chunk must be >= 1, got " + std::to_string(chunk));
  if (neighbours < 1) fail("neighbours must be >= 1, got " + std::to_string(neighbours));
  if (heads < 1 || d % heads != 0)
    fail("model dimension " + std::to_string(d) + " not divisible by heads " +
         std::to_string(heads) + "; choose heads dividing it");
  if (encoder_width < 1) fail("encoder_width must be >= 1, got " + std::to_string(encoder_width));
  if (neighbour_rows < 1)
    fail("neighbour_rows must be >= 1, got " + std::to_string(neighbour_rows));
}

RetroLayer::RetroLayer(const RetroConfig& c, std::string datastore, std::mt19937_64& rng)
    : c_((c.validate(), c)),
      path_(std::move(datastore)),
      embed_(c.features, c.encoder_width, false, rng),
      cond_(c.d, c.encoder_width, false, rng),
      enc_qkv_(c.encoder_width, 3 * c.encoder_width, false, rng),
      enc_out_(c.encoder_width, c.encoder_width, false, rng),
      q_(c.d, c.d, false, rng),
      kv_(c.encoder_width, 2 * c.d, false, rng),
      out_(c.d, c.d, false, rng) {
  std::normal_distribution<float> small(0.0f, 0.1f);
  Tensor p(Shape{c.neighbour_rows, c.encoder_width});
  for (std::int64_t i = 0; i < p.numel(); ++i) p.data()[i] = small(rng);
  pos_ = parameter(std::move(p));
}

std::shared_ptr<const RetroDatastore> RetroLayer::datastore() const {
  std::shared_ptr<const RetroDatastore> s = override_;
  if (!s && !path_.empty()) s = cached_retro_datastore(path_);
  if (!s) return s;
  const std::string src = override_ ? std::string("retro datastore (set in memory)") : where(path_);
  if (s->features != c_.features)
    bad(src, "features",
        "= " + std::to_string(s->features) + " but the block's retrieval source has " +
            std::to_string(c_.features) + " features per row",
        "rebuild the datastore from this task's sequences");
  if (s->neighbour_rows() != c_.neighbour_rows)
    bad(src, "chunk",
        "= " + std::to_string(s->chunk) + " (" + std::to_string(s->neighbour_rows()) +
            " rows per neighbour) but the model was built for " +
            std::to_string(c_.neighbour_rows) + " rows",
        "rebuild the datastore with chunk " + std::to_string(c_.neighbour_rows / 2) +
            ", or rebuild the model for this datastore");
  return s;
}

std::vector<int> RetroLayer::retrieve(const Var& source, const RetroDatastore& s) const {
  const int B = source.dim(0), L = source.dim(1), F = source.dim(2), m = c_.chunk;
  const int Cq = L / m, k = std::min(c_.neighbours, s.size());
  std::vector<int> idx;
  idx.reserve(static_cast<std::size_t>(B) * Cq * std::max(k, 0));
  std::vector<float> q(static_cast<std::size_t>(s.key_dim));
  for (int b = 0; b < B; ++b)
    for (int u = 0; u < Cq; ++u) {
      const float* rows = source.value().data() + (static_cast<std::size_t>(b) * L + u * m) * F;
      retro_embed_chunk(rows, m, s, q.data());
      const std::vector<int> near = retro_nearest(s, q.data(), k);
      idx.insert(idx.end(), near.begin(), near.end());
    }
  return idx;
}

Var RetroLayer::attend(const Var& x, const RetroDatastore& s, const std::vector<int>& idx, int k) {
  const int B = x.dim(0), L = x.dim(1), d = c_.d, m = c_.chunk, Cq = L / m;
  const int r = c_.neighbour_rows, F = c_.features, e = c_.encoder_width;
  const int n_nb = B * Cq * k;
  if (static_cast<int>(idx.size()) != n_nb)
    throw std::invalid_argument("retro: " + std::to_string(idx.size()) + " indices for " +
                                std::to_string(n_nb) + " neighbours");
  // The retrieved rows are constants: no gradient reaches the store or the lookup.
  Tensor nb(Shape{n_nb, r, F});
  const std::size_t per = static_cast<std::size_t>(r) * F;
  for (int i = 0; i < n_nb; ++i) {
    const int j = idx[static_cast<std::size_t>(i)];
    if (j < 0 || j >= s.size())
      throw std::invalid_argument("retro: neighbour index " + std::to_string(j) +
                                  " outside the datastore's " + std::to_string(s.size()) +
                                  " entries");
    std::memcpy(nb.data() + i * per, s.neighbours.data() + static_cast<std::size_t>(j) * per,
                per * sizeof(float));
  }
  // Encoder: embed + position + the chunk's mean state, then one bidirectional attention layer.
  Var h = add(embed_.forward(constant(std::move(nb))), pos_);  // [n_nb, r, e]
  Var xc = reshape(slice(x, 1, 0, Cq * m), Shape{B * Cq, m, d});
  Var cond = reshape(cond_.forward(mean_dim(xc, 1)), Shape{B * Cq, 1, e});
  h = add(reshape(h, Shape{B * Cq, k * r, e}), cond);
  h = reshape(h, Shape{n_nb, r, e});
  auto qkv = split(enc_qkv_.forward(h), {e, e, e}, 2);
  h = add(h, enc_out_.forward(multi_head_attention(qkv[0], qkv[1], qkv[2], 1, false)));
  // CCA: chunk u's neighbours are read by tokens (u + 1) m - 1 ... (u + 2) m - 2.
  auto kv = split(reshape(kv_.forward(h), Shape{B * Cq, k * r, 2 * d}), {d, d}, 2);
  const int attending = L - m + 1, pad = Cq * m - attending;
  Var xs = slice(x, 1, m - 1, L);
  if (pad > 0) xs = concat({xs, constant(Tensor::zeros(Shape{B, pad, d}))}, 1);
  Var q = q_.forward(reshape(xs, Shape{B * Cq, m, d}));
  Var o = out_.forward(multi_head_attention(q, kv[0], kv[1], c_.heads, false));
  o = slice(reshape(o, Shape{B, Cq * m, d}), 1, 0, attending);
  if (m > 1) o = concat({constant(Tensor::zeros(Shape{B, m - 1, d})), o}, 1);
  return add(x, o);
}

Var RetroLayer::forward(const Var& x, const Var& source, ForwardContext& ctx) {
  if (x.shape().rank() != 3 || x.dim(2) != c_.d)
    throw std::invalid_argument("retro: expects [batch, length, " + std::to_string(c_.d) +
                                "], got " + x.shape().str());
  if (source.shape().rank() != 3 || source.dim(0) != x.dim(0) || source.dim(1) != x.dim(1) ||
      source.dim(2) != c_.features)
    throw std::invalid_argument("retro: retrieval source must be [" + std::to_string(x.dim(0)) +
                                ", " + std::to_string(x.dim(1)) + ", " +
                                std::to_string(c_.features) + "], got " + source.shape().str());
  const std::shared_ptr<const RetroDatastore> s = datastore();
  const int B = x.dim(0), Cq = x.dim(1) / c_.chunk;
  last_.clear();
  if (!s || Cq == 0) return x;
  const int k = std::min(c_.neighbours, s->size());
  if (ctx.activity) {
    const double scan = 4.0 * s->size() * s->key_dim,
                 rows = 4.0 * k * s->neighbour_rows() * s->features;
    ctx.activity->add(kRetroLookups, static_cast<double>(B) * Cq);
    ctx.activity->add(kRetroBytesRead, static_cast<double>(B) * Cq * (scan + rows));
    ctx.activity->add(kRetroNeighboursUsed, static_cast<double>(B) * Cq * k);
    for (int u = 0; u < Cq; ++u)
      ctx.activity->add_at(activity_key::kNeighbours, static_cast<std::size_t>(u),
                           static_cast<double>(B) * k);
  }
  if (k == 0) return x;
  last_ = retrieve(source, *s);
  return attend(x, *s, last_, k);
}

void RetroLayer::append_named_parameters(const std::string& prefix,
                                         std::vector<NamedParameter>& out) {
  embed_.append_named_parameters(prefix + "encoder.embed.", out);
  out.push_back({prefix + "encoder.pos", pos_});
  cond_.append_named_parameters(prefix + "encoder.cond.", out);
  enc_qkv_.append_named_parameters(prefix + "encoder.qkv.", out);
  enc_out_.append_named_parameters(prefix + "encoder.out.", out);
  q_.append_named_parameters(prefix + "cca.q.", out);
  kv_.append_named_parameters(prefix + "cca.kv.", out);
  out_.append_named_parameters(prefix + "cca.out.", out);
}

}  // namespace hwnas::nn
