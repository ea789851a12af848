#pragma once
// Functional positional encodings: the sinusoidal table, rotary embeddings (RoPE) and ALiBi.
#include "../core/tensor.hpp"
#include "elementwise.hpp"
#include "shape.hpp"

namespace attn {
ATTN_API Tensor sinusoidal_encoding(int64_t L, int64_t d, int64_t offset = 0, DType dtype = kFloat32);
ATTN_API Tensor apply_rotary(const Tensor& x, const std::vector<double>& positions, double base = 10000.0);
ATTN_API Tensor apply_rotary(const Tensor& x, int64_t offset = 0, double base = 10000.0);
ATTN_API Tensor apply_rotary(const Tensor& x, const Tensor& positions, double base = 10000.0);
ATTN_API Tensor alibi_slopes(int64_t num_heads);
ATTN_API Tensor alibi_bias(int64_t num_heads, int64_t L, int64_t S, int64_t q_offset = 0, DType dtype = kFloat32);
}  // namespace attn

#if ATTN_HEADER_DEFINITIONS
#include <cmath>
#include <vector>

namespace attn {

// Sinusoidal table [L, d] for positions offset .. offset+L-1 ("Attention is all you need"):
//   pe[p, 2i] = sin(p / 10000^(2i/d)),  pe[p, 2i+1] = cos(p / 10000^(2i/d)); odd d drops the last cos.
ATTN_API Tensor sinusoidal_encoding(int64_t L, int64_t d, int64_t offset, DType dtype) {
  ATTN_CHECK(L >= 0 && d > 0, "sinusoidal_encoding: need L >= 0 and d > 0, got L=", L, " d=", d);
  Tensor pe = Tensor::empty({L, d}, dtype);
  ATTN_DISPATCH_FLOATING(dtype, "sinusoidal_encoding", [&] {
    scalar_t* p = pe.data<scalar_t>();
    for (int64_t i = 0; i < d; i += 2) {
      const double freq = std::exp(-std::log(10000.0) * double(i) / double(d));
      for (int64_t t = 0; t < L; ++t) {
        const double a = double(t + offset) * freq;
        p[t * d + i] = scalar_t(std::sin(a));
        if (i + 1 < d) p[t * d + i + 1] = scalar_t(std::cos(a));
      }
    }
  });
  return pe;
}

namespace detail {
// cos/sin tables [L, E/2] for RoPE at the given (possibly fractional) positions.
inline void rope_tables(const std::vector<double>& pos, int64_t E, double base, std::vector<double>& c,
                        std::vector<double>& s) {
  const int64_t half = E / 2, L = int64_t(pos.size());
  c.resize(size_t(L * half));
  s.resize(size_t(L * half));
  for (int64_t i = 0; i < half; ++i) {
    const double inv = std::pow(base, -2.0 * double(i) / double(E));
    for (int64_t t = 0; t < L; ++t) {
      c[size_t(t * half + i)] = std::cos(pos[size_t(t)] * inv);
      s[size_t(t * half + i)] = std::sin(pos[size_t(t)] * inv);
    }
  }
}

// y = R x (sign = +1) or R^T x (sign = -1) for each row of x [..., L, E], rotate-half pairing.
template <class T>
void rope_apply(const T* x, T* y, int64_t rows, int64_t L, int64_t E, const std::vector<double>& c,
                const std::vector<double>& s, double sign) {
  const int64_t half = E / 2;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t t = r % L;
    const T* xr = x + r * E;
    T* yr = y + r * E;
    for (int64_t i = 0; i < half; ++i) {
      const T cs = T(c[size_t(t * half + i)]), sn = T(sign * s[size_t(t * half + i)]);
      const T x1 = xr[i], x2 = xr[i + half];
      yr[i] = x1 * cs - x2 * sn;
      yr[i + half] = x2 * cs + x1 * sn;
    }
  }
}
}  // namespace detail

