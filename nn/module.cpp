#include "nn/module.hpp"

#include <stdexcept>

namespace hwnas::nn {
namespace {
// The module whose default collect_parameters is running in this thread: its default
// append_named_parameters must not call back into it (a module overriding neither).
thread_local const Module* t_collecting = nullptr;

class CollectingScope {
 public:
  explicit CollectingScope(const Module* m) : saved_(t_collecting) { t_collecting = m; }
  ~CollectingScope() { t_collecting = saved_; }
  CollectingScope(const CollectingScope&) = delete;
  CollectingScope& operator=(const CollectingScope&) = delete;

 private:
  const Module* saved_;
};

int set_frozen(Module& m, const std::string& prefix, bool frozen) {
  int matched = 0;
  for (NamedParameter& p : m.named_parameters())
    if (name_has_prefix(p.name, prefix)) {
      p.var.set_requires_grad(!frozen);
      ++matched;
    }
  if (matched == 0)
    throw std::invalid_argument(std::string(frozen ? "freeze" : "unfreeze") +
                                ": no parameter of module '" + m.name() + "' is named '" + prefix +
                                "' or starts with '" + prefix + ".'");
  return matched;
}
}  // namespace

bool name_has_prefix(const std::string& name, const std::string& prefix) {
  if (prefix.empty()) return true;
  if (name.compare(0, prefix.size(), prefix) != 0) return false;
  return name.size() == prefix.size() || name[prefix.size()] == '.';
}

void Module::append_named_parameters(const std::string& prefix, std::vector<NamedParameter>& out) {
  if (t_collecting == this) return;  // neither method overridden: no parameters
  std::vector<Var> vars;
  collect_parameters(vars);
  for (std::size_t i = 0; i < vars.size(); ++i)
    out.push_back({prefix + std::to_string(i), vars[i]});
}

void Module::collect_parameters(std::vector<Var>& out) {
  std::vector<NamedParameter> named;
  {
    CollectingScope scope(this);
    append_named_parameters("", named);
  }
  for (NamedParameter& p : named) out.push_back(std::move(p.var));
}

std::vector<NamedParameter> Module::named_parameters() {
  std::vector<NamedParameter> out;
  append_named_parameters("", out);
  return out;
}

std::vector<NamedBuffer> Module::named_buffers() {
  std::vector<NamedBuffer> out;
  append_named_buffers("", out);
  return out;
}

int Module::freeze(const std::string& prefix) { return set_frozen(*this, prefix, true); }
int Module::unfreeze(const std::string& prefix) { return set_frozen(*this, prefix, false); }

}  // namespace hwnas::nn
