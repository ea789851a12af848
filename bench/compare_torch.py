"""attn vs PyTorch, side by side in one run on one machine with one thread count.

Builds nothing: point it at a build directory that has the bench binaries (make bench, or
cmake --build build --target bench_tasks bench_rnn bench_attention_dense bench_matmul).
Runs each attn benchmark (Google Benchmark, JSON) and the same work in PyTorch (Debian's
python3-torch; the OpenBLAS core it uses is reported by bench/openblas_core.py, never set, see
docs/benchmarks.md; each PyTorch row is its fastest way of using the same cores,
openblas_core.fastest), then prints
one table with attn time, PyTorch time and their ratio, plus sgemm against OpenBLAS.

  /usr/bin/python3 bench/compare_torch.py --build build --threads 2 [--markdown docs/compare.md]
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import openblas_core  # noqa: E402

OPENBLAS = openblas_core.configure()  # before torch loads OpenBLAS

import torch  # noqa: E402

import torch_tasks  # noqa: E402

UNIT = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def run_attn(binary, flt, threads, min_time):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads), OMP_WAIT_POLICY="active")
    cmd = [binary, f"--benchmark_filter={flt}", "--benchmark_format=json", f"--benchmark_min_time={min_time}"]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    res = {}
    for b in json.loads(out)["benchmarks"]:
        if b.get("run_type", "iteration") == "iteration":
            res[b["name"]] = b["real_time"] * UNIT[b["time_unit"]]
            res[b["name"] + "#counters"] = b
    return res


def cpu_line(build):
    """CPU model and attn's kernel path (from a bench binary's Google Benchmark context)."""
    # One tiny case: with no case matched, Google Benchmark prints no context at all.
    out = subprocess.run([os.path.join(build, "bench_matmul"), "--benchmark_filter=BM_attn_gemm/M:32/N:128/K:32/",
                          "--benchmark_min_time=0.001", "--benchmark_format=json"],
                         env=dict(os.environ), capture_output=True, text=True).stdout
    try:
        ctx = json.loads(out)["context"]
        return f"CPU {ctx.get('cpu_model', '?')}, attn kernels {ctx.get('attn_kernels', '?')}"
    except (ValueError, KeyError):
        return "CPU ?, attn kernels ?"


def timed(fn, reps=5):
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def fastest(threads, measure):
    """(seconds, thread configuration) of PyTorch at its fastest on `threads` cores."""
    return openblas_core.fastest(torch, threads, measure)[:2]


def torch_lstm(B, T, H, layers, bidirectional):
    lstm = torch.nn.LSTM(1, H, layers, batch_first=True, bidirectional=bidirectional)
    x = torch.randn(B, T, 1)

    def step():
        lstm.zero_grad()
        out, _ = lstm(x)
        out.sum().backward()
    return timed(step)


def torch_mha(B, L, E, H):
    mha = torch.nn.MultiheadAttention(E, H, batch_first=True)
    x = torch.randn(B, L, E, requires_grad=True)

    def step():
        o, _ = mha(x, x, x, need_weights=False)
        o.sum().backward()
    return timed(step)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-time", type=float, default=0.5)
    ap.add_argument("--markdown", default="")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    b = os.path.join(args.build, "bench")
    rows = []

    tasks = run_attn(os.path.join(b, "bench_tasks"), ".", args.threads, args.min_time)
    tt = torch_tasks.measure(reps=2, threads=args.threads)
    # Goals: issue 13's table (task rows, MHA, sgemm); the layer rows keep the first wave's 1/5.
    for name, goal in (("TaskA_TrainEpoch", 0.08), ("TaskA_Inference750", 0.05), ("TaskB_TrainEpoch", 0.08)):
        key = next(k for k in tasks if k.startswith("BM_" + name) and "#" not in k)
        rows.append((name.replace("_", " "), tasks[key], *tt[name], goal))

    rnn = run_attn(os.path.join(b, "bench_rnn"), "fused:1/bwd:1", args.threads, args.min_time)
    for prefix, label, cfg in (("BM_TaskA_BiLSTM32_B32_T500", "BiLSTM(1->32) fwd+bwd, 32 x 500", (32, 500, 32, 1, True)),
                               ("BM_TaskB_LSTM64x2_B980_T20", "LSTM(1->64) x2 fwd+bwd, 980 x 20", (980, 20, 64, 2, False))):
        key = next(k for k in rnn if k.startswith(prefix) and "#" not in k)
        rows.append((label, rnn[key], *fastest(args.threads, lambda: torch_lstm(*cfg)), 0.2))

    # the default path (the *_Path benchmarks force one path or the other)
    dense = run_attn(os.path.join(b, "bench_attention_dense"), "BM_MHA_ForwardBackward/8/512", args.threads,
                     args.min_time)
    key = next(k for k in dense if "#" not in k)
    rows.append(("MHA fwd+bwd B=8 L=512 E=64 H=4", dense[key], *fastest(args.threads, lambda: torch_mha(8, 512, 64, 4)),
                 0.15))

    configs = ", ".join(openblas_core.config_label(*c) for c in openblas_core.thread_configs(args.threads))
    lines = [f"attn vs PyTorch {torch.__version__}, {args.threads} thread(s); {cpu_line(b)}; {OPENBLAS}; PyTorch at "
             f"its fastest of {configs}", "",
             "| workload | attn | PyTorch | attn / PyTorch | goal | PyTorch's fastest threads |",
             "|---|---:|---:|---:|---:|---|"]
    for label, a, t, cfg, goal in rows:
        lines.append(f"| {label} | {a * 1e3:.1f} ms | {t * 1e3:.1f} ms | {a / t:.3f} | <= {goal} | {cfg} |")

    # Separate processes: attn's OpenMP workers spin after its own runs and would steal the cores
    # from OpenBLAS's threads in the same process.
    mm = run_attn(os.path.join(b, "bench_matmul"), "BM_attn_gemm/", args.threads, args.min_time)
    mm.update(run_attn(os.path.join(b, "bench_matmul"), "BM_openblas_sgemm/", args.threads, args.min_time))
    gf = {}
    for k, v in mm.items():
        if k.endswith("#counters"):
            name = k[: -len("#counters")]
            gf[name] = v.get("GFLOP/s", v.get("GFLOPS", float("nan")))
    if gf:
        lines += ["", "| sgemm M x N x K | attn GFLOP/s | OpenBLAS GFLOP/s | attn / OpenBLAS | goal |", "|---:|---:|---:|---:|---:|"]
        for k in sorted((k for k in gf if k.startswith("BM_attn_gemm/")), key=lambda k: int(k.split("/")[1].split(":")[-1])):
            shape = "/".join(k.split("/")[1:-1] if k.endswith("real_time") else k.split("/")[1:])
            n = " x ".join(p.split(":")[-1] for p in shape.split("/")[:3])
            ob = next((gf[o] for o in gf if o.startswith("BM_openblas_sgemm/" + shape)), None)
            if ob:
                lines.append(f"| {n} | {gf[k] / 1e9 if gf[k] > 1e6 else gf[k]:.1f} | {ob / 1e9 if ob > 1e6 else ob:.1f} | "
                             f"{gf[k] / ob:.2f} | >= 1.0 |")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
