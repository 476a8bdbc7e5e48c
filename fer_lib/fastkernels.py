"""C++ kernels of the CPU fast path: BatchNorm2d fused with its ReLU or ReLU6.

Built on first use with `torch.utils.cpp_extension.load_inline` (a C++ compiler and
ninja; about a minute once, then cached under ``~/.cache/torch_extensions``) and
compiled for this machine's CPU (``-march=native``; the CPU's flags are part of the
build's name, so a cache shared between machines never runs a foreign binary).
`load()` returns None where the build fails: the trainer then runs eager PyTorch.

The kernels read a channels_last (N, C, H, W) float32 tensor as M = N*H*W rows of C
floats, in blocks of L = lcm(C, 16) floats: position j of every block is channel
j % C, so the inner loops run 16 lanes wide whatever C is (PyTorch's own
channels_last BatchNorm vectorises along C, which is 9 to 36 in the first layers).

- ``bn_act_train``: batch statistics in one pass (sums shifted by the first rows' mean,
  summed in float for 64 blocks at a time, then in double), then
  ``y = act(x * a + b)`` in a second pass; updates the running statistics.
- ``bn_act_backward``: the activation's mask, recomputed from x with the forward's
  exact arithmetic, and the two per-channel sums in one pass; ``dx`` in a second.
- ``bn_act_eval``: ``act(x * a + b)`` with the running statistics, one pass.

Sums are deterministic for a given number of threads.
"""

from __future__ import annotations

import hashlib
import platform
import warnings
from functools import cache
from pathlib import Path

SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <numeric>
#include <type_traits>
#include <vector>

namespace {
constexpr int64_t kFlush = 64;  // blocks summed in float before the sums go to double
constexpr int64_t kGrain = 16;  // blocks per parallel task at the least

template <int ACT> inline float activate(float z) {  // 0: none, 1: ReLU, 2: ReLU6
  if constexpr (ACT == 1) return std::max(z, 0.f);
  else if constexpr (ACT == 2) return std::min(std::max(z, 0.f), 6.f);
  else return z;
}

template <int ACT> inline bool passes(float z) {  // where the activation's slope is 1
  if constexpr (ACT == 1) return z > 0.f;
  else if constexpr (ACT == 2) return z > 0.f && z < 6.f;
  else return true;
}

template <typename F> auto with_act(int64_t act, F f) {
  if (act == 1) return f(std::integral_constant<int, 1>{});
  if (act == 2) return f(std::integral_constant<int, 2>{});
  return f(std::integral_constant<int, 0>{});
}

struct Layout {  // a channels_last tensor as rows of C floats, walked in blocks of L
  int64_t C, total, rows, L, blocks;
  explicit Layout(const at::Tensor& x)
      : C(x.size(1)), total(x.numel()), rows(x.numel() / x.size(1)),
        L(x.size(1) / std::gcd(x.size(1), int64_t{16}) * 16), blocks((total + L - 1) / L) {}
  int64_t len(int64_t blk) const { return std::min(L, total - blk * L); }
  std::vector<float> tile(const float* v) const {
    std::vector<float> t(L);
    for (int64_t j = 0; j < L; ++j) t[j] = v[j % C];
    return t;
  }
};

template <typename F> void blockwise(const Layout& s, F body) {
  at::parallel_for(0, s.blocks, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t blk = begin; blk < end; ++blk) body(blk * s.L, s.len(blk));
  });
}

// Two per-channel sums in double; body(offset, n, acc1, acc2) adds one block's terms.
template <typename F>
std::pair<std::vector<double>, std::vector<double>> channel_sums(const Layout& s, F body) {
  std::mutex mu;
  std::map<int64_t, std::vector<double>> parts;  // by first block: a fixed order
  at::parallel_for(0, s.blocks, kGrain, [&](int64_t begin, int64_t end) {
    std::vector<float> acc(2 * s.L, 0.f);
    std::vector<double> sum(2 * s.L, 0.0);
    for (int64_t blk = begin; blk < end; ++blk) {
      body(blk * s.L, s.len(blk), acc.data(), acc.data() + s.L);
      if ((blk - begin) % kFlush == kFlush - 1 || blk + 1 == end)
        for (int64_t j = 0; j < 2 * s.L; ++j) { sum[j] += acc[j]; acc[j] = 0.f; }
    }
    std::lock_guard<std::mutex> lock(mu);
    parts.emplace(begin, std::move(sum));
  });
  std::vector<double> s1(s.C, 0.0), s2(s.C, 0.0);
  for (auto& part : parts)
    for (int64_t j = 0; j < s.L; ++j) {
      s1[j % s.C] += part.second[j];
      s2[j % s.C] += part.second[s.L + j];
    }
  return {s1, s2};
}

