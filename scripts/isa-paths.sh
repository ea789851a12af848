#!/usr/bin/env bash
# Prints the kernel paths (ATTN_ISA values) this CPU can run, one per line, best last; with
# --forced, all but the best (the path a plain run already uses). Same test as attn::cpu_info():
# avx2 needs avx2 + fma, avx512 needs avx512f/bw/dq/vl. Used by `make test`.
flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
has() { for f in "$@"; do [[ "$flags" == *" $f "* ]] || return 1; done; }
paths=()
if [[ "$(uname -m)" == x86_64 ]]; then
  paths+=(baseline)
  has avx2 fma && paths+=(avx2)
  has avx2 fma avx512f avx512bw avx512dq avx512vl && paths+=(avx512)
fi
if [[ "${1:-}" == --forced ]]; then
  [[ ${#paths[@]} -gt 1 ]] && printf '%s\n' "${paths[@]:0:${#paths[@]}-1}"
else
  printf '%s\n' "${paths[@]}"
fi
