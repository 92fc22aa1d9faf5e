#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <utility>

#include "common/hash.hpp"
#include "common/json_file.hpp"
#include "hwmodels/device_base.hpp"

namespace hwnas::hw {

namespace fs = std::filesystem;

// ---- FieldReader ---------------------------------------------------------------------------

const nlohmann::json* FieldReader::find(const std::string& path) const {
  const nlohmann::json* cur = &j_;
  std::size_t start = 0;
  while (true) {
    std::size_t dot = path.find('.', start);
    std::string key =
        path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!cur->is_object()) return nullptr;
    auto it = cur->find(key);
    if (it == cur->end()) return nullptr;
    cur = &*it;
    if (dot == std::string::npos) return cur;
    start = dot + 1;
  }
}

void FieldReader::fail(const std::string& path, const std::string& what) const {
  throw std::invalid_argument("device '" + device_ + "': field '" + path + "' " + what);
}

double FieldReader::positive(const std::string& path) const {
  const auto* v = find(path);
  if (!v) fail(path, "is required (a positive number)");
  if (!v->is_number() || !(v->get<double>() > 0) || !std::isfinite(v->get<double>()))
    fail(path, "must be a positive number");
  return v->get<double>();
}

double FieldReader::positive_or(const std::string& path, double dflt) const {
  return has(path) ? positive(path) : dflt;
}

double FieldReader::non_negative_or(const std::string& path, double dflt) const {
  const auto* v = find(path);
  if (!v) return dflt;
  if (!v->is_number() || !(v->get<double>() >= 0) || !std::isfinite(v->get<double>()))
    fail(path, "must be a non-negative number");
  return v->get<double>();
}

double FieldReader::fraction_or(const std::string& path, double dflt) const {
  const auto* v = find(path);
  if (!v) return dflt;
  if (!v->is_number() || !(v->get<double>() > 0) || v->get<double>() > 1)
    fail(path, "must be a number in (0, 1]");
  return v->get<double>();
}

int FieldReader::positive_int(const std::string& path) const {
  const auto* v = find(path);
  if (!v) fail(path, "is required (a positive integer)");
  if (!v->is_number_integer() || v->get<long long>() <= 0 || v->get<long long>() > (1LL << 30))
    fail(path, "must be a positive integer");
  return static_cast<int>(v->get<long long>());
}

int FieldReader::positive_int_or(const std::string& path, int dflt) const {
  return has(path) ? positive_int(path) : dflt;
}

bool FieldReader::boolean_or(const std::string& path, bool dflt) const {
  const auto* v = find(path);
  if (!v) return dflt;
  if (!v->is_boolean()) fail(path, "must be true or false");
  return v->get<bool>();
}

std::string FieldReader::string_or(const std::string& path, const std::string& dflt) const {
  const auto* v = find(path);
  if (!v) return dflt;
  if (!v->is_string()) fail(path, "must be a string");
  return v->get<std::string>();
}

std::string FieldReader::one_of(const std::string& path, std::initializer_list<const char*> allowed,
                                const std::string& dflt) const {
  std::string s = string_or(path, dflt);
  std::string list;
  for (const char* a : allowed) {
    if (s == a) return s;
    list += (list.empty() ? "" : ", ") + std::string("\"") + a + "\"";
  }
  fail(path, "must be one of " + list + " (got \"" + s + "\")");
}

// ---- tables --------------------------------------------------------------------------------

CategoryTable CategoryTable::read(const FieldReader& r, const std::string& path, double max_value,
                                  double dflt) {
  CategoryTable t;
  const auto* o = r.find(path);
  if (!o) {
    if (dflt < 0) r.fail(path, "is required (an object of per-op-category values)");
    t.v.fill(dflt);
    return t;
  }
  if (!o->is_object()) r.fail(path, "must be an object of per-op-category values");
  auto value = [&](const std::string& key) {
    const auto& x = (*o)[key];
    if (!x.is_number() || !(x.get<double>() > 0) || x.get<double>() > max_value)
      r.fail(path + "." + key, "must be a number in (0, " + std::to_string(max_value) + "]");
    return x.get<double>();
  };
  std::array<bool, kNumCategories> set{};
  double def = dflt;
  for (auto it = o->begin(); it != o->end(); ++it) {
    if (it.key() == "default") {
      def = value("default");
      continue;
    }
    OpCategory c;
    try {
      c = op_category_from_name(it.key());
    } catch (const std::invalid_argument& e) {
      r.fail(path + "." + it.key(), std::string("is not an op category: ") + e.what());
    }
    t.v[cat_index(c)] = value(it.key());
    set[cat_index(c)] = true;
  }
  for (std::size_t i = 0; i < kNumCategories; ++i) {
    if (set[i]) continue;
    if (def < 0)
      r.fail(path + ".default", "is required when not every category is listed (missing '" +
                                    std::string(op_category_name(static_cast<OpCategory>(i))) +
                                    "')");
    t.v[i] = def;
  }
  return t;
}

