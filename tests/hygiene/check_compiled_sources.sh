#!/usr/bin/env bash
# Every header that declares ATTN_API functions must be reached by src/attn_compiled.cpp, or the
# compiled mode's library would lack those definitions (a link error only in programs that call
# them). Usage: check_compiled_sources.sh <c++ compiler> <source tree>
set -euo pipefail
cxx=$1 src=$2
reached=$("$cxx" -std=c++17 -I"$src/include" -DATTN_SEPARATE_COMPILATION -DATTN_BUILDING_LIBRARY \
  -E "$src/src/attn_compiled.cpp" | sed -n 's/^# [0-9]* "\([^"]*\)".*/\1/p' | sort -u | xargs -r realpath | sort -u)
missing=0
while read -r header; do
  if ! grep -qxF "$(realpath "$header")" <<<"$reached"; then
    echo "not reached by src/attn_compiled.cpp: ${header#"$src/"} (it defines ATTN_API functions)"
    missing=1
  fi
done < <(grep -rl --include='*.hpp' 'ATTN_API' "$src/include/attn" | grep -v '/config.hpp$')
[[ $missing == 0 ]] && echo "every header with ATTN_API definitions is compiled into attn_compiled"
exit $missing
