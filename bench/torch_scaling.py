"""PyTorch at the shape of bench_attention_efficient ([1, 1, L, 32], float32), written as Google
Benchmark JSON so bench/plot_bench_json can draw attn and PyTorch on one plot:
  /usr/bin/python3 bench/torch_scaling.py --threads 2 --json torch.json
PyTorch 1.13 has no fused SDPA: dense attention is softmax(q k^T / sqrt(E)) v; linear attention
is the elu+1 form; windowed attention is dense attention with the band mask (what one writes in
PyTorch without a custom kernel).
"""
import argparse
import json
import math
import time

import os
import sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import openblas_core  # noqa: E402

OPENBLAS = openblas_core.configure()  # before torch loads OpenBLAS

import torch


def timeit(fn, min_time=0.2):
    fn()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        el = time.perf_counter() - t0
        if el >= min_time and n >= 2:
            return el / n


def dense(q, k, v, mask=None):
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        s = s.masked_fill(mask, float("-inf"))
    return torch.softmax(s, -1) @ v


def linear(q, k, v, eps=1e-6):
    fq, fk = torch.nn.functional.elu(q) + 1, torch.nn.functional.elu(k) + 1
    kv = fk.transpose(-2, -1) @ v
    z = fq @ fk.sum(-2, keepdim=True).transpose(-2, -1)
    return (fq @ kv) / (z + eps)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    runs = []
    for name, fn, Ls in (("torch_dense", dense, [128, 256, 1024, 4096, 8192]),
                         ("torch_linear", linear, [128, 256, 1024, 4096, 16384, 65536]),
                         ("torch_windowed_dense_band", None, [128, 256, 1024, 4096])):
        for L in Ls:
            q, k, v = (torch.randn(1, 1, L, 32, requires_grad=True) for _ in range(3))
            if fn is None:
                i = torch.arange(L)
                band = (i[None, :] < i[:, None] - 64) | (i[None, :] > i[:, None] + 63)
                f = lambda: dense(q, k, v, band)
            else:
                f = lambda: fn(q, k, v)

            def fb():
                f().sum().backward()
            for tag, g in (("fwd", f), ("fwd_bwd", fb)):
                if tag == "fwd":
                    with torch.no_grad():
                        t = timeit(g)
                else:
                    t = timeit(g)
                runs.append({"name": f"{name}/{tag}/{L}/real_time", "run_type": "iteration",
                             "real_time": t * 1e3, "time_unit": "ms", "L": L})
                print(f"{name}/{tag}/{L}: {t * 1e3:.3f} ms")
    with open(args.json, "w") as fh:
        json.dump({"context": {"torch": torch.__version__, "threads": args.threads}, "benchmarks": runs}, fh, indent=1)


if __name__ == "__main__":
    main()
