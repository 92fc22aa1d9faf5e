// Once-for-All's elastic kernel (Cai et al., ICLR 2020, section 3.2): a smaller kernel is not
// the bare centre of the larger one but the centre passed through a learned linear map, one
// per layer and per size, shared by every (output, input) channel pair.  Sizes chain as in the
// paper: 7 -> centre 5 -> x M5 -> centre 3 -> x M3.  The matrices start at the identity (the
// reference implementation's init), so an untrained transform is plain centre cropping.
//
// Plain tensors with a hand-written backward: the supernet slices its banks outside autograd
// (oneshot/spos_supernet.hpp), so the transform runs there too and the gradient of the sliced
// kernel is pulled back through it here.
#pragma once

#include <vector>

#include "nn/tensor.hpp"

namespace hwnas::oneshot {

// The centre s x s of every kernel of w [O, I, K, K] (K - s even, s <= K).
nn::Tensor centre_crop(const nn::Tensor& w, int s);

// y[o, i, :] = w[o, i, :] (as a row of s*s values) x m, for w [O, I, s, s] and m [s*s, s*s].
nn::Tensor apply_kernel_transform(const nn::Tensor& w, const nn::Tensor& m);

// The kernel of size sizes.back() from the bank kernel `big` [O, I, K, K]: for each size s of
// `sizes` (descending, each < the previous and < K) the centre s of the current kernel times
// its matrix mats[j] [s*s, s*s].  Empty `sizes` returns big.
nn::Tensor transform_kernel(const nn::Tensor& big, const std::vector<const nn::Tensor*>& mats,
                            const std::vector<int>& sizes);

// Backward of transform_kernel: given dL/dy for its output, returns dL/d(centre sizes[0] of
// big) [O, I, s0, s0] and adds dL/dmats[j] into mat_grads[j] (each [s*s, s*s]).
nn::Tensor transform_kernel_backward(const nn::Tensor& big,
                                     const std::vector<const nn::Tensor*>& mats,
                                     const std::vector<int>& sizes, const nn::Tensor& grad_out,
                                     std::vector<nn::Tensor>& mat_grads);

}  // namespace hwnas::oneshot
