"""OpenBLAS core reporting for the PyTorch side of the benchmarks (docs/benchmarks.md).

The scripts never set OPENBLAS_CORETYPE: a core name chosen for one CPU is an illegal instruction
on another. configure() reports the core OpenBLAS uses when PyTorch loads it (a value already in
the environment is kept and named), so every table says what PyTorch ran on. Debian's OpenBLAS
misdetects some AVX-512 Xeons and falls back to its SSE3 kernel ("Core: Prescott"); there the line
says so, and the user may choose a core for that machine in the environment. Call configure()
before importing torch (OpenBLAS reads the variable when it loads).

Threads: Debian's OpenBLAS has its own thread pool next to PyTorch's OpenMP intra-op pool, and both
spin-wait after their work. With torch.set_num_threads(n) and OpenBLAS's default of one thread per
core, the two pools fight over the cores: a per-step LSTM training step took 1.3-1.6 s instead of
0.70 s (docs/benchmarks.md, "PyTorch's threads"). fastest() therefore measures a PyTorch workload
under each way of giving it n cores (thread_configs) and keeps the fastest, so attn is compared
with PyTorch at its best on the same cores.
"""
import ctypes
import os
import re
import subprocess
import sys

_PROBE = "import torch; torch.mm(torch.ones(64, 64), torch.ones(64, 64))"
_done = None


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def openblas_core(env=None):
    """The core OpenBLAS picks when PyTorch loads it under env, or None if PyTorch does not load
    OpenBLAS at all (for example when libblas.so.3 is the reference BLAS)."""
    env = dict(os.environ if env is None else env, OPENBLAS_VERBOSE="2")
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True)
    m = re.search(r"Core:\s*(\S+)", out.stdout + out.stderr)
    return m.group(1) if m else None


def configure():
    """Prints the OpenBLAS core in use to stderr once and returns that line."""
    global _done
    if _done is None:
        _done = _describe()
        print(_done, file=sys.stderr)
    return _done


def _describe():
    core = openblas_core()
    if "OPENBLAS_CORETYPE" in os.environ:
        return f"OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']} (from the environment), OpenBLAS core {core}"
    if core is None:
        return "OpenBLAS core: none reported (PyTorch does not load OpenBLAS here; check which libblas.so.3 it uses)"
    if core == "Prescott" and "avx512f" in _cpu_flags():
        return ("OpenBLAS core Prescott (SSE3) on an AVX-512 CPU: OpenBLAS misdetected it, so PyTorch runs "
                "slower than it could; set OPENBLAS_CORETYPE for this machine to compare fairly")
    return f"OpenBLAS core {core} (detected, OPENBLAS_CORETYPE not set)"


def _loaded_openblas():
    """ctypes handle of the OpenBLAS this process has loaded (PyTorch's BLAS), or None."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "blas" in line and "/" in line}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        if hasattr(lib, "openblas_set_num_threads") and hasattr(lib, "openblas_get_num_threads"):
            return lib
    return None


def thread_configs(n):
    """The ways to give PyTorch n cores: (torch intra-op threads, OpenBLAS threads)."""
    return [(1, 1)] if n <= 1 else [(n, n), (n, 1), (1, n)]


def set_threads(torch, torch_threads, blas_threads):
    """Sets PyTorch's intra-op threads and, where PyTorch runs on OpenBLAS, OpenBLAS's threads."""
    torch.set_num_threads(torch_threads)
    lib = _loaded_openblas()
    if lib is not None:
        lib.openblas_set_num_threads(blas_threads)


def config_label(torch_threads, blas_threads):
    return f"torch {torch_threads} + OpenBLAS {blas_threads}"


def fastest(torch, n, measure):
    """PyTorch at its fastest on n cores: measure() (seconds, after PyTorch is imported) under each
    of thread_configs(n); returns (seconds, label of the fastest configuration, {label: seconds}).
    Leaves the threads at (n, n)."""
    times = {}
    for tt, bt in thread_configs(n):
        set_threads(torch, tt, bt)
        times[config_label(tt, bt)] = measure()
    set_threads(torch, n, n)
    label = min(times, key=times.get)
    return times[label], label, times


if __name__ == "__main__":
    configure()
