// LSTM and Elman (tanh) RNN layers on the fused time loop (nn/time_loop.hpp): one graph node per
// layer call whatever the sequence length.
//
// Parameter layout follows PyTorch's nn.LSTM / nn.RNN (single layer, batch_first), so weights
// can be copied across: weight_ih [G*H, F], weight_hh [G*H, H], bias_ih and bias_hh [G*H], with
// G = 4 gate blocks in the order input, forget, cell (g), output for the LSTM and G = 1 for the
// RNN.  Equations (sigma = logistic):
//   LSTM: i,f,g,o = sigma, sigma, tanh, sigma of (x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)
//         c_t = f * c_{t-1} + i * g,   h_t = o * tanh(c_t),   output y_t = h_t
//   RNN:  h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh),   y_t = h_t
// The input projection is the loop's single big GEMM; the cells only do the recurrent part.
#pragma once

#include <random>
#include <string>
#include <vector>

#include "nn/module.hpp"
#include "nn/time_loop.hpp"

namespace hwnas::nn {

// State (h, c) side by side: [B, 2H]; saved per step: the four activated gates [B, 4H].
// params: {w_hh [4H, H]} plus b_hh [4H] when has_bias.
class LstmCell : public RecurrentCell {
 public:
  LstmCell(int hidden, bool has_bias);
  std::string name() const override { return "lstm"; }
  int input_size() const override { return 4 * hidden_; }
  int state_size() const override { return 2 * hidden_; }
  int output_size() const override { return hidden_; }
  int saved_size() const override { return 4 * hidden_; }
  void check_params(const std::vector<Tensor>& params) const override;
  void forward_step(const std::vector<Tensor>& params, const StepForward& io) const override;
  void backward_step(const std::vector<Tensor>& params, const StepBackward& io) const override;
  void accumulate_param_grads(const std::vector<Tensor>& params, const SampleSpan& span,
                              std::vector<Tensor>& grads) const override;

 private:
  int hidden_;
  bool has_bias_;
};

// State h [B, H]; nothing saved beyond the states.  params: {w_hh [H, H]} plus b_hh [H].
class ElmanCell : public RecurrentCell {
 public:
  ElmanCell(int hidden, bool has_bias);
  std::string name() const override { return "rnn_tanh"; }
  int input_size() const override { return hidden_; }
  int state_size() const override { return hidden_; }
  int output_size() const override { return hidden_; }
  void check_params(const std::vector<Tensor>& params) const override;
  void forward_step(const std::vector<Tensor>& params, const StepForward& io) const override;
  void backward_step(const std::vector<Tensor>& params, const StepBackward& io) const override;
  void accumulate_param_grads(const std::vector<Tensor>& params, const SampleSpan& span,
                              std::vector<Tensor>& grads) const override;

 private:
  int hidden_;
  bool has_bias_;
};

struct LstmOutput {
  Var output;  // [B, T, H]
  Var h_n;     // [B, H]
  Var c_n;     // [B, H]
};
struct RnnOutput {
  Var output;  // [B, T, H]
  Var h_n;     // [B, H]
};

// x [B, T, F]; h0, c0 [B, H] or undefined (zeros); biases may be undefined.
LstmOutput lstm(const Var& x, const Var& h0, const Var& c0, const Var& w_ih, const Var& w_hh,
                const Var& b_ih, const Var& b_hh, const RecurrenceOptions& options = {});
RnnOutput rnn_tanh(const Var& x, const Var& h0, const Var& w_ih, const Var& w_hh, const Var& b_ih,
                   const Var& b_hh, const RecurrenceOptions& options = {});

// Single-layer LSTM over [B, T, F] (batch first).  Initialisation as PyTorch: every weight and
// bias uniform in [-1/sqrt(H), 1/sqrt(H)].
class Lstm : public Module {
 public:
  Lstm(int input_size, int hidden_size, bool bias, std::mt19937_64& rng,
       RecurrenceOptions options = {});
  Var forward(const Var& x);  // -> [B, T, H], zero initial state
  LstmOutput forward(const Var& x, const Var& h0, const Var& c0);
  Var forward(const std::vector<Var>& in, ForwardContext&) override { return forward(in.at(0)); }
  void append_named_parameters(const std::string& prefix,
                               std::vector<NamedParameter>& out) override;
  std::string name() const override { return "lstm"; }
  Var weight_ih, weight_hh, bias_ih, bias_hh;  // biases undefined when bias == false
  RecurrenceOptions options;
};

// Single-layer Elman RNN with tanh, same conventions as Lstm.
class ElmanRnn : public Module {
 public:
  ElmanRnn(int input_size, int hidden_size, bool bias, std::mt19937_64& rng,
           RecurrenceOptions options = {});
  Var forward(const Var& x);
  RnnOutput forward(const Var& x, const Var& h0);
  Var forward(const std::vector<Var>& in, ForwardContext&) override { return forward(in.at(0)); }
  void append_named_parameters(const std::string& prefix,
                               std::vector<NamedParameter>& out) override;
  std::string name() const override { return "rnn_tanh"; }
  Var weight_ih, weight_hh, bias_ih, bias_hh;
  RecurrenceOptions options;
};

}  // namespace hwnas::nn
