#include "spaces/genome.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <mutex>
#include <numeric>
#include <optional>
#include <set>
#include <unordered_map>

#include "common/hash.hpp"
#include "spaces/catalogue.hpp"

namespace hwnas::spaces {

namespace {
const char* kInputKind = "input";

std::string node_label(const Genome& g, Genome::NodeId v) {
  return "node " + std::to_string(v) + " (" + g.node(v).kind + ")";
}

// splitmix64 finaliser: cheap, well-mixed combination of colour hashes.
std::uint64_t mix(std::uint64_t a, std::uint64_t b) {
  std::uint64_t z = a + 0x9e3779b97f4a7c15ull + (b << 6) + (b >> 2);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31) ^ b;
}
// The canonical form of a genome that passed validate() (defined with the canonical form below).
std::string canonical_json_of_valid(const Genome& g);

// A 128-bit key of everything the canonical form reads: the input type, each node's kind and
// params, and the edges with their slots (output types, filled by validate, and meta are left
// out).  Two independently seeded 64-bit chains, so distinct contents share a key with
// probability about n^2 / 2^129 over n genomes.
struct ContentKey {
  std::uint64_t a = 0, b = 0;
  bool operator==(const ContentKey&) const = default;
};
struct ContentKeyHash {
  std::size_t operator()(const ContentKey& k) const { return static_cast<std::size_t>(k.a); }
};

ContentKey content_key(const Genome& g) {
  ContentKey k{mix(0x9e3779b97f4a7c15ULL, g.num_nodes()),
               mix(0x243f6a8885a308d3ULL, g.num_nodes())};
  auto add = [&k](std::uint64_t v) {
    k.a = mix(k.a, v);
    k.b = mix(k.b ^ 0x5bd1e9955bd1e995ULL, v);
  };
  const Genome::Graph& gr = g.graph();
  if (g.num_nodes() > 0) {
    add(static_cast<std::uint64_t>(gr[0].out.kind));
    for (int d : gr[0].out.dims) add(static_cast<std::uint64_t>(d));
  }
  const std::hash<nlohmann::json> hash_json;
  const std::hash<std::string> hash_string;
  for (Genome::NodeId v = 0; v < g.num_nodes(); ++v) {
    add(hash_string(gr[v].kind));
    // Most nodes take every default: skip hashing their empty object (the key lives only in
    // this process's memos, never on disk).
    const nlohmann::json& params = gr[v].params;
    add(params.is_object() && params.empty() ? 0x6a09e667f3bcc909ULL : hash_json(params));
  }
  // Edges by target, each packed into one word (the source and slot fit in 24 and 16 bits in
  // any real genome; a larger one adds its fields one by one, with a marker so the two forms
  // cannot collide).  Walking each node's in-edge vector instead of Boost's global edge list
  // (a linked list) and mixing one word per edge instead of three halves this loop.
  for (Genome::NodeId v = 0; v < g.num_nodes(); ++v) {
    add(0x452821e638d01377ULL ^ boost::in_degree(v, gr));
    for (auto [it, end] = boost::in_edges(v, gr); it != end; ++it) {
      const std::uint64_t u = boost::source(*it, gr);
      const auto slot = static_cast<std::uint64_t>(static_cast<std::uint32_t>(gr[*it].slot));
      if (u < (1ULL << 24) && slot < (1ULL << 16)) {
        add(u << 16 | slot);
      } else {
        add(1ULL << 63);
        add(u);
        add(slot);
      }
    }
  }
  return k;
}

// A bounded, thread-safe map from content key to what this process already computed for that
// content: strategies keep building the same architecture afresh (a mutation that lands on a
// known cell, a retried child, a neighbour, a candidate pool).  When full it starts over, which
// costs recomputation only.
template <class Value, std::size_t kCapacity>
class ContentMemo {
 public:
  std::optional<Value> find(const ContentKey& k) {
    std::lock_guard lock(m_);
    auto it = values_.find(k);
    if (it == values_.end()) return std::nullopt;
    return it->second;
  }
  void put(const ContentKey& k, Value v) {
    std::lock_guard lock(m_);
    if (values_.size() >= kCapacity) values_.clear();
    values_.emplace(k, std::move(v));
  }

