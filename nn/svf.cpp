#include "nn/svf.hpp"

#include <Eigen/SVD>
#include <stdexcept>
#include <string>

namespace hwnas::nn {

SvfLinear::SvfLinear(const Tensor& weight, const Tensor& bias, int experts) {
  if (experts < 1)
    throw std::invalid_argument("SvfLinear: experts must be >= 1, got " + std::to_string(experts));
  if (weight.empty() || weight.rank() != 2)
    throw std::invalid_argument("SvfLinear: weight must be a matrix [out, in]");
  out_ = weight.dim(0);
  in_ = weight.dim(1);
  r_ = std::min(in_, out_);
  if (!bias.empty()) {
    if (bias.rank() != 1 || bias.dim(0) != out_)
      throw std::invalid_argument("SvfLinear: bias must be [" + std::to_string(out_) + "], got " +
                                  bias.shape().str());
    bias_ = bias.clone();
  }
  rebase(weight);
  experts_vectors = parameter(Tensor(Shape{experts, r_}, 1.0f));
}

void SvfLinear::rebase(const Tensor& weight) {
  if (weight.rank() != 2 || weight.dim(0) != out_ || weight.dim(1) != in_)
    throw std::invalid_argument("SvfLinear::rebase: weight must be [" + std::to_string(out_) +
                                ", " + std::to_string(in_) + "], got " + weight.shape().str());
  // Decomposed in double so that U diag(sigma) V^T gives the float weight back to rounding.
  const Eigen::MatrixXd w = weight.matrix().cast<double>();
  Eigen::BDCSVD<Eigen::MatrixXd> svd(w, Eigen::ComputeThinU | Eigen::ComputeThinV);
  u_ = Tensor(Shape{out_, r_});
  v_ = Tensor(Shape{in_, r_});
  sigma_ = Tensor(Shape{r_});
  u_.matrix() = svd.matrixU().cast<float>();
  v_.matrix() = svd.matrixV().cast<float>();
  for (int i = 0; i < r_; ++i) sigma_.data()[i] = static_cast<float>(svd.singularValues()(i));
  weights_changed();
}

Var SvfLinear::adapted_weight(const Var& z) const {
  if (z.shape() != Shape{r_})
    throw std::invalid_argument("SvfLinear::adapted_weight: z must be [" + std::to_string(r_) +
                                "], got " + z.shape().str());
  // U diag(sigma z) V^T = (U * (sigma z)) V^T, the scaling broadcast over U's rows.
  return matmul(mul(constant(u_), mul(z, constant(sigma_))), transpose(constant(v_), 0, 1));
}

Var SvfLinear::forward(const Var& x, const Var& mixture) {
  if (x.shape().rank() < 2 || x.shape().back() != in_)
    throw std::invalid_argument("SvfLinear: expects [batch, .., " + std::to_string(in_) +
                                "], got " + x.shape().str());
  const int B = x.dim(0), K = experts();
  Var alpha = mixture.defined() ? mixture : svf_one_hot(B, K, 0);
  if (alpha.shape() != Shape{B, K})
    throw std::invalid_argument("SvfLinear: mixture must be [" + std::to_string(B) + ", " +
                                std::to_string(K) + "], got " + alpha.shape().str());
  Var s = mul(matmul(alpha, experts_vectors), constant(sigma_));  // [B, r]: sigma * z_b
  std::vector<int> dims(static_cast<std::size_t>(x.shape().rank()), 1);
  dims.front() = B;
  dims.back() = r_;
  Var h = mul(matmul(x, constant(v_)), reshape(s, Shape(dims)));
  // U^T is taken at every call: loading a state overwrites the buffers in place.
  Var y = matmul(h, transpose(constant(u_), 0, 1));
  return bias_.empty() ? y : add(y, constant(bias_));
}

void SvfLinear::append_named_parameters(const std::string& prefix,
                                        std::vector<NamedParameter>& out) {
  out.push_back({prefix + "z", experts_vectors});
}

void SvfLinear::append_named_buffers(const std::string& prefix, std::vector<NamedBuffer>& out) {
  out.push_back({prefix + "u", &u_});
  out.push_back({prefix + "sigma", &sigma_});
  out.push_back({prefix + "v", &v_});
  if (!bias_.empty()) out.push_back({prefix + "bias", &bias_});
}

SvfDispatcher::SvfDispatcher(int features, int experts, std::mt19937_64& rng)
    : classifier(features, experts, true, rng) {}

Var SvfDispatcher::logits(const Var& x) {
  if (x.shape().rank() == 3) return classifier.forward(mean_dim(x, 1));
  return classifier.forward(x);
}

void SvfDispatcher::append_named_parameters(const std::string& prefix,
                                            std::vector<NamedParameter>& out) {
  classifier.append_named_parameters(prefix + "classifier.", out);
}

Var svf_one_hot(int batch, int experts, int expert) {
  if (expert < 0 || expert >= experts)
    throw std::invalid_argument("svf: expert " + std::to_string(expert) + " out of range for " +
                                std::to_string(experts) + " experts; choose 0 <= expert < experts");
  Tensor t = Tensor::zeros(Shape{batch, experts});
  for (int b = 0; b < batch; ++b) t.data()[b * experts + expert] = 1.0f;
  return constant(std::move(t));
}

}  // namespace hwnas::nn
