"""attn vs PyTorch on per-step loops (bench/bench_cells.cpp vs bench/torch_cells.py), side by side
in one run on one machine with one thread count.

  /usr/bin/python3 bench/compare_cells.py --build build --threads 2 [--markdown out.md]

Build first: cmake --build build --target bench_cells. The OpenBLAS core PyTorch uses is
reported by bench/openblas_core.py, never set; each PyTorch row is its fastest way of using the
same cores (openblas_core.fastest; docs/benchmarks.md).
"""
import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import openblas_core  # noqa: E402

OPENBLAS = openblas_core.configure()  # before torch loads OpenBLAS

import torch  # noqa: E402

import torch_cells  # noqa: E402

UNIT = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}

# (label, attn benchmark name, torch_cells key, goal as attn / PyTorch, or None)
ROWS = [
    ("sine prediction: Adam step, 97 x 999, float64", "BM_SineTrain/bits:64/real_time", "sine_train_f64", 0.2),
    ("sine prediction: Adam step, 97 x 999, float32", "BM_SineTrain/bits:32/real_time", "sine_train_f32", 0.2),
    ("sine prediction: free run 3 x (999 + 1000), float64", "BM_SineFreeRun/bits:64/real_time", "sine_free_run_f64",
     0.15),
    ("sine prediction: free run 3 x (999 + 1000), float32", "BM_SineFreeRun/bits:32/real_time", "sine_free_run_f32",
     0.15),
    ("seq2seq decoder loop fwd+bwd (B 32, 10 steps)", "BM_Seq2SeqDecoder/real_time", "seq2seq_decoder", 0.25),
]


def run_attn(binary, threads, min_time):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [binary, "--benchmark_format=json", f"--benchmark_min_time={min_time}"]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return {b["name"]: b for b in json.loads(out)["benchmarks"] if b.get("run_type", "iteration") == "iteration"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-time", type=float, default=2.0)
    ap.add_argument("--markdown", default="")
    args = ap.parse_args()
    attn = run_attn(os.path.join(args.build, "bench", "bench_cells"), args.threads, args.min_time)
    pt = torch_cells.measure(args.min_time, args.threads)
    lines = [f"attn vs PyTorch {torch.__version__}, {args.threads} thread(s), {OPENBLAS}; PyTorch at its fastest "
             f"of {', '.join(openblas_core.config_label(*c) for c in openblas_core.thread_configs(args.threads))}", "",
             "| workload | attn | PyTorch | attn / PyTorch | goal | PyTorch's fastest threads |",
             "|---|---:|---:|---:|---:|---|"]
    for label, name, key, goal in ROWS:
        a = attn[name]["real_time"] * UNIT[attn[name]["time_unit"]]
        t, cfg = pt[key]
        lines.append(f"| {label} | {a * 1e3:.2f} ms | {t * 1e3:.2f} ms | {a / t:.3f} | <= {goal} | {cfg} |")
    chain = attn["BM_TinyChain/real_time"]
    per_op = chain["per_op"]  # seconds per op (an inverted rate)
    t, cfg = pt["tiny_chain_per_op"]
    lines.append(f"| tiny-op chain, per op fwd+bwd (1,000 add/mul on 4 floats) | {per_op * 1e6:.3f} us | "
                 f"{t * 1e6:.3f} us | {per_op / t:.3f} | <= 1 us | {cfg} |")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