// Rotary position embedding, rotate-half convention (GPT-NeoX / LLaMA / HF "rotate_half"): the
// pairs are (x[i], x[i + E/2]), NOT adjacent (x[2i], x[2i+1]) as in the original RoFormer/GPT-J.
//   theta_i = base^(-2i/E), a = pos * theta_i, i < E/2
//   y[i] = x[i] cos a - x[i + E/2] sin a,   y[i + E/2] = x[i + E/2] cos a + x[i] sin a
// x: [..., L, E] with E even; positions: one per row of the L dim (offset .. offset+L-1 by
// default). A rotation, so dL/dx = R^T g (the same formula with sin negated).
ATTN_API Tensor apply_rotary(const Tensor& x, const std::vector<double>& positions, double base) {
  ATTN_CHECK(x.dim() >= 2 && x.size(-1) % 2 == 0, "apply_rotary: x ", to_string(x.shape()),
             " must be [..., L, E] with an even E");
  const int64_t L = x.size(-2), E = x.size(-1);
  ATTN_CHECK(int64_t(positions.size()) == L, "apply_rotary: ", positions.size(), " positions for x ",
             to_string(x.shape()), " (L = ", L, ")");
  std::vector<double> c, s;
  detail::rope_tables(positions, E, base, c, s);
  const int64_t rows = x.numel() / std::max<int64_t>(E, 1);
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  ATTN_DISPATCH_FLOATING(x.dtype(), "apply_rotary", [&] {
    detail::rope_apply<scalar_t>(x.data<scalar_t>(), y.data<scalar_t>(), rows, L, E, c, s, 1.0);
  });
  return record("apply_rotary", y, {x}, [c, s, rows, L, E, shape = x.shape()](const std::vector<Tensor>& g) {
    Tensor gx = Tensor::empty(shape, g[0].dtype());
    ATTN_DISPATCH_FLOATING(g[0].dtype(), "apply_rotary_backward", [&] {
      detail::rope_apply<scalar_t>(g[0].data<scalar_t>(), gx.data<scalar_t>(), rows, L, E, c, s, -1.0);
    });
    return std::vector<Tensor>{gx};
  }, {});
}

ATTN_API Tensor apply_rotary(const Tensor& x, int64_t offset, double base) {
  ATTN_CHECK(x.dim() >= 2, "apply_rotary: x ", to_string(x.shape()), " must be [..., L, E]");
  std::vector<double> pos(size_t(x.size(-2)));
  for (size_t t = 0; t < pos.size(); ++t) pos[t] = double(offset + int64_t(t));
  return apply_rotary(x, pos, base);
}

// positions given as a tensor [L] (any dtype)
ATTN_API Tensor apply_rotary(const Tensor& x, const Tensor& positions, double base) {
  ATTN_CHECK(positions.dim() == 1, "apply_rotary: positions ", to_string(positions.shape()), " must be 1-D [L]");
  return apply_rotary(x, positions.to(kFloat64).to_vector<double>(), base);
}

// ALiBi slopes (Press et al., 2022, "Train short, test long"), float64 [H]: for H a power of two
// m_h = 2^(-8 (h + 1) / H); otherwise the slopes of the nearest lower power of two n followed by
// every other slope of 2n (the reference implementation's rule).
ATTN_API Tensor alibi_slopes(int64_t num_heads) {
  ATTN_CHECK(num_heads > 0, "alibi_slopes: num_heads must be positive, got ", num_heads);
  auto pow2 = [](int64_t n) {
    std::vector<double> m(static_cast<size_t>(n));
    for (int64_t h = 0; h < n; ++h) m[size_t(h)] = std::pow(2.0, -8.0 * double(h + 1) / double(n));
    return m;
  };
  int64_t n = 1;
  while (n * 2 <= num_heads) n *= 2;
  std::vector<double> m = pow2(n);
  const std::vector<double> extra = pow2(2 * n);
  for (int64_t h = 0; int64_t(m.size()) < num_heads; h += 2) m.push_back(extra[size_t(h)]);
  return Tensor::from_vector(m, {num_heads});
}

// The ALiBi bias as a tensor [H, L, S]: bias[h, i, j] = -m_h |i + q_offset - j| (query i at
// position i + q_offset; on the keys a causal mask leaves this is the paper's -m_h (i - j), and
// without a causal mask it is the symmetric form). Pass it as an additive attn_mask, or let
// MultiheadAttention (MultiheadAttentionOptions::alibi) add it inside the attention kernels
// without storing it.
ATTN_API Tensor alibi_bias(int64_t num_heads, int64_t L, int64_t S, int64_t q_offset, DType dtype) {
  ATTN_CHECK(L >= 0 && S >= 0, "alibi_bias: sizes must be non-negative, got ", L, " x ", S);
  const std::vector<double> m = alibi_slopes(num_heads).to_vector<double>();
  std::vector<double> b(size_t(num_heads * L * S));
  for (int64_t h = 0; h < num_heads; ++h)
    for (int64_t i = 0; i < L; ++i)
      for (int64_t j = 0; j < S; ++j) {
        const double d = double(i + q_offset - j);
        b[size_t((h * L + i) * S + j)] = -m[size_t(h)] * std::abs(d);
      }
  return Tensor::from_vector(b, {num_heads, L, S}).to(dtype);
}

}  // namespace attn
#endif  // ATTN_HEADER_DEFINITIONS
