#pragma once
// L-BFGS with torch.optim.LBFGS's algorithm, options and defaults (PyTorch 1.13), spelled as in
// the PyTorch C++ frontend:
//
//   optim::LBFGS opt(model.parameters(), optim::LBFGSOptions(0.8).history_size(10)
//                                            .line_search_fn("strong_wolfe"));
//   Tensor loss = opt.step([&] {
//     opt.zero_grad();
//     Tensor l = mse_loss(model.forward(x), y);
//     l.backward();
//     return l;
//   });
//
// step(closure) evaluates the closure (which must zero the gradients, compute the loss, call
// backward and return the loss) up to max_eval times and runs up to max_iter iterations:
//   d = -H g (two-loop recursion over the last history_size pairs s = t d, y = g' - g, kept when
//   y.s > 1e-10; initial Hessian scale H_diag = y.s / y.y), step t = lr (the very first
//   iteration: min(1, 1 / |g|_1) lr), either fixed or chosen by a strong-Wolfe line search
//   (c1 = 1e-4, c2 = 0.9, at most 25 evaluations, cubic interpolation; PyTorch's lswolfe port).
// Stops early when |g|_inf <= tolerance_grad, the directional derivative g.d > -tolerance_change,
// |t d|_inf <= tolerance_change or |loss - previous loss| < tolerance_change. Returns the loss of
// the first evaluation. The state (directions, history, step) carries over between calls.
// Flat vectors and scalars are kept in float64 whatever the parameters' dtype (PyTorch keeps
// them in the parameters' dtype): float64 results follow PyTorch to rounding (tested after 5
// steps to 1e-9 relative, tests/test_optim.cpp), float32 ones are a little more accurate.
// The curvature history is not part of state() (checkpoints restore the step count and lr only).
#include <algorithm>
#include <cmath>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>
#include "optimizer.hpp"

namespace attn::optim {

struct LBFGSOptions {
  explicit LBFGSOptions(double lr = 1) : lr_(lr) {}
#define ATTN_LBFGS_OPTION(type, name) \
  LBFGSOptions& name(type v) {        \
    name##_ = std::move(v);           \
    return *this;                     \
  }                                   \
  const type& name() const { return name##_; }
  ATTN_LBFGS_OPTION(double, lr)
  ATTN_LBFGS_OPTION(int64_t, max_iter)
  ATTN_LBFGS_OPTION(std::optional<int64_t>, max_eval)  // default max_iter * 5 / 4
  ATTN_LBFGS_OPTION(double, tolerance_grad)
  ATTN_LBFGS_OPTION(double, tolerance_change)
  ATTN_LBFGS_OPTION(int64_t, history_size)
  ATTN_LBFGS_OPTION(std::optional<std::string>, line_search_fn)  // none or "strong_wolfe"
#undef ATTN_LBFGS_OPTION

 private:
  double lr_;
  int64_t max_iter_ = 20;
  std::optional<int64_t> max_eval_;
  double tolerance_grad_ = 1e-7, tolerance_change_ = 1e-9;
  int64_t history_size_ = 100;
  std::optional<std::string> line_search_fn_;
};

namespace lbfgs_detail {
using Vec = std::vector<double>;

inline double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}
inline double abs_max(const Vec& a) {
  double m = 0;
  for (double x : a) m = std::max(m, std::abs(x));
  return m;
}
inline double abs_sum(const Vec& a) {
  double s = 0;
  for (double x : a) s += std::abs(x);
  return s;
}
inline void axpy(Vec& y, double alpha, const Vec& x) {  // y += alpha x
  for (size_t i = 0; i < y.size(); ++i) y[i] += alpha * x[i];
}

// Minimum of the cubic through (x1, f1, g1) and (x2, f2, g2), clamped to the bounds (default:
// the interval between x1 and x2); the bounds' midpoint when the cubic has no minimum there.
//   d1 = g1 + g2 - 3 (f1 - f2) / (x1 - x2),  d2 = sqrt(d1^2 - g1 g2)
//   min_pos = x2 - (x2 - x1) (g2 + d2 - d1) / (g2 - g1 + 2 d2)   (for x1 <= x2)
inline double cubic_interpolate(double x1, double f1, double g1, double x2, double f2, double g2,
                                std::optional<std::pair<double, double>> bounds = std::nullopt) {
  double lo, hi;
  if (bounds) std::tie(lo, hi) = *bounds;
  else std::tie(lo, hi) = x1 <= x2 ? std::make_pair(x1, x2) : std::make_pair(x2, x1);
  const double d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2);
  const double d2_square = d1 * d1 - g1 * g2;
  if (d2_square >= 0) {
    const double d2 = std::sqrt(d2_square);
    const double min_pos = x1 <= x2 ? x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
                                    : x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2));
    return std::min(std::max(min_pos, lo), hi);
  }
  return (lo + hi) / 2.;
}

