#!/usr/bin/env python3
"""PyTorch side of the four approximate attention variants of bench/zoo_approx_variants.hpp.

Each algorithm is written the way the seeds (../shared/seeds/, seed 001) write attention: plain
torch tensor ops in a function, with the published algorithm's steps (Informer's _prob_QK and
_update_context, FAVOR+'s softmax kernel and linear attention, Reformer's hash / sort / chunk /
look-one-back / unsort / combine-rounds, Linformer's length projections). Same settings as the
C++ entries: B=1, H=4, E=64, float32; probsparse factor 5, performer m = int(E ln E) orthogonal
features, lsh 4 rounds, chunks of 64, min(L/64, 64) buckets, linformer k = 256. PyTorch 1.13 has no
F.scaled_dot_product_attention; "dense" is softmax(q k^T / sqrt(E)) v written out (the seed's
ScaledDotProductAttention), which stores the weights like attn's weights-storing path.

Each function takes q, k, v [B, H, L, E] and returns the output, drawing its per-call randomness
(ProbSparse's key sample, LSH's rotations) inside, as the C++ entries do; the suite
(bench/torch_attention_zoo.py) times them with the backward of sum(out * G). The
<name>_forward functions take the randomness explicitly and return the output (they also make
the golden values of tests/fixtures/gen_attention_zoo_approx.py).

Run:  /usr/bin/python3 bench/torch_attention_zoo_approx.py [L ...] [--no-dense] [--threads N]
Prints one line per (L, variant): best and mean time of forward + backward.
"""
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import openblas_core  # noqa: E402

OPENBLAS = openblas_core.configure()  # before torch loads OpenBLAS

import torch  # noqa: E402


def dense(q, k, v):
    scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(q.size(-1))
    weights = torch.softmax(scores, dim=-1)
    torch.matmul(weights, v).sum().backward()


def probsparse_forward(q, k, v, index_sample, u):
    """Informer's ProbSparse attention (non-causal) with a given key sample [L_Q, U] and u top queries."""
    B, H, L_Q, E = q.shape
    L_K = k.size(2)
    # _prob_QK: sampled scores, sparsity measure M = max - mean over the sample, top-u queries
    with torch.no_grad():
        K_expand = k.unsqueeze(-3).expand(B, H, L_Q, L_K, E)
        K_sample = K_expand[:, :, torch.arange(L_Q).unsqueeze(1), index_sample, :]
        Q_K_sample = torch.matmul(q.unsqueeze(-2), K_sample.transpose(-2, -1)).squeeze(-2)
        M = Q_K_sample.max(-1)[0] - Q_K_sample.mean(-1)
        M_top = M.topk(u, sorted=False)[1]
    Q_reduce = q[torch.arange(B)[:, None, None], torch.arange(H)[None, :, None], M_top, :]
    scores = torch.matmul(Q_reduce, k.transpose(-2, -1)) / math.sqrt(E)
    attn = torch.softmax(scores, dim=-1)
    # _get_initial_context (mean of V) and _update_context (the selected rows)
    context = v.mean(dim=-2, keepdim=True).expand(B, H, L_Q, v.size(-1)).clone()
    context[torch.arange(B)[:, None, None], torch.arange(H)[None, :, None], M_top, :] = torch.matmul(attn, v)
    return context


def probsparse(q, k, v, factor=5):
    L_Q, L_K = q.size(2), k.size(2)
    U_part = min(L_K, factor * int(math.ceil(math.log(L_K))))
    u = min(L_Q, factor * int(math.ceil(math.log(L_Q))))
    return probsparse_forward(q, k, v, torch.randint(L_K, (L_Q, U_part)), u)


_features = {}


