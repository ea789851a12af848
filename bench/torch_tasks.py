"""PyTorch side of bench/bench_tasks.cpp: the same reference-task work, timed the same way.

Run with Debian's PyTorch and the fair OpenBLAS kernel (see docs/benchmarks.md and bench/openblas_core.py):
  /usr/bin/python3 bench/torch_tasks.py --threads 2 --json out.json
On a GPU (bench_tasks' *_CUDA cases): python3 bench/torch_tasks.py --device cuda (the models and
the data live on the GPU, cuDNN's fused LSTM runs them, every timed call ends with a synchronize).
Task A: BiLSTM(2 -> 32) + attention pooling, 3500 series x 500 steps, batch 32, Adam 5e-3,
gradient clipping 1.0 (attn's default settings); inference on 750 series. Task B: 2-layer
LSTM(1 -> 64) + attention, 980 windows of 20, full batch, Adam 1e-3.
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
import torch.nn as nn


class AnomalyModel(nn.Module):
    def __init__(self, channels, hidden):
        super().__init__()
        self.lstm = nn.LSTM(channels, hidden, batch_first=True, bidirectional=True)
        self.attention = nn.Sequential(nn.Linear(2 * hidden, 2 * hidden), nn.Tanh(), nn.Linear(2 * hidden, 1))
        self.fc = nn.Linear(2 * hidden, 1)

    def forward(self, x):
        h, _ = self.lstm(x)
        w = torch.softmax(self.attention(h).squeeze(-1), dim=1)
        ctx = torch.sum(w.unsqueeze(-1) * h, dim=1)
        return self.fc(ctx).squeeze(-1), w


class Attention(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.attn = nn.Linear(hidden, hidden)
        self.context = nn.Linear(hidden, 1, bias=False)

    def forward(self, h):
        w = torch.softmax(self.context(torch.tanh(self.attn(h))).squeeze(2), dim=1)
        return torch.sum(w.unsqueeze(2) * h, dim=1), w


class ForecastModel(nn.Module):
    def __init__(self, hidden=64, layers=2):
        super().__init__()
        self.lstm = nn.LSTM(1, hidden, layers, batch_first=True)
        self.attention = Attention(hidden)
        self.fc = nn.Linear(hidden, 1)

    def forward(self, x):
        h, _ = self.lstm(x)
        ctx, w = self.attention(h)
        return self.fc(ctx), w


def task_a_data(n, T=500, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 2 * math.pi, T)
    freq = 1 + 3 * torch.rand(n, 1, generator=g)
    amp = 1 + 9 * torch.rand(n, 1, generator=g)
    x = amp * torch.sin(freq * t)
    for i in range(n // 2):  # flat anomalies in half of the series
        s = int(torch.rand(1, generator=g) * 0.9 * T)
        e = min(T, s + int((0.1 + 0.4 * torch.rand(1, generator=g)) * T))
        x[i, s:e] = x[i, s]
    x = x / x.abs().amax(dim=1, keepdim=True)
    d = torch.cat([torch.zeros(n, 1), x[:, 1:] - x[:, :-1]], dim=1)
    y = torch.zeros(n)
    y[: n // 2] = 1
    return torch.stack([x, d], dim=-1), y


def timed(fn, reps):
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def measure(reps=2, device="cpu", threads=None):
    """{name: (median seconds, PyTorch's thread configuration)} for TaskA_TrainEpoch,
    TaskA_Inference750, TaskB_TrainEpoch. With `threads` (on the CPU), each at PyTorch's fastest
    way of using that many cores (openblas_core.fastest); otherwise as set, configuration ""."""
    def timed_at(fn, n):
        if threads is None or device != "cpu":
            return timed(fn, n), ""
        return openblas_core.fastest(torch, threads, lambda: timed(fn, n))[:2]

    torch.manual_seed(0)
    results = {}

    x, y = (t.to(device) for t in task_a_data(3500))
    model = AnomalyModel(2, 32).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    loss_fn = nn.BCEWithLogitsLoss()

    def epoch_a():
        for b in range(0, x.shape[0], 32):
            opt.zero_grad()
            loss = loss_fn(model(x[b : b + 32])[0], y[b : b + 32])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

    results["TaskA_TrainEpoch"] = timed_at(epoch_a, reps)
    xt = task_a_data(750, seed=1)[0].to(device)
    model.eval()

    def infer_a():
        with torch.no_grad():
            torch.sigmoid(model(xt)[0])

    results["TaskA_Inference750"] = timed_at(infer_a, max(5, reps))

    t = torch.linspace(0, 50, 1000)
    s = torch.sin(t)
    xb = torch.stack([s[i : i + 20] for i in range(980)]).unsqueeze(-1).to(device)
    yb = torch.stack([s[i + 20 : i + 21] for i in range(980)]).to(device)
    fm = ForecastModel().to(device)
    fopt = torch.optim.Adam(fm.parameters(), lr=1e-3)
    mse = nn.MSELoss()

    def epoch_b():
        fopt.zero_grad()
        loss = mse(fm(xb)[0], yb)
        loss.backward()
        fopt.step()

    results["TaskB_TrainEpoch"] = timed_at(epoch_b, max(10, reps))
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--json", default="")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = measure(args.reps, args.device, args.threads if args.device == "cpu" else None)
    for k, (v, cfg) in results.items():
        print(f"{k:24s} {v * 1e3:10.1f} ms  {cfg}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "device": args.device,
                       "seconds": {k: v for k, (v, _) in results.items()},
                       "thread_configs": {k: c for k, (_, c) in results.items() if c}}, f, indent=1)


if __name__ == "__main__":
    main()
