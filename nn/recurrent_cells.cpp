#include "nn/recurrent_cells.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>

#include "nn/kernels.hpp"
#include "nn/ops.hpp"

namespace hwnas::nn {
namespace {
using Strided = Eigen::Map<RowMatrix, Eigen::Unaligned, Eigen::OuterStride<>>;
using ConstStrided = Eigen::Map<const RowMatrix, Eigen::Unaligned, Eigen::OuterStride<>>;

Strided view(const Rows& r, int rows, int cols) {
  return {r.p, rows, cols, Eigen::OuterStride<>(r.ld)};
}
ConstStrided view(const ConstRows& r, int rows, int cols) {
  return {r.p, rows, cols, Eigen::OuterStride<>(r.ld)};
}

void check_shape(const std::string& cell, const char* what, const Tensor& t, const Shape& want) {
  if (t.shape() != want)
    throw std::invalid_argument(cell + ": " + what + " must be " + want.str() + ", got " +
                                t.shape().str());
}

void check_cell_params(const std::string& cell, const std::vector<Tensor>& params, int gates,
                       int hidden, bool has_bias) {
  const std::size_t want = has_bias ? 2 : 1;
  if (params.size() != want)
    throw std::invalid_argument(cell + ": expected " + std::to_string(want) + " parameters (w_hh" +
                                (has_bias ? ", b_hh" : "") + "), got " +
                                std::to_string(params.size()));
  check_shape(cell, "w_hh", params[0], Shape{gates * hidden, hidden});
  if (has_bias) check_shape(cell, "b_hh", params[1], Shape{gates * hidden});
}

// gates = u (+ b_hh broadcast over rows), then += h_prev W_hh^T.
void recurrent_preactivation(Strided out, const ConstRows& u, const ConstRows& s_prev, int hidden,
                             const std::vector<Tensor>& params, bool has_bias) {
  const int rows = static_cast<int>(out.rows()), cols = static_cast<int>(out.cols());
  if (has_bias)
    out = view(u, rows, cols).rowwise() +
          Eigen::Map<const Eigen::RowVectorXf>(params[1].data(), cols);
  else
    out = view(u, rows, cols);
  out.noalias() += view(s_prev, rows, hidden) * params[0].matrix().transpose();
}

// dW_hh += du^T h_prev and db_hh += column sums of du over the span's steps.
void recurrent_param_grads(const SampleSpan& span, int gates_width, int hidden, bool has_bias,
                           std::vector<Tensor>& grads) {
  const ConstStrided du = view(span.du, span.steps, gates_width);
  grads[0].matrix().noalias() += du.transpose() * view(span.s_prev, span.steps, hidden);
  if (has_bias) {
    // Row by row: contiguous vector adds (a column-wise sum of a row-major block is strided).
    Eigen::Map<Eigen::RowVectorXf> gb(grads[1].data(), gates_width);
    for (int j = 0; j < span.steps; ++j) gb += du.row(j);
  }
}

// Per-thread, 64-byte aligned scratch rows ("slots") for the cells' elementwise maths.  Eigen
// runs the unaligned head of a vectorised loop in scalar code, and its scalar exp/tanh differ
// from the packet versions in the last bit, so maths done in place would give different bits
// for the same row at different addresses (rolling vs stored states, checkpointing).  On slots
// whose start is always aligned every result depends on the values only.
class Slots {
 public:
  Slots(int count, int len) : len_(len), pitch_((len + 15) / 16 * 16) {
    thread_local std::vector<float> buffer;
    const std::size_t need =
        static_cast<std::size_t>(count) * static_cast<std::size_t>(pitch_) + 16;
    if (buffer.size() < need) buffer.resize(need);
    const auto misalign = reinterpret_cast<std::uintptr_t>(buffer.data()) % 64;
    base_ = buffer.data() + (misalign ? (64 - misalign) / sizeof(float) : 0);
  }
  ArrayMap get(int i) const { return ArrayMap(base_ + std::int64_t{i} * pitch_, len_); }
  ArrayMap load(int i, const float* src) const {
    std::memcpy(base_ + std::int64_t{i} * pitch_, src,
                sizeof(float) * static_cast<std::size_t>(len_));
    return get(i);
  }
  void store(int i, float* dst) const {
    std::memcpy(dst, base_ + std::int64_t{i} * pitch_,
                sizeof(float) * static_cast<std::size_t>(len_));
  }