struct WolfeResult {
  double f;
  Vec g;
  double t;
  int64_t evals;
};

// Strong-Wolfe line search along d from step t (PyTorch's _strong_wolfe): obj(t) returns the loss
// and flat gradient at x + t d. f, g, gtd: loss, gradient and g.d at t = 0.
template <class Obj>
WolfeResult strong_wolfe(const Obj& obj, double t, const Vec& d, double f, const Vec& g0, double gtd,
                         double c1 = 1e-4, double c2 = 0.9, double tolerance_change = 1e-9, int64_t max_ls = 25) {
  const double d_norm = abs_max(d);
  const Vec g = g0;
  auto [f_new, g_new] = obj(t);
  int64_t evals = 1;
  double gtd_new = dot(g_new, d);
  // bracket an interval containing a point satisfying the Wolfe criteria
  double t_prev = 0, f_prev = f, gtd_prev = gtd;
  Vec g_prev = g;
  bool done = false;
  int64_t ls_iter = 0;
  std::vector<double> bracket, bracket_f, bracket_gtd;
  std::vector<Vec> bracket_g;
  while (ls_iter < max_ls) {
    if (f_new > (f + c1 * t * gtd) || (ls_iter > 1 && f_new >= f_prev)) {
      bracket = {t_prev, t};
      bracket_f = {f_prev, f_new};
      bracket_g = {g_prev, g_new};
      bracket_gtd = {gtd_prev, gtd_new};
      break;
    }
    if (std::abs(gtd_new) <= -c2 * gtd) {
      bracket = {t};
      bracket_f = {f_new};
      bracket_g = {g_new};
      done = true;
      break;
    }
    if (gtd_new >= 0) {
      bracket = {t_prev, t};
      bracket_f = {f_prev, f_new};
      bracket_g = {g_prev, g_new};
      bracket_gtd = {gtd_prev, gtd_new};
      break;
    }
    // interpolate
    const double min_step = t + 0.01 * (t - t_prev), max_step = t * 10, tmp = t;
    t = cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, std::make_pair(min_step, max_step));
    // next step
    t_prev = tmp;
    f_prev = f_new;
    g_prev = g_new;
    gtd_prev = gtd_new;
    std::tie(f_new, g_new) = obj(t);
    ++evals;
    gtd_new = dot(g_new, d);
    ++ls_iter;
  }
  // reached the maximum number of iterations?
  if (ls_iter == max_ls) {
    bracket = {0, t};
    bracket_f = {f, f_new};
    bracket_g = {g, g_new};
  }
  // zoom: refine the bracket until a point satisfies the criteria
  bool insuf_progress = false;
  size_t low_pos = 0, high_pos = 1;
  if (bracket_f.size() > 1 && !(bracket_f[0] <= bracket_f.back())) std::swap(low_pos, high_pos);
  while (!done && ls_iter < max_ls) {
    // the bracket is too small
    if (std::abs(bracket[1] - bracket[0]) * d_norm < tolerance_change) break;
    t = cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1]);
    // Sufficient progress: a t too close to a boundary of the bracket, after insufficient progress
    // last time or on the boundary, moves to 0.1 of the bracket's length away from it.
    const double bmax = std::max(bracket[0], bracket[1]), bmin = std::min(bracket[0], bracket[1]);
    const double eps = 0.1 * (bmax - bmin);
    if (std::min(bmax - t, t - bmin) < eps) {
      if (insuf_progress || t >= bmax || t <= bmin) {
        t = std::abs(t - bmax) < std::abs(t - bmin) ? bmax - eps : bmin + eps;
        insuf_progress = false;
      } else {
        insuf_progress = true;
      }
    } else {
      insuf_progress = false;
    }
    std::tie(f_new, g_new) = obj(t);
    ++evals;
    gtd_new = dot(g_new, d);
    ++ls_iter;
    if (f_new > (f + c1 * t * gtd) || f_new >= bracket_f[low_pos]) {
      // Armijo condition not satisfied or not lower than the lowest point
      bracket[high_pos] = t;
      bracket_f[high_pos] = f_new;
      bracket_g[high_pos] = g_new;
      bracket_gtd[high_pos] = gtd_new;
      if (bracket_f[0] <= bracket_f[1]) low_pos = 0, high_pos = 1;
      else low_pos = 1, high_pos = 0;
    } else {
      if (std::abs(gtd_new) <= -c2 * gtd) {
        done = true;  // Wolfe conditions satisfied
      } else if (gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0) {
        // the old high becomes the new low
        bracket[high_pos] = bracket[low_pos];
        bracket_f[high_pos] = bracket_f[low_pos];
        bracket_g[high_pos] = bracket_g[low_pos];
        bracket_gtd[high_pos] = bracket_gtd[low_pos];
      }
      // the new point becomes the new low
      bracket[low_pos] = t;
      bracket_f[low_pos] = f_new;
      bracket_g[low_pos] = g_new;
      bracket_gtd[low_pos] = gtd_new;
    }
  }
  return {bracket_f[low_pos], bracket_g[low_pos], bracket[low_pos], evals};
}
}  // namespace lbfgs_detail