namespace {
const char* kPrecisionList = "fp32, fp16, int8, int4";
std::optional<Precision> precision_from_name(const std::string& n) {
  for (std::size_t i = 0; i < kNumPrecisions; ++i)
    if (n == kPrecisionNames[i]) return static_cast<Precision>(i);
  return std::nullopt;
}
}  // namespace

std::optional<Precision> NativePrecisions::run_as(Precision p) const {
  // Precisions are ordered widest first (fp32 = 0), so wider ones have smaller indices.
  for (int i = static_cast<int>(p); i >= 0; --i)
    if (native[static_cast<std::size_t>(i)]) return static_cast<Precision>(i);
  return std::nullopt;
}

std::string NativePrecisions::list() const {
  std::string out;
  for (std::size_t i = 0; i < kNumPrecisions; ++i)
    if (native[i]) out += (out.empty() ? "" : ", ") + std::string(kPrecisionNames[i]);
  return out;
}

NativePrecisions NativePrecisions::of(std::initializer_list<Precision> ps) {
  NativePrecisions n;
  for (Precision p : ps) n.native[static_cast<std::size_t>(p)] = true;
  return n;
}

NativePrecisions NativePrecisions::read(const FieldReader& r, const NativePrecisions& dflt) {
  const auto* v = r.find("native_precisions");
  if (!v) return dflt;
  const std::string fix = std::string("(a non-empty array of distinct names from ") +
                          kPrecisionList + ", e.g. [\"fp32\", \"fp16\", \"int8\"])";
  if (!v->is_array() || v->empty()) r.fail("native_precisions", "must be " + fix);
  NativePrecisions n;
  for (const auto& x : *v) {
    const auto p = x.is_string() ? precision_from_name(x.get<std::string>()) : std::nullopt;
    if (!p) r.fail("native_precisions", "has " + x.dump() + ", not a precision " + fix);
    if (n.has(*p)) r.fail("native_precisions", "lists " + x.dump() + " twice " + fix);
    n.native[static_cast<std::size_t>(*p)] = true;
  }
  return n;
}

PrecisionTable PrecisionTable::read(const FieldReader& r, const std::string& path) {
  PrecisionTable t;
  const std::string shape = std::string("an object {precision: value} over ") + kPrecisionList;
  const auto* o = r.find(path);
  if (!o) r.fail(path, "is required (" + shape + ", fp32 required)");
  if (!o->is_object()) r.fail(path, "must be " + shape);
  for (auto it = o->begin(); it != o->end(); ++it) {
    const auto p = precision_from_name(it.key());
    if (!p)
      r.fail(path + "." + it.key(), std::string("is not a precision (use ") + kPrecisionList + ")");
    t.v[static_cast<std::size_t>(*p)] = r.positive(path + "." + it.key());
    t.listed[static_cast<std::size_t>(*p)] = true;
  }
  if (!t.listed[0]) r.positive(path + ".fp32");  // fails: required
  // Without a native set, a missing narrower precision takes the next wider listed one's value.
  for (std::size_t i = 1; i < kNumPrecisions; ++i)
    if (!t.listed[i]) t.v[i] = t.v[i - 1];
  return t;
}

PrecisionTable PrecisionTable::read_native(const FieldReader& r, const std::string& path,
                                           NativePrecisions& native) {
  PrecisionTable t = read(r, path);
  NativePrecisions listed;
  listed.native = t.listed;
  native = NativePrecisions::read(r, listed);
  for (std::size_t i = 0; i < kNumPrecisions; ++i) {
    const std::string name = kPrecisionNames[i];
    if (native.native[i] && !t.listed[i])
      r.fail(path + "." + name, "is required: native_precisions lists " + name +
                                    " (give its rate here, or drop " + name +
                                    " from native_precisions)");
    if (!native.native[i] && t.listed[i])
      r.fail(path + "." + name, "is given but native_precisions does not list " + name +
                                    " (add \"" + name + "\" to native_precisions, or remove " +
                                    "this entry)");
  }
  // fp32 is listed (required), hence native: every precision has one at least as wide.
  for (std::size_t i = 0; i < kNumPrecisions; ++i)
    t.v[i] = t.v[static_cast<std::size_t>(*native.run_as(static_cast<Precision>(i)))];
  return t;
}

