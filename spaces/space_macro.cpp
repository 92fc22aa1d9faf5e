// Macro spaces: a chain of stages, each choosing a block kind, its hyperparameters, a depth and
// optional residual skips; a global width multiplier; per-layer bit width and pruning ratio.
//
// {"type": "macro", "input": {"kind": "image", "shape": [1,28,28]}, "outputs": 10,
//  "width_multipliers": [0.5, 1.0],          (optional, default [1.0]; scales channels/units)
//  "bits": [32, 8], "prune": [0.0, 0.5],     (optional per-layer choices, default [32], [0])
//  "shared": {"timesteps": [4, 8]},          (optional: one choice per architecture, given to
//                                              every layer whose block has that param)
//  "readout": "pool",                         (optional: "pool" = global pool if needed + head;
//                                              "per_token" = head on every token of the final
//                                              sequence; "none" = the last block already gives
//                                              the outputs, e.g. spike_readout)
//  "stages": [{"blocks": ["conv", "dwconv"],  (single-input block kinds)
//              "depth": [1, 3],               (int or [min, max])
//              "skip": "optional",            (false | true | "optional": residual add around
//                                              each layer that keeps the type)
//              "params": {"channels": [8, 16], "kernel": [3, 5], "stride": 2}}]}
//
// A stage's "stride" applies to its first layer only.  A block that needs vectors after image
// or sequence data gets a flatten in front; one that cannot take the data at all is an error at
// load.  Each genome carries its decisions in meta.decisions; describe() prints them as JSON.
#include <algorithm>
#include <cmath>
#include <map>

#include "spaces/space_common.hpp"

namespace hwnas::spaces::detail {
namespace {

enum class Skip { Off, On, Optional };
enum class Readout { Pool, PerToken, None };

struct StageDef {
  std::vector<std::string> blocks;
  int dmin = 1, dmax = 1;
  Skip skip = Skip::Off;
  std::map<std::string, std::vector<json>> options;  // param -> its choices
  std::vector<std::string> params_of(const std::string& block) const {
    std::vector<std::string> out;
    const BlockKind& k = catalogue().at(block);
    for (const auto& [name, vals] : options)
      if (k.find_param(name)) out.push_back(name);
    return out;
  }
};

struct StageDecision {
  std::string block;
  int depth = 1;
  json params = json::object();
  bool skip = false;
  std::vector<int> bits;
  std::vector<double> prune;
};

struct Decisions {
  double width = 1.0;
  json shared = json::object();  // shared param -> its value (empty when the space has none)
  std::vector<StageDecision> stages;

  json to_json() const {
    json st = json::array();
    for (const auto& s : stages)
      st.push_back({{"block", s.block},
                    {"depth", s.depth},
                    {"params", s.params},
                    {"skip", s.skip},
                    {"bits", s.bits},
                    {"prune", s.prune}});
    json j = {{"width", width}, {"stages", st}};
    // Only spaces with shared choices carry the key, so older descriptions stay unchanged.
    if (!shared.empty()) j["shared"] = shared;
    return j;
  }
};

template <class T>
std::size_t index_of(const std::vector<T>& v, const T& x) {
  for (std::size_t i = 0; i < v.size(); ++i)
    if (v[i] == x) return i;
  return v.size();
}

class MacroSpace : public Space {
 public:
  MacroSpace(json def, TensorType input, int outputs, std::vector<double> widths,
             std::vector<int> bits, std::vector<double> prune,
             std::map<std::string, std::vector<json>> shared, Readout readout,
             std::vector<StageDef> stages)
      : def_(std::move(def)),
        input_(std::move(input)),
        outputs_(outputs),
        widths_(std::move(widths)),
        bits_(std::move(bits)),
        prune_(std::move(prune)),
        shared_(std::move(shared)),
        readout_(readout),
        stages_(std::move(stages)) {}

  std::string type() const override { return "macro"; }
  TensorType input_type() const override { return input_; }
  int num_outputs() const override { return outputs_; }
  json to_json() const override { return def_; }

  // ---- decisions <-> genome ----

