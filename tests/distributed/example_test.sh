#!/usr/bin/env bash
# Usage: example_test.sh MPIEXEC SINE_ANOMALY WORKDIR SINE_FORECAST
# sine_anomaly under mpirun -np 2 (docs/distributed.md):
#  1. trains like one process: metrics.csv (without its timing column) within 1e-6 relative of a
#     one-process run (float32: the two runs sum each batch's gradient in another order);
#  2. only rank 0 writes (one header line in the log, the files written once);
#  3. a run stopped mid-epoch (--stop-after) and resumed with --load on 2 ranks ends with the
#     same numbers, bit for bit, as the uninterrupted 2-rank run;
#  4. resuming that checkpoint with 1 process is refused, naming the key 'ranks';
#  5. sine_forecast on 2 ranks, full batch and mini-batch: train_mse per epoch within 1e-5
#     relative of one process (a full batch of 280 windows summed in another order).
set -u
MPIEXEC=$1 BIN=$2 WORK=$3 FORECAST=$4
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

FARGS=(--points 300 --epochs 20 --hidden 16 --threads 1)
for mode in 0 50; do
  "$FORECAST" "${FARGS[@]}" --batch-size $mode --out-dir f1_$mode > f1_$mode.log 2>&1 || fail "forecast 1 process: $(tail -3 f1_$mode.log)"
  "${MPI[@]}" "$FORECAST" "${FARGS[@]}" --batch-size $mode --out-dir f2_$mode > f2_$mode.log 2>&1 ||
    fail "forecast 2 ranks: $(tail -5 f2_$mode.log)"
  d=$(paste -d, <(cut -d, -f1-2 f1_$mode/metrics.csv | tail -n +2) <(cut -d, -f1-2 f2_$mode/metrics.csv | tail -n +2) |
      awk -F, '{ d = $2 - $4; if (d < 0) d = -d; if (d / $2 > w) w = d / $2 } END { printf "%.3g\n", w + 0 }')
  echo "sine_forecast --batch-size $mode: max relative difference of train_mse, 1 process vs 2 ranks: $d"
  awk -v d="$d" 'BEGIN { exit !(d <= 1e-5) }' || fail "sine_forecast --batch-size $mode: 2 ranks differ by $d"
  [[ $(wc -l < f2_$mode/metrics.csv) == 21 ]] || fail "f2_$mode/metrics.csv should hold 20 epochs"
done

((FAILS == 0)) && echo PASS || { echo "$FAILS failure(s)"; exit 1; }
