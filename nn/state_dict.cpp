#include "nn/state_dict.hpp"

#include <cstring>
#include <set>
#include <stdexcept>
#include <utility>

namespace hwnas::nn {
namespace {
// Name -> the module's live tensor (parameter value or buffer), in the module's order.
using LiveTensors = std::vector<std::pair<std::string, Tensor*>>;

// `for_writing`: the caller overwrites the values (a non-const access, counted by Node::version);
// a read leaves the parameters' write counts alone, so caches derived from them stay current.
LiveTensors live_tensors(Module& m, std::vector<NamedParameter>& keep, bool for_writing) {
  keep = m.named_parameters();
  LiveTensors out;
  std::set<std::string> seen;
  auto add = [&](const std::string& name, Tensor* t) {
    if (!seen.insert(name).second)
      throw std::logic_error("state_dict: module '" + m.name() + "' names two tensors '" + name +
                             "'");
    out.emplace_back(name, t);
  };
  for (NamedParameter& p : keep)  // (the node's field directly: not counted)
    add(p.name, for_writing ? &p.var.value() : &p.var.node()->value);
  for (NamedBuffer& b : m.named_buffers()) add(b.name, b.tensor);
  return out;
}
}  // namespace

StateDict state_dict(Module& m) {
  std::vector<NamedParameter> keep;
  StateDict sd;
  for (const auto& [name, t] : live_tensors(m, keep, false)) sd.emplace(name, t->clone());
  return sd;
}

void load_state_dict(Module& m, const StateDict& sd, const std::string& source) {
  std::vector<NamedParameter> keep;
  const LiveTensors live = live_tensors(m, keep, true);
  std::set<std::string> live_names;
  for (const auto& [name, t] : live) live_names.insert(name);
  const std::string who = "load_state: ";
  for (const auto& [name, t] : live) {
    auto it = sd.find(name);
    if (it == sd.end())
      throw std::invalid_argument(who + "tensor '" + name + "' of model '" + m.name() +
                                  "' is missing from the " + source);
    if (it->second.shape() != t->shape())
      throw std::invalid_argument(who + name + ": shape " + it->second.shape().str() + " in " +
                                  source + ", " + t->shape().str() + " in model");
  }
  for (const auto& [name, t] : sd)
    if (!live_names.count(name))
      throw std::invalid_argument(who + "unexpected tensor '" + name + "' in the " + source +
                                  " (model '" + m.name() + "' has no tensor of that name)");
  // In place: optimizers and caches holding these tensors' storage see the new values.
  for (const auto& [name, t] : live) {
    Tensor& dst = *t;
    const Tensor& src = sd.at(name);
    if (dst.empty())
      dst = src.clone();
    else if (dst.numel() > 0)
      std::memcpy(dst.data(), src.data(), static_cast<std::size_t>(dst.numel()) * sizeof(float));
  }
  weights_changed();
}

void append_state_records(const StateDict& sd, const std::string& prefix,
                          std::vector<StateRecord>& out) {
  for (const auto& [name, t] : sd) out.push_back(StateRecord::from_tensor(prefix + name, t));
}

StateDict state_dict_from_records(const std::vector<StateRecord>& records,
                                  const std::string& prefix) {
  StateDict sd;
  for (const StateRecord& r : records)
    if (r.name.compare(0, prefix.size(), prefix) == 0)
      sd.emplace(r.name.substr(prefix.size()), r.to_tensor());
  return sd;
}

void save_state_dict(const StateDict& sd, const std::string& path) {
  std::vector<StateRecord> records;
  append_state_records(sd, "", records);
  write_file_atomically(path, encode_state_file(kModelStateMagic, records));
}

StateDict read_state_dict(const std::string& path) {
  const std::vector<StateRecord> records =
      decode_state_file(kModelStateMagic, read_whole_file(path), path);
  StateDict sd;
  for (const StateRecord& r : records)
    if (!sd.emplace(r.name, r.to_tensor()).second)
      throw std::invalid_argument(path + ": tensor '" + r.name + "' appears twice");
  return sd;
}

void save_state(Module& m, const std::string& path) { save_state_dict(state_dict(m), path); }

void load_state(Module& m, const std::string& path) {
  load_state_dict(m, read_state_dict(path), "file");
}

}  // namespace hwnas::nn
