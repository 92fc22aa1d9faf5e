// associative_recall: key/value pairs scattered over a sequence, the last token asks for one
// key's value; the label is that value (sequence classification).  The defaults reproduce the
// data of configs written before the task registry.
#include "evaluators/sequence_tasks.hpp"
#include "evaluators/tasks/task_util.hpp"

namespace hwnas::eval::tasks {
namespace {
AssociativeRecallConfig config_of(const json& p) {
  AssociativeRecallConfig c;
  c.seq_len = pint(p, "seq_len");
  c.num_keys = pint(p, "num_keys");
  c.num_values = pint(p, "num_values");
  c.pairs = pint(p, "pairs");
  return c;
}
}  // namespace

void register_task_associative_recall(Registry<TaskEntry>& r) {
  TaskEntry e;
  e.name = "associative_recall";
  e.description =
      "single-query associative recall: key/value pairs anywhere in the sequence, the last token "
      "asks for one key; classify its value";
  e.params = {
      ParamSpec::int_range("seq_len", 2, 4096, 64, "tokens, including the final query token"),
      ParamSpec::int_range("num_keys", 1, 1024, 16, "key vocabulary (one-hot)"),
      ParamSpec::int_range("num_values", 2, 1024, 8, "value vocabulary = classes"),
      ParamSpec::int_range("pairs", 1, 1024, 8,
                           "key/value pairs per sequence (<= num_keys, < seq_len)")};
  e.head = HeadKind::Classes;
  e.inputs = [](const json& p) {
    return std::vector<TensorType>{
        TensorType::sequence(pint(p, "seq_len"), pint(p, "num_keys") + pint(p, "num_values") + 1)};
  };
  e.outputs = [](const json& p) { return pint(p, "num_values"); };
  e.generate = [](const json& p, const TensorType&, std::uint64_t seed, const SplitSizes& sizes) {
    AssociativeRecallConfig c = config_of(p);
    require_param(c.pairs <= c.num_keys && c.pairs < c.seq_len, "associative_recall", "pairs",
                  std::to_string(c.pairs) + " must be <= num_keys (" + std::to_string(c.num_keys) +
                      ") and < seq_len (" + std::to_string(c.seq_len) + ")");
    return generated_split(sizes, 10000, seed, [&](int n, std::uint64_t s) {
      c.samples = n;
      return make_associative_recall(c, s);
    });
  };
  r.add(std::move(e));
}

}  // namespace hwnas::eval::tasks
