// The catalogue of nn's differentiable ops, by name (ggml test-backend-ops style).
//
// Every differentiable op of nn/ is listed here with a one-line description, and
// tests/nn/test_op_coverage.cpp holds a gradient-check case for each: that test fails, naming the
// op, when a registered op has no case or when a case names an op that is not registered, so a
// new op cannot arrive untested.
//
// Adding an op is a two-line job:
//   1. here, in register_builtin_ops() (nn/op_registry.cpp):
//        r.add({"my_op", "what it computes"});            // or OpBackward::Surrogate, see below
//   2. in tests/nn/test_op_coverage.cpp's case table:
//        {"my_op", {Shape{2, 3}}, [](const V& v) { return my_op(v[0]); }},
// Ops whose backward is a surrogate by design (not the derivative of the forward, e.g. the spike
// step) are registered with OpBackward::Surrogate and get a row in the surrogate table instead,
// which checks the backward against its analytic formula.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace hwnas::nn {

enum class OpBackward {
  Exact,      // backward is the true derivative: checked by finite differences
  Surrogate,  // backward is a chosen stand-in: checked against its analytic formula
};

struct OpInfo {
  std::string name;         // the function's name in nn/ops.hpp (or the fused op's)
  std::string description;  // one line: what it computes
  OpBackward backward = OpBackward::Exact;
};

class OpRegistry {
 public:
  // Throws std::logic_error on an empty or duplicate name (a programming error).
  void add(OpInfo info);
  const OpInfo* find(const std::string& name) const;
  bool contains(const std::string& name) const { return ops_.count(name) != 0; }
  std::vector<std::string> names() const;  // sorted
  const std::map<std::string, OpInfo>& ops() const { return ops_; }
  std::size_t size() const { return ops_.size(); }

 private:
  std::map<std::string, OpInfo> ops_;
};

// Adds every op that nn/ provides (explicit, not static-init, so nothing depends on link order).
void register_builtin_ops(OpRegistry& r);

// A registry already filled by register_builtin_ops (built on first use, then read-only).
const OpRegistry& builtin_ops();

}  // namespace hwnas::nn
