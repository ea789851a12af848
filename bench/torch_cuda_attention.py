#!/usr/bin/env python3
"""PyTorch CUDA side of bench/cuda_attention.cpp: the same shapes, float32, same FLOP counting.

Run on a GPU machine:  python3 bench/torch_cuda_attention.py [--quick]
SDPA is torch.nn.functional.scaled_dot_product_attention (PyTorch picks its fp32 kernel: the
memory-efficient one on Hopper); TF32 stays off (PyTorch's default for matmul), as in attn.
Timings: median of CUDA-synchronised calls after one warm-up, like the C++ side.
"""
import statistics
import sys
import time

import torch
import torch.nn.functional as F


def median_seconds(fn):
    fn()
    torch.cuda.synchronize()
    t, total = [], 0.0
    while len(t) < 3 or (total < 1.0 and len(t) < 20):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        s = time.perf_counter() - t0
        t.append(s)
        total += s
    return statistics.median(t)


def row(name, s, flops):
    print(f"{name:44s} {s * 1e3:10.3f} {flops / s / 1e9:10.1f}")


def main():
    quick = "--quick" in sys.argv
    torch.manual_seed(0)
    dev = torch.device("cuda")
    p = torch.cuda.get_device_properties(0)
    print(f"torch {torch.__version__}, {p.name}, {p.multi_processor_count} SMs, "
          f"allow_tf32 {torch.backends.cuda.matmul.allow_tf32}")
    print(f"{'case':44s} {'ms':>10s} {'GFLOP/s':>10s}")
    B, H, D = 1, 16, 64
    for L in ([1024, 4096] if quick else [1024, 2048, 4096, 8192, 16384]):
        f = 4.0 * B * H * L * L * D
        q, k, v = (torch.randn(B, H, L, D, device=dev) for _ in range(3))
        with torch.no_grad():
            row(f"SDPA fwd B={B} H={H} D={D} L={L}", median_seconds(lambda: F.scaled_dot_product_attention(q, k, v)), f)
        q, k, v = (x.requires_grad_() for x in (q, k, v))

        def fb():
            for x in (q, k, v):
                x.grad = None
            F.scaled_dot_product_attention(q, k, v).sum().backward()
        row(f"SDPA fwd+bwd B={B} H={H} D={D} L={L}", median_seconds(fb), 3 * f)
    E, heads = 64, 4
    for (b, L) in [(8, 512), (8, 4096)]:
        mha = torch.nn.MultiheadAttention(E, heads, batch_first=True).to(dev)
        x = torch.randn(b, L, E, device=dev, requires_grad=True)

        def mfb():
            mha.zero_grad()
            x.grad = None
            mha(x, x, x, need_weights=False)[0].sum().backward()
        row(f"MHA fwd+bwd B={b} L={L} E=64 H=4", median_seconds(mfb), 3 * (8.0 * b * L * E * E + 4.0 * b * L * L * E))


if __name__ == "__main__":
    main()