  Genome decode(const Decisions& d) const {
    Genome g(input_);
    Genome::NodeId x = g.input_node();
    TensorType t = input_;
    for (std::size_t s = 0; s < d.stages.size(); ++s) {
      const StageDecision& sd = d.stages[s];
      const BlockKind& kind = catalogue().at(sd.block);
      for (int l = 0; l < sd.depth; ++l) {
        if (!kind.accepts_kind(t.kind)) {
          if (!kind.accepts_kind(DataKind::Vector) || t.kind == DataKind::Vector)
            throw std::invalid_argument("stage " + std::to_string(s) + ": " + sd.block +
                                        " cannot take " + t.str());
          auto f = g.add_node("flatten");
          g.add_edge(x, f);
          x = f;
          t = TensorType::vector(static_cast<int>(t.numel()));
        }
        json p = sd.params;
        for (const char* w : {"channels", "units"})
          if (p.contains(w))
            p[w] = std::max(1, static_cast<int>(std::lround(p[w].get<double>() * d.width)));
        if (l > 0 && p.contains("stride")) p["stride"] = 1;
        for (const auto& [name, value] : d.shared.items())
          if (kind.find_param(name)) p[name] = value;
        if (sd.bits[static_cast<std::size_t>(l)] != 32)
          p["bits"] = sd.bits[static_cast<std::size_t>(l)];
        if (sd.prune[static_cast<std::size_t>(l)] != 0)
          p["prune"] = sd.prune[static_cast<std::size_t>(l)];
        TensorType t2 = infer_type(sd.block, {t}, p);
        auto y = g.add_node(sd.block, p);
        g.add_edge(x, y);
        if (sd.skip && t2 == t) {
          auto a = g.add_node("add");
          g.add_edge(x, a);
          g.add_edge(y, a);
          x = a;
        } else {
          x = y;
        }
        t = t2;
      }
    }
    switch (readout_) {
      case Readout::Pool:
        add_classifier_tail(g, x, t, outputs_);
        break;
      case Readout::PerToken: {
        if (t.kind != DataKind::Sequence)
          throw std::invalid_argument(
              "readout per_token needs the last stage to give a sequence, "
              "got " +
              t.str());
        auto head = g.add_node("head", {{"outputs", outputs_}});
        g.add_edge(x, head);
        break;
      }
      case Readout::None:
        if (!(t == TensorType::vector(outputs_)))
          throw std::invalid_argument("readout none needs the last block to give vector[" +
                                      std::to_string(outputs_) + "] (the outputs), got " + t.str());
        break;
    }
    g.validate();
    g.meta() = {{"space", "macro"}, {"decisions", d.to_json()}};
    return g;
  }

  // Parses and checks decisions against this space; throws std::invalid_argument naming the field.
  Decisions decisions_from_json(const json& j) const {
    const std::string P = "decisions";
    if (!j.is_object() || !j.contains("stages") || !j["stages"].is_array())
      fail(P, "must be an object with width and stages");
    Decisions d;
    d.width = j.value("width", 1.0);
    if (index_of(widths_, d.width) == widths_.size())
      fail(P + ".width", json(d.width).dump() + " not in the space's width_multipliers");
    const json shared = j.value("shared", json::object());
    if (!shared.is_object() || shared.size() != shared_.size())
      fail(P + ".shared", "must set exactly the space's shared params");
    for (const auto& [name, choices] : shared_) {
      if (!shared.contains(name)) fail(P + ".shared." + name, "missing");
      if (index_of(choices, shared[name]) == choices.size())
        fail(P + ".shared." + name, shared[name].dump() + " not among the space's choices");
    }
    d.shared = shared;
    if (j["stages"].size() != stages_.size())
      fail(P + ".stages", "needs " + std::to_string(stages_.size()) + " stages");
    for (std::size_t s = 0; s < stages_.size(); ++s) {
      const json& sj = j["stages"][s];
      const StageDef& def = stages_[s];
      std::string sp = P + ".stages[" + std::to_string(s) + "]";
      StageDecision sd;
      try {
        sd.block = sj.at("block").get<std::string>();
        sd.depth = sj.at("depth").get<int>();
        sd.params = sj.at("params");
        sd.skip = sj.at("skip").get<bool>();
        sd.bits = sj.at("bits").get<std::vector<int>>();
        sd.prune = sj.at("prune").get<std::vector<double>>();
      } catch (const json::exception& e) {
        fail(sp, std::string("malformed: ") + e.what());
      }
      if (index_of(def.blocks, sd.block) == def.blocks.size())
        fail(sp + ".block", "'" + sd.block + "' not among the stage's blocks");
      if (sd.depth < def.dmin || sd.depth > def.dmax)
        fail(sp + ".depth", std::to_string(sd.depth) + " outside the stage's range");
      if ((def.skip == Skip::Off && sd.skip) || (def.skip == Skip::On && !sd.skip))
        fail(sp + ".skip", "not allowed by the stage");
      auto names = def.params_of(sd.block);
      if (!sd.params.is_object() || sd.params.size() != names.size())
        fail(sp + ".params", "must set exactly the stage's options for " + sd.block);
      for (const auto& n : names) {
        if (!sd.params.contains(n)) fail(sp + ".params." + n, "missing");
        if (index_of(def.options.at(n), sd.params[n]) == def.options.at(n).size())
          fail(sp + ".params." + n, sd.params[n].dump() + " not among the stage's choices");
      }
      if (sd.bits.size() != static_cast<std::size_t>(sd.depth) ||
          sd.prune.size() != static_cast<std::size_t>(sd.depth))
        fail(sp, "bits and prune need one entry per layer");
      for (int b : sd.bits)
        if (index_of(bits_, b) == bits_.size())
          fail(sp + ".bits", std::to_string(b) + " not among the space's bits");
      for (double p : sd.prune)
        if (index_of(prune_, p) == prune_.size())
          fail(sp + ".prune", json(p).dump() + " not among the space's prune ratios");
      d.stages.push_back(std::move(sd));
    }
    return d;
  }

