"""PyTorch side of bench/bench_decoding.cpp: the same generation loop (d_model 64, 4 heads, 2
post-norm decoder layers, feed-forward 128, final LayerNorm, batch 1, memory of 96 positions,
float32, eval, no_grad), each step feeding the last output row back as the next input:
  no cache: nn.TransformerDecoder on the whole prefix with a causal mask (PyTorch 1.13 has no
            KV cache in nn.TransformerDecoder), keep the last row;
  cache:    the same layers evaluated step by step from their weights with keys/values appended
            to a cache (written out below with torch ops), checked equal to the no-cache output.
Prints the time per generated step for each run and writes JSON.

  /usr/bin/python3 bench/torch_decoding.py --threads 1 [--steps 100 1000 4000] [--prefix 100 1000 4000] [--json out.json]

OPENBLAS_CORETYPE: set it in the environment where Debian's OpenBLAS misdetects the CPU (an
AVX-512 Xeon, see docs/benchmarks.md); this script reports what it finds and sets nothing.
"""
import argparse
import json
import os
import time

import torch
import torch.nn.functional as F

D, H, LAYERS, FF, MEM = 64, 4, 2, 128, 96


def cached_step(dec, x, memory, caches):
    """One new position x [1, 1, D] through every post-norm layer with K/V caches."""
    for li, layer in enumerate(dec.layers):
        c = caches[li]
        sa = layer.self_attn
        qkv = F.linear(x, sa.in_proj_weight, sa.in_proj_bias)
        q, k, v = qkv.split(D, dim=-1)
        c["k"] = k if c["k"] is None else torch.cat([c["k"], k], 1)
        c["v"] = v if c["v"] is None else torch.cat([c["v"], v], 1)
        a = attend(q, c["k"], c["v"], sa)
        x = layer.norm1(x + a)
        ca = layer.multihead_attn
        if c["mk"] is None:
            w, b = ca.in_proj_weight, ca.in_proj_bias
            c["mk"] = F.linear(memory, w[D:2 * D], b[D:2 * D])
            c["mv"] = F.linear(memory, w[2 * D:], b[2 * D:])
        qm = F.linear(x, ca.in_proj_weight[:D], ca.in_proj_bias[:D])
        x = layer.norm2(x + attend(qm, c["mk"], c["mv"], ca))
        x = layer.norm3(x + layer.linear2(F.relu(layer.linear1(x))))
    return dec.norm(x)


def attend(q, k, v, mha):
    """softmax(q k^T / sqrt(dh)) v per head, then out_proj. q [1, 1, D], k/v [1, S, D]."""
    S, dh = k.size(1), D // H
    qh = q.view(1, 1, H, dh).transpose(1, 2)
    kh = k.view(1, S, H, dh).transpose(1, 2)
    vh = v.view(1, S, H, dh).transpose(1, 2)
    w = torch.softmax(qh @ kh.transpose(-1, -2) / dh ** 0.5, -1)
    o = (w @ vh).transpose(1, 2).reshape(1, 1, D)
    return mha.out_proj(o)


def generate(dec, memory, start, steps, cached):
    x = start
    if cached:
        caches = [{"k": None, "v": None, "mk": None, "mv": None} for _ in dec.layers]
        outs = []
        for _ in range(steps):
            x = cached_step(dec, x, memory, caches)
            outs.append(x)
        return x, torch.cat(outs, 1)
    prefix = [start]
    for t in range(steps):
        T = t + 1
        mask = torch.triu(torch.full((T, T), float("-inf")), 1)
        y = dec(torch.cat(prefix, 1), memory, tgt_mask=mask)
        x = y[:, t:t + 1]
        prefix.append(x)
    return x, torch.cat(prefix[1:], 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, nargs="+", default=[100, 1000, 4000])
    ap.add_argument("--recompute-max", type=int, default=1000,
                    help="generate without the cache only up to this many steps (4,000 would take hours)")
    ap.add_argument("--prefix", type=int, nargs="*", default=[100, 1000, 4000],
                    help="also time one no-cache step at these prefix lengths")
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    layer = torch.nn.TransformerDecoderLayer(D, H, FF, dropout=0.1, batch_first=True)
    dec = torch.nn.TransformerDecoder(layer, LAYERS, norm=torch.nn.LayerNorm(D)).eval()
    memory, start = torch.randn(1, MEM, D), torch.randn(1, 1, D)
    results = {}
    with torch.no_grad():
        _, a = generate(dec, memory, start, 20, True)
        _, b = generate(dec, memory, start, 20, False)
        err = (a - b).abs().max().item()
        print(f"cached vs recomputed, 20 steps: max abs difference {err:.2e}")
        assert err < 1e-4
        for steps in args.steps:
            for cached in (True, False):
                if not cached and steps > args.recompute_max:
                    continue
                t0 = time.perf_counter()
                generate(dec, memory, start, steps, cached)
                dt = time.perf_counter() - t0
                key = f"cache:{int(cached)}/steps:{steps}"
                results[key] = dt / steps
                print(f"{key}: {dt:.2f} s, {1e6 * dt / steps:.0f} us per step", flush=True)
        for n in args.prefix:  # one recomputing step at a prefix of n positions
            prefix = torch.randn(1, n, D)
            mask = torch.triu(torch.full((n, n), float("-inf")), 1)
            reps = max(1, 200 // n)
            dec(prefix, memory, tgt_mask=mask)
            t0 = time.perf_counter()
            for _ in range(reps):
                dec(prefix, memory, tgt_mask=mask)
            dt = (time.perf_counter() - t0) / reps
            results[f"recompute_step/prefix:{n}"] = dt
            print(f"recompute step at prefix {n}: {1e3 * dt:.2f} ms", flush=True)
    info = {"torch": torch.__version__, "threads": args.threads,
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "unset"), "seconds_per_step": results}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(info, f, indent=1)
    print(json.dumps(info))


if __name__ == "__main__":
    main()