 private:
  std::mutex m_;
  std::unordered_map<ContentKey, Value, ContentKeyHash> values_;
};

// Canonical forms: a fresh genome would otherwise pay the colour refinement again.
ContentMemo<std::string, 16384>& canonical_memo() {
  static ContentMemo<std::string, 16384> memo;
  return memo;
}

// Contents that passed validate(), with the output types it inferred per node: a fresh genome of
// known content takes them from here instead of checking and inferring again, which is most of
// what a strategy's mutation costs.  Only the types are kept (not a copy of the graph with its
// kinds and params), so remembering a genome costs little more than its node count.
using ValidatedTypes = std::shared_ptr<const std::vector<TensorType>>;
ContentMemo<ValidatedTypes, 1024>& validated_types() {
  static ContentMemo<ValidatedTypes, 1024> memo;
  return memo;
}

}  // namespace

const char* data_kind_name(DataKind k) {
  switch (k) {
    case DataKind::Image:
      return "image";
    case DataKind::Sequence:
      return "sequence";
    case DataKind::Vector:
      return "vector";
  }
  return "?";
}

DataKind data_kind_from_name(const std::string& s) {
  if (s == "image") return DataKind::Image;
  if (s == "sequence") return DataKind::Sequence;
  if (s == "vector") return DataKind::Vector;
  throw std::invalid_argument("unknown data kind '" + s + "' (known: image, sequence, vector)");
}

std::int64_t TensorType::numel() const {
  std::int64_t n = 1;
  for (int d : dims) n *= d;
  return n;
}

std::string TensorType::str() const {
  std::string s = std::string(data_kind_name(kind)) + "[";
  for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? "," : "") + std::to_string(dims[i]);
  return s + "]";
}

nlohmann::json TensorType::to_json() const {
  return {{"kind", data_kind_name(kind)}, {"shape", dims}};
}

TensorType TensorType::from_json(const nlohmann::json& j, const std::string& path) {
  if (!j.is_object())
    throw std::invalid_argument(path + ": must be an object {\"kind\", \"shape\"}");
  if (!j.contains("kind") || !j["kind"].is_string())
    throw std::invalid_argument(path + ".kind: missing; one of image, sequence, vector");
  TensorType t;
  try {
    t.kind = data_kind_from_name(j["kind"].get<std::string>());
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(path + ".kind: " + e.what());
  }
  std::size_t rank = t.kind == DataKind::Image ? 3 : t.kind == DataKind::Sequence ? 2 : 1;
  const char* layout = t.kind == DataKind::Image      ? "[C,H,W]"
                       : t.kind == DataKind::Sequence ? "[L,D]"
                                                      : "[D]";
  if (!j.contains("shape") || !j["shape"].is_array() || j["shape"].size() != rank)
    throw std::invalid_argument(path + ".shape: a " + j["kind"].get<std::string>() + " needs " +
                                std::to_string(rank) + " dimensions " + layout);
  for (std::size_t i = 0; i < rank; ++i) {
    const auto& d = j["shape"][i];
    if (!d.is_number_integer() || d.get<long long>() <= 0 || d.get<long long>() > (1 << 24))
      throw std::invalid_argument(path + ".shape[" + std::to_string(i) + "]: " + d.dump() +
                                  " must be a positive integer");
    t.dims.push_back(d.get<int>());
  }
  return t;
}

// ---- construction ----

Genome::Genome(const Genome& o)
    : graph_(o.graph_), meta_(o.meta_), canonical_cache_(o.canonical_cache_.load()) {}
Genome::Genome(Genome&& o) noexcept
    : graph_(std::move(o.graph_)),
      meta_(std::move(o.meta_)),
      canonical_cache_(o.canonical_cache_.exchange(nullptr)) {}
Genome& Genome::operator=(const Genome& o) {
  if (this != &o) {
    graph_ = o.graph_;
    meta_ = o.meta_;
    canonical_cache_.store(o.canonical_cache_.load());
  }
  return *this;
}
Genome& Genome::operator=(Genome&& o) noexcept {
  if (this != &o) {
    graph_ = std::move(o.graph_);
    meta_ = std::move(o.meta_);
    canonical_cache_.store(o.canonical_cache_.exchange(nullptr));
  }
  return *this;
}

