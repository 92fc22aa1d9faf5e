// RETRO-style retrieval (Borgeaud et al. 2022, "Improving language models by retrieving from
// trillions of tokens", arXiv:2112.04426): a datastore of chunk embeddings with their
// neighbour token chunks, exact nearest-neighbour search, a light neighbour encoder and chunked
// cross-attention (CCA), [B, L, d] -> [B, L, d].
//
// Datastore.  Built once from training sequences [S, L_s, F] (rows are the tasks' token
// feature vectors): every full chunk of `chunk` rows is stored with its key, the frozen
// embedding  key(c) = normalise(mean_{rows t of c} s_t E)  (E [F, D] a seeded Gaussian matrix
// written into the file: the analogue of RETRO's frozen BERT, so keys never move when the
// model trains), and its neighbour: the chunk and its continuation, 2 * chunk rows (zero rows
// past the end of the sequence), as RETRO stores [N, F] = chunk + continuation.
//
// Search is exact: brute force over every key, squared L2 distance between the normalised
// query key and each stored key (equal in ranking to cosine similarity, as both are unit
// vectors or zero), the k nearest, ties to the lower index.  An approximate index (RETRO's
// SCaNN) could replace it behind retro_nearest().
//
// Chunked cross-attention with the paper's causal shift: the input is split into chunks of m
// tokens; chunk u (complete chunks only) queries the store with the key of its retrieval
// source rows, and token t >= m - 1 attends to the neighbours of chunk u(t) = (t + 1) / m - 1,
// so the last token of chunk u and the first m - 1 tokens of chunk u + 1 read chunk u's
// neighbours; the first m - 1 tokens get no retrieval, and no token sees a retrieval made from
// rows after it.  Neighbours are encoded by a light encoder conditioned on chunk u:
//   H = nb W_emb + P + (mean_{t in chunk u} x_t) W_cond,  H' = H + W_o SelfAttn(H)  (one
// bidirectional single-head layer), then  y_t = x_t + W_out MHA(x_t W_q, H' W_k, H' W_v)  over
// the k * 2m rows of the k neighbours.  Gradients flow through the encoder and CCA into x and
// every weight, not through the lookup (indices and stored rows are constants).
// See docs/blocks/retro.md for what differs from the paper.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "nn/layers.hpp"
#include "nn/module.hpp"

namespace hwnas::nn {

inline constexpr std::int64_t kRetroFormatVersion = 1;
inline constexpr std::string_view kRetroMagic{"HWNASRT\0", 8};

struct RetroDatastore {
  int chunk = 0;                  // rows per stored chunk m_s; a neighbour has 2 m_s rows
  int features = 0;               // F: width of a row
  int key_dim = 0;                // D: width of a key
  std::vector<float> embedding;   // [F, D], the frozen key embedding
  std::vector<float> keys;        // [N, D]
  std::vector<float> neighbours;  // [N, 2 m_s, F]
  std::vector<float> key_norms;   // [N] squared norms (derived on load, not stored)

