#pragma once
// Activation checkpointing (torch.utils.checkpoint.checkpoint): trade compute for memory.
//
//   outs = checkpoint(fn, inputs)
//
// runs fn(inputs) without recording a graph, so the activations inside fn are freed as soon as
// fn returns; only the inputs are kept. The outputs get one node whose backward runs fn again
// with recording on (on detached copies of the inputs), backpropagates the incoming gradients
// through that fresh graph, and returns the inputs' gradients. Parameters used inside fn receive
// their gradients during that inner backward (as with PyTorch's checkpoint). With
// preserve_rng_state (the default) the global generator's state is saved before the first run
// and restored for the recomputation, so dropout inside fn draws the same masks both times.
//
// fn must be deterministic given its inputs and the generator (every attn op is, for any thread
// count), and must not change its inputs in place. Cost: one more forward of fn per backward.
// Memory: the peak of one fn's graph at a time instead of all of them (tested on an attention
// stack in tests/test_checkpointing.cpp).
#include <functional>
#include <string>
#include <type_traits>
#include <vector>
#include "../core/random.hpp"
#include "../core/tensor.hpp"
#include "elementwise.hpp"
#include "reduce.hpp"

namespace attn {

using CheckpointFn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;

namespace detail {

inline std::vector<Tensor> checkpoint_impl(CheckpointFn fn, const std::vector<Tensor>& inputs,
                                           bool preserve_rng_state) {
  ATTN_CHECK(bool(fn), "checkpoint: fn is empty (", inputs.size(), " inputs)");
  std::vector<Tensor> detached;
  detached.reserve(inputs.size());
  for (const Tensor& x : inputs) detached.push_back(x.defined() ? x.detach() : Tensor());
  const bool recording = is_grad_enabled();
  const std::string rng = recording && preserve_rng_state ? default_generator().state() : std::string();
  std::vector<Tensor> outs;
  {
    NoGradGuard ng;
    outs = fn(detached);
  }
  if (!recording) return outs;
  for (size_t i = 0; i < outs.size(); ++i)
    ATTN_CHECK(outs[i].defined(), "checkpoint: output ", i, " of fn is undefined (", outs.size(), " outputs)");
  // The node needs an input that requires grad to be recorded at all; when only parameters used
  // inside fn do (e.g. fn = the first layer, inputs = data), a zero-size leaf stands in.
  std::vector<Tensor> node_inputs = inputs;
  if (!grad_needed(inputs)) node_inputs.push_back(Tensor::zeros({0}).requires_grad_(true));
  std::vector<Tensor*> out_ptrs;
  for (Tensor& o : outs) out_ptrs.push_back(&o);
  const size_t n_in = inputs.size();
  record("checkpoint", out_ptrs, node_inputs,
         [fn, inputs, rng, preserve_rng_state, n_in](const std::vector<Tensor>& g) {
           // Recompute with recording on, from detached copies that collect the input gradients.
           std::vector<Tensor> xs;
           for (const Tensor& x : inputs) {
             if (!x.defined()) {
               xs.emplace_back();
               continue;
             }
             Tensor d = x.detach();
             if (x.requires_grad()) d.requires_grad_(true);
             xs.push_back(d);
           }
           std::vector<Tensor> ys;
           Tensor total;
           {
             EnableGradGuard eg;
             std::string now;
             if (preserve_rng_state) {
               now = default_generator().state();
               default_generator().set_state(rng);
             }
             ys = fn(xs);
             if (preserve_rng_state) default_generator().set_state(now);
             ATTN_CHECK(ys.size() == g.size(), "checkpoint: fn returned ", ys.size(), " outputs when recomputed, ",
                        g.size(), " the first time");
             // L' = sum_k <y_k, g_k>: one backward pass through the recomputed graph gives every
             // input (and parameter) its gradient dL/dx = sum_k (dy_k/dx)^T g_k.
             for (size_t k = 0; k < ys.size(); ++k) {
               if (!g[k].defined() || !ys[k].requires_grad()) continue;
               ATTN_CHECK(ys[k].shape() == g[k].shape(), "checkpoint: recomputed output ", k, " has shape ",
                          to_string(ys[k].shape()), ", the first run gave ", to_string(g[k].shape()));
               Tensor term = sum(mul(ys[k], g[k]));
               total = total.defined() ? add(total, term) : term;
             }
           }
           if (total.defined()) total.backward();
           std::vector<Tensor> grads(n_in);
           for (size_t i = 0; i < n_in; ++i)
             if (xs[i].defined() && xs[i].requires_grad()) grads[i] = xs[i].grad();
           grads.resize(n_in + 1);  // the stand-in leaf, if any, gets no gradient
           return grads;
         });
  return outs;
}

}  // namespace detail

// checkpoint(fn, inputs[, preserve_rng_state]): fn takes const std::vector<Tensor>& and returns
// a Tensor or a std::vector<Tensor>; checkpoint returns the same.
template <class F>
auto checkpoint(F&& fn, const std::vector<Tensor>& inputs, bool preserve_rng_state = true) {
  using R = std::invoke_result_t<F&, const std::vector<Tensor>&>;
  if constexpr (std::is_same_v<std::decay_t<R>, Tensor>) {
    CheckpointFn wrapped = [f = std::forward<F>(fn)](const std::vector<Tensor>& xs) {
      return std::vector<Tensor>{f(xs)};
    };
    return detail::checkpoint_impl(std::move(wrapped), inputs, preserve_rng_state)[0];
  } else {
    static_assert(std::is_same_v<std::decay_t<R>, std::vector<Tensor>>,
                  "checkpoint: fn must return Tensor or std::vector<Tensor>");
    return detail::checkpoint_impl(CheckpointFn(std::forward<F>(fn)), inputs, preserve_rng_state);
  }
}

}  // namespace attn