const Genome::Graph& Genome::empty_graph() {
  static const Graph empty;
  return empty;
}

Genome::Graph& Genome::mutable_graph() {
  // use_count() > 1 may be stale by the time it is read only in the harmless direction (another
  // sharer let go): then the copy was unnecessary, never wrong.
  if (!graph_)
    graph_ = std::make_shared<Graph>();
  else if (graph_.use_count() > 1)
    graph_ = std::make_shared<Graph>(*graph_);
  else  // use_count() is a relaxed load: order this genome's writes after the last sharer's reads
    std::atomic_thread_fence(std::memory_order_acquire);
  return *graph_;
}

Genome::Genome(TensorType input) {
  Graph& gr = mutable_graph();
  auto v = boost::add_vertex(gr);
  gr[v].kind = kInputKind;
  gr[v].out = std::move(input);
}

Genome::NodeId Genome::add_node(std::string kind, nlohmann::json params) {
  Graph& gr = mutable_graph();
  if (boost::num_vertices(gr) == 0)
    throw GenomeError("add_node: genome has no input node (construct it with an input type)");
  auto v = boost::add_vertex(gr);
  gr[v].kind = std::move(kind);
  gr[v].params = params.is_null() ? nlohmann::json::object() : std::move(params);
  return v;
}

void Genome::add_edge(NodeId from, NodeId to) {
  Graph& gr = mutable_graph();
  if (from >= num_nodes() || to >= num_nodes())
    throw GenomeError("add_edge: node " + std::to_string(std::max(from, to)) + " does not exist");
  int slot = static_cast<int>(boost::in_degree(to, gr));
  boost::add_edge(from, to, EdgeSlot{slot}, gr);
}

void Genome::remove_edge(NodeId from, NodeId to) {
  if (from >= num_nodes() || to >= num_nodes())
    throw GenomeError("remove_edge: node " + std::to_string(std::max(from, to)) +
                      " does not exist");
  // Removes one edge (the last slot from `from`), then renumbers the remaining slots densely.
  auto ins = inputs_of(to);
  auto pos = std::find(ins.rbegin(), ins.rend(), from);
  if (pos == ins.rend())
    throw GenomeError("remove_edge: no edge " + std::to_string(from) + " -> " + std::to_string(to));
  ins.erase(std::next(pos).base());
  boost::clear_in_edges(to, mutable_graph());
  for (NodeId u : ins) add_edge(u, to);
}

std::size_t Genome::num_nodes() const { return boost::num_vertices(graph()); }

const BlockNode& Genome::node(NodeId v) const {
  if (v >= num_nodes()) throw GenomeError("node " + std::to_string(v) + " does not exist");
  return graph()[v];
}
BlockNode& Genome::node(NodeId v) {
  if (v >= num_nodes()) throw GenomeError("node " + std::to_string(v) + " does not exist");
  return mutable_graph()[v];
}

std::vector<Genome::NodeId> Genome::inputs_of(NodeId v) const {
  std::vector<NodeId> out;
  inputs_into(v, out);
  return out;
}

void Genome::inputs_into(NodeId v, std::vector<NodeId>& out) const {
  out.clear();
  const Graph& gr = graph();
  if (boost::in_degree(v, gr) <= 1) {  // most nodes: no slots to order
    for (auto [it, end] = boost::in_edges(v, gr); it != end; ++it)
      out.push_back(boost::source(*it, gr));
    return;
  }
  std::vector<std::pair<int, NodeId>> es;
  for (auto [it, end] = boost::in_edges(v, gr); it != end; ++it)
    es.emplace_back(gr[*it].slot, boost::source(*it, gr));
  std::sort(es.begin(), es.end());
  for (auto& e : es) out.push_back(e.second);
}

