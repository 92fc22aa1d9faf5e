#include "oneshot/data_shard.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

namespace hwnas::oneshot {

std::pair<int, int> DataShard::rows(int n) const {
  // Rank r gets [n r / R, n (r + 1) / R): contiguous, sizes floor(n/R) or ceil(n/R).
  const auto at = [&](int r) {
    return static_cast<int>(static_cast<std::int64_t>(n) * r / std::max(1, ranks));
  };
  return {at(rank), at(rank + 1)};
}

float DataShard::share(int n) const {
  const auto [b, e] = rows(n);
  return n > 0 ? static_cast<float>(e - b) / static_cast<float>(n) : 0.0f;
}

eval::Batch shard_batch(const eval::Batch& b, const DataShard& s) {
  if (!s.active()) return b;
  const int n = b.size();
  if (n < s.ranks)
    throw std::invalid_argument("data-parallel training: a batch of " + std::to_string(n) +
                                " rows cannot be split over " + std::to_string(s.ranks) +
                                " ranks (raise strategy.batch_size or use fewer ranks)");
  const auto [begin, end] = s.rows(n);
  auto slice = [&](const nn::Tensor& t) {
    if (t.empty()) return nn::Tensor();
    std::vector<int> dims = t.shape().to_vector();
    const std::int64_t per = t.numel() / std::max(1, dims[0]);
    dims[0] = end - begin;
    nn::Tensor out{nn::Shape(dims)};
    std::memcpy(out.data(), t.data() + per * begin,
                static_cast<std::size_t>(per * (end - begin)) * sizeof(float));
    return out;
  };
  eval::Batch out;
  out.x = slice(b.x);
  out.target = slice(b.target);
  if (!b.y.empty()) out.y.assign(b.y.begin() + begin, b.y.begin() + end);
  return out;
}

void all_reduce_gradients(const std::vector<nn::Var>& params, std::vector<float>& extra,
                          const DataShard& s) {
  if (!s.active()) return;
  if (!s.all_reduce_sum)
    throw std::logic_error("data-parallel training: the shard has no all-reduce");
  // Layout: [has-gradient flag per parameter | gradients | extra].
  std::size_t total = params.size() + extra.size();
  for (const auto& p : params) total += static_cast<std::size_t>(p.value().numel());
  std::vector<float> buf(total, 0.0f);
  std::size_t at = params.size();
  for (std::size_t i = 0; i < params.size(); ++i) {
    const nn::Tensor& g = params[i].grad();
    const std::int64_t n = params[i].value().numel();
    if (g.numel() == n) {
      buf[i] = 1.0f;
      std::copy(g.data(), g.data() + n, buf.begin() + static_cast<std::ptrdiff_t>(at));
    }
    at += static_cast<std::size_t>(n);
  }
  std::copy(extra.begin(), extra.end(), buf.begin() + static_cast<std::ptrdiff_t>(at));
  s.all_reduce_sum(buf);
  at = params.size();
  for (std::size_t i = 0; i < params.size(); ++i) {
    nn::Var p = params[i];
    const std::int64_t n = p.value().numel();
    if (buf[i] > 0) {
      if (p.grad().numel() != n) p.grad() = nn::Tensor::zeros(p.value().shape());
      std::copy(buf.begin() + static_cast<std::ptrdiff_t>(at),
                buf.begin() + static_cast<std::ptrdiff_t>(at + static_cast<std::size_t>(n)),
                p.grad().data());
    }
    at += static_cast<std::size_t>(n);
  }
  std::copy(buf.begin() + static_cast<std::ptrdiff_t>(at), buf.end(), extra.begin());
}

}  // namespace hwnas::oneshot
