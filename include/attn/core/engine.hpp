#pragma once
// The backward engine: Tensor::backward walks the graph of Nodes (core/autograd.hpp) from a
// tensor to the leaves, checks that saved tensors were not written in place, runs each node's
// backward once all its output gradients are summed, and accumulates into leaves' grad.
#include <atomic>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "autograd.hpp"
#include "device_tensor.hpp"
#include "dtype.hpp"
#include "error.hpp"
#include "parallel.hpp"
#include "tensor_impl.hpp"
#include "tensor_methods.hpp"

// Tensor::backward and its helpers (in compiled mode, in the library only).
#if ATTN_HEADER_DEFINITIONS
namespace attn {
namespace detail {
// Refuses to run a node's backward when a tensor it saved was written in place after the forward
// (its gradient would be silently wrong), with PyTorch's message.
inline void check_saved_versions(const Node& n) {
  for (const SavedVersion& s : n.saved) {
    const uint64_t now = s.storage->version.load(std::memory_order_relaxed);
    if (now == s.version) continue;
    std::string which = "a tensor it saved (mask or intermediate)";
    if (s.input >= 0) {
      const Tensor& t = n.inputs[size_t(s.input)];
      which = "input " + std::to_string(s.input) + " (" + dtype_name(t.dtype()) + " " + attn::to_string(t.shape()) + ")";
    } else if (s.output >= 0) {
      which = "output " + std::to_string(s.output) + " (" + dtype_name(s.output_dtype) + " " +
              attn::to_string(s.output_shape) + ")";
    }
    throw std::runtime_error("backward of " + n.name + ": one of the variables needed for gradient computation has "
                             "been modified by an inplace operation: " + which + " of " + n.name + " is at version " +
                             std::to_string(now) + "; expected version " + std::to_string(s.version) +
                             " instead. It was written in place (copy_, fill_, set, an optimizer step) after the "
                             "forward; clone() it before the in-place write");
  }
}
// Adds g into an accumulating slot (a node's grad_outputs entry or a leaf's grad).
inline void accumulate(std::shared_ptr<TensorImpl>& slot, const Tensor& g) {
  if (g.device() != Device::CPU || (slot && slot->storage && slot->storage->device != Device::CPU)) {
    // A gradient goes to the slot's device (to its own when the slot is empty); on the CPU it
    // then takes the ordinary path below.
    const Device dev = slot ? (slot->storage ? slot->storage->device : Device::CPU) : g.device();
    if (dev != Device::CUDA) return accumulate(slot, g.to(dev));
    return cuda_accumulate(slot, g.device() == dev ? g : g.to(dev));
  }
  if (!slot) {
    // Take the gradient's buffer when the engine holds the only reference to it and to its storage
    // (the usual case: a backward's freshly computed result). Otherwise copy: it may alias a tensor
    // the user holds, a saved tensor, or another input's gradient.
    const TensorImpl* gi = g.unsafe_impl();
    if (g.impl_ptr().use_count() == 1 && gi->storage.use_count() == 1 && !gi->grad_fn && !gi->requires_grad &&
        !gi->grad) {
      slot = g.impl_ptr();
      return;
    }
    Tensor copy = Tensor::empty(g.shape(), g.dtype());
    copy_bytes(copy, g);
    slot = copy.impl_ptr();
    return;
  }
  Tensor acc(slot);
  ATTN_CHECK(acc.shape() == g.shape(), "backward: gradient of shape ", to_string(g.shape()),
             " does not match accumulated shape ", to_string(acc.shape()));
  bump_version(acc);
  ATTN_DISPATCH_FLOATING(acc.dtype(), "backward", [&] {
    scalar_t* a = acc.data<scalar_t>();
    const scalar_t* b = g.data<scalar_t>();
    parallel_for(0, acc.numel(), kGrainElementwise, [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i) a[i] += b[i];
    });
  });
}
}  // namespace detail