std::vector<Genome::NodeId> Genome::outputs_of(NodeId v) const {
  std::vector<NodeId> out;
  for (auto [it, end] = boost::out_edges(v, graph()); it != end; ++it)
    out.push_back(boost::target(*it, graph()));
  return out;
}

Genome::NodeId Genome::output_node() const {
  std::vector<NodeId> sinks;
  for (NodeId v = 0; v < num_nodes(); ++v)
    if (boost::out_degree(v, graph()) == 0) sinks.push_back(v);
  if (sinks.size() != 1 || num_nodes() < 2) {
    std::string s;
    for (NodeId v : sinks) s += (s.empty() ? "" : ", ") + node_label(*this, v);
    throw GenomeError("genome must have exactly one output node (a node nothing consumes), found " +
                      std::to_string(sinks.size()) + (s.empty() ? "" : ": " + s));
  }
  return sinks[0];
}

std::vector<Genome::NodeId> Genome::topological_order() const {
  // Kahn's algorithm taking the lowest ready index first, so the order is deterministic.
  const std::size_t n = num_nodes();
  // Spaces add nodes after their inputs, and then the order is the node numbering itself (the
  // lowest ready index is always the next one).
  bool numbered_in_order = true;
  for (auto [it, end] = boost::edges(graph()); it != end && numbered_in_order; ++it)
    numbered_in_order = boost::source(*it, graph()) < boost::target(*it, graph());
  if (numbered_in_order) {
    std::vector<NodeId> order(n);
    std::iota(order.begin(), order.end(), NodeId{0});
    return order;
  }
  std::vector<std::size_t> indeg(n);
  for (NodeId v = 0; v < n; ++v) indeg[v] = boost::in_degree(v, graph());
  std::set<NodeId> ready;
  for (NodeId v = 0; v < n; ++v)
    if (indeg[v] == 0) ready.insert(v);
  std::vector<NodeId> order;
  order.reserve(n);
  while (!ready.empty()) {
    NodeId v = *ready.begin();
    ready.erase(ready.begin());
    order.push_back(v);
    for (auto [it, end] = boost::out_edges(v, graph()); it != end; ++it)
      if (--indeg[boost::target(*it, graph())] == 0) ready.insert(boost::target(*it, graph()));
  }
  if (order.size() != n) {
    std::string s;
    int shown = 0;
    for (NodeId v = 0; v < n && shown < 4; ++v)
      if (indeg[v] > 0) s += (shown++ ? ", " : "") + node_label(*this, v);
    throw GenomeError("genome has a cycle through " + s);
  }
  return order;
}

// ---- validation ----