class LBFGS : public Optimizer {
 public:
  using LossClosure = std::function<Tensor()>;

  LBFGS(std::vector<Tensor> params, LBFGSOptions o = LBFGSOptions())
      : Optimizer(std::move(params), o.lr(), "LBFGS"), o_(std::move(o)) {
    ATTN_CHECK(o_.max_iter() > 0 && o_.history_size() > 0, "LBFGS: max_iter (", o_.max_iter(), ") and history_size (",
               o_.history_size(), ") must be positive");
    ATTN_CHECK(!o_.max_eval() || *o_.max_eval() > 0, "LBFGS: max_eval must be positive, got ",
               o_.max_eval() ? *o_.max_eval() : 0);
    ATTN_CHECK(!o_.line_search_fn() || *o_.line_search_fn() == "strong_wolfe",
               "LBFGS: only 'strong_wolfe' is supported as line_search_fn, got '",
               o_.line_search_fn() ? *o_.line_search_fn() : std::string(), "'");
    for (const Tensor& p : params_) numel_ += p.numel();
  }

  // L-BFGS needs to evaluate the loss several times per step: call step(closure).
  void step() override {
    throw std::invalid_argument("LBFGS: step() needs a closure that recomputes the loss; call step(closure)");
  }

  // One optimization step (up to max_iter iterations); returns the closure's first loss.
  Tensor step(const LossClosure& closure) {
    using namespace lbfgs_detail;
    ATTN_CHECK(bool(closure), "LBFGS: step(closure) needs a closure");
    NoGradGuard no_grad;
    next_step();
    const double lr = lr_, tolerance_grad = o_.tolerance_grad(), tolerance_change = o_.tolerance_change();
    const int64_t max_iter = o_.max_iter(), max_eval = o_.max_eval() ? *o_.max_eval() : max_iter * 5 / 4;
    const Tensor orig_loss = evaluate(closure);
    double loss = orig_loss.item<double>();
    int64_t current_evals = 1;
    ++func_evals_;
    Vec flat_grad = gather_flat_grad();
    bool opt_cond = abs_max(flat_grad) <= tolerance_grad;
    if (opt_cond) return orig_loss;  // optimal condition

    int64_t n_iter = 0;
    while (n_iter < max_iter) {
      ++n_iter;
      ++state_n_iter_;
      // ---- descent direction ----
      if (state_n_iter_ == 1) {
        d_ = flat_grad;
        for (double& x : d_) x = -x;
        old_dirs_.clear();
        old_stps_.clear();
        ro_.clear();
        H_diag_ = 1;
      } else {
        // update the memory with y = g - g_prev, s = t d
        Vec y = flat_grad, s = d_;
        for (size_t i = 0; i < y.size(); ++i) y[i] -= prev_flat_grad_[i];
        for (double& x : s) x *= t_;
        const double ys = dot(y, s);
        if (ys > 1e-10) {
          if (int64_t(old_dirs_.size()) == o_.history_size()) {  // shift the history by one
            old_dirs_.pop_front();
            old_stps_.pop_front();
            ro_.pop_front();
          }
          old_dirs_.push_back(y);
          old_stps_.push_back(s);
          ro_.push_back(1. / ys);
          H_diag_ = ys / dot(y, y);  // scale of the initial Hessian approximation
        }
        // two-loop recursion: d = -H g
        const size_t num_old = old_dirs_.size();
        al_.assign(size_t(o_.history_size()), 0.0);
        Vec q = flat_grad;
        for (double& x : q) x = -x;
        for (size_t i = num_old; i-- > 0;) {
          al_[i] = dot(old_stps_[i], q) * ro_[i];
          axpy(q, -al_[i], old_dirs_[i]);
        }
        d_ = q;
        for (double& x : d_) x *= H_diag_;
        for (size_t i = 0; i < num_old; ++i) {
          const double be_i = dot(old_dirs_[i], d_) * ro_[i];
          axpy(d_, al_[i] - be_i, old_stps_[i]);
        }
      }
      prev_flat_grad_ = flat_grad;
      prev_loss_ = loss;
      // ---- step length ----
      t_ = state_n_iter_ == 1 ? std::min(1., 1. / abs_sum(flat_grad)) * lr : lr;
      const double gtd = dot(flat_grad, d_);  // directional derivative
      if (gtd > -tolerance_change) break;
      int64_t ls_func_evals = 0;
      if (o_.line_search_fn()) {
        const std::vector<Tensor> x_init = clone_params();
        auto obj = [&](double t) { return directional_evaluate(closure, x_init, t, d_); };
        WolfeResult r = strong_wolfe(obj, t_, d_, loss, flat_grad, gtd);
        loss = r.f;
        flat_grad = std::move(r.g);
        t_ = r.t;
        ls_func_evals = r.evals;
        add_grad(t_, d_);
        opt_cond = abs_max(flat_grad) <= tolerance_grad;
      } else {
        add_grad(t_, d_);  // fixed step
        if (n_iter != max_iter) {
          // re-evaluate only if not in the last iteration (in a stochastic setting there is no
          // use to re-evaluate the function here)
          loss = evaluate(closure).item<double>();
          flat_grad = gather_flat_grad();
          opt_cond = abs_max(flat_grad) <= tolerance_grad;
          ls_func_evals = 1;
        }
      }
      current_evals += ls_func_evals;
      func_evals_ += ls_func_evals;
      // ---- stopping conditions ----
      if (n_iter == max_iter) break;
      if (current_evals >= max_eval) break;
      if (opt_cond) break;
      double dt_max = 0;  // lack of progress
      for (double x : d_) dt_max = std::max(dt_max, std::abs(x * t_));
      if (dt_max <= tolerance_change) break;
      if (std::abs(loss - prev_loss_) < tolerance_change) break;
    }
    return orig_loss;
  }