// Runs backward from this tensor. The graph is walked iteratively in topological order (Kahn's
// algorithm on dependency counts), so depth is bounded by memory, not by the call stack.
ATTN_API void Tensor::backward(const Tensor& grad_output, bool retain_graph) const {
  ATTN_CHECK(requires_grad(), "backward: tensor does not require grad and has no grad_fn");
  Tensor seed = grad_output;
  if (!seed.defined()) {
    ATTN_CHECK(numel() == 1, "backward: implicit gradient needs a scalar output, got shape ",
               attn::to_string(shape()), "; pass a gradient of that shape");
    seed = Tensor::ones(shape(), dtype());
  }
  ATTN_CHECK(seed.shape() == shape(), "backward: gradient of shape ", attn::to_string(seed.shape()),
             " for output of shape ", attn::to_string(shape()));
  if (seed.device() != device()) seed = seed.detach().to(device());  // the seed lives where the output does
  NoGradGuard no_grad;
  detail::CallbackScope callbacks;
  if (is_leaf()) {
    detail::accumulate(impl_->grad, seed);
    if (!impl_->post_accumulate_grad_hooks.empty()) detail::run_post_accumulate_grad_hooks(*this);
    callbacks.finish();
    return;
  }
  // Count, for each node, how many edges from other nodes in this graph point to it (Node::deps,
  // tagged with this pass's number so counts left by an earlier, interrupted pass are ignored).
  static std::atomic<uint64_t> passes{0};
  const uint64_t pass = passes.fetch_add(1, std::memory_order_relaxed) + 1;
  std::vector<Node*> stack{grad_fn().get()};
  grad_fn()->deps = 0;
  grad_fn()->deps_pass = pass;
  // Leaves with post-accumulate hooks: edges into each still to be processed, and whether one of
  // them brought a gradient. Empty (no allocation) when no leaf has hooks.
  struct LeafDeps {
    int edges = 0;
    bool got_grad = false;
  };
  std::unordered_map<const TensorImpl*, LeafDeps> hooked_leaves;
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const Tensor& in : n->inputs) {
      if (in.defined() && !in.grad_fn() && !in.unsafe_impl()->post_accumulate_grad_hooks.empty())
        ++hooked_leaves[in.unsafe_impl()].edges;
      if (!in.defined() || !in.grad_fn()) continue;
      Node* m = in.grad_fn().get();
      if (m->deps_pass != pass) {
        m->deps_pass = pass;
        m->deps = 1;
        stack.push_back(m);
      } else {
        ++m->deps;
      }
    }
  }
  auto root = grad_fn();
  root->grad_outputs.assign(size_t(root->num_outputs), Tensor());
  {
    std::shared_ptr<TensorImpl> slot;
    detail::accumulate(slot, seed.to(dtype()));
    root->grad_outputs[size_t(impl_->output_nr)] = Tensor(slot);
  }
  // shared_ptrs: clearing a node's inputs may drop the last other owner of a queued node.
  std::vector<std::shared_ptr<Node>> ready{root};
  while (!ready.empty()) {
    std::shared_ptr<Node> n = std::move(ready.back());
    ready.pop_back();
    if (!n->backward) throw std::logic_error("backward: graph of " + n->name +
                                             " was already freed; use retain_graph=true to call backward twice");
    bool any = false;
    for (size_t i = 0; i < n->grad_outputs.size(); ++i) any = any || n->grad_outputs[i].defined();
    std::vector<Tensor> grads;
    if (any) {
      detail::check_saved_versions(*n);
      grads = n->backward(n->grad_outputs);
    }
    if (is_anomaly_enabled())
      for (const Tensor& g : grads)
        if (g.defined()) detail::check_finite(g, n->name, "backward gradient");
    for (size_t i = 0; i < n->inputs.size(); ++i) {
      const Tensor& in = n->inputs[i];
      if (!in.defined()) continue;
      const bool has_grad = i < grads.size() && grads[i].defined() && in.requires_grad();
      if (in.grad_fn()) {
        const std::shared_ptr<Node>& m = in.grad_fn();
        if (has_grad) {
          if (m->grad_outputs.size() != size_t(m->num_outputs)) m->grad_outputs.resize(size_t(m->num_outputs));
          std::shared_ptr<TensorImpl> slot = m->grad_outputs[size_t(in.unsafe_impl()->output_nr)].impl_ptr();
          detail::accumulate(slot, grads[i]);
          m->grad_outputs[size_t(in.unsafe_impl()->output_nr)] = Tensor(slot);
        }
        if (--m->deps == 0) ready.push_back(m);
      } else {
        if (has_grad) detail::accumulate(in.unsafe_impl()->grad, grads[i]);
        if (!hooked_leaves.empty()) {
          auto it = hooked_leaves.find(in.unsafe_impl());
          if (it != hooked_leaves.end()) {
            it->second.got_grad = it->second.got_grad || has_grad;
            if (--it->second.edges == 0 && it->second.got_grad) detail::run_post_accumulate_grad_hooks(in);
          }
        }
      }
    }
    n->grad_outputs.clear();
    if (!retain_graph) {
      n->backward = nullptr;
      n->inputs.clear();
      n->saved.clear();
    }
  }
  callbacks.finish();
}
}  // namespace attn
#endif  // ATTN_HEADER_DEFINITIONS
