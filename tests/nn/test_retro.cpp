// The RETRO retrieval layer (nn/retro.hpp): exact search against a naive loop, the datastore
// builder, the file's round trip and every bad-file error, reloading a replaced file, and the
// causal shift of chunked cross-attention.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "nn/ops.hpp"
#include "nn/retro.hpp"
#include "nn/state_file.hpp"
#include "tests/nn/gradcheck.hpp"
#include "tests/temp_files.hpp"

using namespace hwnas::nn;

namespace {

std::string temp_path(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / "hwnas_test_retro";
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

Tensor random_sequences(int S, int L, int F, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  return hwnas::nn::testing::random_tensor(Shape{S, L, F}, rng);
}

void expect_message(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no exception, expected: " << parts.front();
  } catch (const std::invalid_argument& e) {
    for (const auto& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what() << "\nmissing: " << p;
  }
}

std::string file_bytes(const std::string& path) { return read_whole_file(path); }
void write_bytes(const std::string& path, const std::string& b) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(b.data(), static_cast<std::streamsize>(b.size()));
}

}  // namespace

TEST(Retro, BuilderChunksEmbedsAndKeepsContinuations) {
  // 2 sequences of 7 rows, chunk 3: 2 full chunks each (the trailing row is no chunk).
  const Tensor seqs = random_sequences(2, 7, 4, 1);
  const RetroDatastore s = build_retro_datastore(seqs, 3, 5, 42);
  ASSERT_EQ(s.size(), 4);
  EXPECT_EQ(s.neighbour_rows(), 6);
  EXPECT_EQ(s.embedding, retro_embedding(4, 5, 42));
  // Entry 1 = sequence 0, chunk 1 (rows 3..5) and its continuation: row 6, then zero rows.
  const float* nb = s.neighbours.data() + 1 * 6 * 4;
  for (int t = 0; t < 6; ++t)
    for (int f = 0; f < 4; ++f)
      EXPECT_EQ(nb[t * 4 + f], t < 4 ? seqs.data()[(3 + t) * 4 + f] : 0.0f) << t << " " << f;
  // Its key: normalise(mean of rows 3..5 times E).
  std::vector<float> mean(4, 0.0f), key(5, 0.0f);
  for (int t = 3; t < 6; ++t)
    for (int f = 0; f < 4; ++f) mean[f] += seqs.data()[t * 4 + f] / 3.0f;
  double norm = 0;
  for (int j = 0; j < 5; ++j) {
    for (int f = 0; f < 4; ++f) key[j] += mean[f] * s.embedding[f * 5 + j];
    norm += key[j] * key[j];
  }
  for (int j = 0; j < 5; ++j) EXPECT_NEAR(s.keys[5 + j], key[j] / std::sqrt(norm), 1e-6);
}

TEST(Retro, ExactSearchEqualsANaiveLoop) {
  const RetroDatastore s = build_retro_datastore(random_sequences(50, 16, 6, 2), 4, 8, 7);
  ASSERT_EQ(s.size(), 200);
  std::mt19937_64 rng(3);
  std::normal_distribution<float> g;
  for (int trial = 0; trial < 100; ++trial) {
    std::vector<float> q(8);
    for (float& v : q) v = g(rng);
    const int k = 1 + trial % 7;
    std::vector<std::pair<double, int>> all;
    for (int i = 0; i < s.size(); ++i) {
      double d = 0;
      for (int j = 0; j < 8; ++j) {
        const double diff = double(q[j]) - s.keys[i * 8 + j];
        d += diff * diff;
      }
      all.push_back({d, i});
    }
    std::sort(all.begin(), all.end());
    std::vector<int> want;
    for (int i = 0; i < k; ++i) want.push_back(all[i].second);
    EXPECT_EQ(retro_nearest(s, q.data(), k), want) << "trial " << trial;
  }
  // k beyond the store is clipped; an empty store finds nothing.
  std::vector<float> q(8, 0.5f);
  EXPECT_EQ(retro_nearest(s, q.data(), 500).size(), 200u);
  const RetroDatastore e = empty_retro_datastore(4, 6, 8, 7);
  EXPECT_TRUE(retro_nearest(e, q.data(), 3).empty());
}

TEST(Retro, FileRoundTripAndEmptyStore) {
  const std::string path = temp_path("round_trip.rds");
  const RetroDatastore s = build_retro_datastore(random_sequences(3, 8, 5, 4), 2, 3, 9);
  save_retro_datastore(path, s);
  EXPECT_FALSE(hwnas::test::temp_sibling_exists(path));
  const RetroDatastore r = load_retro_datastore(path);
  EXPECT_EQ(r.chunk, 2);
  EXPECT_EQ(r.features, 5);
  EXPECT_EQ(r.key_dim, 3);
  EXPECT_EQ(r.embedding, s.embedding);
  EXPECT_EQ(r.keys, s.keys);
  EXPECT_EQ(r.neighbours, s.neighbours);
  EXPECT_EQ(r.key_norms, s.key_norms);
  EXPECT_DOUBLE_EQ(r.bytes(), 4.0 * (5 * 3 + 12 * 3 + 12 * 4 * 5));

  const std::string empty = temp_path("empty.rds");
  save_retro_datastore(empty, empty_retro_datastore(2, 5, 3, 9));
  const RetroDatastore e = load_retro_datastore(empty);
  EXPECT_EQ(e.size(), 0);
  EXPECT_EQ(e.embedding, s.embedding);
}