  int size() const { return key_dim > 0 ? static_cast<int>(keys.size() / key_dim) : 0; }
  int neighbour_rows() const { return 2 * chunk; }
  // Bytes a device holds: keys, neighbours and the embedding at float32.
  double bytes() const;
  // Throws std::invalid_argument naming `source` and the field if the sizes disagree.
  void check(const std::string& source) const;
  void finish();  // fills key_norms
};

// The frozen embedding E [F, D]: N(0, 1/D) entries from mt19937_64(seed).
std::vector<float> retro_embedding(int features, int key_dim, std::uint64_t seed);
// key = normalise(mean of `rows` [m, F] times E [F, D]) into out[D] (zero stays zero).
void retro_embed_chunk(const float* rows, int m, const RetroDatastore& store, float* out);
// Indices of the k nearest keys to `query` [D] (k clipped to the store's size), nearest first,
// ties to the lower index: exact brute force over the store.
std::vector<int> retro_nearest(const RetroDatastore& store, const float* query, int k);

// Every full chunk of every sequence of `sequences` [S, L, F] becomes one entry.  Throws
// std::invalid_argument for chunk < 1, key_dim < 1 or a sequence shorter than one chunk.
RetroDatastore build_retro_datastore(const Tensor& sequences, int chunk, int key_dim,
                                     std::uint64_t seed);
// A store with no entries (for ablations): same chunk, features and embedding.
RetroDatastore empty_retro_datastore(int chunk, int features, int key_dim, std::uint64_t seed);

// Versioned file in the state-file container (nn/state_file.hpp, magic "HWNASRT\0"): records
// format_version, chunk, features, key_dim, entries (int64) and embedding [F, D], keys [N, D],
// neighbours [N, 2 m_s, F] (float32; absent when N = 0).  Written to a temporary file and
// renamed.  load throws std::invalid_argument "retro datastore 'PATH': ..." naming the field
// and the fix for a missing file, a wrong magic or version, a truncated or corrupted file and
// sizes that disagree.
void save_retro_datastore(const std::string& path, const RetroDatastore& store);
RetroDatastore load_retro_datastore(const std::string& path);
// The store at `path`, loaded once and reloaded when the file's size or modification time
// changes (so replacing the file changes the next forward pass without retraining).
// Thread-safe.  Throws as load_retro_datastore.
std::shared_ptr<const RetroDatastore> cached_retro_datastore(const std::string& path);

struct RetroConfig {
  int d = 16;              // model width (input and output)
  int features = 16;       // F: width of the retrieval source rows (= d with one input)
  int chunk = 4;           // m: tokens per query chunk
  int neighbours = 2;      // k
  int heads = 2;           // CCA heads (divide d)
  int encoder_width = 16;  // e: neighbour encoder width
  int neighbour_rows = 8;  // rows per neighbour (2 m_s of the store)
  void validate() const;   // throws std::invalid_argument naming the field
};

// Activity the layer records (per batch; the model divides by samples):
inline constexpr const char* kRetroLookups = "datastore_lookups";       // queries made
inline constexpr const char* kRetroBytesRead = "datastore_bytes_read";  // keys scanned + rows
inline constexpr const char* kRetroNeighboursUsed = "neighbours_used";  // neighbours attended
// plus activity_key::kNeighbours ("retrieved_neighbours"): a series over query chunks.

class RetroLayer : public Module {
 public:
  // `datastore` is a path ("" for none: the layer is then the identity).  The store must match
  // c.features and c.neighbour_rows when it is read.
  RetroLayer(const RetroConfig& c, std::string datastore, std::mt19937_64& rng);
  // x [B, L, d]; source [B, L, F] (the rows the keys are computed from).
  Var forward(const Var& x, const Var& source, ForwardContext& ctx);
  Var forward(const std::vector<Var>& in, ForwardContext& ctx) override {
    return forward(in.at(0), in.size() > 1 ? in[1] : in[0], ctx);
  }
  // Retrieval only: [B, L/m, k'] entry indices (k' = min(k, N)), no gradient.
  std::vector<int> retrieve(const Var& source, const RetroDatastore& store) const;
  // The CCA with given indices (as retrieve() returns), for tests of the causal shift.
  Var attend(const Var& x, const RetroDatastore& store, const std::vector<int>& indices,
             int per_chunk);
  // Uses `store` instead of the path from now on (null: back to the path).
  void set_datastore(std::shared_ptr<const RetroDatastore> store) { override_ = std::move(store); }
  std::shared_ptr<const RetroDatastore> datastore() const;  // null when none
  const std::vector<int>& last_indices() const { return last_; }
  const RetroConfig& config() const { return c_; }

  void append_named_parameters(const std::string& prefix,
                               std::vector<NamedParameter>& out) override;
  std::string name() const override { return "retro"; }

 private:
  RetroConfig c_;
  std::string path_;
  std::shared_ptr<const RetroDatastore> override_;
  Linear embed_, cond_, enc_qkv_, enc_out_, q_, kv_, out_;
  Var pos_;  // [rows, e]
  std::vector<int> last_;
};

}  // namespace hwnas::nn
