#include "search/arch_ref.hpp"

#include <algorithm>
#include <filesystem>
#include <iomanip>
#include <sstream>

namespace hwnas::search {

std::unique_ptr<db::Store> open_existing_store(const std::string& path, bool read_only) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    throw ArchRefError("--db: no such database file '" + path + "'");
  try {
    return std::make_unique<db::Store>(path, read_only);
  } catch (const db::DbError& e) {
    throw ArchRefError(std::string("--db: ") + e.what());
  }
}

std::int64_t resolve_arch_ref(const db::Store& store, const std::string& a) {
  const bool numeric = !a.empty() && a.find_first_not_of("0123456789") == std::string::npos;
  if (numeric && a.size() < 19) {  // ids fit int64; a long all-digit string is a hash prefix
    const std::int64_t id = std::stoll(a);
    if (store.architecture(id)) return id;
  }
  if (!a.empty()) {
    auto ids = store.architecture_ids_by_hash_prefix(a, 2);
    if (ids.size() == 1) return ids[0];
    if (ids.size() > 1)
      throw ArchRefError("--arch: hash prefix '" + a +
                         "' matches several architectures; give more digits");
  }
  throw ArchRefError(std::string("--arch: no architecture with ") +
                     (numeric ? "id or hash prefix '" : "hash prefix '") + a + "' in " +
                     store.path() + " (see `hwnas pareto` or `hwnas show`)");
}

spaces::Genome stored_genome(const db::Store& store, std::int64_t arch_id) {
  auto arch = store.architecture(arch_id);
  if (!arch) throw ArchRefError("--arch: architecture " + std::to_string(arch_id) + " vanished");
  return spaces::Genome::from_json(arch->genome);
}

RunConfig stored_run_config(const db::Store& store, std::int64_t arch_id, long long run) {
  RunConfig out;
  if (run >= 0) {
    if (!store.run(run))
      throw ArchRefError("--run: no run " + std::to_string(run) + " in " + store.path());
    out.run_id = run;
  } else {
    std::int64_t latest = -1;
    for (const auto& e : store.evaluations_of_architecture(arch_id))
      latest = std::max(latest, e.run_id);
    if (latest < 0) {
      auto l = store.latest_run_id();
      if (!l) throw ArchRefError(store.path() + " has no runs (a run's config says how to train)");
      latest = *l;
    }
    out.run_id = latest;
  }
  const auto info = store.run(out.run_id);
  try {
    out.config = parse_config(info->config, ".");
  } catch (const std::invalid_argument& e) {
    throw ArchRefError("the stored config of run " + std::to_string(out.run_id) +
                       " no longer validates: " + e.what());
  }
  return out;
}

std::string with_test_results(const std::string& shown,
                              const std::vector<db::TestResultRecord>& results, db::Format f) {
  if (results.empty() || f == db::Format::Csv) return shown;
  if (f == db::Format::Json) {
    nlohmann::json j = nlohmann::json::parse(shown);
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& r : results)
      rows.push_back({{"id", r.id},
                      {"run", r.run_id},
                      {"epochs", r.epochs},
                      {"metrics", r.metrics},
                      {"weights", r.weights_path},
                      {"created_at", r.created_at}});
    j["test_results_held_out"] = {{"label", kTestLabel}, {"results", rows}};
    return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  }
  std::ostringstream os;
  os << shown << "\n" << kTestLabel << " (" << results.size() << "):\n";
  for (const auto& r : results) {
    os << "  result " << r.id << "  run " << r.run_id << "  epochs " << r.epochs << " ";
    for (const auto& [k, v] : r.metrics.items()) {
      os << " " << k << " ";
      if (v.is_number_float())
        os << std::fixed << std::setprecision(4) << v.get<double>() << std::defaultfloat;
      else
        os << v.dump();
    }
    os << "  weights " << (r.weights_path.empty() ? "-" : r.weights_path) << "  " << r.created_at
       << "\n";
  }
  return os.str();
}

}  // namespace hwnas::search
