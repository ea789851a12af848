#pragma once
// attn: header-only tensors, reverse-mode autograd and sequence models for time series.
// This umbrella header is the public entry point: #include <attn/attn.hpp>.
#include "config.hpp"
#include "core/tensor.hpp"
#include "ops/elementwise.hpp"
#include "ops/reduce.hpp"
#include "ops/shape.hpp"
#include "ops/matmul.hpp"
#include "ops/nn_functional.hpp"
#include "nn/module.hpp"
#include "nn/init.hpp"
#include "nn/layers.hpp"
#include "optim/optimizer.hpp"
#include "optim/schedule.hpp"
#include "testing/gradcheck.hpp"
