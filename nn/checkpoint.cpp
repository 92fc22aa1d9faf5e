#include "nn/checkpoint.hpp"

#include <sstream>
#include <stdexcept>
#include <vector>

namespace hwnas::nn {
namespace {
bool starts_with(const std::string& s, const std::string& p) {
  return s.compare(0, p.size(), p) == 0;
}
}  // namespace

void save_checkpoint(const TrainingCheckpoint& ck, const std::string& path) {
  std::vector<StateRecord> records;
  append_state_records(ck.model, "model/", records);
  for (const auto& [name, st] : ck.optimizers) {
    if (name.empty() || name.find('/') != std::string::npos)
      throw std::invalid_argument("save_checkpoint: optimizer name '" + name +
                                  "' must be non-empty and contain no '/'");
    const std::string p = "optim/" + name + "/";
    records.push_back(StateRecord::from_bytes(p + "kind", st.kind));
    for (const auto& [n, t] : st.tensors)
      records.push_back(StateRecord::from_tensor(p + "t/" + n, t));
    for (const auto& [n, v] : st.counters)
      records.push_back(StateRecord::from_int(p + "c/" + n, v));
  }
  for (const auto& [name, v] : ck.counters)
    records.push_back(StateRecord::from_int("counter/" + name, v));
  for (const auto& [name, bytes] : ck.rng)
    records.push_back(StateRecord::from_bytes("rng/" + name, bytes));
  write_file_atomically(path, encode_state_file(kCheckpointMagic, records));
}

TrainingCheckpoint read_checkpoint(const std::string& path) {
  TrainingCheckpoint ck;
  for (const StateRecord& r : decode_state_file(kCheckpointMagic, read_whole_file(path), path)) {
    if (starts_with(r.name, "model/")) {
      ck.model.emplace(r.name.substr(6), r.to_tensor());
    } else if (starts_with(r.name, "optim/")) {
      const std::size_t slash = r.name.find('/', 6);
      if (slash == std::string::npos)
        throw std::invalid_argument(path + ": checkpoint record '" + r.name +
                                    "' names no optimizer field");
      OptimizerState& st = ck.optimizers[r.name.substr(6, slash - 6)];
      const std::string field = r.name.substr(slash + 1);
      if (field == "kind" && r.type == RecordType::Bytes)
        st.kind = r.data;
      else if (starts_with(field, "t/"))
        st.tensors.emplace(field.substr(2), r.to_tensor());
      else if (starts_with(field, "c/"))
        st.counters.emplace(field.substr(2), r.to_int());
      else
        throw std::invalid_argument(path + ": unknown optimizer field in checkpoint record '" +
                                    r.name + "'");
    } else if (starts_with(r.name, "counter/")) {
      ck.counters.emplace(r.name.substr(8), r.to_int());
    } else if (starts_with(r.name, "rng/") && r.type == RecordType::Bytes) {
      ck.rng.emplace(r.name.substr(4), r.data);
    } else {
      throw std::invalid_argument(path + ": checkpoint record '" + r.name +
                                  "' belongs to no section (model/, optim/, counter/, rng/)");
    }
  }
  return ck;
}

std::string rng_state(const std::mt19937_64& rng) {
  std::ostringstream ss;
  ss << rng;
  return ss.str();
}

void set_rng_state(std::mt19937_64& rng, const std::string& state) {
  std::istringstream ss(state);
  std::mt19937_64 restored;
  ss >> restored;
  if (ss.fail())
    throw std::invalid_argument("set_rng_state: " + std::to_string(state.size()) +
                                " bytes are not an mt19937_64 state (expected 313 integers)");
  rng = restored;
}

}  // namespace hwnas::nn