  const LBFGSOptions& options() const { return o_; }
  int64_t func_evals() const { return func_evals_; }  // closure calls over all steps
  int64_t n_iter() const { return state_n_iter_; }   // iterations over all steps

 private:
  using Vec = lbfgs_detail::Vec;

  // The closure runs with grad mode on (step itself runs without).
  static Tensor evaluate(const LossClosure& closure) {
    const bool prev = grad_mode_enabled_flag();
    grad_mode_enabled_flag() = true;
    Tensor loss;
    try {
      loss = closure();
    } catch (...) {
      grad_mode_enabled_flag() = prev;
      throw;
    }
    grad_mode_enabled_flag() = prev;
    ATTN_CHECK(loss.defined() && loss.numel() == 1, "LBFGS: the closure must return the loss (one element), got ",
               loss.defined() ? to_string(loss.shape()) : std::string("an undefined tensor"));
    return loss;
  }

  // The gradients of all parameters as one float64 vector (zeros for a parameter without one).
  Vec gather_flat_grad() const {
    Vec v;
    v.reserve(size_t(numel_));
    for (const Tensor& p : params_) {
      const Tensor g = p.grad();
      if (!g.defined()) {
        v.insert(v.end(), size_t(p.numel()), 0.0);
        continue;
      }
      const std::vector<double> gv = g.to_vector<double>();
      v.insert(v.end(), gv.begin(), gv.end());
    }
    return v;
  }

  // p += t d (d flat over all parameters); an in-place write, so each version is bumped.
  void add_grad(double t, const Vec& d) {
    size_t off = 0;
    for (Tensor& p : params_) {
      detail::bump_version(p);
      ATTN_DISPATCH_FLOATING(p.dtype(), "LBFGS", [&] {
        scalar_t* pp = p.data<scalar_t>();
        for (int64_t k = 0, n = p.numel(); k < n; ++k) pp[k] = scalar_t(double(pp[k]) + t * d[off + size_t(k)]);
      });
      off += size_t(p.numel());
    }
  }

  std::vector<Tensor> clone_params() const {
    std::vector<Tensor> out;
    for (const Tensor& p : params_) out.push_back(p.detach().clone());
    return out;
  }

  // Loss and flat gradient at x + t d; the parameters are restored to x afterwards.
  std::pair<double, Vec> directional_evaluate(const LossClosure& closure, const std::vector<Tensor>& x, double t,
                                              const Vec& d) {
    add_grad(t, d);
    const double loss = evaluate(closure).item<double>();
    Vec g = gather_flat_grad();
    for (size_t i = 0; i < params_.size(); ++i) params_[i].copy_(x[i]);
    return {loss, std::move(g)};
  }

  LBFGSOptions o_;
  int64_t numel_ = 0, func_evals_ = 0, state_n_iter_ = 0;
  Vec d_, prev_flat_grad_, al_;
  double t_ = 0, H_diag_ = 1, prev_loss_ = 0;
  std::deque<Vec> old_dirs_, old_stps_;
  std::deque<double> ro_;
};

}  // namespace attn::optim