void note_non_native_precisions(const Workload& w, const NativePrecisions& native,
                                const std::string& fallback, Cost& c) {
  nlohmann::json notes = nlohmann::json::object();
  for (const auto& n : w.nodes) {
    const Precision p = precision_of_bits(n.bits);
    if (native.has(p)) continue;
    const auto as = native.run_as(p);
    notes[n.name] = as ? std::string(precision_name(p)) + " runs as " + precision_name(*as) +
                             " (native: " + native.list() + ")"
                       : std::string(precision_name(p)) + ": no native precision wide enough " +
                             "(native: " + native.list() + "); " + fallback;
  }
  if (!notes.empty()) c.extra["non_native_precision"] = std::move(notes);
}

// ---- DeviceBase ----------------------------------------------------------------------------

namespace {
std::string device_label(const nlohmann::json& d) {
  if (d.is_object()) {
    auto it = d.find("name");
    if (it != d.end() && it->is_string()) return it->get<std::string>();
  }
  return "?";
}
}  // namespace

DeviceBase::DeviceBase(const nlohmann::json& description)
    : desc_(description), reader_(desc_, device_label(description)) {
  name_ = desc_.at("name").get<std::string>();
  family_ = desc_.at("family").get<std::string>();
  if (const auto* s = reader_.find("sources"); s && !s->is_object())
    fail("sources", "must be an object {param: citation}");
  batch_ = reader_.positive_int_or("batch", 1);
  eager_ = reader_.one_of("fusion", {"fused", "eager"}, "fused") == "eager";
  host_link_bw_ = reader_.non_negative_or("host_link_bw", 0);
  scale_.fill(1.0);
  if (const auto* c = reader_.find("calibration")) {
    if (!c->is_object()) fail("calibration", "must be an object");
    CategoryTable t = CategoryTable::read(reader_, "calibration.category_scale", 1e6, 1.0);
    scale_ = t.v;
    if (reader_.has("calibration.per_kernel_s")) {
      has_per_kernel_ = true;
      per_kernel_s_ = reader_.non_negative_or("calibration.per_kernel_s", 0);
    }
    energy_scale_ = reader_.positive_or("calibration.energy_scale", 1.0);
    dynamic_energy_scale_.fill(1.0);
    if (reader_.has("calibration.dynamic_energy_scale")) {
      has_dynamic_energy_scale_ = true;
      dynamic_energy_scale_ =
          CategoryTable::read(reader_, "calibration.dynamic_energy_scale", 1e6, 1.0).v;
    }
    per_node_s_ = reader_.non_negative_or("calibration.per_node_s", 0);
    s_per_pruned_param_ = reader_.non_negative_or("calibration.s_per_pruned_param", 0);
    s_per_quantized_param_ = reader_.non_negative_or("calibration.s_per_quantized_param", 0);
    auto table = [&](const char* key, std::array<double, kNumCategories>& out) {
      const std::string path = std::string("calibration.") + key;
      const auto* t = reader_.find(path);
      if (!t) return;
      if (!t->is_object()) fail(path, "must be an object of per-op-category values");
      for (auto it = t->begin(); it != t->end(); ++it) {
        std::size_t ci;
        try {
          ci = cat_index(op_category_from_name(it.key()));
        } catch (const std::invalid_argument& e) {
          fail(path + "." + it.key(), std::string("is not an op category: ") + e.what());
        }
        out[ci] = reader_.non_negative_or(path + "." + it.key(), 0);
      }
    };
    table("s_per_flop", s_per_flop_);
    table("s_per_byte", s_per_byte_);
    has_linear_ = per_node_s_ > 0 || s_per_pruned_param_ > 0 || s_per_quantized_param_ > 0;
    for (std::size_t i = 0; i < kNumCategories; ++i)
      has_linear_ = has_linear_ || s_per_flop_[i] > 0 || s_per_byte_[i] > 0;
    has_linear_ = has_linear_ || has_dynamic_energy_scale_;
  }
}

