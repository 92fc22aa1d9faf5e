#include "nn/tensor.hpp"

#include <cstdlib>
#include <cstring>
#include <sstream>

namespace hwnas::nn {

Shape::Shape(std::initializer_list<int> dims) : Shape(std::vector<int>(dims)) {}

Shape::Shape(const std::vector<int>& dims) {
  if (dims.size() > static_cast<std::size_t>(kMaxRank))
    throw std::invalid_argument("Shape: rank " + std::to_string(dims.size()) + " exceeds 4");
  rank_ = static_cast<int>(dims.size());
  for (int i = 0; i < rank_; ++i) {
    if (dims[static_cast<std::size_t>(i)] < 0)
      throw std::invalid_argument("Shape: negative dimension");
    dims_[static_cast<std::size_t>(i)] = dims[static_cast<std::size_t>(i)];
  }
}

std::int64_t Shape::numel() const {
  std::int64_t n = 1;
  for (int i = 0; i < rank_; ++i) n *= dims_[static_cast<std::size_t>(i)];
  return n;
}

std::string Shape::str() const {
  std::ostringstream os;
  os << '[';
  for (int i = 0; i < rank_; ++i) os << (i ? ", " : "") << dims_[static_cast<std::size_t>(i)];
  os << ']';
  return os.str();
}

bool Shape::operator==(const Shape& o) const {
  if (rank_ != o.rank_) return false;
  for (int i = 0; i < rank_; ++i)
    if (dims_[static_cast<std::size_t>(i)] != o.dims_[static_cast<std::size_t>(i)]) return false;
  return true;
}

namespace {
// 64-byte alignment matches Eigen::Aligned64 maps and AVX-512 loads.
std::shared_ptr<float[]> allocate(std::int64_t n) {
  std::size_t bytes = static_cast<std::size_t>(std::max<std::int64_t>(n, 1)) * sizeof(float);
  bytes = (bytes + 63) / 64 * 64;
  auto* p = static_cast<float*>(std::aligned_alloc(64, bytes));
  if (!p) throw std::bad_alloc();
  return std::shared_ptr<float[]>(p, [](float* q) { std::free(q); });
}
}  // namespace

Tensor::Tensor(const Shape& shape) : storage_(allocate(shape.numel())), shape_(shape) {}

Tensor::Tensor(const Shape& shape, float fill) : Tensor(shape) { this->fill(fill); }

Tensor Tensor::from(const Shape& shape, const std::vector<float>& values) {
  if (static_cast<std::int64_t>(values.size()) != shape.numel())
    throw std::invalid_argument("Tensor::from: " + std::to_string(values.size()) +
                                " values for shape " + shape.str());
  Tensor t(shape);
  std::memcpy(t.data(), values.data(), values.size() * sizeof(float));
  return t;
}

float Tensor::item() const {
  if (numel() != 1) throw std::logic_error("Tensor::item on shape " + shape_.str());
  return data()[0];
}

MatrixMap Tensor::matrix() { return matrix(rank() > 0 ? rank() - 1 : 0); }
ConstMatrixMap Tensor::matrix() const { return matrix(rank() > 0 ? rank() - 1 : 0); }

MatrixMap Tensor::matrix(int split) {
  std::int64_t rows = 1;
  for (int i = 0; i < split; ++i) rows *= shape_[i];
  std::int64_t cols = rows ? numel() / rows : 0;
  return {data(), rows, cols};
}

ConstMatrixMap Tensor::matrix(int split) const {
  std::int64_t rows = 1;
  for (int i = 0; i < split; ++i) rows *= shape_[i];
  std::int64_t cols = rows ? numel() / rows : 0;
  return {data(), rows, cols};
}

Tensor Tensor::clone() const {
  Tensor t(shape_);
  if (numel()) std::memcpy(t.data(), data(), static_cast<std::size_t>(numel()) * sizeof(float));
  return t;
}

Tensor Tensor::reshaped(const Shape& shape) const {
  if (shape.numel() != numel())
    throw std::invalid_argument("reshape: " + shape_.str() + " -> " + shape.str() +
                                " changes the element count");
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

}  // namespace hwnas::nn
