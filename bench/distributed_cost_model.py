#!/usr/bin/env python3
"""Cost model on paper for data-parallel training of the example models (docs/distributed.md).

Ring allreduce of S gradient bytes over p ranks: each rank sends and receives 2(p-1)/p * S
bytes in 2(p-1) messages, so one step's exchange takes
    t_comm(p) = 2(p-1) * alpha + 2(p-1)/p * S / beta
(alpha: per-message latency, beta: link bandwidth). Compute per step is the measured one-machine
step time divided by p (the global batch split over p machines; assumes time linear in the
rows, which flatters small shares). Nothing overlaps: these models fit in one 25 MB bucket, so
the whole exchange comes after backward (docs/benchmarks.md measures that on one machine).
Standard library only:  python3 bench/distributed_cost_model.py
"""

ALPHA = 30e-6           # s per message: MPI over TCP on 10 Gbit/s Ethernet (typically 20-50 us)
BETA = 10e9 / 8         # bytes/s: 10 Gbit/s

# name, parameters (float32), one-machine step time in s (docs/benchmarks.md: 2 threads),
# rows per global batch, steps per epoch
MODELS = [
    ("task A (BiLSTM 2->32 + attention pooling), batch 32", 13506, 1.704 / 110, 32, 110),
    ("task B (LSTM 1->64 x2 + attention), full batch 980", 54721, 0.0435, 980, 1),
]
MACHINES = [1, 2, 4, 8, 16, 32, 64]


def comm(p, nbytes):
    return 0.0 if p == 1 else 2 * (p - 1) * ALPHA + 2 * (p - 1) / p * nbytes / BETA


def main():
    for name, params, step, rows, steps in MODELS:
        nbytes = 4 * params
        print(f"\n{name}: {params} parameters = {nbytes} gradient bytes per step, "
              f"{step * 1e3:.2f} ms per step on one machine, {steps} step(s) per epoch")
        print("| machines | bytes sent per rank per step | compute per step | allreduce per step "
              "| step | speed-up | efficiency |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for p in MACHINES:
            if p > rows:
                print(f"| {p} | - | - | - | - | - | fewer rows ({rows}) than machines |")
                continue
            sent = 0 if p == 1 else 2 * (p - 1) / p * nbytes
            c, a = step / p, comm(p, nbytes)
            total = c + a
            print(f"| {p} | {sent / 1e3:.1f} kB | {c * 1e3:.3f} ms | {a * 1e3:.3f} ms | {total * 1e3:.3f} ms "
                  f"| {step / total:.1f}x | {step / total / p * 100:.0f}% |")


if __name__ == "__main__":
    main()