TEST(Retro, EveryBadFileNamesTheFileTheFieldAndTheFix) {
  const std::string good = temp_path("good.rds");
  const RetroDatastore s = build_retro_datastore(random_sequences(2, 4, 3, 5), 2, 4, 1);
  save_retro_datastore(good, s);
  const std::string bytes = file_bytes(good);
  const std::string bad = temp_path("bad.rds");

  expect_message([&] { load_retro_datastore(temp_path("missing.rds")); },
                 {"retro datastore '" + temp_path("missing.rds") + "'", "file not found",
                  "build_retro_datastore"});

  write_bytes(bad, "GARBAGE!" + bytes.substr(8));
  expect_message(
      [&] { load_retro_datastore(bad); },
      {"retro datastore '" + bad + "'", "field 'magic' is 'GARBAGE!'", "save_retro_datastore"});
  // A model state file is refused as such.
  write_bytes(bad, encode_state_file(kModelStateMagic, {}));
  expect_message([&] { load_retro_datastore(bad); }, {bad, "field 'magic' is 'HWNASSD\\0'"});

  auto with = [&](const std::vector<StateRecord>& recs) {
    write_bytes(bad, encode_state_file(kRetroMagic, recs));
  };
  auto floats = [](std::string name, std::vector<std::int64_t> shape) {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    StateRecord r{std::move(name), RecordType::Float32, std::move(shape), {}};
    r.data.assign(static_cast<std::size_t>(n) * 4, '\0');
    return r;
  };
  const std::vector<StateRecord> header = {
      StateRecord::from_int("format_version", 1), StateRecord::from_int("chunk", 2),
      StateRecord::from_int("features", 3), StateRecord::from_int("key_dim", 4),
      StateRecord::from_int("entries", 2)};
  auto good_records = [&] {
    std::vector<StateRecord> r = header;
    r.push_back(floats("embedding", {3, 4}));
    r.push_back(floats("keys", {2, 4}));
    r.push_back(floats("neighbours", {2, 4, 3}));
    return r;
  };
  with(good_records());
  EXPECT_EQ(load_retro_datastore(bad).size(), 2);

  auto recs = good_records();
  recs[0] = StateRecord::from_int("format_version", 2);
  with(recs);
  expect_message([&] { load_retro_datastore(bad); },
                 {bad, "field 'format_version' = 2 is not supported (this build reads 1)",
                  "rebuild the datastore"});

  recs = good_records();
  recs[6] = floats("keys", {2, 5});  // key_dim says 4
  with(recs);
  expect_message([&] { load_retro_datastore(bad); },
                 {bad, "field 'keys' has shape [2, 5], expected float32 [2, 4] from the header",
                  "rebuild it with nn::build_retro_datastore"});

  recs = good_records();
  recs[7] = floats("neighbours", {2, 6, 3});  // chunk 2 means 4 rows per neighbour
  with(recs);
  expect_message([&] { load_retro_datastore(bad); },
                 {bad, "field 'neighbours' has shape [2, 6, 3]"});

  recs = good_records();
  recs.pop_back();
  with(recs);
  expect_message([&] { load_retro_datastore(bad); }, {bad, "field 'neighbours' is missing"});

  recs = good_records();
  recs[1] = StateRecord::from_int("chunk", 0);
  with(recs);
  expect_message([&] { load_retro_datastore(bad); }, {bad, "field 'chunk' = 0 must be in"});

  recs = good_records();
  recs[4] = floats("entries", {1});
  with(recs);
  expect_message([&] { load_retro_datastore(bad); }, {bad, "field 'entries' is not one int64"});

  // Truncated and corrupted files: the container's own checks, with the file and the fix.
  write_bytes(bad, bytes.substr(0, bytes.size() - 40));
  expect_message([&] { load_retro_datastore(bad); },
                 {"retro datastore '" + bad + "'", "truncated", "rebuild it"});
  std::string flipped = bytes;
  flipped[flipped.size() - 20] ^= 0x5a;
  write_bytes(bad, flipped);
  expect_message([&] { load_retro_datastore(bad); },
                 {"retro datastore '" + bad + "'", "checksum mismatch", "rebuild it"});
}

TEST(Retro, ReplacingTheFileIsSeenByTheNextLookup) {
  const std::string path = temp_path("swap.rds");
  save_retro_datastore(path, build_retro_datastore(random_sequences(2, 4, 3, 6), 2, 4, 1));
  const auto a = cached_retro_datastore(path);
  EXPECT_EQ(cached_retro_datastore(path), a);  // unchanged file: the same object
  EXPECT_EQ(a->size(), 4);
  // Same size and, within the clock's resolution, possibly the same mtime: the checksum at the
  // file's end still tells them apart.
  save_retro_datastore(path, build_retro_datastore(random_sequences(2, 4, 3, 7), 2, 4, 1));
  const auto b = cached_retro_datastore(path);
  EXPECT_NE(b, a);
  EXPECT_NE(b->keys, a->keys);
}

