// retro: RETRO-style retrieval (Borgeaud et al. 2022) with chunked cross-attention,
// [L, d] -> [L, d].  Chunk u of the input queries a datastore file (exact nearest-neighbour
// search over keys from a frozen embedding of the retrieval source rows); a light encoder
// conditioned on the chunk encodes its k neighbours, and tokens (u+1)m-1 .. (u+2)m-2 attend to
// them (the paper's causal shift; the first m-1 tokens get no retrieval).  The layer is
// nn::RetroLayer (nn/retro.hpp).  One input: the keys come from the input itself (put the
// block on the raw task sequence); two inputs: input 0 is processed, input 1 (the raw
// sequence, same length) gives the keys, so the block may sit after trainable layers while
// its keys stay frozen.
//
// The datastore is the string param "datastore" (a path, not searched; "" = none, the block is
// then the identity): the genome names its store, a user swaps or rebuilds the file to change
// predictions without retraining.  Its size, lookups and bytes read are workload fields
// (datastore_bytes, datastore_lookups, datastore_bytes_read) that every device family charges
// (DeviceBase: held in memory when it fits, else read over host_link_bw).  While recording
// activity it reports datastore_lookups, datastore_bytes_read, neighbours_used and the series
// retrieved_neighbours.  See docs/blocks/retro.md.
#include <algorithm>

#include "nn/retro.hpp"
#include "spaces/blocks/block_util.hpp"