  Decisions decisions_of(const Genome& g) const {
    if (!g.meta().contains("decisions"))
      throw std::invalid_argument(
          "genome carries no macro decisions (meta.decisions): not produced by this space");
    return decisions_from_json(g.meta()["decisions"]);
  }

  // ---- categorical decision encoding ----

  // width, each shared choice, then per stage: block, depth, every option of the stage (ignored
  // when the block lacks it), skip (one choice unless optional), and per layer slot up to the
  // maximal depth its bits and prune ratio (ignored past the chosen depth).
  std::vector<Decision> decisions() const override {
    std::vector<Decision> out;
    out.push_back({"width", static_cast<int>(widths_.size())});
    for (const auto& [name, choices] : shared_)
      out.push_back({"shared." + name, static_cast<int>(choices.size())});
    for (std::size_t s = 0; s < stages_.size(); ++s) {
      const StageDef& def = stages_[s];
      const std::string sp = "stages[" + std::to_string(s) + "].";
      out.push_back({sp + "block", static_cast<int>(def.blocks.size())});
      out.push_back({sp + "depth", def.dmax - def.dmin + 1});
      for (const auto& [n, opts] : def.options)
        out.push_back({sp + "params." + n, static_cast<int>(opts.size())});
      out.push_back({sp + "skip", def.skip == Skip::Optional ? 2 : 1});
      for (int l = 0; l < def.dmax; ++l) {
        const std::string lp = sp + "layers[" + std::to_string(l) + "].";
        out.push_back({lp + "bits", static_cast<int>(bits_.size())});
        out.push_back({lp + "prune", static_cast<int>(prune_.size())});
      }
    }
    return out;
  }

  Genome decode(const std::vector<int>& values) const override {
    check_decision_values(decisions(), values, "macro");
    auto next = [&, k = std::size_t{0}]() mutable { return static_cast<std::size_t>(values[k++]); };
    Decisions d;
    d.width = widths_[next()];
    for (const auto& [name, choices] : shared_) d.shared[name] = choices[next()];
    for (std::size_t s = 0; s < stages_.size(); ++s) {
      const StageDef& def = stages_[s];
      StageDecision sd;
      sd.block = def.blocks[next()];
      sd.depth = def.dmin + static_cast<int>(next());
      const auto names = def.params_of(sd.block);
      for (const auto& [n, opts] : def.options) {
        const std::size_t v = next();
        if (std::find(names.begin(), names.end(), n) != names.end()) sd.params[n] = opts[v];
      }
      const std::size_t skip = next();
      sd.skip = def.skip == Skip::On || (def.skip == Skip::Optional && skip == 1);
      for (int l = 0; l < def.dmax; ++l) {
        const std::size_t b = next(), p = next();
        if (l < sd.depth) {
          sd.bits.push_back(bits_[b]);
          sd.prune.push_back(prune_[p]);
        }
      }
      d.stages.push_back(std::move(sd));
    }
    return decode(d);
  }

  std::vector<int> encode_decisions(const Genome& g) const override {
    const Decisions d = decisions_of(g);
    std::vector<int> out;
    auto put = [&out](std::size_t v) { out.push_back(static_cast<int>(v)); };
    put(index_of(widths_, d.width));
    for (const auto& [name, choices] : shared_) put(index_of(choices, d.shared[name]));
    for (std::size_t s = 0; s < stages_.size(); ++s) {
      const StageDef& def = stages_[s];
      const StageDecision& sd = d.stages[s];
      put(index_of(def.blocks, sd.block));
      put(static_cast<std::size_t>(sd.depth - def.dmin));
      for (const auto& [n, opts] : def.options)
        put(sd.params.contains(n) ? index_of(opts, sd.params[n]) : 0);
      put(def.skip == Skip::Optional && sd.skip ? 1 : 0);
      for (int l = 0; l < def.dmax; ++l) {
        const bool present = l < sd.depth;
        put(present ? index_of(bits_, sd.bits[static_cast<std::size_t>(l)]) : 0);
        put(present ? index_of(prune_, sd.prune[static_cast<std::size_t>(l)]) : 0);
      }
    }
    return out;
  }

  // ---- sampling ----