void Genome::validate() {
  // An entry for this content means validate() passed on it here (or on the genome this one was
  // copied from, graph and output types included): nothing to check or infer again.
  const ContentKey key = content_key(*this);
  if (auto cached = canonical_cache_.load(); cached && cached->fingerprint == key.a) return;
  if (const auto known = validated_types().find(key); known && (*known)->size() == num_nodes()) {
    Graph& gr = mutable_graph();
    for (NodeId v = 0; v < num_nodes(); ++v) gr[v].out = (**known)[v];
    canonical_cache_.store(std::make_shared<const CanonicalCache>(CanonicalCache{key.a, {}}));
    return;
  }
  const std::size_t n = num_nodes();
  Graph& gr = mutable_graph();
  if (n < 2) throw GenomeError("genome needs an input node and at least one block");
  if (gr[0].kind != kInputKind)
    throw GenomeError("node 0 must be the input node, found kind '" + gr[0].kind + "'");
  if (boost::in_degree(0, gr) != 0)
    throw GenomeError("node 0 (input): the input node cannot have inputs");
  {
    const TensorType& t = gr[0].out;
    try {
      TensorType::from_json(t.to_json(), "node 0 (input): type");
    } catch (const std::invalid_argument& e) {
      throw GenomeError(e.what());
    }
  }
  for (NodeId v = 1; v < n; ++v) {
    if (gr[v].kind == kInputKind)
      throw GenomeError(node_label(*this, v) + ": only node 0 may be an input");
    if (boost::in_degree(v, gr) == 0) throw GenomeError(node_label(*this, v) + ": has no inputs");
  }
  auto order = topological_order();
  output_node();

  const Catalogue& cat = catalogue();
  // Reused across nodes: most nodes have one input, and assigning into in_types keeps each
  // element's dims buffer.
  std::vector<NodeId> ins;
  std::vector<TensorType> in_types;
  for (NodeId v : order) {
    if (v == 0) continue;
    BlockNode& b = gr[v];
    const BlockKind* kind = cat.find(b.kind);
    if (!kind)
      throw GenomeError(node_label(*this, v) + ": unknown block kind '" + b.kind +
                        "' (known: " + cat.known_list() + ")");
    inputs_into(v, ins);
    if (static_cast<int>(ins.size()) < kind->min_inputs ||
        static_cast<int>(ins.size()) > kind->max_inputs)
      throw GenomeError(
          node_label(*this, v) + ": has " + std::to_string(ins.size()) + " inputs, needs " +
          std::to_string(kind->min_inputs) +
          (kind->min_inputs == kind->max_inputs ? "" : ".." + std::to_string(kind->max_inputs)));
    std::string why = kind->check_params(b.params);
    if (!why.empty()) throw GenomeError(node_label(*this, v) + ": " + why);
    in_types.resize(ins.size());
    for (std::size_t s = 0; s < ins.size(); ++s) {
      const TensorType& t = gr[ins[s]].out;
      if (!kind->accepts_kind(t.kind)) {
        std::string acc;
        for (auto k : kind->accepts)
          acc += (acc.empty() ? "" : ", ") + std::string(data_kind_name(k));
        throw GenomeError(node_label(*this, v) + ": input " + std::to_string(s) + " from node " +
                          std::to_string(ins[s]) + " is " + t.str() + ", accepts " + acc);
      }
      in_types[s] = t;
    }
    try {
      nlohmann::json resolved;
      b.out = kind->infer(in_types, kind->resolve_into(b.params, resolved));
    } catch (const std::exception& e) {
      throw GenomeError(node_label(*this, v) + ": " + e.what());
    }
    for (int d : b.out.dims)
      if (d <= 0) throw GenomeError(node_label(*this, v) + ": output " + b.out.str() + " is empty");
  }
  // Remember that this content is valid and its output types inferred, so validate,
  // canonical_json and is_valid need not check again (output types are not in the key).
  auto cached = canonical_cache_.load();
  if (!cached || cached->fingerprint != key.a)
    canonical_cache_.store(std::make_shared<const CanonicalCache>(CanonicalCache{key.a, {}}));
  auto types = std::make_shared<std::vector<TensorType>>();
  types->reserve(n);
  for (NodeId v = 0; v < n; ++v) types->push_back(gr[v].out);
  validated_types().put(key, std::move(types));
}

bool Genome::is_valid() const {
  if (auto cached = canonical_cache_.load(); cached && cached->fingerprint == content_fingerprint())
    return true;
  try {
    Genome copy = *this;
    copy.validate();
    return true;
  } catch (const GenomeError&) {
    return false;
  }
}

// ---- JSON ----

nlohmann::json Genome::to_json() const {
  nlohmann::json nodes = nlohmann::json::array(), edges = nlohmann::json::array();
  for (NodeId v = 0; v < num_nodes(); ++v) {
    nlohmann::json nj{{"kind", graph()[v].kind}};
    if (!graph()[v].params.empty()) nj["params"] = graph()[v].params;
    nodes.push_back(std::move(nj));
    for (NodeId u : inputs_of(v)) edges.push_back({u, v});
  }
  nlohmann::json j{{"input", input_type().to_json()}, {"nodes", nodes}, {"edges", edges}};
  if (!meta_.empty()) j["meta"] = meta_;
  return j;
}

