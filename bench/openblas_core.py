"""OpenBLAS core selection for the PyTorch side of the benchmarks (DESIGN.md section 6).

Debian's OpenBLAS misdetects some AVX-512 Xeons and falls back to its SSE3 kernel ("Core:
Prescott"), which also slows Debian's PyTorch; there OPENBLAS_CORETYPE=SkylakeX restores the
AVX-512 kernels. On a CPU without AVX-512 that setting is an illegal instruction, so it is never
hard-coded: configure() sets it only where the CPU has avx512f and OpenBLAS, left alone, reports
Prescott. A value already in the environment is kept. Call configure() before importing torch
(OpenBLAS reads the variable when it loads); it returns a line naming the core in use.
"""
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
    """Sets OPENBLAS_CORETYPE where needed (see above), prints the OpenBLAS core to stderr once and
    returns that line."""
    global _done
    if _done is None:
        _done = _configure()
        print(_done, file=sys.stderr)
    return _done


def _configure():
    if "OPENBLAS_CORETYPE" in os.environ:
        core = openblas_core()
        return f"OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']} (from the environment), OpenBLAS core {core}"
    core = openblas_core()
    if core is None:
        return "OpenBLAS core: none reported (PyTorch does not load OpenBLAS here; check which libblas.so.3 it uses)"
    if core == "Prescott" and "avx512f" in _cpu_flags():
        os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"
        return f"OpenBLAS reported Prescott on an AVX-512 CPU: OPENBLAS_CORETYPE=SkylakeX set, core {openblas_core()}"
    return f"OpenBLAS core {core} (detected, OPENBLAS_CORETYPE not set)"


if __name__ == "__main__":
    configure()