  StageDecision sample_stage(std::size_t s, Rng& rng) const {
    const StageDef& def = stages_[s];
    StageDecision sd;
    sd.block = pick(def.blocks, rng);
    sd.depth = std::uniform_int_distribution<int>(def.dmin, def.dmax)(rng);
    for (const auto& n : def.params_of(sd.block)) sd.params[n] = pick(def.options.at(n), rng);
    sd.skip = def.skip == Skip::On ||
              (def.skip == Skip::Optional && std::bernoulli_distribution(0.5)(rng));
    for (int l = 0; l < sd.depth; ++l) {
      sd.bits.push_back(pick(bits_, rng));
      sd.prune.push_back(pick(prune_, rng));
    }
    return sd;
  }

  Decisions sample_decisions(Rng& rng) const {
    Decisions d;
    d.width = pick(widths_, rng);
    for (const auto& [name, choices] : shared_) d.shared[name] = pick(choices, rng);
    for (std::size_t s = 0; s < stages_.size(); ++s) d.stages.push_back(sample_stage(s, rng));
    return d;
  }

  Genome sample(Rng& rng) const override {
    // Load-time checks make invalid combinations unlikely; rejection covers the rest.
    std::string last;
    for (int attempt = 0; attempt < 100; ++attempt) {
      try {
        return decode(sample_decisions(rng));
      } catch (const std::invalid_argument& e) {
        last = e.what();
      }
    }
    throw std::runtime_error("macro space: no valid architecture in 100 samples; last error: " +
                             last);
  }

  // ---- neighbourhood and mutation ----

  // Every decision set differing from `d` in one choice: width, a stage's block kind, depth
  // (adds or removes a layer), a hyperparameter, its skips (adds or removes edges), or one
  // layer's bits or prune.
  std::vector<std::vector<Decisions>> alternatives(const Decisions& d) const {
    std::vector<std::vector<Decisions>> sites;
    auto site = [&](auto&& edit, std::size_t n) {
      std::vector<Decisions> alts;
      for (std::size_t i = 0; i < n; ++i) {
        Decisions a = d;
        if (edit(a, i)) alts.push_back(std::move(a));
      }
      if (!alts.empty()) sites.push_back(std::move(alts));
    };
    site(
        [&](Decisions& a, std::size_t i) {
          a.width = widths_[i];
          return a.width != d.width;
        },
        widths_.size());
    for (const auto& [name, choices] : shared_)
      site(
          [&](Decisions& a, std::size_t i) {
            if (choices[i] == d.shared[name]) return false;
            a.shared[name] = choices[i];
            return true;
          },
          choices.size());
    for (std::size_t s = 0; s < stages_.size(); ++s) {
      const StageDef& def = stages_[s];
      const StageDecision& cur = d.stages[s];
      site(
          [&](Decisions& a, std::size_t i) {
            if (def.blocks[i] == cur.block) return false;
            StageDecision& sd = a.stages[s];
            sd.block = def.blocks[i];
            json p = json::object();
            for (const auto& n : def.params_of(sd.block))
              p[n] = cur.params.contains(n) ? cur.params[n] : def.options.at(n).front();
            sd.params = p;
            return true;
          },
          def.blocks.size());
      site(
          [&](Decisions& a, std::size_t i) {
            int depth = def.dmin + static_cast<int>(i);
            if (depth == cur.depth) return false;
            StageDecision& sd = a.stages[s];
            sd.depth = depth;
            sd.bits.resize(static_cast<std::size_t>(depth),
                           cur.bits.empty() ? bits_.front() : cur.bits.back());
            sd.prune.resize(static_cast<std::size_t>(depth),
                            cur.prune.empty() ? prune_.front() : cur.prune.back());
            return true;
          },
          static_cast<std::size_t>(def.dmax - def.dmin + 1));
      for (const auto& n : def.params_of(cur.block)) {
        const auto& opts = def.options.at(n);
        site(
            [&](Decisions& a, std::size_t i) {
              if (opts[i] == cur.params[n]) return false;
              a.stages[s].params[n] = opts[i];
              return true;
            },
            opts.size());
      }
      if (def.skip == Skip::Optional)
        site(
            [&](Decisions& a, std::size_t) {
              a.stages[s].skip = !cur.skip;
              return true;
            },
            1);
      for (std::size_t l = 0; l < static_cast<std::size_t>(cur.depth); ++l) {
        site(
            [&](Decisions& a, std::size_t i) {
              if (bits_[i] == cur.bits[l]) return false;
              a.stages[s].bits[l] = bits_[i];
              return true;
            },
            bits_.size());
        site(
            [&](Decisions& a, std::size_t i) {
              if (prune_[i] == cur.prune[l]) return false;
              a.stages[s].prune[l] = prune_[i];
              return true;
            },
            prune_.size());
      }
    }
    return sites;
  }

