"""PyTorch side of bench/bench_cells.cpp: per-step loops, timed the same way.

  /usr/bin/python3 bench/torch_cells.py --threads 2 [--json out.json]

(The OpenBLAS core in use is reported by bench/openblas_core.py, never set.)

Workloads (the data and the models are the same as in bench_cells.cpp):
  sine_train_{f64,f32}: PyTorch's time-sequence-prediction example with Adam: two stacked
      LSTMCells (1 -> 51 -> 51), Linear(51, 1), 97 series x 999 steps, full batch; one Adam step
      (lr 0.01) = zero_grad, forward, mse_loss, backward, step.
  sine_free_run_{f64,f32}: its prediction under no_grad: 3 test series, 999 input steps, then
      1000 steps feeding each output back as the next input.
  seq2seq_decoder: the decoder loop of examples/seq2seq_forecast.cpp (batch 32, window 20,
      hidden 32, additive attention 32, horizon 10, teacher forcing), forward + backward from
      given encoder outputs and state (float32).
  tiny_chain: 1,000 ops (add, mul alternating) on 4-element float32 tensors, then backward;
      reported per op.
"""
import argparse
import json
import math
import statistics
import time

import os
import sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import openblas_core  # noqa: E402

OPENBLAS = openblas_core.configure()  # before torch loads OpenBLAS

import torch
import torch.nn as nn

HIDDEN = 51
N_SERIES, LENGTH, PERIOD = 100, 1000, 20


def sine_data(dtype):
    """data[i, t] = sin((t + shift_i) / 20), shift_i = ((37 i) mod 160) - 80 (upstream draws the
    shifts at random from [-80, 80); a fixed formula lets both sides use the same data).
    Returns train input [97, 999], train target [97, 999], test input [3, 999]."""
    t = torch.arange(LENGTH, dtype=torch.float64)
    shift = torch.tensor([((37 * i) % 160) - 80 for i in range(N_SERIES)], dtype=torch.float64)
    data = torch.sin((t.unsqueeze(0) + shift.unsqueeze(1)) / PERIOD).to(dtype)
    return data[3:, :-1].contiguous(), data[3:, 1:].contiguous(), data[:3, :-1].contiguous()


class Sequence(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm1 = nn.LSTMCell(1, HIDDEN)
        self.lstm2 = nn.LSTMCell(HIDDEN, HIDDEN)
        self.linear = nn.Linear(HIDDEN, 1)

    def forward(self, input, future=0):
        outputs = []
        dt = input.dtype
        h_t = torch.zeros(input.size(0), HIDDEN, dtype=dt)
        c_t = torch.zeros(input.size(0), HIDDEN, dtype=dt)
        h_t2 = torch.zeros(input.size(0), HIDDEN, dtype=dt)
        c_t2 = torch.zeros(input.size(0), HIDDEN, dtype=dt)
        for input_t in input.split(1, dim=1):
            h_t, c_t = self.lstm1(input_t, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs += [output]
        for _ in range(future):
            h_t, c_t = self.lstm1(output, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs += [output]
        return torch.cat(outputs, dim=1)


class Additive(nn.Module):
    """Bahdanau attention as usually written: score = v^T tanh(W_q q + W_k k), softmax, sum."""

    def __init__(self, qd, kd, hd):
        super().__init__()
        self.W_q = nn.Linear(qd, hd, bias=False)
        self.W_k = nn.Linear(kd, hd, bias=False)
        self.v = nn.Linear(hd, 1, bias=False)

    def forward(self, q, keys):
        s = self.v(torch.tanh(self.W_q(q).unsqueeze(1) + self.W_k(keys))).squeeze(-1)
        w = torch.softmax(s, dim=1)
        return torch.bmm(w.unsqueeze(1), keys).squeeze(1), w


class Decoder(nn.Module):
    def __init__(self, hidden, attn_dim):
        super().__init__()
        self.attention = Additive(hidden, hidden, attn_dim)
        self.cell = nn.LSTMCell(1 + hidden, hidden)
        self.fc = nn.Linear(2 * hidden, 1)

    def forward(self, enc, h, c, prev, target):
        ys = []
        for t in range(target.size(1)):
            ctx, _ = self.attention(h, enc)
            h, c = self.cell(torch.cat([prev, ctx], 1), (h, c))
            y = self.fc(torch.cat([h, ctx], 1))
            ys.append(y)
            prev = target[:, t:t + 1]
        return torch.cat(ys, 1)


def timed(fn, min_time, min_reps=3):
    fn()  # warm-up
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def sine_train(dtype, min_time):
    torch.manual_seed(0)
    x, y, _ = sine_data(dtype)
    seq = Sequence().to(dtype)
    opt = torch.optim.Adam(seq.parameters(), lr=0.01)

    def step():
        opt.zero_grad()
        loss = nn.functional.mse_loss(seq(x), y)
        loss.backward()
        opt.step()
    return timed(step, min_time)


def sine_free_run(dtype, min_time):
    torch.manual_seed(0)
    _, _, test = sine_data(dtype)
    seq = Sequence().to(dtype)

    def run():
        with torch.no_grad():
            seq(test, future=1000)
    return timed(run, min_time)


def seq2seq_decoder(min_time, B=32, W=20, hidden=32, attn_dim=32, horizon=10):
    torch.manual_seed(0)
    dec = Decoder(hidden, attn_dim)
    enc = torch.randn(B, W, hidden, requires_grad=True)
    h0 = torch.randn(B, hidden, requires_grad=True)
    c0 = torch.randn(B, hidden, requires_grad=True)
    prev = torch.randn(B, 1)
    target = torch.randn(B, horizon)

    def step():
        dec.zero_grad()
        enc.grad = h0.grad = c0.grad = None
        loss = nn.functional.mse_loss(dec(enc, h0, c0, prev, target), target)
        loss.backward()
    return timed(step, min_time)


def tiny_chain(min_time, n_ops=1000):
    a = torch.full((4,), 0.5, requires_grad=True)
    b = torch.full((4,), 1.0, requires_grad=True)

    def run():
        a.grad = b.grad = None
        y = a
        for _ in range(n_ops // 2):
            y = y + a
            y = y * b
        y.sum().backward()
    return timed(run, min_time) / n_ops


def measure(min_time=2.0, threads=2):
    """{workload: (seconds per call (tiny_chain: per op), PyTorch's thread configuration)}, each
    workload at PyTorch's fastest on `threads` cores (openblas_core.fastest)."""
    work = {
        "sine_train_f64": lambda: sine_train(torch.float64, min_time),
        "sine_train_f32": lambda: sine_train(torch.float32, min_time),
        "sine_free_run_f64": lambda: sine_free_run(torch.float64, min_time),
        "sine_free_run_f32": lambda: sine_free_run(torch.float32, min_time),
        "seq2seq_decoder": lambda: seq2seq_decoder(min_time),
        "tiny_chain_per_op": lambda: tiny_chain(min_time),
    }
    return {k: openblas_core.fastest(torch, threads, f)[:2] for k, f in work.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-time", type=float, default=2.0)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    res = measure(args.min_time, args.threads)
    for k, (v, cfg) in res.items():
        print(f"{k:24s} {v * 1e3:10.4f} ms  ({cfg})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "threads": args.threads, "seconds": {k: v for k, (v, _) in res.items()},
                       "thread_configs": {k: c for k, (_, c) in res.items()}}, f, indent=1)


if __name__ == "__main__":
    main()
