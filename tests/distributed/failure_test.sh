#!/usr/bin/env bash
# Usage: failure_test.sh MODE MPIEXEC PROGRAM EXPECTED_TEXT
# Runs PROGRAM MODE on 2 ranks; passes when the job exits non-zero within 30 s and its output
# holds EXPECTED_TEXT (the failing rank's message). `timeout` guards against a hang.
set -u
mode=$1 mpiexec=$2 prog=$3 expect=$4
start=$(date +%s)
out=$(timeout -k 5 60 "$mpiexec" -np 2 --oversubscribe --bind-to none "$prog" "$mode" 2>&1)
rc=$?
elapsed=$(( $(date +%s) - start ))
echo "$out"
echo "failure_test: mode $mode: exit code $rc after ${elapsed}s"
[[ $rc -ne 0 ]] || { echo "FAIL: the job exited 0"; exit 1; }
[[ $rc -ne 124 && $rc -ne 137 ]] || { echo "FAIL: the job hung (killed by timeout)"; exit 1; }
(( elapsed <= 30 )) || { echo "FAIL: took ${elapsed}s, more than 30s"; exit 1; }
grep -qF -- "$expect" <<<"$out" || { echo "FAIL: output lacks: $expect"; exit 1; }
grep -q "rank 0 finished" <<<"$out" && { echo "FAIL: rank 0 went on as if nothing happened"; exit 1; }
echo "PASS"
