// One registry pattern for every pluggable family: block kinds, strategies, device families,
// space types, tasks and evaluators.
//
// An Entry is a plain struct with at least `std::string name`, `std::string description` and
// `std::vector<ParamSpec> params`, plus whatever factory the family needs.  Each family owns
// one Registry<Entry>, filled by an explicit register_builtin_*() call on first use (no
// static-initialisation tricks), so the set of built-ins is visible in one function.
#pragma once

#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/params.hpp"

namespace hwnas {

template <class Entry>
class Registry {
 public:
  // `family` names the kind of thing in messages: "block kind", "strategy", "task", ...
  explicit Registry(std::string family) : family_(std::move(family)) {}
  // A copy indexes its own entries (the index points into entries_; a move keeps the nodes).
  Registry(const Registry& o) : family_(o.family_), entries_(o.entries_) { reindex(); }
  Registry& operator=(const Registry& o) {  // copy, then swap in: no half-copied index
    if (this != &o) *this = Registry(o);
    return *this;
  }
  Registry(Registry&&) noexcept = default;
  Registry& operator=(Registry&&) noexcept = default;

  // Throws std::logic_error on an empty or duplicate name (a programming error).
  void add(Entry e) {
    if (e.name.empty()) throw std::logic_error(family_ + " registered without a name");
    std::string name = e.name;
    auto [it, added] = entries_.emplace(name, std::move(e));
    if (!added) throw std::logic_error(family_ + " '" + name + "' registered twice");
    try {
      index_.emplace(it->first, &it->second);
    } catch (...) {
      entries_.erase(it);  // keep find() and contains() in agreement
      throw;
    }
  }
  const Entry* find(const std::string& name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : it->second;
  }
  // Throws std::invalid_argument "unknown <family> 'x' (known: a, b, c)".
  const Entry& at(const std::string& name) const {
    if (const Entry* e = find(name)) return *e;
    throw std::invalid_argument("unknown " + family_ + " '" + name + "' (known: " + known_list() +
                                ")");
  }
  bool contains(const std::string& name) const { return entries_.count(name) != 0; }
  std::vector<std::string> names() const {  // sorted
    std::vector<std::string> out;
    for (const auto& [n, e] : entries_) out.push_back(n);
    return out;
  }
  std::string known_list() const {
    std::string s;
    for (const auto& [n, e] : entries_) s += (s.empty() ? "" : ", ") + n;
    return s;
  }
  const std::string& family() const { return family_; }
  const std::map<std::string, Entry>& entries() const { return entries_; }
  std::size_t size() const { return entries_.size(); }

 private:
  std::string family_;
  void reindex() {
    index_.clear();
    for (const auto& [n, e] : entries_) index_.emplace(n, &e);
  }

  std::map<std::string, Entry> entries_;  // sorted, for names() and messages
  // Hashed lookup into entries_ (its nodes never move): genomes look their kinds up per node.
  std::unordered_map<std::string_view, const Entry*> index_;
};

}  // namespace hwnas
