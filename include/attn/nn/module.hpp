#pragma once
// nn::Module: the registry of parameters, buffers and submodules that gives every layer
// PyTorch-style dotted names, train/eval, zero_grad and dtype conversion.
// Modules register pointers to their own members, so a Module cannot be copied or moved;
// hold modules by value as members, or by std::shared_ptr.
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>
#include "../core/tensor.hpp"

namespace attn::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Module {
 public:
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  virtual ~Module() = default;

  NamedTensors named_parameters(bool recurse = true) const {
    NamedTensors out;
    collect(out, "", recurse, true);
    return out;
  }
  std::vector<Tensor> parameters(bool recurse = true) const {
    std::vector<Tensor> out;
    for (auto& [name, t] : named_parameters(recurse)) out.push_back(t);
    return out;
  }
  NamedTensors named_buffers(bool recurse = true) const {
    NamedTensors out;
    collect(out, "", recurse, false);
    return out;
  }
  // Parameters then buffers: what a checkpoint stores.
  NamedTensors state_dict() const {
    NamedTensors out = named_parameters();
    for (auto& b : named_buffers()) out.push_back(b);
    return out;
  }
  std::vector<std::pair<std::string, Module*>> named_children() const { return children_; }
  int64_t num_parameters() const {
    int64_t n = 0;
    for (auto& p : parameters()) n += p.numel();
    return n;
  }

  virtual void train(bool on = true) {
    training_ = on;
    for (auto& [name, m] : children_) m->train(on);
  }
  void eval() { train(false); }
  bool is_training() const { return training_; }

  void zero_grad() {
    for (auto& p : parameters()) p.zero_grad();
  }

  // Converts parameters and buffers in place: handles held elsewhere (an optimizer) see the change.
  void to(DType dtype) {
    NoGradGuard ng;
    for (auto& [name, t] : state_dict()) {
      if (!t.is_floating_point() || t.dtype() == dtype) continue;
      Tensor c = t.to(dtype);
      TensorImpl* impl = t.unsafe_impl();
      impl->storage = c.unsafe_impl()->storage;
      impl->offset = 0;
      impl->dtype = dtype;
      impl->grad.reset();
    }
  }
  // Moves parameters and buffers to `device` in place (handles held elsewhere, e.g. an
  // optimizer, see the move); gradients are dropped. Device::CUDA needs ATTN_WITH_CUDA.
  void to(Device device) {
    NoGradGuard ng;
    for (auto& [name, t] : state_dict()) {
      if (!t.defined() || t.device() == device) continue;
      Tensor c = t.detach().to(device);
      TensorImpl* impl = t.unsafe_impl();
      impl->storage = c.unsafe_impl()->storage;
      impl->offset = 0;
      impl->grad.reset();
    }
  }

 protected:
  // Registers a member tensor as a parameter (requires grad).
  Tensor& register_parameter(const std::string& name, Tensor& slot, bool requires_grad = true) {
    if (requires_grad && slot.defined() && !slot.requires_grad()) slot.requires_grad_();
    params_.emplace_back(name, &slot);
    return slot;
  }
  Tensor& register_buffer(const std::string& name, Tensor& slot) {
    buffers_.emplace_back(name, &slot);
    return slot;
  }
  template <class M>
  M& register_module(const std::string& name, M& member) {
    children_.emplace_back(name, &member);
    return member;
  }
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> owned) {
    children_.emplace_back(name, owned.get());
    owned_.push_back(owned);
    return owned;
  }

 private:
  void collect(NamedTensors& out, const std::string& prefix, bool recurse, bool params) const {
    for (auto& [name, t] : params ? params_ : buffers_)
      if (t->defined()) out.emplace_back(prefix + name, *t);
    if (!recurse) return;
    for (auto& [name, m] : children_) m->collect(out, prefix + name + ".", true, params);
  }

  std::vector<std::pair<std::string, Tensor*>> params_, buffers_;
  std::vector<std::pair<std::string, Module*>> children_;
  std::vector<std::shared_ptr<Module>> owned_;
  bool training_ = true;
};

}  // namespace attn::nn
