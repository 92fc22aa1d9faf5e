// Float32 tensors of rank 0..4, row-major (images are NCHW), backed by a shared aligned buffer
// and viewed through Eigen maps.  Copying a Tensor shares storage (like a handle); use clone()
// for a deep copy.  Shape is a small fixed array so that creating tensors never touches the
// heap for the shape itself.
#pragma once

#include <Eigen/Core>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace hwnas::nn {

class Shape {
 public:
  static constexpr int kMaxRank = 4;
  Shape() = default;
  Shape(std::initializer_list<int> dims);
  explicit Shape(const std::vector<int>& dims);

  int rank() const { return rank_; }
  int operator[](int i) const { return dims_[static_cast<std::size_t>(i)]; }
  int& operator[](int i) { return dims_[static_cast<std::size_t>(i)]; }
  // Negative index counts from the back: back(-1) is the last dimension.
  int back(int i = -1) const { return dims_[static_cast<std::size_t>(rank_ + i)]; }
  std::int64_t numel() const;
  std::vector<int> to_vector() const { return {dims_.begin(), dims_.begin() + rank_}; }
  std::string str() const;  // "[64, 1, 28, 28]"
  bool operator==(const Shape& o) const;
  bool operator!=(const Shape& o) const { return !(*this == o); }

 private:
  std::array<int, kMaxRank> dims_{};
  int rank_ = 0;
};

using ArrayMap = Eigen::Map<Eigen::ArrayXf, Eigen::Aligned64>;
using ConstArrayMap = Eigen::Map<const Eigen::ArrayXf, Eigen::Aligned64>;
using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatrixMap = Eigen::Map<RowMatrix>;
using ConstMatrixMap = Eigen::Map<const RowMatrix>;

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(const Shape& shape);  // uninitialised contents
  Tensor(const Shape& shape, float fill);
  static Tensor zeros(const Shape& shape) { return Tensor(shape, 0.0f); }
  static Tensor from(const Shape& shape, const std::vector<float>& values);
  static Tensor scalar(float v) { return Tensor(Shape{}, v); }

  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank(); }
  int dim(int i) const { return i < 0 ? shape_.back(i) : shape_[i]; }
  std::int64_t numel() const { return shape_.numel(); }
  bool empty() const { return !storage_; }
  // How many Tensors share this storage (views and copies included; 0 when empty).
  long use_count() const { return storage_.use_count(); }

  float* data() { return storage_.get(); }
  const float* data() const { return storage_.get(); }
  float item() const;  // the single element of a 1-element tensor

  ArrayMap array() { return {data(), numel()}; }
  ConstArrayMap array() const { return {data(), numel()}; }
  // Matrix view: rows = product of all but the last dimension, cols = last dimension.
  MatrixMap matrix();
  ConstMatrixMap matrix() const;
  // Matrix view with an explicit split: rows = product of dims [0, split), cols = the rest.
  MatrixMap matrix(int split);
  ConstMatrixMap matrix(int split) const;

  Tensor clone() const;
  Tensor reshaped(const Shape& shape) const;  // shares storage; numel must match
  void fill(float v) { array().setConstant(v); }
  std::vector<float> to_vector() const { return {data(), data() + numel()}; }

 private:
  // Always 64-byte aligned at element 0 (the Eigen maps above rely on it); views that start
  // mid-buffer are deliberately not offered.
  std::shared_ptr<float[]> storage_;
  Shape shape_;
};

}  // namespace hwnas::nn