 private:
  int len_, pitch_;
  float* base_;
};

void sigmoid_inplace(ArrayMap a) { a = 1.0f / (1.0f + (-a).exp()); }

Tensor uniform_init(const Shape& shape, int hidden, std::mt19937_64& rng) {
  const float bound = 1.0f / std::sqrt(static_cast<float>(hidden));
  std::uniform_real_distribution<float> d(-bound, bound);
  Tensor t(shape);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = d(rng);
  return t;
}

void check_sizes(const char* layer, int input_size, int hidden_size) {
  if (input_size <= 0 || hidden_size <= 0)
    throw std::invalid_argument(std::string(layer) +
                                ": input_size and hidden_size must be > 0, got " +
                                std::to_string(input_size) + ", " + std::to_string(hidden_size));
}

// Shared argument checks of lstm() and rnn_tanh(); returns the hidden size.
int check_layer_args(const char* op, int gates, const Var& x, const Var& w_ih, const Var& w_hh) {
  if (!w_hh.defined() || w_hh.shape().rank() != 2 || w_hh.dim(0) != gates * w_hh.dim(1) ||
      w_hh.dim(1) < 1)
    throw std::invalid_argument(std::string(op) + ": w_hh must be [" + std::to_string(gates) +
                                "*hidden, hidden], got " +
                                (w_hh.defined() ? w_hh.shape().str() : "undefined"));
  const int hidden = w_hh.dim(1);
  if (!x.defined() || x.shape().rank() != 3)
    throw std::invalid_argument(std::string(op) + ": x must be [batch, time, features], got " +
                                (x.defined() ? x.shape().str() : "undefined"));
  if (!w_ih.defined() || w_ih.shape() != Shape{gates * hidden, x.dim(2)})
    throw std::invalid_argument(std::string(op) + ": w_ih must be [" + std::to_string(gates) +
                                "*hidden, features] = " + Shape{gates * hidden, x.dim(2)}.str() +
                                ", got " + (w_ih.defined() ? w_ih.shape().str() : "undefined"));
  return hidden;
}

void check_state(const char* op, const char* what, const Var& s, int batch, int hidden) {
  if (s.defined() && s.shape() != Shape{batch, hidden})
    throw std::invalid_argument(std::string(op) + ": " + what + " must be [batch, hidden] = " +
                                Shape{batch, hidden}.str() + ", got " + s.shape().str());
}
}  // namespace

// ---------------------------------------------------------------- LSTM cell

LstmCell::LstmCell(int hidden, bool has_bias) : hidden_(hidden), has_bias_(has_bias) {
  if (hidden <= 0)
    throw std::invalid_argument("LstmCell: hidden must be > 0, got " + std::to_string(hidden));
}

void LstmCell::check_params(const std::vector<Tensor>& params) const {
  check_cell_params(name(), params, 4, hidden_, has_bias_);
}

void LstmCell::forward_step(const std::vector<Tensor>& params, const StepForward& io) const {
  const int H = hidden_, n = io.rows;
  recurrent_preactivation(view(io.saved, n, 4 * H), io.u, io.s_prev, H, params, has_bias_);
  Slots sl(7, H);
  for (int r = 0; r < n; ++r) {
    float* g = io.saved.row(r);
    ArrayMap i = sl.load(0, g), f = sl.load(1, g + H), gg = sl.load(2, g + 2 * H),
             o = sl.load(3, g + 3 * H);
    const ArrayMap c_prev = sl.load(4, io.s_prev.row(r) + H);
    ArrayMap c = sl.get(5), h = sl.get(6);
    sigmoid_inplace(i);
    sigmoid_inplace(f);
    gg = gg.tanh();
    sigmoid_inplace(o);
    c = f * c_prev + i * gg;
    h = o * c.tanh();
    for (int s = 0; s < 4; ++s) sl.store(s, g + s * H);
    sl.store(6, io.s.row(r));
    sl.store(5, io.s.row(r) + H);
    sl.store(6, io.y.row(r));
  }
}

void LstmCell::backward_step(const std::vector<Tensor>& params, const StepBackward& io) const {
  const int H = hidden_, n = io.rows;
  Slots sl(10, H);
  for (int r = 0; r < n; ++r) {
    const float* g = io.saved.row(r);
    ArrayMap i = sl.load(0, g), f = sl.load(1, g + H), gg = sl.load(2, g + 2 * H),
             o = sl.load(3, g + 3 * H);
    const ArrayMap c = sl.load(4, io.s.row(r) + H), c_prev = sl.load(5, io.s_prev.row(r) + H);
    ArrayMap dh = sl.load(6, io.ds.row(r)), dc = sl.load(8, io.ds.row(r) + H);
    ArrayMap dy_then_di = sl.load(7, io.dy.row(r)), tc_then_dcp = sl.get(9);
    dh += dy_then_di;
    tc_then_dcp = c.tanh();
    dc += dh * o * (1.0f - tc_then_dcp.square());  // dL/dc_t
    o = dh * tc_then_dcp * o * (1.0f - o);
    dy_then_di = dc * gg * i * (1.0f - i);
    gg = dc * i * (1.0f - gg.square());
    tc_then_dcp = dc * f;  // dL/dc_{t-1}
    f = dc * c_prev * f * (1.0f - f);
    sl.store(7, io.du.row(r));
    for (int s = 1; s < 4; ++s) sl.store(s, io.du.row(r) + s * H);
    sl.store(9, io.ds_prev.row(r) + H);
  }
  view(io.ds_prev, n, H).noalias() =
      view(ConstRows{io.du.p, io.du.ld}, n, 4 * H) * params[0].matrix();
}

void LstmCell::accumulate_param_grads(const std::vector<Tensor>&, const SampleSpan& span,
                                      std::vector<Tensor>& grads) const {
  recurrent_param_grads(span, 4 * hidden_, hidden_, has_bias_, grads);
}

// ---------------------------------------------------------------- Elman cell

ElmanCell::ElmanCell(int hidden, bool has_bias) : hidden_(hidden), has_bias_(has_bias) {
  if (hidden <= 0)
    throw std::invalid_argument("ElmanCell: hidden must be > 0, got " + std::to_string(hidden));
}

void ElmanCell::check_params(const std::vector<Tensor>& params) const {
  check_cell_params(name(), params, 1, hidden_, has_bias_);
}

void ElmanCell::forward_step(const std::vector<Tensor>& params, const StepForward& io) const {
  const int H = hidden_, n = io.rows;
  recurrent_preactivation(view(io.s, n, H), io.u, io.s_prev, H, params, has_bias_);
  Slots sl(1, H);
  for (int r = 0; r < n; ++r) {
    ArrayMap h = sl.load(0, io.s.row(r));
    h = h.tanh();
    sl.store(0, io.s.row(r));
    sl.store(0, io.y.row(r));
  }
}

void ElmanCell::backward_step(const std::vector<Tensor>& params, const StepBackward& io) const {
  const int H = hidden_, n = io.rows;
  Slots sl(3, H);
  for (int r = 0; r < n; ++r) {
    ArrayMap da = sl.load(0, io.ds.row(r));
    const ArrayMap dy = sl.load(1, io.dy.row(r)), h = sl.load(2, io.s.row(r));
    da = (da + dy) * (1.0f - h.square());
    sl.store(0, io.du.row(r));
  }
  view(io.ds_prev, n, H).noalias() = view(ConstRows{io.du.p, io.du.ld}, n, H) * params[0].matrix();
}

void ElmanCell::accumulate_param_grads(const std::vector<Tensor>&, const SampleSpan& span,
                                       std::vector<Tensor>& grads) const {
  recurrent_param_grads(span, hidden_, hidden_, has_bias_, grads);
}

// ---------------------------------------------------------------- functional forms

LstmOutput lstm(const Var& x, const Var& h0, const Var& c0, const Var& w_ih, const Var& w_hh,
                const Var& b_ih, const Var& b_hh, const RecurrenceOptions& options) {
  const int H = check_layer_args("lstm", 4, x, w_ih, w_hh);
  const int B = x.dim(0);
  check_state("lstm", "h0", h0, B, H);
  check_state("lstm", "c0", c0, B, H);
  Var s0;
  if (h0.defined() || c0.defined()) {
    const Var zeros = constant(Tensor::zeros(Shape{B, H}));
    s0 = concat({h0.defined() ? h0 : zeros, c0.defined() ? c0 : zeros}, 1);
  }
  std::vector<Var> params{w_hh};
  if (b_hh.defined()) params.push_back(b_hh);
  Recurrence r = run_recurrence(std::make_shared<LstmCell>(H, b_hh.defined()), x, s0, w_ih, b_ih,
                                params, options);
  std::vector<Var> hc = split(r.final_state, {H, H}, 1);
  return {r.outputs, hc[0], hc[1]};
}

RnnOutput rnn_tanh(const Var& x, const Var& h0, const Var& w_ih, const Var& w_hh, const Var& b_ih,
                   const Var& b_hh, const RecurrenceOptions& options) {
  const int H = check_layer_args("rnn_tanh", 1, x, w_ih, w_hh);
  check_state("rnn_tanh", "h0", h0, x.dim(0), H);
  std::vector<Var> params{w_hh};
  if (b_hh.defined()) params.push_back(b_hh);
  Recurrence r = run_recurrence(std::make_shared<ElmanCell>(H, b_hh.defined()), x, h0, w_ih, b_ih,
                                params, options);
  return {r.outputs, r.final_state};
}

// ---------------------------------------------------------------- modules

Lstm::Lstm(int input_size, int hidden_size, bool bias, std::mt19937_64& rng, RecurrenceOptions opts)
    : options(opts) {
  check_sizes("Lstm", input_size, hidden_size);
  const int G = 4 * hidden_size;
  weight_ih = parameter(uniform_init(Shape{G, input_size}, hidden_size, rng));
  weight_hh = parameter(uniform_init(Shape{G, hidden_size}, hidden_size, rng));
  if (bias) {
    bias_ih = parameter(uniform_init(Shape{G}, hidden_size, rng));
    bias_hh = parameter(uniform_init(Shape{G}, hidden_size, rng));
  }
}

Var Lstm::forward(const Var& x) { return forward(x, Var(), Var()).output; }

LstmOutput Lstm::forward(const Var& x, const Var& h0, const Var& c0) {
  return lstm(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, options);
}

namespace {
// torch.nn.LSTM / RNN names, so a state reads like its PyTorch counterpart.
void append_recurrent_weights(const std::string& prefix, const Var& w_ih, const Var& w_hh,
                              const Var& b_ih, const Var& b_hh, std::vector<NamedParameter>& out) {
  out.push_back({prefix + "weight_ih", w_ih});
  out.push_back({prefix + "weight_hh", w_hh});
  if (b_ih.defined()) out.push_back({prefix + "bias_ih", b_ih});
  if (b_hh.defined()) out.push_back({prefix + "bias_hh", b_hh});
}
}  // namespace

void Lstm::append_named_parameters(const std::string& prefix, std::vector<NamedParameter>& out) {
  append_recurrent_weights(prefix, weight_ih, weight_hh, bias_ih, bias_hh, out);
}

ElmanRnn::ElmanRnn(int input_size, int hidden_size, bool bias, std::mt19937_64& rng,
                   RecurrenceOptions opts)
    : options(opts) {
  check_sizes("ElmanRnn", input_size, hidden_size);
  weight_ih = parameter(uniform_init(Shape{hidden_size, input_size}, hidden_size, rng));
  weight_hh = parameter(uniform_init(Shape{hidden_size, hidden_size}, hidden_size, rng));
  if (bias) {
    bias_ih = parameter(uniform_init(Shape{hidden_size}, hidden_size, rng));
    bias_hh = parameter(uniform_init(Shape{hidden_size}, hidden_size, rng));
  }
}

Var ElmanRnn::forward(const Var& x) { return forward(x, Var()).output; }

RnnOutput ElmanRnn::forward(const Var& x, const Var& h0) {
  return rnn_tanh(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, options);
}

void ElmanRnn::append_named_parameters(const std::string& prefix,
                                       std::vector<NamedParameter>& out) {
  append_recurrent_weights(prefix, weight_ih, weight_hh, bias_ih, bias_hh, out);
}

}  // namespace hwnas::nn
