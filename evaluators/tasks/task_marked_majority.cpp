// marked_majority: each token carries a sign and a marker bit; classify whether the marked
// tokens' signs sum to more than zero (the other signs are distractors).
#include "evaluators/sequence_tasks.hpp"
#include "evaluators/tasks/task_util.hpp"

namespace hwnas::eval::tasks {

void register_task_marked_majority(Registry<TaskEntry>& r) {
  TaskEntry e;
  e.name = "marked_majority";
  e.description =
      "marked majority: do the signs of the marked tokens sum to more than zero? (2 classes)";
  e.params = {
      ParamSpec::int_range("seq_len", 1, 4096, 64, "tokens per sequence"),
      ParamSpec::int_range("features", 2, 1024, 16,
                           "features per token: marker, sign, then gaussian noise"),
      ParamSpec::int_range("min_marked", 1, 4096, 3, "fewest marked tokens (odd counts only)"),
      ParamSpec::int_range("max_marked", 1, 4096, 15, "most marked tokens (<= seq_len)"),
      ParamSpec::float_range("noise", 0, 10, 0.5, "std of the noise features")};
  e.head = HeadKind::Classes;
  e.inputs = [](const json& p) {
    return std::vector<TensorType>{TensorType::sequence(pint(p, "seq_len"), pint(p, "features"))};
  };
  e.outputs = [](const json&) { return 2; };
  e.generate = [](const json& p, const TensorType&, std::uint64_t seed, const SplitSizes& sizes) {
    MarkedMajorityConfig c;
    c.seq_len = pint(p, "seq_len");
    c.features = pint(p, "features");
    c.min_marked = pint(p, "min_marked");
    c.max_marked = pint(p, "max_marked");
    c.noise = pfloat(p, "noise");
    require_param(
        c.min_marked <= c.max_marked && c.max_marked <= c.seq_len, "marked_majority", "max_marked",
        "need min_marked (" + std::to_string(c.min_marked) + ") <= max_marked (" +
            std::to_string(c.max_marked) + ") <= seq_len (" + std::to_string(c.seq_len) + ")");
    return generated_split(sizes, 10000, seed, [&](int n, std::uint64_t s) {
      c.samples = n;
      return make_marked_majority(c, s);
    });
  };
  r.add(std::move(e));
}

}  // namespace hwnas::eval::tasks
