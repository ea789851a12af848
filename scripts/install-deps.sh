#!/usr/bin/env bash
# Installs the Debian packages attn needs to build its tests, examples and benchmarks,
# only when something is missing. Set ATTN_WITH_TORCH=1 to add python3-torch (goldens, comparisons)
# and OpenBLAS (libopenblas-dev: PyTorch's BLAS in the comparisons, and bench_matmul's reference case;
# without it Debian's PyTorch runs on the reference BLAS and the ratios flatter attn).
# Open MPI (libopenmpi-dev, openmpi-bin) is for attn::distributed and its mpirun tests (ATTN_WITH_MPI).
set -euo pipefail
pkgs=(g++ cmake make libeigen3-dev catch2 libbenchmark-dev nlohmann-json3-dev libcli11-dev
      libopenmpi-dev openmpi-bin)
[[ "${ATTN_WITH_TORCH:-0}" == 1 ]] && pkgs+=(python3-torch libopenblas-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
((${#missing[@]} == 0)) && exit 0
echo "attn: installing missing Debian packages: ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "attn: not root; run: apt-get update && apt-get install -y ${missing[*]}" >&2; exit 1; fi
else SUDO=""; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