void DeviceBase::charge_datastores(const Workload& w, Cost& c) const {
  double bytes = 0, read = 0;
  std::string first;
  for (const auto& n : w.nodes) {
    if (n.datastore_bytes <= 0) continue;
    bytes += n.datastore_bytes;
    read += n.datastore_bytes_read;
    if (first.empty()) first = n.name;
  }
  if (bytes <= 0) return;
  c.extra["datastore_bytes"] = bytes;
  if (hold_datastore(w, bytes, c)) {
    c.extra["datastore_resident"] = true;
    return;
  }
  c.extra["datastore_resident"] = false;
  const double link = host_link_bw();
  if (link <= 0) {
    c.feasible = false;
    c.infeasible_reason += std::string(c.infeasible_reason.empty() ? "" : "; ") + "datastore of " +
                           first + " (" + format_bytes(bytes) +
                           ") does not fit the device's memory and it has no host_link_bw to "
                           "read it from the host; set host_link_bw or use a smaller datastore";
    return;
  }
  // Per sample, every node reads its bytes over the link; the node's breakdown carries it.
  const double b = batch_;
  c.extra["datastore_link_bytes"] = b * read;
  for (const auto& n : w.nodes) {
    if (n.datastore_bytes <= 0) continue;
    const double t = b * n.datastore_bytes_read / link;
    c.latency_ms += t * 1e3;
    for (auto& nc : c.nodes)
      if (nc.name == n.name) {
        nc.latency_s += t;
        nc.bound = "host-link";
      }
  }
}

void DeviceBase::add_linear_terms(const Workload& w, Cost& c) const {
  if (c.nodes.size() != w.nodes.size()) return;  // no index-aligned breakdown to extend
  const double p_static = static_power_w();
  double added = 0, added_j = 0;
  for (std::size_t i = 0; i < w.nodes.size(); ++i) {
    NodeCost& nc = c.nodes[i];
    if (nc.bound.rfind("fallback", 0) == 0) continue;
    const NodeWorkload& n = w.nodes[i];
    const std::size_t ci = cat_index(n.category);
    const double t =
        per_node_s_ + s_per_flop_[ci] * batch_ * n.flops() +
        s_per_byte_[ci] * (n.weight_bytes + batch_ * (n.input_bytes + n.output_bytes)) +
        (n.sparsity > 0 ? s_per_pruned_param_ * n.params : 0.0) +
        (n.bits < 16 ? s_per_quantized_param_ * n.params : 0.0);
    // The device idles through the added time too; only the dynamic part is rescaled.
    const double dynamic_j = std::max(0.0, nc.energy_j - p_static * nc.latency_s);
    const double e = p_static * (nc.latency_s + t) + dynamic_energy_scale_[ci] * dynamic_j;
    added_j += e - nc.energy_j;
    nc.energy_j = e;
    nc.latency_s += t;
    nc.overhead_s += per_node_s_;
    added += t;
  }
  c.latency_ms += added * 1e3;
  c.energy_mj += added_j * 1e3;
}

// ---- registry ------------------------------------------------------------------------------

