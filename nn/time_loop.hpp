// Fused time loops: a whole recurrence over T steps recorded as ONE autograd node.
//
// Recurrent blocks (LSTM, Elman RNN, liquid/CfC cells, spiking neurons, ODE solver steps, SSM
// scans) apply the same small cell at every time step.  Built from primitive ops, each step would
// add several graph nodes (each with a heap closure and its own tensors): T x ops nodes per
// block.  run_recurrence() instead runs all steps inside one op on raw buffers and replays
// back-propagation through time (BPTT) in its own hand-written backward.
//
// What the facility does and what a cell does:
//   u = x W_in^T + b_in        one GEMM over all B*T rows, before the loop (the facility);
//                              without W_in the cell is driven by x itself (u = x)
//   s_t, y_t = cell(u_t, s_{t-1})   per step, on a block of batch rows (the cell, raw buffers)
// so the per-step work of a cell is only its recurrent part (for an LSTM: h W_hh^T + gates).
// Backward runs the steps in reverse (cell.backward_step gives du_t and dL/ds_{t-1}), then the
// cell adds its parameter gradients once per sample and run of steps (one GEMM over the steps,
// not one per step), and the facility back-propagates the input projection with two big GEMMs.
//
// Memory: by default the forward keeps every state s_t and the cell's per-step saved data
// (saved_size() floats per sample and step) until backward.  With
// RecurrenceOptions::checkpoint_every = k > 0 it keeps only every k-th state and recomputes each
// run of k steps during backward (its drive u too, from x, with one small GEMM per sample and
// run): kept memory per sample drops from T*(S+Z) to (T/k)*S floats, plus k*(S+Z+P) of scratch
// per sample while backward runs, at the price of one extra forward pass.  Forward values are
// identical either way; gradients agree to float rounding (parameter-gradient sums are grouped
// by run).  Backward itself always holds dL/du for the whole sequence ([B, T, P]) for the input
// projection's two GEMMs.
//
// Threading: batch rows are independent across the whole loop, so the batch is cut into fixed
// chunks (at least kRecurrenceRowsPerChunk rows each, chunk boundaries from B only) and each
// chunk runs all T steps as one oneTBB task with no per-step synchronisation.  Per-chunk
// parameter-gradient partials are summed in chunk order, so results are bit-identical whatever
// the thread count.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nn/autograd.hpp"

namespace hwnas::nn {

// A block of `rows` rows of one buffer at one time step: row r starts at p + r * ld.
template <class T>
struct StepRows {
  T* p = nullptr;
  std::int64_t ld = 0;
  T* row(int r) const { return p + static_cast<std::int64_t>(r) * ld; }
};
using Rows = StepRows<float>;
using ConstRows = StepRows<const float>;

// One forward step on a block of batch rows.  Widths: u P = input_size(), states S =
// state_size(), y O = output_size(), saved Z = saved_size().
struct StepForward {
  int rows = 0;
  ConstRows u;       // [rows, P] drive at step t
  ConstRows s_prev;  // [rows, S] state s_{t-1}
  Rows s;            // out [rows, S] state s_t
  Rows y;            // out [rows, O] output y_t
  Rows saved;        // out [rows, Z] whatever backward_step needs beyond s_{t-1} and s_t
};

// One backward step: from dL/dy_t and dL/ds_t (the part flowing back from later steps and the
// final state) to dL/du_t and dL/ds_{t-1}.  ds and ds_prev never alias.
struct StepBackward {
  int rows = 0;
  ConstRows u;  // [rows, P]; only set when the cell's backward_needs_input() is true
  ConstRows s_prev, s, saved;
  ConstRows dy;  // [rows, O]
  ConstRows ds;  // [rows, S] dL/ds_t excluding y_t's path
  Rows ds_prev;  // out [rows, S] dL/ds_{t-1}, every element written
  Rows du;       // out [rows, P] dL/du_t, every element written
  // This chunk's parameter-gradient partials (same shapes as the parameters), for cells whose
  // parameter gradients are not a function of du (see accumulate_param_grads): they may add
  // their per-step terms here.  Chunks are summed in a fixed order afterwards.
  std::vector<Tensor>* grads = nullptr;
};

// One sample over `steps` consecutive time steps t0 .. t0+steps-1, for parameter gradients.
// Row j of each buffer belongs to step t0 + j.
struct SampleSpan {
  int steps = 0;
  ConstRows u;  // only set when backward_needs_input()
  ConstRows s_prev, saved, du;
};

// The per-step rule of a recurrence.  A cell is a plain, immutable description (sizes and
// maths); its parameters arrive as tensors on every call.  All methods are const and called
// concurrently on disjoint rows, so a cell must not keep mutable state.
class RecurrentCell {
 public:
  virtual ~RecurrentCell() = default;
  virtual std::string name() const = 0;         // for messages: "lstm"
  virtual int input_size() const = 0;           // P
  virtual int state_size() const = 0;           // S
  virtual int output_size() const = 0;          // O
  virtual int saved_size() const { return 0; }  // Z
  virtual bool backward_needs_input() const { return false; }
  // Throws std::invalid_argument naming the parameter, its shape and the expected one.
  virtual void check_params(const std::vector<Tensor>& params) const = 0;
  virtual void forward_step(const std::vector<Tensor>& params, const StepForward& io) const = 0;
  virtual void backward_step(const std::vector<Tensor>& params, const StepBackward& io) const = 0;
  // Adds this span's contribution to the parameter gradients (grads[i] has params[i]'s shape),
  // after backward_step has run over the span: the place for one GEMM over all of a sample's
  // steps when a parameter enters through a pre-activation (dW = du^T s_prev).  Cells whose
  // parameter gradients need dL/ds_t (not recoverable from du) add them in backward_step
  // through StepBackward::grads instead and leave this empty.
  virtual void accumulate_param_grads(const std::vector<Tensor>& params, const SampleSpan& span,
                                      std::vector<Tensor>& grads) const = 0;
};

struct RecurrenceOptions {
  // 0: keep every step for backward; k > 0: keep every k-th state and recompute (see above).
  int checkpoint_every = 0;
};

struct Recurrence {
  Var outputs;      // [B, T, O]
  Var final_state;  // [B, S], the state after the last step
};

// Smallest batch block one task runs: keeps the per-step GEMMs large enough to amortise Eigen's
// repacking of the recurrent weights.
constexpr int kRecurrenceRowsPerChunk = 16;

// x [B, T, F]; w_in [P, F] and b_in [P] (each may be undefined: without w_in, F must equal P and
// b_in must be undefined); s0 [B, S] or undefined for zeros; params as the cell expects.
// Records one node for the loop (op "time_loop") and one for the final state
// ("time_loop_final_state"), whatever T is.
Recurrence run_recurrence(std::shared_ptr<const RecurrentCell> cell, const Var& x, const Var& s0,
                          const Var& w_in, const Var& b_in, const std::vector<Var>& params,
                          const RecurrenceOptions& options = {});

}  // namespace hwnas::nn