def orthogonal_features(m, d):
    blocks = []
    for _ in range((m + d - 1) // d):
        q_mat, _ = torch.linalg.qr(torch.randn(d, d))
        blocks.append(q_mat.t())
    w = torch.cat(blocks)[:m]
    return torch.randn(m, d).norm(dim=1, keepdim=True) * w


def softmax_kernel(x, w, is_query):
    d = x.size(-1)
    x = x * d ** -0.25
    proj = torch.matmul(x, w.t())
    diag = (x ** 2).sum(-1, keepdim=True) / 2
    logits = proj - diag
    if is_query:
        stab = logits.amax(dim=-1, keepdim=True)
    else:
        stab = logits.amax(dim=(-1, -2), keepdim=True)
    return torch.exp(logits - stab) / math.sqrt(w.size(0))


def performer_forward(q, k, v, w, eps=1e-6):
    """FAVOR+ (non-causal) with features w [m, E]."""
    qf, kf = softmax_kernel(q, w, True), softmax_kernel(k, w, False)
    kv = torch.einsum('bhnm,bhne->bhme', kf, v)
    z = 1.0 / (torch.einsum('bhnm,bhm->bhn', qf, kf.sum(dim=-2)) + eps)
    return torch.einsum('bhnm,bhme,bhn->bhne', qf, kv, z)


def performer(q, k, v):
    E = q.size(-1)
    m = int(E * math.log(E))
    key = (q.size(2), E)
    if key not in _features:
        _features[key] = orthogonal_features(m, E)
    return performer_forward(q, k, v, _features[key])


def lsh_forward(q, v, rotations, chunk):
    """Reformer's LSH attention (shared QK = q, non-causal), rotations [n_hashes, E, n_buckets / 2];
    L must be a multiple of chunk."""
    B, H, L, E = q.shape
    n_hashes = rotations.size(0)
    qk = q.reshape(B * H, L, E)
    vv = v.reshape(B * H, L, E)
    N = B * H
    with torch.no_grad():
        rotated = torch.einsum('nle,res->nrls', qk, rotations)
        buckets = torch.cat([rotated, -rotated], dim=-1).argmax(dim=-1)       # [N, r, L]
        ticker = torch.arange(L).expand(N, n_hashes, L)
        order = (buckets * L + ticker).argsort(dim=-1)                          # sort by bucket, then position
        order = order.reshape(N, n_hashes * L)
        undo = order.reshape(N, n_hashes, L).argsort(dim=-1)
    st = order % L
    sqk = qk.gather(1, st.unsqueeze(-1).expand(-1, -1, E))
    sv = vv.gather(1, st.unsqueeze(-1).expand(-1, -1, E))
    nc = n_hashes * L // chunk
    bq = sqk.reshape(N, nc, chunk, E)
    bk = torch.nn.functional.normalize(bq, p=2, dim=-1)
    bvv = sv.reshape(N, nc, chunk, E)
    bt = st.reshape(N, nc, chunk)
    # look one back (within each round: chunk 0 of a round looks at that round's last chunk)
    def look_back(x):
        x = x.reshape(N, n_hashes, nc // n_hashes, *x.shape[2:])
        prev = torch.roll(x, 1, dims=2)
        return torch.cat([x, prev], dim=3).reshape(N, nc, 2 * chunk, *x.shape[4:])
    bk2, bv2, bt2 = look_back(bk), look_back(bvv), look_back(bt)
    dots = torch.matmul(bq, bk2.transpose(-2, -1)) / math.sqrt(E)
    self_mask = bt.unsqueeze(-1) == bt2.unsqueeze(-2)
    dots = dots.masked_fill(self_mask, -1e5)
    lse = torch.logsumexp(dots, dim=-1, keepdim=True)
    p = torch.exp(dots - lse)
    bo = torch.matmul(p, bv2)                                                   # [N, nc, chunk, E]
    so = bo.reshape(N, n_hashes, L, E)
    slog = lse.reshape(N, n_hashes, L)
    o = so.gather(2, undo.unsqueeze(-1).expand(-1, -1, -1, E))
    logits = slog.gather(2, undo)
    probs = torch.exp(logits - torch.logsumexp(logits, dim=1, keepdim=True))
    return (o * probs.unsqueeze(-1)).sum(dim=1).reshape(B, H, L, E)


def lsh(q, k, v, n_hashes=4, chunk=64):
    L, E = q.size(2), q.size(3)
    # Reformer's L / chunk buckets, capped at 64: the hashing costs L E n_buckets / 2 per round,
    # quadratic in L if the bucket count grows with it (as in bench/zoo_approx_variants.hpp).
    n_buckets = min(max(2, ((L + chunk - 1) // chunk + 1) // 2 * 2), 64)
    return lsh_forward(q, v, torch.randn(n_hashes, E, n_buckets // 2), chunk)


_proj = {}


def linformer_forward(q, k, v, E_proj, F_proj):
    """Linformer with length projections E_proj, F_proj [S, k]."""
    keys = torch.einsum('bhnd,nk->bhkd', k, E_proj)
    values = torch.einsum('bhnd,nk->bhkd', v, F_proj)
    scores = torch.matmul(q, keys.transpose(-2, -1)) / math.sqrt(q.size(-1))
    return torch.matmul(torch.softmax(scores, dim=-1), values)


def linformer(q, k, v, kp=256):
    S = k.size(2)
    if S not in _proj:
        _proj[S] = (torch.randn(S, kp) / math.sqrt(kp), torch.randn(S, kp) / math.sqrt(kp))
    return linformer_forward(q, k, v, *_proj[S])


VARIANTS = {"dense": dense, "probsparse": probsparse, "performer": performer, "lsh": lsh, "linformer": linformer}


def time_variant(fn, L, B=1, H=4, E=64, min_time=1.0, max_reps=50):
    q, k, v = (torch.randn(B, H, L, E, requires_grad=True) for _ in range(3))

    def once():
        for t in (q, k, v):
            t.grad = None
        fn(q, k, v).sum().backward()

    once()  # warm-up
    reps, best, t0 = 0, float("inf"), time.perf_counter()
    while reps < 3 or (time.perf_counter() - t0 < min_time and reps < max_reps):
        s = time.perf_counter()
        once()
        best = min(best, time.perf_counter() - s)
        reps += 1
    return best, (time.perf_counter() - t0) / reps, reps


def main():
    args = sys.argv[1:]
    threads = 2
    if "--threads" in args:
        i = args.index("--threads")
        threads = int(args[i + 1])
        del args[i:i + 2]
    names = list(VARIANTS)
    if "--no-dense" in args:
        args.remove("--no-dense")
        names.remove("dense")
    Ls = [int(a) for a in args] or [1024, 4096]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {threads} threads, {OPENBLAS}")
    for L in Ls:
        for name in names:
            best, mean, reps = time_variant(VARIANTS[name], L)
            print(f"L={L:6d} {name:14s} fwd+bwd best {best * 1e3:9.3f} ms  mean {mean * 1e3:9.3f} ms  ({reps} reps)",
                  flush=True)


if __name__ == "__main__":
    main()
