#pragma once
// The header to include for Tensor and autograd. The core, in the order its files build on
// each other (each includes what it uses at its top):
//   device.hpp          Device, and DeviceMemory: the functions a device backend registers
//   storage.hpp         the CPU allocator, memory statistics, Storage
//   tensor_impl.hpp     TensorImpl and the Tensor handle (declarations)
//   autograd.hpp        grad mode, anomaly detection, Node, record(), backward hooks
//   device_tensor.hpp   tensors in device memory, Tensor::to(Device)
//   functions.hpp       declarations of the differentiable functions (defined under ops/)
//   tensor_methods.hpp  Tensor's factories, data access, copies and method forms
//   engine.hpp          the backward engine, Tensor::backward
// Beside them: dtype.hpp, error.hpp, shapes.hpp, parallel.hpp, random.hpp, cpu_info.hpp.
#include "device.hpp"
#include "storage.hpp"
#include "tensor_impl.hpp"
#include "autograd.hpp"
#include "device_tensor.hpp"
#include "functions.hpp"
#include "tensor_methods.hpp"
#include "engine.hpp"