Genome Genome::from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw GenomeError("genome: must be a JSON object with input, nodes, edges");
  TensorType input;
  try {
    input = TensorType::from_json(j.value("input", nlohmann::json()), "genome.input");
  } catch (const std::invalid_argument& e) {
    throw GenomeError(e.what());
  }
  if (!j.contains("nodes") || !j["nodes"].is_array() || j["nodes"].empty())
    throw GenomeError("genome.nodes: must be a non-empty array");
  Genome g(input);
  const auto& nodes = j["nodes"];
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    const auto& nj = nodes[i];
    std::string path = "genome.nodes[" + std::to_string(i) + "]";
    if (!nj.is_object() || !nj.contains("kind") || !nj["kind"].is_string())
      throw GenomeError(path + ".kind: missing or not a string");
    std::string kind = nj["kind"].get<std::string>();
    nlohmann::json params = nj.value("params", nlohmann::json::object());
    if (!params.is_object()) throw GenomeError(path + ".params: must be an object");
    if (i == 0) {
      if (kind != kInputKind)
        throw GenomeError(path + ".kind: node 0 must be 'input', got '" + kind + "'");
      continue;
    }
    g.add_node(kind, params);
  }
  if (j.contains("edges")) {
    if (!j["edges"].is_array()) throw GenomeError("genome.edges: must be an array of [from, to]");
    for (std::size_t i = 0; i < j["edges"].size(); ++i) {
      const auto& e = j["edges"][i];
      std::string path = "genome.edges[" + std::to_string(i) + "]";
      if (!e.is_array() || e.size() != 2 || !e[0].is_number_unsigned() ||
          !e[1].is_number_unsigned())
        throw GenomeError(path + ": " + e.dump() + " must be [from, to] node indices");
      auto from = e[0].get<std::size_t>(), to = e[1].get<std::size_t>();
      if (from >= g.num_nodes() || to >= g.num_nodes())
        throw GenomeError(path + ": " + e.dump() + " refers to a node beyond " +
                          std::to_string(g.num_nodes() - 1));
      g.add_edge(from, to);
    }
  }
  if (j.contains("meta")) g.meta_ = j["meta"];
  g.validate();
  return g;
}

// ---- canonical form ----
//
// Weisfeiler-Lehman colour refinement over the DAG: a node's initial colour hashes its depth
// (longest path from the input), kind and non-default params; each round mixes in the colours
// of its inputs (in slot order, or sorted for commutative kinds) and of its consumers (with the
// slot they feed, unless the consumer is commutative).  Nodes still tied after refinement are
// individualised one at a time (the tie's lowest index), which is exact for automorphic nodes
// such as identical parallel branches.  Nodes are then numbered by (depth, colour), which is a
// topological order, and written in the to_json format (without meta).

// Everything the canonical form reads: the input type, each node's kind and params, and the
// edges with their slots.  Output types (filled by validate) and meta are left out.
std::uint64_t Genome::content_fingerprint() const { return content_key(*this).a; }

// The cache holds an entry only for content validate() passed on this genome (so its output
// types are inferred), with the canonical form once computed ("" before that).
std::string Genome::canonical_json() const {
  const ContentKey key = content_key(*this);
  auto cached = canonical_cache_.load();
  const bool known_valid = cached && cached->fingerprint == key.a;
  if (known_valid && !cached->json.empty()) return cached->json;
  std::optional<std::string> json = canonical_memo().find(key);
  if (!json) {
    // Throws for an invalid genome (the canonical form is only defined for valid ones): nothing
    // is cached then.
    json = known_valid ? canonical_json_of_valid(*this) : compute_canonical_json();
    canonical_memo().put(key, *json);
  }
  // Only a genome validated here keeps the form in its own entry: an entry says its output
  // types are inferred (validate returns at once), which a validated copy does not make true.
  if (known_valid)
    canonical_cache_.store(std::make_shared<const CanonicalCache>(CanonicalCache{key.a, *json}));
  return *json;
}

std::string Genome::compute_canonical_json() const {
  Genome copy = *this;
  copy.validate();
  return canonical_json_of_valid(copy);
}

