#!/usr/bin/python3
"""PyTorch side of bench/bench_attention_zoo.cpp: the same variants at the same shapes (B=1, H=4,
E=64, float32, 2 threads), forward+backward (loss = sum(out * G)), written the way the seed
(seed 001) writes them in PyTorch:
  dense:          softmax(q k^T / sqrt(E)) v (PyTorch 1.13 has no F.scaled_dot_product_attention)
  dense (tiled):  the seed's chunked_attention (query chunks of 32, each a full softmax over K)
  checkpoint:     torch.utils.checkpoint.checkpoint(dense, q, k, v)
  block-local:    the seed's SparseAttention loop: attention inside each window of 128
  windowed, bs *: dense attention with the pattern as an L x L mask (the seed's
                  SparseAttentionPatterns build masks), the same patterns as attn's layouts
  linear:         phi(q) (phi(k)^T v) / (phi(q) phi(k)^T 1 + eps), phi = elu + 1
  probsparse, performer, lsh, linformer: bench/torch_attention_zoo_approx.py's versions, with the
                  settings of bench/zoo_approx_variants.hpp (randomness drawn inside each call)
Writes a CSV (variant,L,ms) that bench_attention_zoo reads with --torch; variant names match.

  /usr/bin/python3 bench/torch_attention_zoo.py out/attention_zoo/torch.csv [--min-L 256] [--max-L 4096]
                   [--only SUBSTRING] [--budget SECONDS]
"""
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import openblas_core  # noqa: E402

OPENBLAS = openblas_core.configure()  # before torch loads OpenBLAS

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.checkpoint import checkpoint  # noqa: E402

import torch_attention_zoo_approx as approx  # noqa: E402

torch.set_num_threads(2)
H, E, BLOCK = 4, 64, 64


def dense(q, k, v, mask=None):
    s = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(q.size(-1))
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    return torch.matmul(torch.softmax(s, dim=-1), v)


def chunked(q, k, v, chunk=32):
    return torch.cat([dense(q[:, :, i:i + chunk], k, v) for i in range(0, q.size(2), chunk)], dim=2)


def block_local(q, k, v, w=128):
    return torch.cat([dense(q[:, :, i:i + w], k[:, :, i:i + w], v[:, :, i:i + w]) for i in range(0, q.size(2), w)],
                     dim=2)


def linear(q, k, v, eps=1e-6):
    qf, kf = F.elu(q) + 1, F.elu(k) + 1
    num = qf @ (kf.transpose(-2, -1) @ v)
    den = qf @ kf.sum(-2, keepdim=True).transpose(-2, -1)
    return num / (den + eps)


def band_mask(L, left, right):
    i = torch.arange(L)[:, None]
    j = torch.arange(L)[None, :]
    return (j >= i - left) & (j <= i + right)


def block_mask(L, rows):
    nb = (L + BLOCK - 1) // BLOCK
    m = torch.zeros(nb, nb, dtype=torch.bool)
    for qb in range(nb):
        for kb in rows(qb, nb):
            if 0 <= kb < nb:
                m[qb, kb] = True
    return m.repeat_interleave(BLOCK, 0).repeat_interleave(BLOCK, 1)[:L, :L]


def bigbird_rows(L, g=1, w=1, r=2, seed=1):
    gen = torch.Generator().manual_seed(seed)  # random blocks: same count as attn's, not the same draw
    nb = (L + BLOCK - 1) // BLOCK
    rnd = torch.randint(0, nb, (nb, r), generator=gen)

    def rows(qb, nb):
        if qb < g:
            return range(nb)
        return list(range(g)) + [qb + t for t in range(-w, w + 1)] + rnd[qb].tolist()
    return rows


def patterns(L):
    nb = (L + BLOCK - 1) // BLOCK
    stride = max(1, (nb + 3) // 4)
    return {
        "windowed (+-64)": band_mask(L, 64, 64),
        "bs sliding window": block_mask(L, lambda qb, nb: [qb - 1, qb, qb + 1]),
        "bs dilated window": block_mask(L, lambda qb, nb: [qb - 4, qb - 2, qb, qb + 2, qb + 4]),
        "bs strided": block_mask(L, lambda qb, nb: [qb - 1, qb, qb + 1] + list(range(qb % stride, nb, stride))),
        "bs global+window": block_mask(L, lambda qb, nb: range(nb) if qb < 1 else [0, qb - 1, qb, qb + 1]),
        "bs bigbird": block_mask(L, bigbird_rows(L)),
    }


def time_fwd_bwd(fn, L, budget=0.6):
    q, k, v = (torch.randn(1, H, L, E, requires_grad=True) for _ in range(3))
    g = torch.randn(1, H, L, E)
    times = []
    warm = False  # the first call warms up, as in bench_attention_zoo.cpp (kept when over 10 s)
    t0 = time.perf_counter()
    while not times or (len(times) < 25 and time.perf_counter() - t0 < budget):
        q.grad = k.grad = v.grad = None
        s = time.perf_counter()
        (fn(q, k, v) * g).sum().backward()
        t = time.perf_counter() - s
        if not warm and t < 10.0:
            warm = True
            continue
        times.append(t)
    times.sort()
    return times[len(times) // 2] * 1e3


def main():
    out = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("--") else "torch_attention_zoo.csv"
    max_L = int(sys.argv[sys.argv.index("--max-L") + 1]) if "--max-L" in sys.argv else 4096
    min_L = int(sys.argv[sys.argv.index("--min-L") + 1]) if "--min-L" in sys.argv else 256
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else ""
    budget = float(sys.argv[sys.argv.index("--budget") + 1]) if "--budget" in sys.argv else 0.6
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {OPENBLAS}", file=sys.stderr)
    rows = []
    L = min_L
    while L <= max_L:
        cases = {
            "dense (weights-storing)": dense,
            "dense (tiled)": chunked,
            "checkpoint(dense)": lambda q, k, v: checkpoint(dense, q, k, v, use_reentrant=True),
            "block-local (128)": block_local,
            "linear (elu+1)": linear,
            "probsparse": approx.probsparse,
            "performer": approx.performer,
            "lsh": approx.lsh,
            "linformer": approx.linformer,
        }
        for name, mask in patterns(L).items():
            cases[name] = (lambda m: lambda q, k, v: dense(q, k, v, m))(mask)
        for name, fn in cases.items():
            if only not in name:
                continue
            ms = time_fwd_bwd(fn, L, budget)
            rows.append((name, L, ms))
            print(f"torch {name:26s} L={L:6d}  fwd+bwd {ms:10.2f} ms", file=sys.stderr)
        L *= 2
    with open(out, "w") as f:
        f.write("variant,L,ms\n")
        for name, L, ms in rows:
            f.write(f"{name},{L},{ms:.4f}\n")


if __name__ == "__main__":
    main()
