#include "nn/time_loop.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "nn/kernels.hpp"

namespace hwnas::nn {
namespace {
using detail::accumulate_owned;
using detail::gemm;
using detail::parent;

int batch_chunk_count(int batch) {
  return std::clamp(batch / kRecurrenceRowsPerChunk, 1, static_cast<int>(detail::kMaxChunks));
}

// fn(chunk, b0, b1) for each fixed batch chunk, one task per chunk.
template <class F>
void for_each_batch_chunk(int batch, F&& fn) {
  const int chunks = batch_chunk_count(batch);
  if (chunks == 1) {
    fn(0, 0, batch);
    return;
  }
  oneapi::tbb::parallel_for(
      oneapi::tbb::blocked_range<int>(0, chunks, 1),
      [&](const oneapi::tbb::blocked_range<int>& r) {
        for (int c = r.begin(); c < r.end(); ++c)
          fn(c, batch * c / chunks, batch * (c + 1) / chunks);
      },
      oneapi::tbb::simple_partitioner());
}

// A per-sample buffer over time: the entry of sample b at step t starts at
// base + (b - b_first) * pitch + (t - t_first) * width, so one sample's steps are contiguous.
struct Track {
  float* base = nullptr;
  std::int64_t pitch = 0;
  int width = 0;
  int t_first = 0;
  int b_first = 0;
  float* at(int b, int t) const {
    return base + static_cast<std::int64_t>(b - b_first) * pitch +
           static_cast<std::int64_t>(t - t_first) * width;
  }
  Rows rows(int b, int t) const { return {at(b, t), pitch}; }
  ConstRows crows(int b, int t) const { return {at(b, t), pitch}; }
};

// Everything the backward pass needs, shared by the loop node and the final-state node.
struct LoopContext {
  std::shared_ptr<const RecurrentCell> cell;
  int B = 0, T = 0, F = 0, P = 0, S = 0, O = 0, Z = 0, k = 0;
  bool has_s0 = false, has_w_in = false, has_b_in = false;
  std::vector<Tensor> params;  // the cell's parameter values
  // The drive u [B, T, P], kept only when backward needs it for every step (k == 0 and
  // backward_needs_input()) or when it is x itself (no input projection) and k > 0.
  Tensor u;
  // With k > 0 and an input projection, u is recomputed run by run from these instead of kept.
  Tensor x, w_in, b_in;
  Tensor states;    // k == 0: [B, T+1, S] (s_{-1} .. s_{T-1}); k > 0: [B, segments, S] (s_{jk-1})
  Tensor saved;     // k == 0 and Z > 0: [B, T, Z]
  Tensor ds_final;  // dL/ds_{T-1} from the final-state node, if it was used
  int segments() const { return (T + k - 1) / k; }
};

// Runs steps [0, T) on batch rows [b0, b1).  k == 0 with keep: every state and saved block goes
// to ctx.states / ctx.saved.  Otherwise two rolling state blocks and one saved block per chunk;
// with k > 0 and keep, every k-th state is copied into the checkpoint track.
void forward_rows(const LoopContext& ctx, const float* u, const float* s0, float* y,
                  float* final_state, bool keep, int b0, int b1) {
  const RecurrentCell& cell = *ctx.cell;
  const int T = ctx.T, S = ctx.S, P = ctx.P, O = ctx.O, Z = ctx.Z, rows = b1 - b0;
  const std::int64_t u_ld = std::int64_t{T} * P, y_ld = std::int64_t{T} * O;
  auto u_rows = [&](int t) { return ConstRows{u + (std::int64_t{b0} * T + t) * P, u_ld}; };
  auto y_rows = [&](int t) { return Rows{y + (std::int64_t{b0} * T + t) * O, y_ld}; };
  auto copy_rows = [&](float* dst, std::int64_t dst_ld, const float* src, std::int64_t src_ld) {
    for (int r = 0; r < rows; ++r)
      std::memcpy(dst + r * dst_ld, src + r * src_ld, sizeof(float) * static_cast<std::size_t>(S));
  };
  auto load_s0 = [&](float* dst, std::int64_t dst_ld) {
    if (s0)
      copy_rows(dst, dst_ld, s0 + std::int64_t{b0} * S, S);
    else
      for (int r = 0; r < rows; ++r) std::fill_n(dst + r * dst_ld, S, 0.0f);
  };

  if (keep && ctx.k == 0) {
    Track st{const_cast<float*>(ctx.states.data()), std::int64_t{T + 1} * S, S, -1, 0};
    Track sv{Z > 0 ? const_cast<float*>(ctx.saved.data()) : nullptr, std::int64_t{T} * Z, Z, 0, 0};
    load_s0(st.at(b0, -1), st.pitch);
    for (int t = 0; t < T; ++t) {
      StepForward io{rows,           u_rows(t), st.crows(b0, t - 1),
                     st.rows(b0, t), y_rows(t), sv.rows(b0, t)};
      cell.forward_step(ctx.params, io);
    }
    copy_rows(final_state + std::int64_t{b0} * S, S, st.at(b0, T - 1), st.pitch);
    return;
  }
  std::vector<float> ring(static_cast<std::size_t>(2 * rows * S));
  std::vector<float> scratch(static_cast<std::size_t>(rows) *
                             static_cast<std::size_t>(std::max(Z, 1)));
  float* cur = ring.data();
  float* next = ring.data() + rows * S;
  load_s0(cur, S);
  Track ck{keep ? const_cast<float*>(ctx.states.data()) : nullptr,
           ctx.k > 0 ? std::int64_t{ctx.segments()} * S : 0, S, 0, 0};
  if (keep) copy_rows(ck.at(b0, 0), ck.pitch, cur, S);
  for (int t = 0; t < T; ++t) {
    StepForward io{rows, u_rows(t), {cur, S}, {next, S}, y_rows(t), {scratch.data(), Z}};
    cell.forward_step(ctx.params, io);
    std::swap(cur, next);
    if (keep && (t + 1) % ctx.k == 0 && t + 1 < T)
      copy_rows(ck.at(b0, (t + 1) / ctx.k), ck.pitch, cur, S);
  }
  copy_rows(final_state + std::int64_t{b0} * S, S, cur, S);
}

// BPTT over batch rows [b0, b1): fills du's rows, returns dL/ds_{-1} in ds0 and adds the
// parameter gradients of these rows into grads.
void backward_rows(const LoopContext& ctx, const float* dy, float* du, float* ds0,
                   std::vector<Tensor>& grads, int b0, int b1) {
  const RecurrentCell& cell = *ctx.cell;
  const int T = ctx.T, S = ctx.S, P = ctx.P, O = ctx.O, Z = ctx.Z, k = ctx.k, rows = b1 - b0;
  const std::int64_t u_ld = std::int64_t{T} * P, y_ld = std::int64_t{T} * O;
  const bool pass_u = cell.backward_needs_input();
  // The drive u of the whole run (k == 0 with backward_needs_input(), or no input projection).
  const Track u_all{ctx.u.empty() ? nullptr : const_cast<float*>(ctx.u.data()), u_ld, P, 0, 0};
  std::vector<float> ds_buf(static_cast<std::size_t>(2 * rows * S));
  float* ds = ds_buf.data();
  float* ds_prev = ds_buf.data() + rows * S;
  if (!ctx.ds_final.empty())
    std::memcpy(ds, ctx.ds_final.data() + std::int64_t{b0} * S, sizeof(float) * rows * S);
  else
    std::fill_n(ds, rows * S, 0.0f);

  // Backward over steps [t0, t1) whose states and saved data are in st / sv, then the
  // parameter gradients of that span, one call per sample.
  auto backward_span = [&](const Track& ut, const Track& st, const Track& sv, int t0, int t1) {
    for (int t = t1 - 1; t >= t0; --t) {
      StepBackward io{rows,
                      pass_u ? ut.crows(b0, t) : ConstRows{},
                      st.crows(b0, t - 1),
                      st.crows(b0, t),
                      sv.crows(b0, t),
                      ConstRows{dy + (std::int64_t{b0} * T + t) * O, y_ld},
                      ConstRows{ds, S},
                      Rows{ds_prev, S},
                      Rows{du + (std::int64_t{b0} * T + t) * P, u_ld},
                      &grads};
      cell.backward_step(ctx.params, io);
      std::swap(ds, ds_prev);
    }
    for (int b = b0; b < b1; ++b) {
      SampleSpan span{t1 - t0, pass_u ? ConstRows{ut.at(b, t0), P} : ConstRows{},
                      ConstRows{st.at(b, t0 - 1), S}, ConstRows{sv.at(b, t0), Z},
                      ConstRows{du + (std::int64_t{b} * T + t0) * P, P}};
      cell.accumulate_param_grads(ctx.params, span, grads);
    }
  };

  if (k == 0) {
    Track st{const_cast<float*>(ctx.states.data()), std::int64_t{T + 1} * S, S, -1, 0};
    Track sv{Z > 0 ? const_cast<float*>(ctx.saved.data()) : nullptr, std::int64_t{T} * Z, Z, 0, 0};
    backward_span(u_all, st, sv, 0, T);
  } else {
    // Recompute each run of k steps from its checkpoint into chunk-local buffers (its drive u
    // too, from x, when there is an input projection), then back-propagate through it.
    std::vector<float> seg_u(ctx.x.empty() ? 0 : static_cast<std::size_t>(rows) * k * P);
    std::vector<float> seg_states(static_cast<std::size_t>(rows) * (k + 1) * S);
    std::vector<float> seg_saved(static_cast<std::size_t>(rows) * k * std::max(Z, 1));
    std::vector<float> y_scratch(static_cast<std::size_t>(rows) * O);
    const Track ck{const_cast<float*>(ctx.states.data()), std::int64_t{ctx.segments()} * S, S, 0,
                   0};
    for (int j = ctx.segments() - 1; j >= 0; --j) {
      const int t0 = j * k, t1 = std::min(T, t0 + k);
      Track st{seg_states.data(), std::int64_t{k + 1} * S, S, t0 - 1, b0};
      Track sv{seg_saved.data(), std::int64_t{k} * Z, Z, t0, b0};
      Track ut = u_all;
      if (!ctx.x.empty()) {
        // Same arithmetic as the forward's projection: bias first, then the product added.
        ut = Track{seg_u.data(), std::int64_t{k} * P, P, t0, b0};
        for (int b = b0; b < b1; ++b) {
          MatrixMap ub(ut.at(b, t0), t1 - t0, P);
          if (ctx.b_in.empty())
            ub.setZero();
          else
            ub.rowwise() = Eigen::Map<const Eigen::RowVectorXf>(ctx.b_in.data(), P);
          ub.noalias() +=
              ConstMatrixMap(ctx.x.data() + (std::int64_t{b} * T + t0) * ctx.F, t1 - t0, ctx.F) *
              ctx.w_in.matrix().transpose();
        }
      }
      for (int b = b0; b < b1; ++b) std::memcpy(st.at(b, t0 - 1), ck.at(b, j), sizeof(float) * S);
      for (int t = t0; t < t1; ++t) {
        StepForward io{rows,           ut.crows(b0, t),       st.crows(b0, t - 1),
                       st.rows(b0, t), {y_scratch.data(), O}, sv.rows(b0, t)};
        cell.forward_step(ctx.params, io);
      }
      backward_span(ut, st, sv, t0, t1);
    }
  }
  std::memcpy(ds0 + std::int64_t{b0} * S, ds, sizeof(float) * rows * S);
}

[[noreturn]] void bad(const std::string& cell, const std::string& what) {
  throw std::invalid_argument("run_recurrence(" + cell + "): " + what);
}
}  // namespace

Recurrence run_recurrence(std::shared_ptr<const RecurrentCell> cell, const Var& x, const Var& s0,
                          const Var& w_in, const Var& b_in, const std::vector<Var>& params,
                          const RecurrenceOptions& options) {
  if (!cell) throw std::invalid_argument("run_recurrence: cell is null");
  const std::string name = cell->name();
  if (!x.defined() || x.shape().rank() != 3)
    bad(name, "x must be [batch, time, features], got " +
                  (x.defined() ? x.shape().str() : std::string("undefined")));
  auto ctx = std::make_shared<LoopContext>();
  ctx->cell = cell;
  ctx->B = x.dim(0);
  ctx->T = x.dim(1);
  ctx->F = x.dim(2);
  ctx->P = cell->input_size();
  ctx->S = cell->state_size();
  ctx->O = cell->output_size();
  ctx->Z = cell->saved_size();
  ctx->k = options.checkpoint_every;
  const int B = ctx->B, T = ctx->T, F = ctx->F, P = ctx->P, S = ctx->S, O = ctx->O, Z = ctx->Z;
  if (B < 1 || T < 1 || F < 1)
    bad(name, "x needs at least one sample, step and feature, got " + x.shape().str());
  if (options.checkpoint_every < 0)
    bad(name, "checkpoint_every must be >= 0 (0 keeps every step), got " +
                  std::to_string(options.checkpoint_every));
  ctx->has_w_in = w_in.defined();
  ctx->has_b_in = b_in.defined();
  ctx->has_s0 = s0.defined();
  if (ctx->has_w_in) {
    if (w_in.shape() != Shape{P, F})
      bad(name, "w_in must be [input_size, features] = " + Shape{P, F}.str() + ", got " +
                    w_in.shape().str());
    if (ctx->has_b_in && b_in.shape() != Shape{P})
      bad(name, "b_in must be [input_size] = " + Shape{P}.str() + ", got " + b_in.shape().str());
  } else {
    if (ctx->has_b_in) bad(name, "b_in given without w_in (the input projection is off)");
    if (F != P)
      bad(name, "without w_in, x's features must equal the cell's input size " + std::to_string(P) +
                    ", got " + x.shape().str());
  }
  if (ctx->has_s0 && s0.shape() != Shape{B, S})
    bad(name,
        "s0 must be [batch, state_size] = " + Shape{B, S}.str() + ", got " + s0.shape().str());
  for (const Var& p : params)
    if (!p.defined()) bad(name, "a cell parameter is undefined");
  ctx->params.reserve(params.size());
  for (const Var& p : params) ctx->params.push_back(p.value());
  cell->check_params(ctx->params);

  // Parents: x, then s0, w_in, b_in when given, then the cell's parameters.
  std::vector<Var> parents{x};
  if (ctx->has_s0) parents.push_back(s0);
  if (ctx->has_w_in) parents.push_back(w_in);
  if (ctx->has_b_in) parents.push_back(b_in);
  parents.insert(parents.end(), params.begin(), params.end());
  bool needs_grad = false;
  if (grad_enabled())
    for (const Var& p : parents) needs_grad = needs_grad || p.requires_grad();

  // u = x W_in^T + b_in: one GEMM over all B*T rows.
  Tensor u;
  if (ctx->has_w_in) {
    u = Tensor(Shape{B, T, P});
    gemm(u.matrix(), x.value().matrix(), w_in.value().matrix().transpose(), false,
         ctx->has_b_in ? b_in.value().data() : nullptr);
  } else {
    u = x.value();
  }
  const int k = ctx->k >= T ? 0 : ctx->k;  // one run covering everything is plain storage
  ctx->k = k;
  if (needs_grad) {
    if (k == 0) {
      ctx->states = Tensor(Shape{B, T + 1, S});
      if (Z > 0) ctx->saved = Tensor(Shape{B, T, Z});
    } else {
      ctx->states = Tensor(Shape{B, ctx->segments(), S});
    }
    if (k > 0 && ctx->has_w_in) {
      ctx->x = x.value();
      ctx->w_in = w_in.value();
      if (ctx->has_b_in) ctx->b_in = b_in.value();
    } else if (k > 0 || cell->backward_needs_input()) {
      ctx->u = u;
    }
  }
  Tensor y(Shape{B, T, O});
  Tensor final_state(Shape{B, S});
  {
    const float* s0p = ctx->has_s0 ? s0.value().data() : nullptr;
    for_each_batch_chunk(B, [&](int, int b0, int b1) {
      forward_rows(*ctx, u.data(), s0p, y.data(), final_state.data(), needs_grad, b0, b1);
    });
  }
  if (!needs_grad) {
    Var out = make_result(std::move(y), {}, nullptr);
    Var fin = make_result(std::move(final_state), {}, nullptr);
    return {out, fin};
  }

  Var loop = make_result(std::move(y), parents, [ctx](Node& self) {
    const LoopContext& c = *ctx;
    const int B = c.B, T = c.T, P = c.P, S = c.S;
    std::size_t idx = 0;
    Node& nx = parent(self, idx++);
    Node* ns0 = c.has_s0 ? &parent(self, idx++) : nullptr;
    Node* nw = c.has_w_in ? &parent(self, idx++) : nullptr;
    Node* nb = c.has_b_in ? &parent(self, idx++) : nullptr;
    const std::size_t first_param = idx;

    Tensor du(Shape{B, T, P});
    Tensor ds0(Shape{B, S});
    const int chunks = batch_chunk_count(B);
    std::vector<std::vector<Tensor>> partials(static_cast<std::size_t>(chunks));
    for (auto& part : partials)
      for (const Tensor& p : c.params) part.push_back(Tensor::zeros(p.shape()));
    const float* dy = self.grad.data();
    for_each_batch_chunk(B, [&](int chunk, int b0, int b1) {
      backward_rows(c, dy, du.data(), ds0.data(), partials[static_cast<std::size_t>(chunk)], b0,
                    b1);
    });
    for (std::size_t i = 0; i < c.params.size(); ++i) {
      Node& np = parent(self, first_param + i);
      if (!np.requires_grad) continue;
      Tensor g = std::move(partials[0][i]);
      for (int ch = 1; ch < chunks; ++ch)
        g.array() += partials[static_cast<std::size_t>(ch)][i].array();
      accumulate_owned(np, std::move(g));
    }
    if (ns0) accumulate_owned(*ns0, std::move(ds0));

    if (!nw) {
      accumulate_owned(nx, std::move(du));
    } else {
      const auto dum = du.matrix();  // [B*T, P]
      if (nx.requires_grad) {
        Tensor dx(nx.value.shape());
        gemm(dx.matrix(), dum, nw->value.matrix(), false);
        accumulate_owned(nx, std::move(dx));
      }
      if (nw->requires_grad) {
        Tensor gw(nw->value.shape());
        gemm(gw.matrix(), dum.transpose(), nx.value.matrix(), false);
        accumulate_owned(*nw, std::move(gw));
      }
      if (nb && nb->requires_grad) {  // column sums of du, per-chunk partials added in chunk order
        const std::int64_t n = std::int64_t{B} * T;
        Eigen::ArrayXXf part = Eigen::ArrayXXf::Zero(P, detail::kMaxChunks);
        const std::int64_t used =
            detail::parallel_chunks(n, P, [&](std::int64_t ch, std::int64_t r0, std::int64_t r1) {
              auto col = part.col(ch);
              for (std::int64_t r = r0; r < r1; ++r)
                col += Eigen::Map<const Eigen::ArrayXf>(du.data() + r * P, P);
            });
        Tensor gb(Shape{P});
        Eigen::Map<Eigen::ArrayXf> gbm(gb.data(), P);
        gbm = part.col(0);
        for (std::int64_t ch = 1; ch < used; ++ch) gbm += part.col(ch);
        accumulate_owned(*nb, std::move(gb));
      }
    }
    ctx->ds_final = Tensor();
  });
  // The final state is its own node so that it can be used alone (a classifier on h_T); its
  // gradient is handed to the loop node, which runs after it (it was created earlier).
  Var fin = make_result(std::move(final_state), {loop}, [ctx](Node& self) {
    grad_of(parent(self, 0));  // makes the loop node run even if its outputs got no gradient
    if (ctx->ds_final.empty())
      ctx->ds_final = self.grad.clone();
    else
      ctx->ds_final.array() += self.grad.array();
  });
  return {loop, fin};
}

}  // namespace hwnas::nn
