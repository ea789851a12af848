#!/usr/bin/env bash
# Usage: example_test.sh MPIEXEC SINE_ANOMALY WORKDIR
# sine_anomaly under mpirun -np 2 (docs/distributed.md):
#  1. trains like one process: metrics.csv (without its timing column) within 1e-6 relative of a
#     one-process run (float32: the two runs sum each batch's gradient in another order);
#  2. only rank 0 writes (one header line in the log, the files written once);
#  3. a run stopped mid-epoch (--stop-after) and resumed with --load on 2 ranks ends with the
#     same numbers, bit for bit, as the uninterrupted 2-rank run;
#  4. resuming that checkpoint with 1 process is refused, naming the key 'ranks'.
set -u
MPIEXEC=$1 BIN=$2 WORK=$3
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1
ARGS=(--samples 300 --length 60 --epochs 3 --batch-size 16 --threads 1)
MPI=(timeout -k 5 120 "$MPIEXEC" -np 2 --oversubscribe --bind-to none)
FAILS=0
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
strip() { cut -d, -f1-6 "$1"; }  # metrics.csv without "seconds"

"$BIN" "${ARGS[@]}" --out-dir one > one.log 2>&1 || fail "one-process run failed: $(tail -3 one.log)"
"${MPI[@]}" "$BIN" "${ARGS[@]}" --out-dir two > two.log 2>&1 || fail "2-rank run failed: $(tail -5 two.log)"
grep -q "ranks 2" two.log || fail "the 2-rank run does not report 2 ranks"
[[ $(grep -c "^sine_anomaly:" two.log) == 1 ]] || fail "more than one rank printed the header"
max_rel_diff() {  # max relative difference of two CSVs of numbers, by awk
  paste -d, <(strip "$1" | tail -n +2) <(strip "$2" | tail -n +2) | awk -F, '{
    n = NF / 2; for (i = 1; i <= n; i++) { a = $i; b = $(i + n); d = a - b; if (d < 0) d = -d;
      s = (a < 0 ? -a : a); if (s < 1e-30) s = 1e-30; if (d / s > worst) worst = d / s } }
    END { printf "%.3g\n", worst + 0 }'
}
diff_rel=$(max_rel_diff one/metrics.csv two/metrics.csv)
echo "max relative difference, 1 process vs 2 ranks: $diff_rel"
awk -v d="$diff_rel" 'BEGIN { exit !(d <= 1e-6) }' || fail "2 ranks differ from 1 process by $diff_rel (> 1e-6)"
[[ $(wc -l < two/metrics.csv) == 4 ]] || fail "two/metrics.csv should hold a header and 3 epochs"

"${MPI[@]}" "$BIN" "${ARGS[@]}" --out-dir res --save res/ck --stop-after 20 > stop.log 2>&1
[[ $? != 0 ]] || fail "the stopped run should exit non-zero (130)"
grep -q "interrupted in epoch 2 after batch 6" stop.log || fail "no interruption message: $(tail -3 stop.log)"
"${MPI[@]}" "$BIN" "${ARGS[@]}" --out-dir res --save res/ck --load res/ck > resume.log 2>&1 ||
  fail "resume failed: $(tail -5 resume.log)"
cmp <(strip two/metrics.csv) <(strip res/metrics.csv) || fail "resumed 2-rank run differs from the uninterrupted one"
cmp <(grep -A3 "^test" two.log) <(grep -A3 "^test" resume.log) || fail "resumed test metrics differ"

"$BIN" "${ARGS[@]}" --out-dir res1 --load res/ck > wrong.log 2>&1 && fail "1-process resume of a 2-rank checkpoint succeeded"
grep -q "'ranks' is 2" wrong.log || fail "the refusal does not name 'ranks': $(cat wrong.log)"

((FAILS == 0)) && echo PASS || { echo "$FAILS failure(s)"; exit 1; }