namespace {

// Refuses fields the family does not declare (a typo such as "mem_bww" would otherwise be
// ignored and the default used).  Specs name nested fields by dotted path ("power.tdp_w"), so
// a key is known if a spec has its path, or is an object some specs lie under.
void check_fields(const nlohmann::json& j, const std::string& prefix,
                  const std::vector<ParamSpec>& specs, const FieldReader& r) {
  for (const auto& [key, value] : j.items()) {
    const std::string path = prefix.empty() ? key : prefix + "." + key;
    bool exact = false, parent = false;
    for (const auto& p : specs) {
      exact = exact || p.name == path;
      parent = parent || p.name.rfind(path + ".", 0) == 0;
    }
    if (exact) continue;
    if (parent) {
      if (!value.is_object()) r.fail(path, "must be an object");
      check_fields(value, path, specs, r);
      continue;
    }
    // The known fields at this level, by their full path.
    std::vector<std::string> known;
    for (const auto& p : specs) {
      if (!prefix.empty() && p.name.rfind(prefix + ".", 0) != 0) continue;
      const std::size_t from = prefix.empty() ? 0 : prefix.size() + 1;
      const std::string field = p.name.substr(0, p.name.find('.', from));
      if (std::find(known.begin(), known.end(), field) == known.end()) known.push_back(field);
    }
    std::sort(known.begin(), known.end());
    std::string list;
    for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
    throw std::invalid_argument("device '" + r.device() + "': unknown field '" + path +
                                "' (known: " + list + ")");
  }
}

nlohmann::json read_device_file(const std::string& path) {
  try {
    return read_json_file(path);
  } catch (const JsonFileError& e) {
    throw std::invalid_argument(std::string("device file: ") + e.what());
  }
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::vector<std::string> family_names() { return device_families().names(); }

std::unique_ptr<Device> make_device(const nlohmann::json& d) {
  if (!d.is_object()) throw std::invalid_argument("device description must be a JSON object");
  auto nit = d.find("name");
  if (nit == d.end() || !nit->is_string() || nit->get<std::string>().empty())
    throw std::invalid_argument("device description: field 'name' must be a non-empty string");
  const std::string name = nit->get<std::string>();
  const auto& families = device_families();
  auto fit = d.find("family");
  if (fit == d.end() || !fit->is_string())
    throw std::invalid_argument(
        "device '" + name + "': field 'family' is required (known: " + families.known_list() + ")");
  const DeviceFamily* family = nullptr;
  try {
    family = &families.at(fit->get<std::string>());
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("device '" + name + "': " + e.what());
  }
  check_fields(d, "", family->params, FieldReader(d, name));
  return family->make(d);
}

std::string preset_dir() {
  if (const char* env = std::getenv("HWNAS_DEVICE_DIR"); env && *env) return env;
  return std::string(HWNAS_SOURCE_DIR) + "/hwmodels/devices";
}

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(preset_dir(), ec))
    if (e.is_regular_file() && e.path().extension() == ".json")
      names.push_back(e.path().stem().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::unique_ptr<Device> load_device(const std::string& name_or_path) {
  if (ends_with(name_or_path, ".so") || ends_with(name_or_path, ".dylib") ||
      name_or_path.find(".so.") != std::string::npos)
    return load_plugin_device(name_or_path);
  std::string path;
  if (fs::is_regular_file(name_or_path)) {
    path = name_or_path;
  } else {
    path = preset_dir() + "/" + name_or_path + ".json";
    if (!fs::is_regular_file(path)) {
      std::string list;
      for (const auto& n : preset_names()) list += (list.empty() ? "" : ", ") + n;
      throw std::invalid_argument("unknown device '" + name_or_path +
                                  "': not a file and not a preset (presets: " + list + ")");
    }
  }
  try {
    nlohmann::json d = read_device_file(path);
    // An external device's command runs, by default, next to its device file, so relative
    // script paths in "command" work from wherever hwnas is started.
    if (d.is_object() && d.value("family", "") == "external" && !d.contains("cwd"))
      d["cwd"] = fs::absolute(fs::path(path)).lexically_normal().parent_path().string();
    // A learned device's model file sits next to its device file.
    if (d.is_object() && d.value("family", "") == "learned" && d.contains("model") &&
        d["model"].is_string() && fs::path(d["model"].get<std::string>()).is_relative())
      d["model"] = (fs::absolute(fs::path(path)).lexically_normal().parent_path() /
                    d["model"].get<std::string>())
                       .string();
    return make_device(d);
  } catch (const std::invalid_argument& e) {
    std::string msg = e.what();
    if (msg.find(path) != std::string::npos) throw;
    throw std::invalid_argument(msg + " [in " + path + "]");
  }
}

std::unique_ptr<Device> with_batch(const Device& d, int batch) {
  if (batch < 1)
    throw std::invalid_argument("device '" + d.name() + "': batch " + std::to_string(batch) +
                                " must be a positive integer");
  nlohmann::json j = d.to_json();
  if (!j.is_object())
    throw std::invalid_argument("device '" + d.name() +
                                "' has no JSON description to set a batch size in");
  j["batch"] = batch;
  return make_device(j);
}

std::unique_ptr<Device> load_device(const std::string& name_or_path, int batch) {
  auto d = load_device(name_or_path);
  const nlohmann::json j = d->to_json();
  const int current = j.is_object() && j.contains("batch") && j["batch"].is_number_integer()
                          ? j["batch"].get<int>()
                          : 1;
  return batch == current ? std::move(d) : with_batch(*d, batch);
}

std::unique_ptr<Device> make_nested_device(const FieldReader& r, const std::string& path) {
  const auto* v = r.find(path);
  if (!v) r.fail(path, "is required (a device object or a preset name)");
  try {
    if (v->is_string()) return load_device(v->get<std::string>());
    if (v->is_object()) return make_device(*v);
  } catch (const std::invalid_argument& e) {
    r.fail(path, std::string("is not a valid device: ") + e.what());
  }
  r.fail(path, "must be a device object or a preset name");
}

std::string device_fingerprint(const Device& d) { return hex16(fnv1a64(d.to_json().dump())); }

std::string format_bytes(double b) {
  char buf[64];
  if (b < 1e3)
    std::snprintf(buf, sizeof buf, "%.0f B", b);
  else if (b < 1e6)
    std::snprintf(buf, sizeof buf, "%.1f kB", b / 1e3);
  else if (b < 1e9)
    std::snprintf(buf, sizeof buf, "%.2f MB", b / 1e6);
  else
    std::snprintf(buf, sizeof buf, "%.2f GB", b / 1e9);
  return buf;
}

}  // namespace hwnas::hw
