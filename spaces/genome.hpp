// The genome: an architecture as a DAG of typed blocks (Boost.Graph adjacency_list).
//
// Node 0 is always the "input" node carrying the sample type; the single sink is the output.
// Each node has a block kind from the catalogue (spaces/catalogue.hpp) and hyperparameters as a
// JSON object; output types are inferred by validate().  Edges carry a slot so that multi-input
// blocks (concat, add) see their inputs in a defined order.
#pragma once

#include <atomic>
#include <boost/graph/adjacency_list.hpp>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

namespace hwnas::spaces {

enum class DataKind { Image, Sequence, Vector };
const char* data_kind_name(DataKind k);
DataKind data_kind_from_name(const std::string& s);  // throws std::invalid_argument

// Per-sample tensor type: Image {C,H,W}, Sequence {L,D}, Vector {D}.
struct TensorType {
  DataKind kind = DataKind::Vector;
  std::vector<int> dims;
  std::int64_t numel() const;
  std::string str() const;  // "image[1,28,28]"
  bool operator==(const TensorType& o) const = default;

  static TensorType image(int c, int h, int w) { return {DataKind::Image, {c, h, w}}; }
  static TensorType sequence(int len, int d) { return {DataKind::Sequence, {len, d}}; }
  static TensorType vector(int d) { return {DataKind::Vector, {d}}; }
  int features() const { return kind == DataKind::Image ? dims.at(0) : dims.back(); }
  // {"kind":"image","shape":[1,28,28]}; from_json checks rank and positivity and throws
  // std::invalid_argument naming `path`.
  nlohmann::json to_json() const;
  static TensorType from_json(const nlohmann::json& j, const std::string& path = "input");
};

struct BlockNode {
  std::string kind;                                  // catalogue name
  nlohmann::json params = nlohmann::json::object();  // hyperparameters (ints, floats, strings)
  TensorType out;                                    // inferred by Genome::validate()
};

struct EdgeSlot {
  int slot = 0;
};

// Thrown for an invalid genome; the message names the node and field, e.g.
// "node 3 (conv): param 'kernel' = 4 not in {1,3,5,7}".
struct GenomeError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

class Genome {
 public:
  using Graph =
      boost::adjacency_list<boost::vecS, boost::vecS, boost::bidirectionalS, BlockNode, EdgeSlot>;
  using NodeId = std::size_t;

  Genome() = default;
  explicit Genome(TensorType input);
  // Copies carry the canonical-form cache (std::atomic members need the operators spelt out).
  Genome(const Genome& o);
  Genome(Genome&& o) noexcept;
  Genome& operator=(const Genome& o);
  Genome& operator=(Genome&& o) noexcept;

  NodeId add_node(std::string kind, nlohmann::json params = nlohmann::json::object());
  // Appends `from` as the next input slot of `to`.
  void add_edge(NodeId from, NodeId to);
  void remove_edge(NodeId from, NodeId to);

  std::size_t num_nodes() const;
  NodeId input_node() const { return 0; }
  NodeId output_node() const;  // the unique sink; throws GenomeError if not unique
  const BlockNode& node(NodeId v) const;
  BlockNode& node(NodeId v);
  std::vector<NodeId> inputs_of(NodeId v) const;  // predecessors in slot order
  // inputs_of into a caller's buffer (replacing its contents), for loops over every node.
  void inputs_into(NodeId v, std::vector<NodeId>& out) const;
  std::vector<NodeId> outputs_of(NodeId v) const;
  std::vector<NodeId> topological_order() const;  // throws GenomeError on a cycle
  const TensorType& input_type() const { return graph()[0].out; }
  const Graph& graph() const { return graph_ ? *graph_ : empty_graph(); }

  // Checks acyclicity, single sink, connectivity, known kinds, hyperparameter domains and shape
  // compatibility, inferring every node's output type.  Throws GenomeError.
  void validate();
  bool is_valid() const;

  nlohmann::json to_json() const;                    // {"input":..., "nodes":[...], "edges":[...]}
  static Genome from_json(const nlohmann::json& j);  // validates; throws GenomeError

  // Annotations a space attaches (e.g. the decisions that produced this genome), carried through
  // to_json/from_json but not part of the architecture: the canonical form and hash ignore them.
  const nlohmann::json& meta() const { return meta_; }
  nlohmann::json& meta() { return meta_; }

  // Canonical form: the same JSON for isomorphic graphs (same computation, nodes numbered
  // differently), used for deduplication in the store.  Cached: a repeat call on an unchanged
  // genome costs one content fingerprint (O(nodes + edges)) instead of validation and colour
  // refinement; any change through any accessor changes the fingerprint.  Thread-safe.
  std::string canonical_json() const;
  std::string hash() const;  // 16 hex digits of a 64-bit hash of canonical_json()
  // hash() from an already computed canonical_json() (the canonical form is the costly part).
  static std::string hash_of_canonical(const std::string& canonical_json);

 private:
  struct CanonicalCache {
    std::uint64_t fingerprint;
    std::string json;
  };
  std::uint64_t content_fingerprint() const;
  std::string compute_canonical_json() const;
  static const Graph& empty_graph();
  // This genome's own graph, for a change: copied first when another genome shares it.
  Graph& mutable_graph();

  // Copy-on-write: copies share one graph until one of them changes.  The search copies
  // genomes into proposals, jobs and populations far more often than it changes them, and
  // Boost's adjacency_list declares a copy constructor but no move constructor, so even a
  // "move" of a by-value graph copied every node and edge list.  Null means no nodes.
  // A BlockNode& from the non-const node() is this genome's alone only until the genome is
  // copied: take it, change it, then copy.
  std::shared_ptr<Graph> graph_;
  nlohmann::json meta_ = nlohmann::json::object();
  mutable std::atomic<std::shared_ptr<const CanonicalCache>> canonical_cache_;
};

}  // namespace hwnas::spaces
