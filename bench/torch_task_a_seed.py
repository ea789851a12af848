"""The seed's task A run in PyTorch (docs/examples.md, exact settings), for comparison with
`sine_anomaly --preset seed`: raw amplitudes, BiLSTM(1 -> 32) + attention pooling, Adam 1e-3,
batch 32, 15 epochs, early stopping (patience 5) on validation loss, best weights restored,
test ROC-AUC. Data drawn as in the seed (numpy-free, torch RNG), so runs differ from attn's data
draw; compare the range over seeds, not single runs.
  /usr/bin/python3 bench/torch_task_a_seed.py --seeds 42 1 2 --threads 1
"""
import argparse
import copy
import math
import time

import os
import sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import openblas_core  # noqa: E402

OPENBLAS = openblas_core.configure()  # before torch loads OpenBLAS

import torch

from torch_tasks import AnomalyModel


def make_data(n, T, g):
    t = torch.linspace(0, 2 * math.pi, T)
    x = torch.empty(n, T)
    y = torch.zeros(n)
    for i in range(n):
        freq = 1 + 3 * torch.rand(1, generator=g).item()
        amp = 1 + 9 * torch.rand(1, generator=g).item()
        x[i] = amp * torch.sin(freq * t)
        if i >= n // 2:
            s = int(torch.rand(1, generator=g).item() * 0.9 * T)
            e = min(T, s + int((0.1 + 0.4 * torch.rand(1, generator=g).item()) * T))
            x[i, s:e] = x[i, s]
            y[i] = 1
    perm = torch.randperm(n, generator=g)
    return x[perm].unsqueeze(-1), y[perm]


def auc(scores, labels):
    order = torch.argsort(scores)
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=scores.dtype)
    pos = labels == 1
    n1, n0 = pos.sum().item(), (~pos).sum().item()
    return (ranks[pos].sum().item() - n1 * (n1 + 1) / 2) / (n1 * n0)


def run(seed):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x, y = make_data(5000, 500, g)
    xtr, ytr, xva, yva, xte, yte = x[:3500], y[:3500], x[3500:4250], y[3500:4250], x[4250:], y[4250:]
    model = AnomalyModel(1, 32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    lossf = torch.nn.BCEWithLogitsLoss()
    best, best_state, bad = float("inf"), None, 0
    t0 = time.perf_counter()
    for epoch in range(15):
        model.train()
        perm = torch.randperm(3500)
        for b in range(0, 3500, 32):
            idx = perm[b : b + 32]
            opt.zero_grad()
            loss = lossf(model(xtr[idx])[0], ytr[idx])
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            vl = lossf(model(xva)[0], yva).item()
        if vl < best:
            best, best_state, bad = vl, copy.deepcopy(model.state_dict()), 0
        else:
            bad += 1
            if bad >= 5:
                break
    model.load_state_dict(best_state)
    with torch.no_grad():
        s = torch.sigmoid(model(xte)[0])
    return auc(s, yte), best, time.perf_counter() - t0, epoch + 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for s in args.seeds:
        a, vl, secs, epochs = run(s)
        print(f"seed {s}: test ROC-AUC {a:.4f}, best val loss {vl:.4f}, {epochs} epochs, {secs:.0f}s", flush=True)


if __name__ == "__main__":
    main()