namespace {

std::string canonical_json_of_valid(const Genome& copy) {
  using NodeId = Genome::NodeId;
  const Genome::Graph& gr = copy.graph();
  const std::size_t n = copy.num_nodes();
  const Catalogue& cat = catalogue();
  auto order = copy.topological_order();

  std::vector<int> depth(n, 0);
  std::vector<std::vector<NodeId>> ins(n);
  std::vector<std::vector<std::pair<NodeId, int>>> outs(n);  // (consumer, slot)
  std::vector<bool> commutative(n, false);
  std::vector<nlohmann::json> labels(n);
  for (NodeId v : order) {
    ins[v] = copy.inputs_of(v);
    for (std::size_t s = 0; s < ins[v].size(); ++s) {
      depth[v] = std::max(depth[v], depth[ins[v][s]] + 1);
      outs[ins[v][s]].emplace_back(v, static_cast<int>(s));
    }
    nlohmann::json params = gr[v].params;
    if (const BlockKind* k = cat.find(gr[v].kind)) {
      commutative[v] = k->commutative;
      params = k->compact(params);
    }
    labels[v] = nlohmann::json::array({gr[v].kind, params});
  }

  std::vector<std::uint64_t> col(n);
  for (NodeId v = 0; v < n; ++v)
    col[v] = mix(fnv1a64(labels[v].dump()), static_cast<std::uint64_t>(depth[v]));
  auto distinct = [&] { return std::set<std::uint64_t>(col.begin(), col.end()).size(); };
  auto refine = [&] {
    std::size_t classes = distinct();
    for (std::size_t round = 0; round < n + 1; ++round) {
      std::vector<std::uint64_t> next(n);
      for (NodeId v = 0; v < n; ++v) {
        std::uint64_t h = mix(col[v], 0x51);
        std::vector<std::uint64_t> in_cols;
        for (NodeId u : ins[v]) in_cols.push_back(col[u]);
        if (commutative[v]) std::sort(in_cols.begin(), in_cols.end());
        for (auto c : in_cols) h = mix(h, c);
        std::vector<std::uint64_t> out_cols;
        for (auto [w, slot] : outs[v])
          out_cols.push_back(mix(col[w], commutative[w] ? 0xffff : std::uint64_t(slot)));
        std::sort(out_cols.begin(), out_cols.end());
        h = mix(h, 0x77);
        for (auto c : out_cols) h = mix(h, c);
        next[v] = h;
      }
      col.swap(next);
      std::size_t now = distinct();
      if (now <= classes) break;
      classes = now;
    }
  };
  refine();
  while (distinct() < n) {
    // Individualise the first node (by index) of the smallest tied (depth, colour) class.
    std::map<std::pair<int, std::uint64_t>, std::vector<NodeId>> classes;
    for (NodeId v = 0; v < n; ++v) classes[{depth[v], col[v]}].push_back(v);
    for (auto& [key, members] : classes)
      if (members.size() > 1) {
        col[members[0]] = mix(col[members[0]], 0xabcdef);
        break;
      }
    refine();
  }

  std::vector<NodeId> canon(n);
  std::iota(canon.begin(), canon.end(), 0);
  std::sort(canon.begin(), canon.end(), [&](NodeId a, NodeId b) {
    return std::make_pair(depth[a], col[a]) < std::make_pair(depth[b], col[b]);
  });
  std::vector<NodeId> index_of(n);
  for (NodeId i = 0; i < n; ++i) index_of[canon[i]] = i;

  nlohmann::json nodes = nlohmann::json::array(), edges = nlohmann::json::array();
  for (NodeId i = 0; i < n; ++i) {
    NodeId v = canon[i];
    nlohmann::json nj{{"kind", labels[v][0]}};
    if (!labels[v][1].empty()) nj["params"] = labels[v][1];
    nodes.push_back(std::move(nj));
    std::vector<NodeId> srcs;
    for (NodeId u : ins[v]) srcs.push_back(index_of[u]);
    if (commutative[v]) std::sort(srcs.begin(), srcs.end());
    for (NodeId u : srcs) edges.push_back({u, i});
  }
  nlohmann::json j{{"input", copy.input_type().to_json()}, {"nodes", nodes}, {"edges", edges}};
  return j.dump();
}

}  // namespace

std::string Genome::hash() const { return hash_of_canonical(canonical_json()); }

std::string Genome::hash_of_canonical(const std::string& canonical_json) {
  return hex16(fnv1a64(canonical_json));
}

}  // namespace hwnas::spaces
