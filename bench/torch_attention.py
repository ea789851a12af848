#!/usr/bin/env python3
"""PyTorch side of bench/bench_attention_dense.cpp: the same SDPA and MHA workloads, float32.

Run:  /usr/bin/python3 bench/torch_attention.py [--quick]
PyTorch 1.13 has no F.scaled_dot_product_attention, so SDPA is softmax(q k^T * scale) v written
out with torch ops (what users of 1.13 write); MHA is torch.nn.MultiheadAttention(batch_first=True).
"""
import math
import sys
import time

import os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import openblas_core  # noqa: E402

OPENBLAS = openblas_core.configure()  # before torch loads OpenBLAS

import torch

torch.set_num_threads(2)
torch.manual_seed(0)


def timeit(fn, min_time=0.5, min_iters=3):
    """Seconds per call, at PyTorch's fastest way of using the 2 cores (openblas_core.fastest)."""
    return openblas_core.fastest(torch, 2, lambda: timeit_once(fn, min_time, min_iters))[0]


def timeit_once(fn, min_time, min_iters):
    fn()  # warm-up
    iters, t0 = 0, time.perf_counter()
    while True:
        fn()
        iters += 1
        el = time.perf_counter() - t0
        if el >= min_time and iters >= min_iters:
            return el / iters


def sdpa(q, k, v):
    s = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(q.size(-1)))
    return torch.matmul(torch.softmax(s, dim=-1), v)


def sdpa_flops(B, H, L, D):  # two products
    return 4.0 * B * H * L * L * D


def mha_flops(B, L, E, H):  # 4 projections + attention
    return 8.0 * B * L * E * E + 4.0 * B * L * L * E


def main():
    quick = "--quick" in sys.argv
    configs = ", ".join(openblas_core.config_label(*c) for c in openblas_core.thread_configs(2))
    print(f"torch {torch.__version__}, 2 cores, each case at its fastest of {configs}")
    print(f"{'case':44s} {'ms':>10s} {'GFLOP/s':>9s}")
    Ls = [128, 512, 1024, 2048] if quick else [128, 256, 512, 1024, 2048, 4096]
    for L in Ls:
        B, H, D = 1, 4, 64
        q, k, v = (torch.randn(B, H, L, D, requires_grad=True) for _ in range(3))
        with torch.no_grad():
            t = timeit(lambda: sdpa(q, k, v))
        f = sdpa_flops(B, H, L, D)
        print(f"{'SDPA fwd B=1 H=4 D=64 L=' + str(L):44s} {t * 1e3:10.3f} {f / t / 1e9:9.1f}")

        def fb():
            sdpa(q, k, v).sum().backward()
        t = timeit(fb)
        print(f"{'SDPA fwd+bwd B=1 H=4 D=64 L=' + str(L):44s} {t * 1e3:10.3f} {3 * f / t / 1e9:9.1f}")
    mha_cases = [(8, 512, 64, 4)] + [(1, L, 64, 4) for L in Ls]
    for (B, L, E, H) in mha_cases:
        mha = torch.nn.MultiheadAttention(E, H, batch_first=True)
        x = torch.randn(B, L, E, requires_grad=True)
        f = mha_flops(B, L, E, H)
        with torch.no_grad():
            t = timeit(lambda: mha(x, x, x, need_weights=False))
        print(f"{'MHA fwd B=%d L=%d E=%d H=%d' % (B, L, E, H):44s} {t * 1e3:10.3f} {f / t / 1e9:9.1f}")

        def fb():
            o, _ = mha(x, x, x, need_weights=False)
            o.sum().backward()
        t = timeit(fb)
        print(f"{'MHA fwd+bwd B=%d L=%d E=%d H=%d' % (B, L, E, H):44s} {t * 1e3:10.3f} {3 * f / t / 1e9:9.1f}")


if __name__ == "__main__":
    main()