  Genome mutate(const Genome& g, Rng& rng) const override {
    Decisions d = decisions_of(g);
    auto sites = alternatives(d);
    if (sites.empty()) return decode(d);
    for (int attempt = 0; attempt < 50; ++attempt) {
      const auto& alts = sites[pick_index(sites.size(), rng)];
      Decisions a = alts[pick_index(alts.size(), rng)];
      // A new block kind gets random values for the options the old kind lacked.
      for (std::size_t s = 0; s < stages_.size(); ++s)
        if (a.stages[s].block != d.stages[s].block)
          for (const auto& n : stages_[s].params_of(a.stages[s].block))
            if (!d.stages[s].params.contains(n))
              a.stages[s].params[n] = pick(stages_[s].options.at(n), rng);
      try {
        return decode(a);
      } catch (const std::invalid_argument&) {
      }
    }
    return decode(d);
  }

  Genome crossover(const Genome& ga, const Genome& gb, Rng& rng) const override {
    Decisions a = decisions_of(ga), b = decisions_of(gb);
    std::bernoulli_distribution coin(0.5);
    for (int attempt = 0; attempt < 20; ++attempt) {
      Decisions c;
      c.width = coin(rng) ? a.width : b.width;
      for (const auto& [name, choices] : shared_)
        c.shared[name] = coin(rng) ? a.shared[name] : b.shared[name];
      for (std::size_t s = 0; s < stages_.size(); ++s)
        c.stages.push_back(coin(rng) ? a.stages[s] : b.stages[s]);
      try {
        return decode(c);
      } catch (const std::invalid_argument&) {
      }
    }
    return decode(a);
  }

  std::vector<Genome> neighbours(const Genome& g) const override {
    std::vector<Genome> out;
    for (const auto& alts : alternatives(decisions_of(g)))
      for (const auto& a : alts) {
        try {
          out.push_back(decode(a));
        } catch (const std::invalid_argument&) {
        }
      }
    return out;
  }

  bool contains(const Genome& g) const override {
    try {
      return decode(decisions_of(g)).hash() == g.hash();
    } catch (const std::invalid_argument&) {
      return false;
    }
  }

  // ---- encodings ----

  // width one-hot; per stage: block one-hot, depth one-hot, one-hot per hyperparameter option
  // (zeros where the block lacks it), skip bit, and per layer slot bits and prune one-hots.
  std::vector<float> encode_onehot(const Genome& g) const override {
    Decisions d = decisions_of(g);
    std::vector<float> v;
    auto onehot = [&v](std::size_t n, std::size_t k) {
      for (std::size_t i = 0; i < n; ++i) v.push_back(i == k ? 1.0f : 0.0f);
    };
    onehot(widths_.size(), index_of(widths_, d.width));
    for (const auto& [name, choices] : shared_)
      onehot(choices.size(), index_of(choices, d.shared[name]));
    for (std::size_t s = 0; s < stages_.size(); ++s) {
      const StageDef& def = stages_[s];
      const StageDecision& sd = d.stages[s];
      onehot(def.blocks.size(), index_of(def.blocks, sd.block));
      onehot(static_cast<std::size_t>(def.dmax - def.dmin + 1),
             static_cast<std::size_t>(sd.depth - def.dmin));
      for (const auto& [n, opts] : def.options)
        onehot(opts.size(), sd.params.contains(n) ? index_of(opts, sd.params[n]) : opts.size());
      v.push_back(sd.skip ? 1.0f : 0.0f);
      for (int l = 0; l < def.dmax; ++l) {
        bool present = l < sd.depth;
        onehot(bits_.size(),
               present ? index_of(bits_, sd.bits[static_cast<std::size_t>(l)]) : bits_.size());
        onehot(prune_.size(),
               present ? index_of(prune_, sd.prune[static_cast<std::size_t>(l)]) : prune_.size());
      }
    }
    return v;
  }

  // The network is one path: per stage and layer slot, the block kind's one-hot (zeros where
  // the stage is shallower).
  std::vector<float> encode_path(const Genome& g) const override {
    Decisions d = decisions_of(g);
    std::vector<float> v;
    for (std::size_t s = 0; s < stages_.size(); ++s) {
      const StageDef& def = stages_[s];
      std::size_t k = index_of(def.blocks, d.stages[s].block);
      for (int l = 0; l < def.dmax; ++l)
        for (std::size_t i = 0; i < def.blocks.size(); ++i)
          v.push_back(l < d.stages[s].depth && i == k ? 1.0f : 0.0f);
    }
    return v;
  }

