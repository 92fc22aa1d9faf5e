#include "search/objectives.hpp"

#include <cctype>
#include <cmath>
#include <iomanip>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <tuple>

namespace hwnas::search {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string trim(const std::string& s) {
  std::size_t a = 0, b = s.size();
  while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
  while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
  return s.substr(a, b - a);
}

bool is_name(const std::string& s) {
  if (s.empty()) return false;
  for (char ch : s)
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-' || ch == '.' ||
          ch == '/'))
      return false;
  return true;
}

// "METRIC[@DEVICE]" -> (metric, device); `whole` is the full string for messages.
std::pair<std::string, std::string> split_metric_device(const std::string& part,
                                                        const std::string& whole) {
  const auto at = part.find('@');
  std::string metric = trim(part.substr(0, at));
  std::string device = at == std::string::npos ? "" : trim(part.substr(at + 1));
  if (metric.empty()) throw std::invalid_argument("'" + whole + "': the metric is missing");
  if (!is_name(metric))
    throw std::invalid_argument("'" + whole + "': metric '" + metric +
                                "' is not a name (letters, digits, _)");
  if (at != std::string::npos) {
    if (device.empty())
      throw std::invalid_argument("'" + whole + "': the device after '@' is missing");
    if (device.find('@') != std::string::npos || !is_name(device))
      throw std::invalid_argument("'" + whole + "': device '" + device + "' is not a name");
  }
  return {metric, device};
}

double cost_field(const db::CostRecord& c, const std::string& metric) {
  if (metric == "latency_ms") return c.latency_ms;
  if (metric == "energy_mj") return c.energy_mj;
  return c.memory_bytes;
}

double metric_value(const std::string& metric, const std::string& device,
                    const nlohmann::json& metrics, const std::vector<db::CostRecord>& costs,
                    const std::string& default_device) {
  if (is_cost_metric(metric)) {
    const db::CostRecord* c = find_cost(costs, device.empty() ? default_device : device);
    if (!c || !c->feasible) return kNaN;
    return cost_field(*c, metric);
  }
  auto it = metrics.find(metric);
  if (it == metrics.end() || !it->is_number()) return kNaN;
  return it->get<double>();
}

}  // namespace

bool is_cost_metric(const std::string& m) {
  return m == "latency_ms" || m == "energy_mj" || m == "memory_bytes";
}

bool ObjectiveSpec::is_cost() const { return is_cost_metric(metric); }

ObjectiveSpec ObjectiveSpec::parse(const std::string& s) {
  const auto colon = s.rfind(':');
  if (colon == std::string::npos)
    throw std::invalid_argument(
        "'" + s + "' must be METRIC:max or METRIC:min (optionally METRIC@DEVICE:...)");
  const std::string dir = trim(s.substr(colon + 1));
  if (dir != "max" && dir != "min")
    throw std::invalid_argument("'" + s + "': direction '" + dir + "' must be max or min");
  auto [metric, device] = split_metric_device(s.substr(0, colon), s);
  return {metric, device, dir == "max"};
}

std::string ObjectiveSpec::str() const {
  return metric + (device.empty() ? "" : "@" + device) + (maximize ? ":max" : ":min");
}

bool ConstraintSpec::is_cost() const { return is_cost_metric(metric); }

ConstraintSpec ConstraintSpec::parse(const std::string& raw) {
  const std::string s = trim(raw);
  ConstraintSpec c;
  if (s.rfind("feasible", 0) == 0 && s.find_first_of("<>=") == std::string::npos) {
    const std::string rest = trim(s.substr(8));
    if (rest.empty() || rest[0] != '@')
      throw std::invalid_argument("'" + raw + "': feasible needs a device, feasible@DEVICE");
    const std::string device = trim(rest.substr(1));
    if (device.empty())
      throw std::invalid_argument("'" + raw + "': the device after '@' is missing");
    if (!is_name(device))
      throw std::invalid_argument("'" + raw + "': device '" + device + "' is not a name");
    c.op = Op::Feasible;
    c.device = device;
    return c;
  }
  const auto pos = s.find_first_of("<>=!");
  if (pos == std::string::npos)
    throw std::invalid_argument("'" + raw +
                                "' must be METRIC[@DEVICE] <= NUMBER (or <, >=, >) or "
                                "feasible@DEVICE");
  std::string op = s.substr(pos, 1);
  if (pos + 1 < s.size() && s[pos + 1] == '=') op += '=';
  if (op == "<=")
    c.op = Op::Le;
  else if (op == "<")
    c.op = Op::Lt;
  else if (op == ">=")
    c.op = Op::Ge;
  else if (op == ">")
    c.op = Op::Gt;
  else
    throw std::invalid_argument("'" + raw + "': operator '" + op + "' must be <=, <, >= or >");
  std::tie(c.metric, c.device) = split_metric_device(s.substr(0, pos), raw);
  const std::string number = trim(s.substr(pos + op.size()));
  if (number.empty())
    throw std::invalid_argument("'" + raw + "': the bound after '" + op + "' is missing");
  std::size_t used = 0;
  try {
    c.bound = std::stod(number, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != number.size() || !std::isfinite(c.bound))
    throw std::invalid_argument("'" + raw + "': bound '" + number + "' is not a finite number");
  return c;
}

std::string ConstraintSpec::str() const {
  if (op == Op::Feasible) return "feasible@" + device;
  static const char* ops[] = {"<=", "<", ">=", ">"};
  std::ostringstream os;
  os << metric << (device.empty() ? "" : "@" + device) << ' ' << ops[static_cast<int>(op)] << ' '
     << std::setprecision(12) << bound;
  return os.str();
}

const db::CostRecord* find_cost(const std::vector<db::CostRecord>& costs,
                                const std::string& device) {
  for (const auto& c : costs)
    if (c.device == device) return &c;
  return nullptr;
}

double objective_value(const ObjectiveSpec& o, const nlohmann::json& metrics,
                       const std::vector<db::CostRecord>& costs,
                       const std::string& default_device) {
  return metric_value(o.metric, o.device, metrics, costs, default_device);
}

ConstraintVerdict check_constraint(const ConstraintSpec& c, const nlohmann::json& metrics,
                                   const std::vector<db::CostRecord>& costs,
                                   const std::string& default_device) {
  if (c.op == ConstraintSpec::Op::Feasible) {
    const db::CostRecord* cost = find_cost(costs, c.device);
    if (cost && cost->feasible) return {};
    return {false, 1.0};
  }
  const double v = metric_value(c.metric, c.device, metrics, costs, default_device);
  if (std::isnan(v)) return {false, 1.0};
  double excess = 0;
  switch (c.op) {
    case ConstraintSpec::Op::Le:
      excess = v - c.bound;
      if (excess <= 0) return {};
      break;
    case ConstraintSpec::Op::Lt:
      excess = v - c.bound;
      if (excess < 0) return {};
      break;
    case ConstraintSpec::Op::Ge:
      excess = c.bound - v;
      if (excess <= 0) return {};
      break;
    case ConstraintSpec::Op::Gt:
      excess = c.bound - v;
      if (excess < 0) return {};
      break;
    case ConstraintSpec::Op::Feasible:
      break;
  }
  // A strict bound that is met exactly still violates it; count a tiny positive excess.
  const double scale = std::max(std::abs(c.bound), 1e-12);
  return {false, std::max(excess / scale, 1e-12)};
}

}  // namespace hwnas::search
