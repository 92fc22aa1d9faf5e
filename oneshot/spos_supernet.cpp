#include "oneshot/spos_supernet.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <set>
#include <stdexcept>

#include "nn/autograd.hpp"
#include "nn/ops.hpp"
#include "nn/optim.hpp"
#include "oneshot/kernel_transform.hpp"

namespace hwnas::oneshot {
namespace {

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.rfind(prefix, 0) == 0;
}

// The stage index of a decision "stages[3]....", or -1.
int stage_of(const std::string& name) {
  if (!starts_with(name, "stages[")) return -1;
  return std::stoi(name.substr(7, name.find(']') - 7));
}

// The part after "stages[i]." of a decision name.
std::string stage_field(const std::string& name) {
  const auto close = name.find("].");
  return close == std::string::npos ? "" : name.substr(close + 2);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Calls f(sub_flat, bank_flat) for every element of a `sub`-shaped slice of a `bank`-shaped
// tensor at `off`.
template <class F>
void for_each_slice_element(const nn::Shape& bank, const nn::Shape& sub,
                            const std::vector<int>& off, F&& f) {
  const int r = sub.rank();
  std::vector<std::int64_t> bstride(static_cast<std::size_t>(r), 1);
  for (int i = r - 2; i >= 0; --i)
    bstride[static_cast<std::size_t>(i)] = bstride[static_cast<std::size_t>(i) + 1] * bank[i + 1];
  const std::int64_t n = sub.numel();
  std::vector<int> idx(static_cast<std::size_t>(r), 0);
  for (std::int64_t k = 0; k < n; ++k) {
    std::int64_t b = 0;
    for (std::size_t i = 0; i < idx.size(); ++i) b += (idx[i] + off[i]) * bstride[i];
    f(k, b);
    for (int i = r - 1; i >= 0; --i) {
      auto& x = idx[static_cast<std::size_t>(i)];
      if (++x < sub[i]) break;
      x = 0;
    }
  }
}

}  // namespace

std::vector<std::string> supernet_node_keys(const spaces::Genome& g) {
  const auto& meta = g.meta();
  if (!meta.contains("decisions") || !meta["decisions"].contains("stages"))
    throw std::invalid_argument(
        "supernet: the genome carries no macro decisions (meta.decisions); SPOS supernets "
        "cover macro spaces only");
  const auto& stages = meta["decisions"]["stages"];
  std::vector<std::string> keys(g.num_nodes());
  std::size_t s = 0;
  int l = 0;
  auto settle = [&] {
    while (s < stages.size() && l >= stages[s].at("depth").get<int>()) {
      ++s;
      l = 0;
    }
  };
  // decode() adds nodes stage by stage, layer by layer (a flatten in front, an add behind), then
  // the tail, so node ids in order walk the decisions.
  for (std::size_t v = 1; v < g.num_nodes(); ++v) {
    const std::string& kind = g.node(v).kind;
    settle();
    if (s < stages.size() && kind == stages[s].at("block").get<std::string>()) {
      keys[v] = "s" + std::to_string(s) + ".l" + std::to_string(l) + "." + kind + ".";
      ++l;
    } else if (kind == "flatten" || kind == "add") {
      keys[v] = "";
    } else {
      keys[v] = "tail." + kind + ".";
    }
  }
  return keys;
}

std::vector<int> slice_offsets(const nn::Shape& bank, const nn::Shape& sub) {
  if (bank.rank() != sub.rank())
    throw std::logic_error("supernet: a subnet tensor of rank " + std::to_string(sub.rank()) +
                           " in a bank of rank " + std::to_string(bank.rank()));
  std::vector<int> off(static_cast<std::size_t>(sub.rank()), 0);
  for (int i = 0; i < sub.rank(); ++i) {
    if (sub[i] > bank[i]) throw std::logic_error("supernet: a slice larger than its bank");
    if (sub.rank() == 4 && i >= 2) off[static_cast<std::size_t>(i)] = (bank[i] - sub[i]) / 2;
  }
  return off;
}

namespace {

// What each choice of decision i decodes to: read(meta.decisions) on a genome whose decision i
// takes that choice (other decisions from genomes the space samples, a fixed private seed, so
// probing draws nothing from the caller's generators).  Null where no buildable genome showed it.
std::vector<nlohmann::json> probe_decision(
    const spaces::Space& space, std::size_t i, int choices,
    const std::function<nlohmann::json(const nlohmann::json&)>& read) {
  std::vector<nlohmann::json> out(static_cast<std::size_t>(choices));
  std::mt19937_64 rng(0x0fa);
  int missing = choices;
  for (int attempt = 0; attempt < 64 && missing > 0; ++attempt) {
    std::vector<int> v = space.encode_decisions(space.sample(rng));
    for (int c = 0; c < choices; ++c) {
      if (!out[static_cast<std::size_t>(c)].is_null()) continue;
      v[i] = c;
      try {
        const nlohmann::json got = read(space.decode(v).meta().at("decisions"));
        if (!got.is_null()) {
          out[static_cast<std::size_t>(c)] = got;
          --missing;
        }
      } catch (const std::exception&) {
      }
    }
  }
  return out;
}

}  // namespace

SposSupernet::SposSupernet(const spaces::Space& space, std::uint64_t seed)
    : space_(space), seed_(seed) {
  if (space.type() != "macro")
    throw std::invalid_argument(
        "strategy.type: 'spos' shares weights across a macro space's "
        "layers; this space is '" +
        space.type() + "' (darts searches cell spaces)");
  // Which OFA dimension each decision is, and its largest choice (the choices' values are read
  // back from decoded genomes: a space may list them in any order).
  const auto ds = space.decisions();
  std::set<int, std::greater<>> kernels;
  for (std::size_t i = 0; i < ds.size(); ++i) {
    const std::string& n = ds[i].name;
    const int s = stage_of(n);
    const std::string field = stage_field(n);
    int dim = 0;
    if (n == "width") dim = 3;
    if (s >= 0 && field == "depth") dim = 2;
    if (s >= 0 && field == "params.kernel") dim = 1;
    if (s >= 0 && (field == "params.channels" || field == "params.units")) dim = 3;
    int largest = ds[i].choices - 1;  // depth: dmin + index
    if (dim == 1 || dim == 3) {
      const std::string param = field.size() > 7 ? field.substr(7) : "";
      const auto values =
          probe_decision(space, i, ds[i].choices, [&](const nlohmann::json& d) -> nlohmann::json {
            if (s < 0) return d.at("width");
            const auto& p = d.at("stages").at(static_cast<std::size_t>(s)).at("params");
            return p.contains(param) && p[param].is_number() ? p[param] : nlohmann::json();
          });
      double best = -1;
      for (int c = 0; c < ds[i].choices; ++c) {
        const auto& v = values[static_cast<std::size_t>(c)];
        if (!v.is_number()) continue;
        if (v.get<double>() >= best) {
          best = v.get<double>();
          largest = c;
        }
        if (dim == 1) kernels.insert(v.get<int>());
      }
    }
    dimension_of_.push_back(dim);
    largest_choice_.push_back(largest);
  }
  kernel_sizes_.assign(kernels.begin(), kernels.end());
}

spaces::Genome SposSupernet::sample(std::mt19937_64& rng) const {
  const auto ds = space_.decisions();
  std::string last;
  for (int attempt = 0; attempt < 1000; ++attempt) {
    std::vector<int> v;
    v.reserve(ds.size());
    for (const auto& d : ds) v.push_back(std::uniform_int_distribution<int>(0, d.choices - 1)(rng));
    try {
      return space_.decode(v);
    } catch (const std::invalid_argument& e) {
      last = e.what();
    }
  }
  throw std::runtime_error("supernet: no buildable path in 1000 uniform draws; last: " + last);
}

spaces::Genome SposSupernet::sample(std::mt19937_64& rng, const Elastic& elastic) const {
  const auto ds = space_.decisions();
  const bool on[4] = {true, elastic.kernel, elastic.depth, elastic.width};
  std::string last;
  for (int attempt = 0; attempt < 1000; ++attempt) {
    std::vector<int> v;
    v.reserve(ds.size());
    for (const auto& d : ds) v.push_back(std::uniform_int_distribution<int>(0, d.choices - 1)(rng));
    for (std::size_t i = 0; i < v.size(); ++i)
      if (!on[dimension_of_[i]]) v[i] = largest_choice_[i];
    try {
      return space_.decode(v);
    } catch (const std::invalid_argument& e) {
      last = e.what();
    }
  }
  throw std::runtime_error("supernet: no buildable path in 1000 draws; last: " + last);
}

spaces::Genome SposSupernet::largest(const spaces::Genome& g) const {
  std::vector<int> v = space_.encode_decisions(g);
  for (std::size_t i = 0; i < v.size(); ++i)
    if (dimension_of_[i] != 0) v[i] = largest_choice_[i];
  try {
    return space_.decode(v);
  } catch (const std::invalid_argument&) {
    return g;  // the largest choices do not build with these kinds: g teaches itself
  }
}

std::vector<int> SposSupernet::chain_sizes(int bank_k, int k) const {
  if (!kernel_transforms_ || k >= bank_k || (bank_k - k) % 2 != 0) return {};
  std::vector<int> out;
  for (int s : kernel_sizes_)
    if (s < bank_k && s > k && (bank_k - s) % 2 == 0) out.push_back(s);
  out.push_back(k);
  return out;
}

nn::Tensor SposSupernet::kernel_prefix(const Bank& b, const nn::Shape& sub) const {
  const nn::Shape& bs = b.value.shape();
  const nn::Shape full{sub[0], sub[1], bs[2], bs[3]};
  nn::Tensor out(full);
  for_each_slice_element(bs, full, std::vector<int>(4, 0), [&](std::int64_t k, std::int64_t j) {
    out.data()[k] = b.value.data()[j];
  });
  return out;
}

std::vector<const nn::Tensor*> SposSupernet::chain_matrices(const std::string& bank,
                                                            const std::vector<int>& sizes) {
  std::vector<const nn::Tensor*> out;
  for (int s : sizes) {
    const std::string key = bank + "#" + std::to_string(s);
    auto it = transforms_.find(key);
    if (it == transforms_.end()) {
      Bank t;  // the reference implementation's init: the identity (plain centre at first)
      t.value = nn::Tensor::zeros(nn::Shape{s * s, s * s});
      for (int a = 0; a < s * s; ++a) t.value.data()[a * s * s + a] = 1.0f;
      t.momentum = nn::Tensor::zeros(t.value.shape());
      it = transforms_.emplace(key, std::move(t)).first;
    }
    out.push_back(&it->second.value);
  }
  return out;
}

const nn::Tensor& SposSupernet::transform(const std::string& bank, int size) const {
  auto it = transforms_.find(bank + "#" + std::to_string(size));
  if (it == transforms_.end())
    throw std::out_of_range("supernet: no transform matrix for '" + bank + "' at size " +
                            std::to_string(size));
  return it->second.value;
}

SposSupernet::Bank& SposSupernet::bank_for(const std::string& name, const nn::Shape& shape) {
  auto it = banks_.find(name);
  if (it == banks_.end()) {
    Bank b;
    b.value = nn::Tensor::zeros(shape);
    b.momentum = nn::Tensor::zeros(shape);
    b.initialised.assign(static_cast<std::size_t>(shape.numel()), 0);
    return banks_.emplace(name, std::move(b)).first->second;
  }
  Bank& b = it->second;
  const nn::Shape& old = b.value.shape();
  if (old.rank() != shape.rank())
    throw std::logic_error("supernet: bank '" + name + "' has rank " + std::to_string(old.rank()) +
                           ", a subnet asks rank " + std::to_string(shape.rank()));
  bool grow = false;
  std::vector<int> dims(static_cast<std::size_t>(shape.rank()));
  for (int i = 0; i < shape.rank(); ++i) {
    dims[static_cast<std::size_t>(i)] = std::max(old[i], shape[i]);
    grow = grow || shape[i] > old[i];
  }
  if (!grow) return b;
  // A larger kernel or more channels than seen so far: the old bank is the slice of the new
  // one at the usual place, so trained centres and prefixes stay where slices look for them.
  const nn::Shape bigger(dims);
  Bank g;
  g.value = nn::Tensor::zeros(bigger);
  g.momentum = nn::Tensor::zeros(bigger);
  g.initialised.assign(static_cast<std::size_t>(bigger.numel()), 0);
  for_each_slice_element(
      bigger, old, slice_offsets(bigger, old), [&](std::int64_t k, std::int64_t j) {
        g.value.data()[j] = b.value.data()[k];
        g.momentum.data()[j] = b.momentum.data()[k];
        g.initialised[static_cast<std::size_t>(j)] = b.initialised[static_cast<std::size_t>(k)];
      });
  b = std::move(g);
  return b;
}

void SposSupernet::load_into(const spaces::Genome& g, spaces::GenomeModel& m) {
  const auto keys = supernet_node_keys(g);
  // Names are "n<id>.<rest>" (spaces/model_builder.cpp); the bank name swaps the node for its key.
  auto bank_name = [&](const std::string& n) {
    const auto dot = n.find('.');
    const std::size_t v = std::stoul(n.substr(1, dot - 1));
    if (v >= keys.size() || keys[v].empty())
      throw std::logic_error("supernet: tensor '" + n + "' of a node without a bank key");
    return keys[v] + n.substr(dot + 1);
  };
  auto share = [&](const std::string& name, nn::Tensor& t) {
    Bank& b = bank_for(bank_name(name), t.shape());
    float* sub = t.data();
    for_each_slice_element(b.value.shape(), t.shape(), slice_offsets(b.value.shape(), t.shape()),
                           [&](std::int64_t k, std::int64_t j) {
                             auto& init = b.initialised[static_cast<std::size_t>(j)];
                             if (!init) {
                               b.value.data()[j] = sub[k];
                               init = 1;
                             }
                             sub[k] = b.value.data()[j];
                           });
    // OFA's elastic kernel: the smaller kernel is the transformed centre, not the bare one.
    const nn::Shape& ts = t.shape();
    const nn::Shape& bs = b.value.shape();
    if (ts.rank() == 4 && ts[2] == ts[3] && bs[2] == bs[3]) {
      const std::vector<int> sizes = chain_sizes(bs[2], ts[2]);
      if (!sizes.empty()) {
        const nn::Tensor k =
            transform_kernel(kernel_prefix(b, ts), chain_matrices(bank_name(name), sizes), sizes);
        std::copy(k.data(), k.data() + k.numel(), t.data());
      }
    }
  };
  for (auto& p : m.named_parameters()) share(p.name, p.var.value());
  for (auto& b : m.named_buffers()) share(b.name, *b.tensor);
}

std::unique_ptr<spaces::GenomeModel> SposSupernet::subnet(const spaces::Genome& g) {
  auto m = spaces::build_model(g, seed_ + builds_++);
  load_into(g, *m);
  return m;
}

double SposSupernet::train_step(const spaces::Genome& g, const eval::Batch& full,
                                eval::HeadKind head, const SgdSettings& sgd, const DataShard& shard,
                                SposSupernet* teacher, float kd_weight) {
  const eval::Batch batch = shard_batch(full, shard);
  auto model = subnet(g);
  auto params = model->named_parameters();
  std::vector<nn::Var> vars;
  for (auto& p : params) vars.push_back(p.var);
  nn::ForwardContext ctx;
  ctx.training = true;
  std::mt19937_64 rng(seed_ ^ builds_);
  ctx.rng = &rng;
  std::vector<nn::Var> aux;
  ctx.aux_losses = &aux;
  const nn::Var logits = model->forward(nn::constant(batch.x), ctx);
  nn::Var loss = eval::head_loss(head, logits, batch);
  for (const auto& a : aux) loss = nn::add(loss, a);
  if (teacher) {
    if (head != eval::HeadKind::Classes)
      throw std::invalid_argument(
          "strategy.kd: distillation needs a classification head (set strategy.kd to false)");
    // The teacher's soft labels on the same rows, without gradients (OFA runs its teacher in
    // training mode too: batch statistics; its running ones are thrown away).
    nn::Tensor soft;
    {
      auto t = teacher->subnet(teacher->largest(g));
      nn::NoGradGuard no_grad;
      nn::ForwardContext tctx;
      tctx.training = true;
      std::mt19937_64 trng(teacher->seed_ ^ teacher->builds_);
      tctx.rng = &trng;
      std::vector<nn::Var> taux;
      tctx.aux_losses = &taux;
      soft = nn::softmax(t->forward(nn::constant(batch.x), tctx)).value().clone();
    }
    const float rows = static_cast<float>(batch.size());
    loss = nn::add(loss, nn::scale(nn::sum(nn::mul(nn::constant(soft), nn::log_softmax(logits))),
                                   -kd_weight / rows));
  }
  const float share = shard.share(full.size());
  if (shard.active()) loss = nn::scale(loss, share);
  double value = loss.value().item();
  nn::backward(loss);
  if (shard.active()) {
    // One all-reduce: gradients, then the loss and the share-weighted batch-norm statistics
    // (the running mean becomes the whole batch's exactly, the variance the shards' mean).
    std::vector<float> extra = {static_cast<float>(value)};
    const auto buffers = model->named_buffers();
    for (const auto& buf : buffers)
      for (std::int64_t k = 0; k < buf.tensor->numel(); ++k)
        extra.push_back(share * buf.tensor->data()[k]);
    all_reduce_gradients(vars, extra, shard);
    value = extra[0];
    std::size_t at = 1;
    for (const auto& buf : buffers)
      for (std::int64_t k = 0; k < buf.tensor->numel(); ++k) buf.tensor->data()[k] = extra[at++];
  }
  // Clipped after the sum: the whole batch's gradient norm, the same on every rank.
  if (sgd.clip_grad_norm > 0) nn::clip_grad_norm(vars, sgd.clip_grad_norm);
  const auto keys = supernet_node_keys(g);
  auto bank_name = [&](const std::string& n) {
    const auto dot = n.find('.');
    return keys[std::stoul(n.substr(1, dot - 1))] + n.substr(dot + 1);
  };
  // SGD with momentum (PyTorch's form: m = mu m + g + wd w; w -= lr m) on the path's slices.
  for (auto& p : params) {
    const nn::Tensor& grad = p.var.grad();
    if (grad.numel() != p.var.value().numel()) continue;  // no gradient reached it
    const std::string bn = bank_name(p.name);
    Bank& b = banks_.at(bn);
    const float wd = p.var.value().shape().rank() >= 2 ? sgd.weight_decay : 0.0f;
    const float* gr = grad.data();
    // A transformed kernel: its gradient is pulled back through the chain to the bank's centre
    // and to the matrices, which take the same SGD step (without weight decay).
    nn::Tensor pulled;
    bool transformed = false;
    const nn::Shape& gs = grad.shape();
    const nn::Shape& bs = b.value.shape();
    if (gs.rank() == 4 && gs[2] == gs[3] && bs[2] == bs[3]) {
      const std::vector<int> sizes = chain_sizes(bs[2], gs[2]);
      if (!sizes.empty()) {
        const auto mats = chain_matrices(bn, sizes);
        std::vector<nn::Tensor> mat_grads;
        for (int s : sizes) mat_grads.push_back(nn::Tensor::zeros(nn::Shape{s * s, s * s}));
        pulled = transform_kernel_backward(kernel_prefix(b, gs), mats, sizes, grad, mat_grads);
        for (std::size_t j = 0; j < sizes.size(); ++j) {
          Bank& t = transforms_.at(bn + "#" + std::to_string(sizes[j]));
          for (std::int64_t k = 0; k < t.value.numel(); ++k) {
            float& mo = t.momentum.data()[k];
            mo = sgd.momentum * mo + mat_grads[j].data()[k];
            t.value.data()[k] -= sgd.lr * mo;
          }
        }
        gr = pulled.data();
        transformed = true;
      }
    }
    const nn::Shape& us = transformed ? pulled.shape() : gs;
    for_each_slice_element(b.value.shape(), us, slice_offsets(b.value.shape(), us),
                           [&](std::int64_t k, std::int64_t j) {
                             float& w = b.value.data()[j];
                             float& mo = b.momentum.data()[j];
                             mo = sgd.momentum * mo + gr[k] + wd * w;
                             w -= sgd.lr * mo;
                           });
  }
  // The path's batch-norm statistics, updated by this forward, go back to the banks.
  for (auto& buf : model->named_buffers()) {
    Bank& b = banks_.at(bank_name(buf.name));
    const float* src = buf.tensor->data();
    for_each_slice_element(b.value.shape(), buf.tensor->shape(),
                           slice_offsets(b.value.shape(), buf.tensor->shape()),
                           [&](std::int64_t k, std::int64_t j) { b.value.data()[j] = src[k]; });
  }
  return value;
}

std::int64_t SposSupernet::num_values() const {
  std::int64_t n = 0;
  for (const auto& [k, b] : banks_) n += b.value.numel();
  return n;
}

const nn::Tensor& SposSupernet::bank(const std::string& name) const {
  auto it = banks_.find(name);
  if (it == banks_.end()) throw std::out_of_range("supernet: no bank '" + name + "'");
  return it->second.value;
}

std::vector<std::string> SposSupernet::bank_names() const {
  std::vector<std::string> out;
  for (const auto& [k, b] : banks_) out.push_back(k);
  return out;
}

SposSupernet SposSupernet::clone() const {
  SposSupernet c(*this);
  for (auto* m : {&c.banks_, &c.transforms_})
    for (auto& [name, b] : *m) {
      b.value = b.value.clone();
      b.momentum = b.momentum.clone();
    }
  return c;
}

void SposSupernet::save_state(nn::TrainingCheckpoint& ck, const std::string& prefix) const {
  for (const auto& [name, b] : banks_) {
    ck.model[prefix + "bank/" + name] = b.value.clone();
    ck.model[prefix + "bank_momentum/" + name] = b.momentum.clone();
    nn::Tensor init(b.value.shape());
    for (std::size_t k = 0; k < b.initialised.size(); ++k) init.data()[k] = b.initialised[k];
    ck.model[prefix + "bank_initialised/" + name] = std::move(init);
  }
  for (const auto& [name, t] : transforms_) {
    ck.model[prefix + "transform/" + name] = t.value.clone();
    ck.model[prefix + "transform_momentum/" + name] = t.momentum.clone();
  }
  ck.counters[prefix + "supernet_builds"] = static_cast<std::int64_t>(builds_);
  ck.counters[prefix + "supernet_kernel_transforms"] = kernel_transforms_ ? 1 : 0;
}

void SposSupernet::load_state(const nn::TrainingCheckpoint& ck, const std::string& source,
                              const std::string& prefix) {
  auto fail = [&](const std::string& what) {
    throw std::invalid_argument(source + ": " + what +
                                " (the supernet state is not this run's; delete it to train the "
                                "supernet from the start)");
  };
  auto tensor = [&](const std::string& key, const nn::Shape& shape) -> const nn::Tensor& {
    auto it = ck.model.find(key);
    if (it == ck.model.end()) fail("record '" + key + "' is missing");
    if (it->second.shape().to_vector() != shape.to_vector())
      fail("record '" + key + "' has the wrong shape");
    return it->second;
  };
  std::map<std::string, Bank> banks, transforms;
  for (const auto& [key, t] : ck.model) {
    if (!starts_with(key, prefix)) continue;
    const std::string k = key.substr(prefix.size());
    if (starts_with(k, "bank/")) {
      const std::string name = k.substr(5);
      Bank b;
      b.value = t.clone();
      b.momentum = tensor(prefix + "bank_momentum/" + name, t.shape()).clone();
      const nn::Tensor& init = tensor(prefix + "bank_initialised/" + name, t.shape());
      b.initialised.resize(static_cast<std::size_t>(t.numel()));
      for (std::int64_t k = 0; k < t.numel(); ++k)
        b.initialised[static_cast<std::size_t>(k)] = init.data()[k] != 0.0f ? 1 : 0;
      banks.emplace(name, std::move(b));
    } else if (starts_with(k, "transform/")) {
      const std::string name = k.substr(10);
      Bank b;
      b.value = t.clone();
      b.momentum = tensor(prefix + "transform_momentum/" + name, t.shape()).clone();
      transforms.emplace(name, std::move(b));
    }
  }
  if (!ck.counters.contains(prefix + "supernet_builds") ||
      !ck.counters.contains(prefix + "supernet_kernel_transforms"))
    fail("counter '" + prefix + "supernet_builds' or '" + prefix +
         "supernet_kernel_transforms' is missing");
  banks_ = std::move(banks);
  transforms_ = std::move(transforms);
  builds_ = static_cast<std::uint64_t>(ck.counters.at(prefix + "supernet_builds"));
  kernel_transforms_ = ck.counters.at(prefix + "supernet_kernel_transforms") != 0;
}

namespace {

// Union-find over channel domains.
struct Domains {
  std::vector<int> parent;
  int find(int a) {
    return parent[static_cast<std::size_t>(a)] == a
               ? a
               : parent[static_cast<std::size_t>(a)] = find(parent[static_cast<std::size_t>(a)]);
  }
  void unite(int a, int b) { parent[static_cast<std::size_t>(find(a))] = find(b); }
};

// Reorders dimension `dim` of a bank (value, momentum, initialised): new[i] = old[perm[i]].
template <class BankT>
void permute_dim(BankT& b, int dim, const std::vector<int>& perm) {
  const nn::Shape& sh = b.value.shape();
  const int n = sh[dim];
  std::int64_t inner = 1, outer = 1;
  for (int i = dim + 1; i < sh.rank(); ++i) inner *= sh[i];
  for (int i = 0; i < dim; ++i) outer *= sh[i];
  nn::Tensor v = b.value.clone(), m = b.momentum.clone();
  const auto init = b.initialised;
  for (std::int64_t o = 0; o < outer; ++o)
    for (int i = 0; i < n; ++i) {
      const std::int64_t to = (o * n + i) * inner,
                         from = (o * n + perm[static_cast<std::size_t>(i)]) * inner;
      for (std::int64_t k = 0; k < inner; ++k) {
        b.value.data()[to + k] = v.data()[from + k];
        b.momentum.data()[to + k] = m.data()[from + k];
        b.initialised[static_cast<std::size_t>(to + k)] = init[static_cast<std::size_t>(from + k)];
      }
    }
}

bool passes_channels(const std::string& kind) {
  return kind == "dwconv" || kind == "pool" || kind == "avg_pool_3x3" || kind == "skip_connect";
}

}  // namespace

nlohmann::json SposSupernet::sort_channels() {
  // The stages' structure, read back from decoded genomes.
  const auto ds = space_.decisions();
  struct StageInfo {
    std::set<std::string> kinds;
    int dmin = 1, dmax = 1;
    bool skip = false;
  };
  std::vector<StageInfo> stages;
  for (std::size_t i = 0; i < ds.size(); ++i) {
    const int s = stage_of(ds[i].name);
    if (s < 0) continue;
    if (static_cast<std::size_t>(s) >= stages.size())
      stages.resize(static_cast<std::size_t>(s) + 1);
    StageInfo& st = stages[static_cast<std::size_t>(s)];
    const std::string field = stage_field(ds[i].name);
    auto read = [&](const char* key) {
      return probe_decision(space_, i, ds[i].choices, [&](const nlohmann::json& d) {
        return d.at("stages").at(static_cast<std::size_t>(s)).at(key);
      });
    };
    if (field == "block") {
      for (const auto& v : read("block"))
        if (v.is_string()) st.kinds.insert(v.get<std::string>());
    } else if (field == "depth") {
      const auto v = read("depth");
      if (v.front().is_number()) st.dmin = v.front().get<int>();
      st.dmax = st.dmin + ds[i].choices - 1;
    } else if (field == "skip") {
      for (const auto& v : read("skip")) st.skip = st.skip || (v.is_boolean() && v.get<bool>());
    }
  }
  // Channel domains: 0 = the input's (never moved), 1 + s = stage s's conv outputs.  Follow
  // which domains may reach each layer's input over every depth and kind.
  const int S = static_cast<int>(stages.size());
  Domains dom;
  dom.parent.resize(static_cast<std::size_t>(S) + 1);
  std::iota(dom.parent.begin(), dom.parent.end(), 0);
  std::vector<bool> blocked(static_cast<std::size_t>(S) + 1, false);
  std::vector<std::vector<int>> layer_in(static_cast<std::size_t>(S));  // a member per layer
  auto unite_all = [&](const std::set<int>& xs) {
    for (int x : xs) dom.unite(x, *xs.begin());
  };
  std::set<int> cur = {0};
  for (int s = 0; s < S; ++s) {
    const StageInfo& st = stages[static_cast<std::size_t>(s)];
    std::set<int> stage_out;
    if (st.dmin == 0) stage_out = cur;
    std::set<int> in = cur;
    for (int l = 0; l < st.dmax; ++l) {
      unite_all(in);
      layer_in[static_cast<std::size_t>(s)].push_back(*in.begin());
      std::set<int> out;
      for (const auto& kind : st.kinds) {
        if (kind == "conv") {
          out.insert(1 + s);
        } else if (passes_channels(kind)) {
          out.insert(in.begin(), in.end());
        } else {
          for (int x : in) blocked[static_cast<std::size_t>(x)] = true;
          blocked[static_cast<std::size_t>(1 + s)] = true;
          out.insert(1 + s);
        }
      }
      if (st.skip) {
        std::set<int> both = in;
        both.insert(out.begin(), out.end());
        unite_all(both);
      }
      if (l + 1 >= st.dmin) stage_out.insert(out.begin(), out.end());
      in = out;
    }
    cur = stage_out;
  }
  unite_all(cur);
  const int head_in = *cur.begin();
  // The head reads channels only behind a global pool.
  std::set<std::string> tail;
  {
    std::mt19937_64 rng(0x0fa);
    const spaces::Genome g = space_.sample(rng);
    const auto keys = supernet_node_keys(g);
    for (std::size_t v = 1; v < g.num_nodes(); ++v)
      if (starts_with(keys[v], "tail.")) tail.insert(g.node(v).kind);
  }
  if (tail != std::set<std::string>{"global_pool", "head"})
    for (int x : cur) blocked[static_cast<std::size_t>(x)] = true;

  // Every bank dimension that carries a domain: (bank, dim, domain).
  struct Use {
    std::string bank;
    int dim;
    int domain;
    bool producer;  // a conv's output channels: their L1 norms rank the channels
  };
  std::vector<Use> uses;
  for (const auto& [name, b] : banks_) {
    if (starts_with(name, "tail.")) {
      if (name == "tail.head.linear.weight") uses.push_back({name, 1, head_in, false});
      continue;
    }
    // "s<t>.l<l>.<kind>.<tensor>"
    const auto d1 = name.find('.'), d2 = name.find('.', d1 + 1), d3 = name.find('.', d2 + 1);
    if (name[0] != 's' || d3 == std::string::npos) continue;
    const int t = std::stoi(name.substr(1, d1 - 1));
    const int l = std::stoi(name.substr(d1 + 2, d2 - d1 - 2));
    const std::string kind = name.substr(d2 + 1, d3 - d2 - 1), rest = name.substr(d3 + 1);
    if (t >= S || l >= static_cast<int>(layer_in[static_cast<std::size_t>(t)].size())) continue;
    const int in = layer_in[static_cast<std::size_t>(t)][static_cast<std::size_t>(l)];
    if (kind == "conv") {
      uses.push_back({name, 0, 1 + t, rest == "conv.weight"});
      if (rest == "conv.weight") uses.push_back({name, 1, in, false});
    } else if (kind == "dwconv") {
      uses.push_back({name, 0, in, false});
    }
  }
  // One permutation per group of domains.
  const int in_channels = space_.input_type().dims.empty() ? 0 : space_.input_type().dims.front();
  nlohmann::json groups = nlohmann::json::array();
  for (int root = 0; root <= S; ++root) {
    if (dom.find(root) != root) continue;
    std::vector<int> members;
    bool stop = false;
    for (int x = 0; x <= S; ++x)
      if (dom.find(x) == root) {
        members.push_back(x);
        stop = stop || blocked[static_cast<std::size_t>(x)];
      }
    std::set<int> sizes;
    if (dom.find(0) == root) sizes.insert(in_channels);
    for (const auto& u : uses)
      if (dom.find(u.domain) == root) sizes.insert(banks_.at(u.bank).value.shape()[u.dim]);
    if (sizes.empty()) continue;
    nlohmann::json names = nlohmann::json::array();
    for (int x : members) names.push_back(x == 0 ? "input" : "stage " + std::to_string(x - 1));
    groups.push_back({{"domains", names}, {"sizes", sizes}, {"sorted", !stop}});
    if (stop) continue;
    const int n = *sizes.rbegin();
    std::vector<double> importance(static_cast<std::size_t>(n), 0.0);
    for (const auto& u : uses) {
      if (!u.producer || dom.find(u.domain) != root) continue;
      const nn::Tensor& w = banks_.at(u.bank).value;
      const std::int64_t per = w.numel() / w.shape()[0];
      for (int c = 0; c < w.shape()[0]; ++c)
        for (std::int64_t k = 0; k < per; ++k)
          importance[static_cast<std::size_t>(c)] += std::fabs(w.data()[c * per + k]);
    }
    // Sorted inside each segment between bank sizes, so every bank's prefix stays its own;
    // the input's channels stay where the data put them.
    std::vector<int> perm(static_cast<std::size_t>(n));
    std::iota(perm.begin(), perm.end(), 0);
    int lo = 0;
    for (int hi : sizes) {
      if (hi <= lo) continue;
      if (!(dom.find(0) == root && hi <= in_channels))
        std::stable_sort(perm.begin() + lo, perm.begin() + hi, [&](int a, int b) {
          return importance[static_cast<std::size_t>(a)] > importance[static_cast<std::size_t>(b)];
        });
      lo = hi;
    }
    for (const auto& u : uses)
      if (dom.find(u.domain) == root) {
        Bank& b = banks_.at(u.bank);
        permute_dim(b, u.dim,
                    std::vector<int>(perm.begin(), perm.begin() + b.value.shape()[u.dim]));
      }
  }
  return {{"groups", groups}};
}

int recalibrate_batch_norm(nn::Module& model, const std::vector<eval::Batch>& batches) {
  // nn::BatchNormState's momentum (0.1, never changed by a block): after a training-mode
  // forward, running = (1 - m) running + m batch, so batch = (after - (1 - m) before) / m.
  constexpr float kMomentum = 0.1f;
  std::vector<nn::Tensor*> stats;
  for (auto& b : model.named_buffers())
    if (ends_with(b.name, "running_mean") || ends_with(b.name, "running_var"))
      stats.push_back(b.tensor);
  if (stats.empty() || batches.empty()) return 0;
  std::vector<std::vector<double>> sum(stats.size());
  for (std::size_t i = 0; i < stats.size(); ++i)
    sum[i].assign(static_cast<std::size_t>(stats[i]->numel()), 0.0);
  nn::NoGradGuard no_grad;
  nn::ForwardContext ctx;
  ctx.training = true;
  std::mt19937_64 rng(0);
  ctx.rng = &rng;
  for (const auto& batch : batches) {
    std::vector<nn::Tensor> before;
    for (auto* t : stats) before.push_back(t->clone());
    (void)model.forward({nn::constant(batch.x)}, ctx);
    for (std::size_t i = 0; i < stats.size(); ++i) {
      const float* a = stats[i]->data();
      const float* b = before[i].data();
      for (std::int64_t k = 0; k < stats[i]->numel(); ++k)
        sum[i][static_cast<std::size_t>(k)] +=
            (static_cast<double>(a[k]) - (1.0 - kMomentum) * b[k]) / kMomentum;
    }
  }
  for (std::size_t i = 0; i < stats.size(); ++i)
    for (std::int64_t k = 0; k < stats[i]->numel(); ++k)
      stats[i]->data()[k] = static_cast<float>(sum[i][static_cast<std::size_t>(k)] /
                                               static_cast<double>(batches.size()));
  return static_cast<int>(stats.size());
}

}  // namespace hwnas::oneshot
