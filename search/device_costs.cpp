#include "search/device_costs.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>

#include "search/search_loop.hpp"
#include "spaces/workload_builder.hpp"

namespace hwnas::search {
namespace {

db::CostRecord model_failed(const hw::Device& device, const std::exception& e) {
  db::CostRecord c;
  c.device = device.name();
  c.feasible = false;
  c.infeasible_reason = std::string("cost model failed: ") + e.what();
  return c;
}

}  // namespace

std::vector<db::CostRecord> costs_on_device(const hw::Device& device,
                                            const std::vector<hw::Workload>& ws,
                                            const std::vector<std::string>& arch_hashes,
                                            db::Store* store) {
  if (arch_hashes.size() != ws.size())
    throw std::invalid_argument("costs_on_device: one architecture hash per workload");
  std::vector<db::CostRecord> out(ws.size());
  const bool cached = store && device.caches_costs();
  const std::string fingerprint = hw::device_fingerprint(device);
  const int batch = cached ? device.to_json().value("batch", 1) : 1;
  std::vector<std::size_t> ask;  // indices not in the cache
  for (std::size_t i = 0; i < ws.size(); ++i) {
    std::optional<db::CostRecord> hit;
    if (cached && !arch_hashes[i].empty())
      hit = store->cached_cost(arch_hashes[i], device.name(), fingerprint, batch);
    if (hit)
      out[i] = std::move(*hit);
    else
      ask.push_back(i);
  }
  if (ask.empty()) return out;

  std::vector<hw::Cost> answers;
  try {
    if (ask.size() == ws.size()) {
      answers = device.estimate_many(ws);
    } else {
      std::vector<hw::Workload> missing;
      missing.reserve(ask.size());
      for (auto i : ask) missing.push_back(ws[i]);
      answers = device.estimate_many(missing);
    }
  } catch (const std::exception&) {
    answers.clear();  // find the one that throws: ask one by one below
  }
  for (std::size_t k = 0; k < ask.size(); ++k) {
    const std::size_t i = ask[k];
    if (answers.size() == ask.size()) {
      out[i] = to_record(device.name(), answers[k], fingerprint);
    } else {
      try {
        out[i] = to_record(device.name(), device.estimate(ws[i]), fingerprint);
      } catch (const std::exception& e) {
        out[i] = model_failed(device, e);
        continue;
      }
    }
    if (cached && !arch_hashes[i].empty() && std::isfinite(out[i].latency_ms) &&
        !store->read_only())
      store->put_cached_cost(arch_hashes[i], fingerprint, batch, out[i]);
  }
  return out;
}

db::CostRecord cost_on_device(const hw::Device& device, const hw::Workload& w,
                              const std::string& arch_hash, db::Store* store,
                              const std::string& fingerprint) {
  if (!store || !device.caches_costs()) {  // the search's hot path: no copies
    try {
      return to_record(device.name(), device.estimate(w),
                       fingerprint.empty() ? hw::device_fingerprint(device) : fingerprint);
    } catch (const std::exception& e) {
      return model_failed(device, e);
    }
  }
  return costs_on_device(device, {w}, {arch_hash}, store)[0];
}

SearchCosts::SearchCosts(const std::vector<std::unique_ptr<hw::Device>>& devices, db::Store& store)
    : devices_(devices), store_(store) {
  for (std::size_t i = 0; i < devices_.size(); ++i) {
    fingerprints_.push_back(hw::device_fingerprint(*devices_[i]));
    batches_.push_back(devices_[i]->to_json().value("batch", 1));
    if (devices_[i]->caches_costs()) caching_.push_back(i);
  }
}

SearchCosts::~SearchCosts() {
  // The measurements' threads use the devices: they must end before the devices do.
  for (auto& [key, m] : running_)
    if (m.answer.valid()) m.answer.wait();
  for (auto& f : abandoned_)
    if (f.valid()) f.wait();
}

void SearchCosts::keep(const std::string& arch_hash, std::size_t i, const db::CostRecord& c) {
  if (!std::isfinite(c.latency_ms) || store_.read_only()) return;
  try {
    store_.put_cached_cost(arch_hash, fingerprints_[i], batches_[i], c);
  } catch (const std::exception&) {
    // The cache only saves asking again; a busy or full database must not stop the search.
  }
}

void SearchCosts::harvest() {
  for (auto it = running_.begin(); it != running_.end();) {
    auto& m = it->second;
    if (m.answer.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
      ++it;
      continue;
    }
    const std::size_t i = it->first.second;
    db::CostRecord c;
    try {
      c = to_record(devices_[i]->name(), m.answer.get(), fingerprints_[i]);
    } catch (const std::exception& e) {
      c = model_failed(*devices_[i], e);
    }
    keep(m.arch_hash, i, c);  // now, so a kill before the evaluation is stored loses nothing
    done_.emplace(it->first, std::move(c));
    it = running_.erase(it);
  }
}

void SearchCosts::start(std::uint64_t id, const spaces::Genome& genome) {
  if (caching_.empty()) return;
  harvest();
  const std::string canonical = genome.canonical_json();
  const std::string hash = spaces::Genome::hash_of_canonical(canonical);
  std::shared_ptr<const hw::Workload> w;
  for (std::size_t i : caching_) {
    const hw::Device& d = *devices_[i];
    if (auto hit = store_.cached_cost(hash, d.name(), fingerprints_[i], batches_[i])) {
      done_[{id, i}] = std::move(*hit);  // finish() takes it from here
      continue;
    }
    // The same architecture already being measured (another candidate in flight): share it,
    // so the device is asked once.
    auto same = std::find_if(running_.begin(), running_.end(), [&](const auto& r) {
      return r.first.second == i && r.second.arch_hash == hash;
    });
    if (same != running_.end()) {
      running_[{id, i}] = {hash, same->second.answer};
      continue;
    }
    if (!w) {
      auto built = std::make_shared<hw::Workload>(spaces::build_workload(genome));
      built->architecture = nlohmann::json::parse(canonical);
      w = std::move(built);
    }
    running_[{id, i}] = {
        hash, std::async(std::launch::async, [&d, w] { return d.estimate(*w); }).share()};
  }
}

std::vector<db::CostRecord> SearchCosts::finish(std::uint64_t id, const hw::Workload& evaluated,
                                                const std::string& arch_hash,
                                                std::uint64_t static_key) {
  if (!caching_.empty()) harvest();
  std::vector<db::CostRecord> out;
  out.reserve(devices_.size());
  for (std::size_t i = 0; i < devices_.size(); ++i) {
    const hw::Device& d = *devices_[i];
    if (auto it = done_.find({id, i}); it != done_.end()) {
      out.push_back(std::move(it->second));
      done_.erase(it);
      continue;
    }
    auto it = running_.find({id, i});
    if (it == running_.end()) {
      if (static_key == 0 || d.caches_costs()) {
        out.push_back(cost_on_device(d, evaluated, arch_hash, &store_, fingerprints_[i]));
        continue;
      }
      auto key = std::make_tuple(arch_hash, static_key, i);
      auto known = repeat_costs_.find(key);
      if (known == repeat_costs_.end()) {
        if (repeat_costs_.size() >= kRepeatCostsMax) repeat_costs_.clear();
        known = repeat_costs_
                    .emplace(std::move(key),
                             cost_on_device(d, evaluated, arch_hash, &store_, fingerprints_[i]))
                    .first;
      }
      out.push_back(known->second);
      continue;
    }
    db::CostRecord c;
    try {
      c = to_record(d.name(), it->second.answer.get(), fingerprints_[i]);
    } catch (const std::exception& e) {
      c = model_failed(d, e);
    }
    running_.erase(it);
    keep(arch_hash, i, c);
    out.push_back(std::move(c));
  }
  return out;
}

void SearchCosts::forget(std::uint64_t id) {
  for (std::size_t i : caching_) {
    done_.erase({id, i});
    auto it = running_.find({id, i});
    if (it == running_.end()) continue;
    abandoned_.push_back(std::move(it->second.answer));  // waited for at the end, not now
    running_.erase(it);
  }
}

}  // namespace hwnas::search