at::Tensor normalize(const at::Tensor& x, const float* a, const float* b, int64_t act) {
  Layout s(x);
  at::Tensor y = at::empty_like(x);
  const float* px = x.data_ptr<float>();
  float* py = y.data_ptr<float>();
  auto at_ = s.tile(a), bt = s.tile(b);
  with_act(act, [&](auto A) {
    constexpr int ACT = decltype(A)::value;
    blockwise(s, [&](int64_t off, int64_t n) {
      const float* __restrict__ p = px + off;
      const float* __restrict__ pa = at_.data();
      const float* __restrict__ pb = bt.data();
      float* __restrict__ q = py + off;
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) q[j] = activate<ACT>(__builtin_fmaf(p[j], pa[j], pb[j]));
    });
    return 0;
  });
  return y;
}
}  // namespace

// -> (y, stats (4, C): mean, 1/std, scale a, shift b); running stats updated when momentum >= 0
std::vector<at::Tensor> bn_act_train(at::Tensor x, at::Tensor weight, at::Tensor bias,
                                     at::Tensor running_mean, at::Tensor running_var,
                                     double momentum, double eps, int64_t act) {
  Layout s(x);
  const float* px = x.data_ptr<float>();
  std::vector<float> shift(s.C);
  const int64_t head = std::min<int64_t>(s.rows, 64);
  for (int64_t c = 0; c < s.C; ++c) {
    double t = 0;
    for (int64_t r = 0; r < head; ++r) t += px[r * s.C + c];
    shift[c] = static_cast<float>(t / head);
  }
  auto kt = s.tile(shift.data());
  auto sums = channel_sums(s, [&](int64_t off, int64_t n, float* a1, float* a2) {
    const float* __restrict__ p = px + off;
    const float* __restrict__ k = kt.data();
    float* __restrict__ b1 = a1;
    float* __restrict__ b2 = a2;
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) { float d = p[j] - k[j]; b1[j] += d; b2[j] += d * d; }
  });
  at::Tensor stats = at::empty({4, s.C}, x.options());
  float* mean = stats.data_ptr<float>();
  float *rstd = mean + s.C, *a = mean + 2 * s.C, *b = mean + 3 * s.C;
  const float *w = weight.data_ptr<float>(), *bi = bias.data_ptr<float>();
  float *rm = running_mean.data_ptr<float>(), *rv = running_var.data_ptr<float>();
  const double n = static_cast<double>(s.rows);
  for (int64_t c = 0; c < s.C; ++c) {
    double m1 = sums.first[c] / n, var = std::max(0.0, sums.second[c] / n - m1 * m1);
    double mu = shift[c] + m1, r = 1.0 / std::sqrt(var + eps);
    mean[c] = static_cast<float>(mu);
    rstd[c] = static_cast<float>(r);
    a[c] = static_cast<float>(w[c] * r);
    b[c] = static_cast<float>(bi[c] - mu * w[c] * r);
    if (momentum >= 0) {
      rm[c] = static_cast<float>((1 - momentum) * rm[c] + momentum * mu);
      rv[c] = static_cast<float>((1 - momentum) * rv[c] + momentum * var * n / (n - 1));
    }
  }
  return {normalize(x, a, b, act), stats};
}

