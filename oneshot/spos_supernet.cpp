#include "oneshot/spos_supernet.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "nn/autograd.hpp"
#include "nn/ops.hpp"
#include "nn/optim.hpp"

namespace hwnas::oneshot {
namespace {

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

SposSupernet::SposSupernet(const spaces::Space& space, std::uint64_t seed)
    : space_(space), seed_(seed) {
  if (space.type() != "macro")
    throw std::invalid_argument(
        "strategy.type: 'spos' shares weights across a macro space's "
        "layers; this space is '" +
        space.type() + "' (darts searches cell spaces)");
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
                                eval::HeadKind head, const SgdSettings& sgd,
                                const DataShard& shard) {
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
  nn::Var loss = eval::head_loss(head, model->forward(nn::constant(batch.x), ctx), batch);
  for (const auto& a : aux) loss = nn::add(loss, a);
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
    Bank& b = banks_.at(bank_name(p.name));
    const float wd = p.var.value().shape().rank() >= 2 ? sgd.weight_decay : 0.0f;
    const float* gr = grad.data();
    for_each_slice_element(b.value.shape(), grad.shape(),
                           slice_offsets(b.value.shape(), grad.shape()),
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
