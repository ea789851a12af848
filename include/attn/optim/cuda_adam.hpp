#pragma once
// The CUDA step of optim::Adam / AdamW (optimizer.hpp): a CUDA parameter is updated in place by
// the kernel of kernels/cuda/optim.cu, with the formula of Adam::step. Like the ops' CUDA paths
// (ops/cuda/common.hpp) it is defined with ATTN_WITH_CUDA and throws without it.
#include <cmath>
#include "../core/tensor.hpp"
#include "../kernels/cuda/optim.hpp"
#include "../ops/cuda/common.hpp"

namespace attn::optim {

#ifdef ATTN_WITH_CUDA
// Moves a tensor's storage to `device` in place (handles held elsewhere see the move).
inline void move_storage(Tensor& t, Device device) {
  if (!t.defined() || t.device() == device) return;
  NoGradGuard ng;
  Tensor c = t.detach().to(device);
  TensorImpl* impl = t.unsafe_impl();
  impl->storage = c.unsafe_impl()->storage;
  impl->offset = 0;
  impl->grad.reset();
}

// One Adam/AdamW step of a CUDA parameter (the formula of optim::Adam::step). The optimizer's
// state buffers are created on the CPU; they move to the GPU on the first step.
inline void cuda_adam_step(const Tensor& p, const Tensor& g, Tensor& m, Tensor& v, Tensor* vmax, double b1,
                           double b2, double eps, double wd, double lr, double bc1, double bc2, bool decoupled) {
  const char* op = decoupled ? "AdamW" : "Adam";
  cuda_ops::check_f32(p, op);
  ATTN_CHECK(g.device() == Device::CUDA && g.dtype() == kFloat32 && g.shape() == p.shape(), op,
             ": gradient ", to_string(g.shape()), " on ", device_name(g.device()),
             " does not match the CUDA parameter ", to_string(p.shape()));
  move_storage(m, Device::CUDA);
  move_storage(v, Device::CUDA);
  if (vmax) move_storage(*vmax, Device::CUDA);
  kernels::cuda::adam_step(cuda_ops::fp(p), cuda_ops::cfp(g), cuda_ops::fp(m), cuda_ops::fp(v),
                           vmax ? cuda_ops::fp(*vmax) : nullptr, p.numel(), float(b1), float(b2), float(eps),
                           float(wd), float(lr / bc1), float(1 - lr * wd), float(std::sqrt(bc2)), decoupled);
}
#else
inline void cuda_adam_step(const Tensor& p, const Tensor& g, Tensor&, Tensor&, Tensor*, double, double, double,
                           double, double, double, double, bool decoupled) {
  cuda_ops::built_without_cuda(decoupled ? "AdamW" : "Adam", p, g);
}
#endif

}  // namespace attn::optim