// -> (dx, dweight, dbias)
std::vector<at::Tensor> bn_act_backward(at::Tensor dy, at::Tensor x, at::Tensor stats,
                                        at::Tensor weight, int64_t act) {
  Layout s(x);
  const float *px = x.data_ptr<float>(), *pg = dy.data_ptr<float>();
  const float* mean = stats.data_ptr<float>();
  const float *rstd = mean + s.C, *w = weight.data_ptr<float>();
  auto mt = s.tile(mean), at_ = s.tile(mean + 2 * s.C), bt = s.tile(mean + 3 * s.C);
  at::Tensor dx = at::empty_like(x);
  at::Tensor dw = at::empty({s.C}, x.options()), db = at::empty({s.C}, x.options());
  float *pdx = dx.data_ptr<float>(), *pdw = dw.data_ptr<float>(), *pdb = db.data_ptr<float>();
  with_act(act, [&](auto A) {
    constexpr int ACT = decltype(A)::value;
    auto sums = channel_sums(s, [&](int64_t off, int64_t n, float* a1, float* a2) {
      const float* __restrict__ p = px + off;
      const float* __restrict__ g = pg + off;
      const float *__restrict__ pa = at_.data(), *__restrict__ pb = bt.data();
      const float* __restrict__ pm = mt.data();
      float* __restrict__ b1 = a1;
      float* __restrict__ b2 = a2;
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) {
        float gj = passes<ACT>(__builtin_fmaf(p[j], pa[j], pb[j])) ? g[j] : 0.f;
        b1[j] += gj;
        b2[j] += gj * (p[j] - pm[j]);
      }
    });
    std::vector<float> P(s.C), Q(s.C), R(s.C);
    const double n = static_cast<double>(s.rows);
    for (int64_t c = 0; c < s.C; ++c) {
      double r = rstd[c], p = w[c] * r;
      P[c] = static_cast<float>(p);
      Q[c] = static_cast<float>(-p * r * r * sums.second[c] / n);
      R[c] = static_cast<float>(-p * sums.first[c] / n);
      pdw[c] = static_cast<float>(sums.second[c] * r);
      pdb[c] = static_cast<float>(sums.first[c]);
    }
    auto Pt = s.tile(P.data()), Qt = s.tile(Q.data()), Rt = s.tile(R.data());
    blockwise(s, [&](int64_t off, int64_t n) {
      const float* __restrict__ p = px + off;
      const float* __restrict__ g = pg + off;
      const float *__restrict__ pa = at_.data(), *__restrict__ pb = bt.data();
      const float *__restrict__ pm = mt.data(), *__restrict__ pp = Pt.data();
      const float *__restrict__ pq = Qt.data(), *__restrict__ pr = Rt.data();
      float* __restrict__ q = pdx + off;
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) {
        float gj = passes<ACT>(__builtin_fmaf(p[j], pa[j], pb[j])) ? g[j] : 0.f;
        q[j] = gj * pp[j] + (p[j] - pm[j]) * pq[j] + pr[j];
      }
    });
    return 0;
  });
  return {dx, dw, db};
}

at::Tensor bn_act_eval(at::Tensor x, at::Tensor weight, at::Tensor bias, at::Tensor running_mean,
                       at::Tensor running_var, double eps, int64_t act) {
  const int64_t C = x.size(1);
  const float *w = weight.data_ptr<float>(), *bi = bias.data_ptr<float>();
  const float *rm = running_mean.data_ptr<float>(), *rv = running_var.data_ptr<float>();
  std::vector<float> a(C), b(C);
  for (int64_t c = 0; c < C; ++c) {
    float r = 1.f / std::sqrt(rv[c] + static_cast<float>(eps));
    a[c] = w[c] * r;
    b[c] = bi[c] - rm[c] * a[c];
  }
  return normalize(x, a.data(), b.data(), act);
}
"""

FUNCTIONS = ["bn_act_train", "bn_act_backward", "bn_act_eval"]
FLAGS = ["-O3", "-march=native", "-fopenmp"]


def _cpu_flags() -> str:
    """This CPU's instruction-set flags (Linux), so a build is only reused on its kind."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return next((line for line in lines if line.startswith("flags")), platform.processor())


def build_name() -> str:
    """The extension's name: its source, flags and this CPU's kind, hashed."""
    digest = hashlib.sha256("\n".join([SOURCE, *FLAGS, platform.machine(), _cpu_flags()])
                            .encode()).hexdigest()[:12]
    return f"fer_fastkernels_{digest}"


@cache
def load():
    """The compiled kernels (built on first call, then cached), or None if no build."""
    try:
        from torch.utils.cpp_extension import load_inline

        return load_inline(build_name(), cpp_sources=[SOURCE], functions=FUNCTIONS,
                           extra_cflags=FLAGS, extra_ldflags=["-fopenmp"], verbose=False)
    except Exception as err:  # no compiler, no ninja, an unwritable cache: run eager
        warnings.warn(f"fer_lib fast path: C++ kernels unavailable ({type(err).__name__}: "
                      f"{str(err).splitlines()[0] if str(err) else ''}); training runs "
                      "eager PyTorch", RuntimeWarning, stacklevel=2)
        return None
