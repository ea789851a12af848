"""PyTorch side of bench/bench_rnn.cpp: forward + backward of the reference tasks' LSTMs, float32.

Run:  /usr/bin/python3 bench/torch_rnn.py [--reps 7] [--threads 2] [--inner 3] [--fwd-only]
Prints the median time per iteration and sequences/s for each config (median of --reps
repetitions, each the mean of a few timed iterations after warm-up), at PyTorch's fastest way of
using --threads cores (bench/openblas_core.py).
"""
import argparse
import statistics
import time

import os
import sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import openblas_core  # noqa: E402

OPENBLAS = openblas_core.configure()  # before torch loads OpenBLAS

import torch


def bench(name, lstm, B, T, backward, reps, inner, threads):
    """Prints the median time per iteration at PyTorch's fastest way of using `threads` cores
    (openblas_core.thread_configs; the one with the lowest median)."""
    runs = []  # the repetitions' times, one list per configuration in thread_configs order

    def one_config():
        runs.append(time_reps(lstm, B, T, backward, reps, inner))
        return statistics.median(runs[-1])
    med, cfg, by_config = openblas_core.fastest(torch, threads, one_config)
    times = runs[list(by_config).index(cfg)]
    print(f"{name:44s} {'fwd+bwd' if backward else 'fwd(no_grad)':12s} median {med * 1e3:9.2f} ms  "
          f"{B / med:10.0f} seq/s  (min {min(times) * 1e3:.2f}, max {max(times) * 1e3:.2f} ms, {reps}x{inner}; {cfg})")


def time_reps(lstm, B, T, backward, reps, inner):
    x = torch.randn(B, T, 1)
    for _ in range(2):  # warm-up
        out, _ = lstm(x)
        if backward:
            out.sum().backward()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(inner):
            lstm.zero_grad()
            if backward:
                out, _ = lstm(x)
                out.sum().backward()
            else:
                with torch.no_grad():
                    out, _ = lstm(x)
        times.append((time.perf_counter() - t0) / inner)
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--inner", type=int, default=3)
    ap.add_argument("--fwd-only", action="store_true", help="also time forward passes under no_grad")
    a = ap.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {a.threads} cores")
    la = torch.nn.LSTM(1, 32, bidirectional=True, batch_first=True)
    lb = torch.nn.LSTM(1, 64, num_layers=2, batch_first=True)
    for bwd in (True, False) if a.fwd_only else (True,):
        bench("TaskA BiLSTM(1->32) B=32 T=500", la, 32, 500, bwd, a.reps, a.inner, a.threads)
        bench("TaskB LSTM(1->64)x2 B=980 T=20", lb, 980, 20, bwd, a.reps, a.inner, a.threads)


if __name__ == "__main__":
    main()