namespace {
RetroConfig small_config() {
  RetroConfig c;
  c.d = 4;
  c.features = 4;
  c.chunk = 4;
  c.neighbours = 2;
  c.heads = 2;
  c.encoder_width = 6;
  c.neighbour_rows = 4;
  return c;
}
}  // namespace

TEST(Retro, CausalShiftEachChunkFeedsOnlyTheNextChunksTokens) {
  auto store = std::make_shared<RetroDatastore>(
      build_retro_datastore(random_sequences(6, 4, 4, 8), 2, 5, 3));  // 12 entries, 4 rows
  std::mt19937_64 rng(4);
  RetroLayer layer(small_config(), "", rng);
  layer.set_datastore(store);
  const int L = 12, m = 4;  // chunks 0, 1, 2
  Var x = constant(hwnas::nn::testing::random_tensor(Shape{1, L, 4}, rng));
  ForwardContext ctx;
  const Tensor y = layer.forward(x, x, ctx).value();
  const std::vector<int> idx = layer.last_indices();
  ASSERT_EQ(idx.size(), 6u);
  // The first m - 1 tokens get no retrieval: the residual alone.
  for (int t = 0; t < m - 1; ++t)
    for (int f = 0; f < 4; ++f) EXPECT_EQ(y.data()[t * 4 + f], x.value().data()[t * 4 + f]);
  auto differs = [&](const Tensor& a, int t) {
    for (int f = 0; f < 4; ++f)
      if (a.data()[t * 4 + f] != y.data()[t * 4 + f]) return true;
    return false;
  };
  // Other neighbours for chunk u change exactly tokens (u+1)m-1 .. (u+2)m-2.
  for (int u = 0; u < 3; ++u) {
    std::vector<int> other = idx;
    for (int j = 0; j < 2; ++j) other[u * 2 + j] = (idx[u * 2 + j] + 5) % 12;
    const Tensor z = layer.attend(x, *store, other, 2).value();
    for (int t = 0; t < L; ++t) {
      const bool reads_u = t >= (u + 1) * m - 1 && t <= (u + 2) * m - 2;
      EXPECT_EQ(differs(z, t), reads_u) << "chunk " << u << " token " << t;
    }
  }
  // A chunk's lookup uses its own rows only: rows after chunk 0 do not change its neighbours.
  Tensor later = x.value().clone();
  for (int i = m * 4; i < L * 4; ++i) later.data()[i] += 3.0f;
  const std::vector<int> idx2 = layer.retrieve(constant(later), *store);
  EXPECT_EQ(idx2[0], idx[0]);
  EXPECT_EQ(idx2[1], idx[1]);
}

TEST(Retro, InputGradientMatchesFiniteDifferences) {
  // Two entries and k = 2: every chunk retrieves both, so no lookup flips under the finite
  // differences (the parameters are checked through the block, tests/spaces/test_block_retro.cpp).
  auto store = std::make_shared<RetroDatastore>(
      build_retro_datastore(random_sequences(1, 4, 4, 9), 2, 3, 3));
  std::mt19937_64 rng(5);
  RetroLayer layer(small_config(), "", rng);
  layer.set_datastore(store);
  ForwardContext ctx;
  std::vector<NamedParameter> ps;
  layer.append_named_parameters("", ps);
  EXPECT_EQ(ps.size(), 8u);
  hwnas::nn::testing::expect_gradients_match(
      [&](const std::vector<Var>& v) { return layer.forward(v[0], v[0], ctx); },
      {hwnas::nn::testing::random_tensor(Shape{2, 7, 4}, rng)});
}

TEST(Retro, RefusesAStoreThatDoesNotFitTheModel) {
  std::mt19937_64 rng(6);
  RetroLayer layer(small_config(), "", rng);
  layer.set_datastore(std::make_shared<RetroDatastore>(
      build_retro_datastore(random_sequences(1, 4, 5, 1), 2, 3, 3)));
  Var x = constant(hwnas::nn::testing::random_tensor(Shape{1, 8, 4}, rng));
  ForwardContext ctx;
  expect_message([&] { layer.forward(x, x, ctx); },
                 {"field 'features' = 5 but the block's retrieval source has 4",
                  "rebuild the datastore from this task's sequences"});
  layer.set_datastore(std::make_shared<RetroDatastore>(
      build_retro_datastore(random_sequences(1, 6, 4, 1), 3, 3, 3)));
  expect_message([&] { layer.forward(x, x, ctx); },
                 {"field 'chunk' = 3 (6 rows per neighbour) but the model was built for 4 rows",
                  "rebuild the datastore with chunk 2"});
  RetroConfig c = small_config();
  c.heads = 3;
  expect_message([&] { RetroLayer(c, "", rng); }, {"not divisible by heads 3"});
}