  // Number of decision sets (an upper bound on distinct architectures: e.g. width multipliers
  // can coincide after rounding).
  std::optional<std::uint64_t> size() const override {
    long double total = static_cast<long double>(widths_.size());
    for (const auto& [name, choices] : shared_) total *= static_cast<long double>(choices.size());
    const long double per_layer = static_cast<long double>(bits_.size() * prune_.size());
    for (const auto& def : stages_) {
      long double blocks = 0;
      for (const auto& b : def.blocks) {
        long double c = 1;
        for (const auto& n : def.params_of(b))
          c *= static_cast<long double>(def.options.at(n).size());
        blocks += c;
      }
      long double layers = 0;
      for (int dd = def.dmin; dd <= def.dmax; ++dd)
        layers += std::pow(per_layer, static_cast<long double>(dd));
      total *= blocks * layers * (def.skip == Skip::Optional ? 2 : 1);
    }
    if (total > 9.0e18L) return std::nullopt;
    return static_cast<std::uint64_t>(std::llround(static_cast<double>(total)));
  }

  std::vector<StageDecision> all_stage_decisions(std::size_t s) const {
    const StageDef& def = stages_[s];
    std::vector<StageDecision> out;
    for (const auto& b : def.blocks) {
      std::vector<json> param_sets{json::object()};
      for (const auto& n : def.params_of(b)) {
        std::vector<json> next;
        for (const auto& ps : param_sets)
          for (const auto& v : def.options.at(n)) {
            json q = ps;
            q[n] = v;
            next.push_back(q);
          }
        param_sets = std::move(next);
      }
      for (int depth = def.dmin; depth <= def.dmax; ++depth) {
        std::vector<std::pair<std::vector<int>, std::vector<double>>> layers{{{}, {}}};
        for (int l = 0; l < depth; ++l) {
          std::vector<std::pair<std::vector<int>, std::vector<double>>> next;
          for (const auto& [bs, ps] : layers)
            for (int bit : bits_)
              for (double pr : prune_) {
                auto nb = bs;
                auto np = ps;
                nb.push_back(bit);
                np.push_back(pr);
                next.emplace_back(nb, np);
              }
          layers = std::move(next);
        }
        for (const auto& ps : param_sets)
          for (const auto& [bs, prs] : layers)
            for (bool skip : {false, true}) {
              if ((def.skip == Skip::Off && skip) || (def.skip == Skip::On && !skip)) continue;
              out.push_back(StageDecision{b, depth, ps, skip, bs, prs});
            }
      }
    }
    return out;
  }

  // Decodes every decision set in order; sets that fail validation are skipped.
  std::vector<Genome> enumerate() const override {
    auto n = size();
    if (!n || *n > 1000000)
      throw std::logic_error("macro space has " +
                             (n ? std::to_string(*n) : std::string("over 9e18")) +
                             " decision sets, too many to enumerate");
    std::vector<std::vector<StageDecision>> per_stage;
    for (std::size_t s = 0; s < stages_.size(); ++s) per_stage.push_back(all_stage_decisions(s));
    // Every combination of the shared choices (one empty object when there are none).
    std::vector<json> shared_sets{json::object()};
    for (const auto& [name, choices] : shared_) {
      std::vector<json> next;
      for (const auto& set : shared_sets)
        for (const auto& v : choices) {
          json q = set;
          q[name] = v;
          next.push_back(std::move(q));
        }
      shared_sets = std::move(next);
    }
    std::vector<Genome> out;
    std::vector<std::size_t> idx(stages_.size(), 0);
    for (double w : widths_)
      for (const json& shared : shared_sets) {
        std::fill(idx.begin(), idx.end(), 0);
        while (true) {
          Decisions d;
          d.width = w;
          d.shared = shared;
          for (std::size_t s = 0; s < stages_.size(); ++s) d.stages.push_back(per_stage[s][idx[s]]);
          try {
            out.push_back(decode(d));
          } catch (const std::invalid_argument&) {
          }
          std::size_t s = 0;
          while (s < idx.size() && ++idx[s] == per_stage[s].size()) idx[s++] = 0;
          if (s == idx.size()) break;
        }
      }
    return out;
  }

  std::string describe(const Genome& g) const override { return decisions_of(g).to_json().dump(); }

  Genome parse(const std::string& s) const override {
    json j;
    try {
      j = json::parse(s);
    } catch (const json::parse_error& e) {
      throw std::invalid_argument(std::string("macro architecture string is not JSON: ") +
                                  e.what());
    }
    return decode(decisions_from_json(j));
  }

  // Load-time check: a fixed-seed batch of samples must all be valid, so that bad combinations
  // (e.g. heads not dividing the model width) are reported once, at load, with an example.
  void check_samples() const {
    Rng rng(12345);
    for (int i = 0; i < 200; ++i) {
      Decisions d = sample_decisions(rng);
      try {
        decode(d);
      } catch (const std::invalid_argument& e) {
        fail("space.stages", std::string("the choices allow invalid architectures, e.g. ") +
                                 d.to_json().dump() + ": " + e.what());
      }
    }
  }

