#include "search/oneshot_env.hpp"

#include <fstream>
#include <optional>
#include <ostream>
#include <sstream>

#include "common/hash.hpp"
#include "evaluators/task_registry.hpp"
#include "oneshot/environment.hpp"
#include "spaces/space.hpp"
#include "strategies/strategy.hpp"

namespace hwnas::search {

std::shared_ptr<const strategies::OneShotEnvironment> make_oneshot_environment(
    const SearchConfig& c, std::ostream& progress, oneshot::DataShard shard) {
  oneshot::TaskResources r;
  r.shard = std::move(shard);
  r.devices = c.devices;
  r.device_batches = c.device_batches;
  r.log = &progress;
  if (c.evaluator != "train") {
    r.unavailable = "evaluator '" + c.evaluator +
                    "' has no training data; one-shot strategies need evaluator 'train' and a "
                    "task with data (config.evaluator.type)";
    return oneshot::make_task_environment(std::move(r));
  }
  const eval::TaskSpec task = eval::resolve_task(c.dataset, c.task_params);
  // The train evaluator's settings (search/evaluator_factory.cpp).
  r.train.head = task.entry->head;
  r.train.optimizer = c.optimizer;
  r.train.lr = static_cast<float>(c.lr);
  r.train.weight_decay = static_cast<float>(c.weight_decay);
  r.train.momentum = static_cast<float>(c.momentum);
  r.train.batch_size = c.batch_size;
  r.train.clip_grad_norm = 5.0f;
  r.data = [task, space = c.space, seed = c.seed,
            sizes = eval::SplitSizes{c.train_subset, c.val_size}] {
    return eval::make_task_data(task, spaces::make_space(space)->input_type(), seed, sizes);
  };
  return oneshot::make_task_environment(std::move(r));
}

namespace {

class KeptPhaseEnvironment final : public strategies::OneShotEnvironment {
 public:
  KeptPhaseEnvironment(std::shared_ptr<const strategies::OneShotEnvironment> inner,
                       std::function<std::filesystem::path()> dir, std::ostream& progress)
      : inner_(std::move(inner)), dir_(std::move(dir)), progress_(progress) {}

  std::string unavailable() const override { return inner_->unavailable(); }

  strategies::SupernetOutcome run_supernet(const spaces::Space& space,
                                           const strategies::SupernetRequest& req) const override {
    nlohmann::json objectives = nlohmann::json::array();
    for (const auto& o : req.objectives) objectives.push_back({o.name, o.maximize});
    const nlohmann::json key = {{"method", req.method},     {"params", req.params},
                                {"seed", req.seed},         {"candidates", req.candidates},
                                {"objectives", objectives}, {"space", space.type()}};
    std::ostringstream stem;
    stem << "supernet-" << std::hex << fnv1a64(key.dump());
    const std::filesystem::path path = dir_() / (stem.str() + ".json");
    // The supernet's own state, saved after every epoch of its training, so a kill during the
    // phase continues from the last finished epoch.
    const std::filesystem::path state = dir_() / (stem.str() + ".state");
    if (auto kept = read(path, key)) {
      progress_ << req.method << ": supernet phase restored from " << path.string()
                << " (not trained again)" << std::endl;
      return *kept;
    }
    strategies::SupernetRequest inner = req;
    inner.params["supernet_state"] = state.string();
    strategies::SupernetOutcome out = inner_->run_supernet(space, inner);
    write(path, key, out);
    std::error_code ec;
    if (std::filesystem::exists(path, ec)) std::filesystem::remove(state, ec);  // kept instead
    return out;
  }

 private:
  std::optional<strategies::SupernetOutcome> read(const std::filesystem::path& path,
                                                  const nlohmann::json& key) const {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) return std::nullopt;
    try {
      std::ifstream in(path);
      const nlohmann::json j = nlohmann::json::parse(in);
      const nlohmann::json& o = j.at("outcome");
      if (j.at("checksum").get<std::uint64_t>() != fnv1a64(o.dump()))
        throw std::runtime_error("checksum mismatch");
      if (j.at("request") != key) return std::nullopt;  // another request with the same hash
      strategies::SupernetOutcome out;
      for (const auto& g : o.at("candidates"))
        out.candidates.push_back(strategies::genome_from_json(g));
      out.candidate_metrics = o.at("candidate_metrics").get<std::vector<nlohmann::json>>();
      out.report = o.at("report");
      if (out.candidates.empty()) throw std::runtime_error("no candidates");
      return out;
    } catch (const std::exception& e) {
      progress_ << "warning: the kept supernet phase " << path.string() << " is unreadable ("
                << e.what() << "); training the supernet again" << std::endl;
      return std::nullopt;
    }
  }

  void write(const std::filesystem::path& path, const nlohmann::json& key,
             const strategies::SupernetOutcome& out) const {
    nlohmann::json cands = nlohmann::json::array();
    for (const auto& g : out.candidates) cands.push_back(strategies::genome_to_json(g));
    const nlohmann::json o = {{"candidates", cands},
                              {"candidate_metrics", out.candidate_metrics},
                              {"report", out.report}};
    const nlohmann::json j = {
        {"version", 1}, {"request", key}, {"outcome", o}, {"checksum", fnv1a64(o.dump())}};
    // Best effort: without the file a resumed run trains the supernet again, nothing is lost.
    try {
      std::filesystem::create_directories(path.parent_path());
      const std::filesystem::path tmp = path.string() + ".tmp";
      {
        std::ofstream f(tmp, std::ios::trunc);
        f << j.dump();
        f.flush();
        if (!f) throw std::runtime_error("write failed");
      }
      std::filesystem::rename(tmp, path);
    } catch (const std::exception& e) {
      progress_ << "warning: could not keep the supernet phase in " << path.string() << " ("
                << e.what() << "); a resumed run would train it again" << std::endl;
    }
  }

  std::shared_ptr<const strategies::OneShotEnvironment> inner_;
  std::function<std::filesystem::path()> dir_;
  std::ostream& progress_;
};

}  // namespace

std::shared_ptr<const strategies::OneShotEnvironment> keep_phase_outcomes(
    std::shared_ptr<const strategies::OneShotEnvironment> inner,
    std::function<std::filesystem::path()> dir, std::ostream& progress) {
  return std::make_shared<KeptPhaseEnvironment>(std::move(inner), std::move(dir), progress);
}

}  // namespace hwnas::search
