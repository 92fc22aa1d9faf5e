#include "nn/activity.hpp"

namespace hwnas::nn {

void ActivitySink::add_at(const std::string& name, std::size_t index, double amount) {
  std::vector<double>& v = series_[name];
  if (v.size() <= index) v.resize(index + 1, 0.0);
  v[index] += amount;
}

std::map<std::string, double> ActivitySink::per_sample() const {
  std::map<std::string, double> out;
  if (samples_ <= 0) return out;
  for (const auto& [name, total] : scalars_) out[name] = total / samples_;
  return out;
}

std::map<std::string, std::vector<double>> ActivitySink::series_per_sample() const {
  std::map<std::string, std::vector<double>> out;
  if (samples_ <= 0) return out;
  for (const auto& [name, totals] : series_) {
    std::vector<double>& v = out[name];
    v.reserve(totals.size());
    for (double t : totals) v.push_back(t / samples_);
  }
  return out;
}

void ActivitySink::clear() {
  scalars_.clear();
  series_.clear();
  samples_ = 0;
}

const ActivitySink* ActivityRecorder::find(std::int64_t node) const {
  auto it = sinks_.find(node);
  return it == sinks_.end() ? nullptr : &it->second;
}

std::int64_t count_nonzero(const float* values, std::int64_t count) {
  std::int64_t n = 0;
  for (std::int64_t i = 0; i < count; ++i) n += values[i] != 0.0f;
  return n;
}

}  // namespace hwnas::nn