 private:
  json def_;
  TensorType input_;
  int outputs_;
  std::vector<double> widths_;
  std::vector<int> bits_;
  std::vector<double> prune_;
  std::map<std::string, std::vector<json>> shared_;  // param -> its choices
  Readout readout_;
  std::vector<StageDef> stages_;
};

// The data kind a block produces from `k` (flatten/global_pool make vectors).
DataKind output_kind(const BlockKind& kind, DataKind k) {
  TensorType t = k == DataKind::Image      ? TensorType::image(8, 8, 8)
                 : k == DataKind::Sequence ? TensorType::sequence(8, 8)
                                           : TensorType::vector(8);
  try {
    return kind.infer({t}, kind.resolve(json::object())).kind;
  } catch (const std::exception&) {
    return k;
  }
}

template <class T>
std::vector<T> read_list(const json& def, const std::string& key, std::vector<T> fallback,
                         const std::function<std::string(const json&)>& check) {
  if (!def.contains(key)) return fallback;
  const json& a = def[key];
  if (!a.is_array() || a.empty()) fail("space." + key, "must be a non-empty array");
  std::vector<T> out;
  for (std::size_t i = 0; i < a.size(); ++i) {
    std::string why = check(a[i]);
    if (!why.empty()) fail("space." + key + "[" + std::to_string(i) + "]", a[i].dump() + " " + why);
    out.push_back(a[i].get<T>());
  }
  return out;
}

}  // namespace

std::unique_ptr<Space> make_macro_space(const json& def) {
  check_keys(def, "space",
             {"type", "input", "outputs", "width_multipliers", "bits", "prune", "shared", "readout",
              "stages", "name", "description"});
  if (!def.contains("input"))
    fail("space.input", "missing; e.g. {\"kind\": \"image\", \"shape\": [1, 28, 28]}");
  TensorType input = TensorType::from_json(def["input"], "space.input");
  int outputs = read_int(def, "outputs", "space", 1, 100000);
  auto widths = read_list<double>(def, "width_multipliers", {1.0}, [](const json& v) {
    return v.is_number() && v.get<double>() > 0 && v.get<double>() <= 16
               ? ""
               : "must be a number in (0, 16]";
  });
  auto bits = read_list<int>(def, "bits", {32}, [](const json& v) {
    return v.is_number_integer() && (v == 32 || v == 16 || v == 8 || v == 4)
               ? ""
               : "must be one of 32, 16, 8, 4";
  });
  auto prune = read_list<double>(def, "prune", {0.0}, [](const json& v) {
    return v.is_number() && v.get<double>() >= 0 && v.get<double>() <= 0.9
               ? ""
               : "must be a number in [0, 0.9]";
  });
  if (!def.contains("stages") || !def["stages"].is_array() || def["stages"].empty())
    fail("space.stages",
         "must be a non-empty array of stages (an empty space has no architectures)");

  Readout readout = Readout::Pool;
  if (def.contains("readout")) {
    const json& r = def["readout"];
    if (r == "pool")
      readout = Readout::Pool;
    else if (r == "per_token")
      readout = Readout::PerToken;
    else if (r == "none")
      readout = Readout::None;
    else
      fail("space.readout", r.dump() + " must be \"pool\", \"per_token\" or \"none\"");
  }

  const Catalogue& cat = catalogue();
  std::map<std::string, std::vector<json>> shared;
  if (def.contains("shared")) {
    if (!def["shared"].is_object() || def["shared"].empty())
      fail("space.shared",
           "must be an object: param -> list of values, e.g. {\"timesteps\": [4, 8]}");
    for (const auto& [name, val] : def["shared"].items()) {
      if (name == "bits" || name == "prune" || name == "units" || name == "channels")
        fail("space.shared." + name,
             "cannot be shared (use the space-level bits/prune/width_multipliers lists)");
      std::vector<json> vals =
          val.is_array() ? val.get<std::vector<json>>() : std::vector<json>{val};
      if (vals.empty()) fail("space.shared." + name, "must list at least one value");
      shared[name] = vals;
    }
  }
  std::set<std::string> shared_used;  // shared params some stage block has
  std::vector<StageDef> stages;

  std::set<DataKind> incoming{input.kind};
  for (std::size_t s = 0; s < def["stages"].size(); ++s) {
    const json& sj = def["stages"][s];
    const std::string sp = "space.stages[" + std::to_string(s) + "]";
    check_keys(sj, sp, {"blocks", "depth", "skip", "params"});
    StageDef st;
    json blocks = sj.value("blocks", json());
    if (blocks.is_string()) blocks = json::array({blocks});
    if (!blocks.is_array() || blocks.empty())
      fail(sp + ".blocks",
           "must be a non-empty array of block kinds (known: " + cat.known_list() + ")");
    std::set<DataKind> outgoing;
    for (std::size_t b = 0; b < blocks.size(); ++b) {
      const std::string bp = sp + ".blocks[" + std::to_string(b) + "]";
      if (!blocks[b].is_string()) fail(bp, "must be a block kind name");
      std::string name = blocks[b].get<std::string>();
      const BlockKind* kind = cat.find(name);
      if (!kind) fail(bp, "unknown block kind '" + name + "' (known: " + cat.known_list() + ")");
      if (kind->min_inputs != 1)
        fail(bp, "'" + name + "' takes several inputs; stages need single-input blocks");
      for (DataKind k : incoming) {
        DataKind k_in = k;
        if (!kind->accepts_kind(k)) {
          if (k == DataKind::Vector || !kind->accepts_kind(DataKind::Vector)) {
            std::string acc;
            for (auto a : kind->accepts)
              acc += (acc.empty() ? "" : ", ") + std::string(data_kind_name(a));
            fail(bp, "'" + name + "' does not accept " + data_kind_name(k) +
                         " data here (accepts " + acc + ")");
          }
          k_in = DataKind::Vector;  // a flatten goes in front
        }
        outgoing.insert(output_kind(*kind, k_in));
      }
      for (const auto& [sname, vals] : shared) {
        const ParamSpec* ps = kind->find_param(sname);
        if (!ps) continue;
        shared_used.insert(sname);
        for (std::size_t i = 0; i < vals.size(); ++i) {
          std::string why = ps->check(vals[i]);
          if (!why.empty())
            fail("space.shared." + sname + "[" + std::to_string(i) + "]", name + ": " + why);
        }
      }
      st.blocks.push_back(name);
    }
    if (!sj.contains("depth")) {
      st.dmin = st.dmax = 1;
    } else if (sj["depth"].is_number_integer()) {
      st.dmin = st.dmax = read_int(sj, "depth", sp, 0, 64);
    } else {
      const json& dj = sj["depth"];
      if (!dj.is_array() || dj.size() != 2 || !dj[0].is_number_integer() ||
          !dj[1].is_number_integer() || dj[0].get<int>() < 0 ||
          dj[1].get<int>() < dj[0].get<int>() || dj[1].get<int>() > 64)
        fail(sp + ".depth",
             dj.dump() + " must be an integer or [min, max] with 0 <= min <= max <= 64");
      st.dmin = dj[0].get<int>();
      st.dmax = dj[1].get<int>();
    }
    if (sj.contains("skip")) {
      const json& k = sj["skip"];
      if (k.is_boolean())
        st.skip = k.get<bool>() ? Skip::On : Skip::Off;
      else if (k == "optional")
        st.skip = Skip::Optional;
      else
        fail(sp + ".skip", k.dump() + " must be true, false or \"optional\"");
    }
    if (sj.contains("params")) {
      if (!sj["params"].is_object())
        fail(sp + ".params", "must be an object: param -> value or list of values");
      for (const auto& [name, val] : sj["params"].items()) {
        const std::string pp = sp + ".params." + name;
        if (name == "bits" || name == "prune")
          fail(pp,
               "set per-layer precision and pruning with the space-level 'bits' and 'prune' lists");
        if (shared.count(name))
          fail(pp, "'" + name + "' is a shared choice of the space (space.shared); remove it here");
        std::vector<json> vals =
            val.is_array() ? val.get<std::vector<json>>() : std::vector<json>{val};
        if (vals.empty()) fail(pp, "must list at least one value");
        bool any = false;
        for (const auto& b : st.blocks) {
          const ParamSpec* ps = cat.at(b).find_param(name);
          if (!ps) continue;
          any = true;
          for (std::size_t i = 0; i < vals.size(); ++i) {
            std::string why = ps->check(vals[i]);
            if (!why.empty())
              fail(pp + (val.is_array() ? "[" + std::to_string(i) + "]" : ""), b + ": " + why);
          }
        }
        if (!any) fail(pp, "no block of the stage has a param '" + name + "'");
        st.options[name] = vals;
      }
    }
    if (st.dmin == 0) outgoing.insert(incoming.begin(), incoming.end());
    incoming = outgoing;
    stages.push_back(std::move(st));
  }
  for (const auto& [name, vals] : shared)
    if (!shared_used.count(name))
      fail("space.shared." + name, "no block of any stage has a param '" + name + "'");
  if (readout == Readout::PerToken && !incoming.count(DataKind::Sequence))
    fail("space.readout", "per_token needs the last stage to give a sequence");
  auto space = std::make_unique<MacroSpace>(def, input, outputs, widths, bits, prune,
                                            std::move(shared), readout, std::move(stages));
  space->check_samples();
  return space;
}

}  // namespace hwnas::spaces::detail