namespace hwnas::spaces {
using namespace blocks;

namespace {

std::shared_ptr<const nn::RetroDatastore> store_of(const json& p) {
  const std::string path = pstr(p, "datastore");
  return path.empty() ? nullptr : nn::cached_retro_datastore(path);
}

nn::RetroConfig config_of(const std::vector<TensorType>& in, const json& p,
                          const nn::RetroDatastore* s) {
  nn::RetroConfig c;
  c.d = in[0].dims[1];
  c.features = in.back().dims[1];
  c.chunk = pint(p, "chunk");
  c.neighbours = pint(p, "neighbours");
  c.heads = pint(p, "heads");
  c.encoder_width = pint(p, "encoder_width");
  c.neighbour_rows = s ? s->neighbour_rows() : 2 * c.chunk;
  return c;
}

}  // namespace

void register_block_retro(Catalogue& c) {
  BlockKind k;
  k.name = "retro";
  k.description =
      "RETRO retrieval: chunks query a datastore file by exact nearest-neighbour search on frozen "
      "keys; tokens cross-attend to the previous chunk's encoded neighbours";
  k.params = {ParamSpec::int_set("chunk", {2, 4, 8, 16, 32, 64}, 4,
                                 "tokens per retrieval chunk m (one lookup per complete chunk)"),
              ParamSpec::int_set("neighbours", {1, 2, 4, 8}, 2, "neighbours k retrieved per chunk"),
              ParamSpec::int_set("heads", {1, 2, 4, 8}, 1, "cross-attention heads (must divide d)"),
              ParamSpec::int_set("encoder_width", {8, 16, 32, 64, 128}, 16,
                                 "width of the neighbour encoder"),
              ParamSpec::string("datastore", "",
                                "path of the datastore file (nn/retro.hpp; not searched; \"\": no "
                                "retrieval, the block is the identity)")};
  k.accepts = {DataKind::Sequence};
  k.min_inputs = 1;
  k.max_inputs = 2;
  k.infer = [](const std::vector<TensorType>& in, const json& p) {
    if (in.empty() || in.size() > 2)
      throw std::invalid_argument(
          "retro: expects one input, or two (the sequence and the raw "
          "retrieval source)");
    if (bits_of(p) != 32 || prune_of(p) > 0)
      throw std::invalid_argument(
          "retro: bits and prune are not supported yet; use bits 32, prune 0");
    if (in.size() == 2 && in[1].dims[0] != in[0].dims[0])
      throw std::invalid_argument("retro: the retrieval source has " +
                                  std::to_string(in[1].dims[0]) + " rows, the sequence " +
                                  std::to_string(in[0].dims[0]) +
                                  "; connect a source of the same "
                                  "length");
    const auto s = store_of(p);
    config_of(in, p, s.get()).validate();
    if (s && s->features != in.back().dims[1])
      throw std::invalid_argument(
          "retro datastore '" + pstr(p, "datastore") +
          "': field 'features' = " + std::to_string(s->features) +
          " but the block's retrieval source has " + std::to_string(in.back().dims[1]) +
          " features per row; rebuild the datastore from this task's sequences or connect the "
          "raw sequence as the block's second input");
    return in[0];
  };
  k.build = [](const std::vector<TensorType>& in, const json& p, Rng& rng) {
    const auto s = store_of(p);
    return std::make_unique<nn::RetroLayer>(config_of(in, p, s.get()), pstr(p, "datastore"), rng);
  };
  k.count = [](const std::vector<TensorType>& in, const TensorType&, const json& p,
               hw::NodeWorkload& w) {
    const auto s = store_of(p);
    const nn::RetroConfig c = config_of(in, p, s.get());
    const double L = in[0].dims[0], d = c.d, F = c.features, m = c.chunk, e = c.encoder_width;
    const double r = c.neighbour_rows, H = c.heads;
    const double N = s ? s->size() : 0, D = s ? s->key_dim : 0;
    const double Cq = std::floor(L / m), kk = std::min<double>(c.neighbours, N);
    const double nb = Cq * kk, rows = nb * r;  // neighbours and their rows per sample
    w.category = hw::OpCategory::Memory;
    w.params = F * e + r * e + d * e + 4 * e * e + 2 * d * d + 2 * e * d;
    w.seq_len = static_cast<int>(L);
    if (s) {
      w.datastore_bytes = s->bytes();
      w.datastore_lookups = Cq;
      // Exact search scans every key once per lookup, then reads the k neighbours' rows.
      w.datastore_bytes_read = Cq * (4.0 * N * D + 4.0 * kk * r * F);
    }
    if (nb == 0) {  // no retrieval: the block passes its input through
      w.kernels = 1;
      weighted_mapping(w, L * d, d, w.params);
      return;
    }
    double macs = 0, other = 0;
    // Query keys: chunk mean (m F adds), projection F x D, normalisation (3 D); search: one dot
    // product per key (N D), the norm add and a top-k comparison per key (N (1 + k)).
    macs += Cq * (F * D + N * D);
    other += Cq * (m * F + 3 * D + N * (1 + kk));
    // Encoder: embed (F e per row), position and condition adds (2 e per row), condition
    // (chunk mean m d, projection d e per chunk), qkv (3 e^2 per row), self-attention over the
    // r rows of a neighbour (2 r e per row; softmax and scale 5 r per row), output (e^2) and
    // residual (e per row).
    macs += rows * (F * e + 3 * e * e + 2 * r * e + e * e) + Cq * d * e;
    other += rows * (3 * e + 5 * r) + Cq * m * d;
    // CCA over the padded Cq m query rows: q (d^2), keys/values of every neighbour row (2 e d),
    // scores and weighted sum (2 k r d per query row), softmax and scale (5 k r per head),
    // output (d^2); residual add over all L d.
    macs += Cq * m * (2 * d * d + 2 * kk * r * d) + rows * 2 * e * d;
    other += Cq * m * 5 * kk * r * H + L * d;
    w.macs = macs;
    w.other_flops = other;
    // Fused: lookup, gather, embed, condition, qkv, encoder attention, encoder output, kv, q,
    // cross-attention, output with residual.
    w.kernels = 11;
    weighted_mapping(w, L * d, d, w.params);
  };
  c.add(std::move(k));
}

}  // namespace hwnas::spaces
