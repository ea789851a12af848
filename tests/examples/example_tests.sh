#!/usr/bin/env bash
# Runs an example program the way a user would and checks the outcome (registered as CTest tests
# by tests/examples/CMakeLists.txt; see docs/reliability.md, "Training that survives interruption").
#
#   example_tests.sh CASE BINARY WORKDIR [PROGRAM...]
#
# CASE:
#   anomaly_resume     sine_anomaly: an uninterrupted run vs runs stopped by --stop-after (at an
#                      epoch's last batch, mid-epoch, and twice) and resumed with --load: the final
#                      test metrics, metrics.csv (without its timing column) and the best model
#                      must be identical
#   anomaly_sigint     the same with a real SIGINT after ~1 s (if the run already finished, its
#                      own numbers must still match)
#   anomaly_threads    the same run with --threads 1 and --threads 2: identical numbers
#   forecast_resume    sine_forecast: --stop-after then --load, mini-batch and full-batch
#   anomaly_bad_input  sine_anomaly: a CSV with NaN, an empty CSV, too few series, a batch larger
#                      than the data, bad flags, a damaged checkpoint
#   forecast_bad_input sine_forecast: batch larger than the data, too short a series, bad flags,
#                      --device cuda without a usable GPU
#   anomaly_bad_checkpoint  sine_anomaly --load of checkpoints whose metadata was damaged (PROGRAM:
#                      ckpt_edit) or that were written for other data: exit 1 naming file and key
#   forecast_bad_checkpoint the same for sine_forecast
#   bad_numbers        non-finite --lr / --clip / --t-end and a diverging run, in every example
#                      (PROGRAMs: sine_anomaly sine_forecast seq2seq_forecast transformer_forecast)
#   out_dir            --out-dir naming a file, /dev/null or /proc/x, in every example (same PROGRAMs)
#   seq2seq_bad_input  seq2seq_forecast: --tail shorter than --horizon, a resume on other data
#   transformer_attention  transformer_forecast: every --attention on the sine, bigbird on CO2
#                      (PROGRAM argument: the CO2 file), a bad --attention, relative positions
#                      with linear attention, a zero block size
#   transformer_approx_attention  transformer_forecast --attention probsparse|performer|lsh|linformer:
#                      each trains 2 epochs and forecasts; an unknown variant and --positional
#                      relative with a variant fail with a message
#   encdec_runs_and_bad_input  encoder_decoder_forecast: both modes on the sine and on CO2 (PROGRAM
#                      argument: the CO2 file) with a few epochs, then a CO2 file with a bad value,
#                      a missing file, too short a series and bad flags
#   anomaly_kclass     sine_anomaly with K classes: --classes kind --anomaly mix (5 classes, per-class
#                      report, confusion matrix and confusion.svg, attention figure), a CSV with labels
#                      3/5/9 (3 classes, no attention figure: a CSV has no anomaly positions), a binary
#                      CSV (ROC-AUC, no attention figure), --classes kind with --data refused
#   anomaly_score_runs  anomaly_score: a short run reports ROC-AUC, flags and the localisation and
#                      writes its plots; --window longer than --length and a bad flag are refused
#   co2_forecast_quality_and_bad_input  co2_forecast (PROGRAM argument: the CO2 file) with its
#                      defaults: the model's MAE on the held-out 24 months must be >= 30% below
#                      seasonal-naive's; then a file with a bad value, a gap at the end, an unknown
#                      column, too short a series and bad flags
set -u
CASE=$1
BIN=$2
WORK=$3
shift 3
MORE=("$@")  # other programs the case needs
rm -rf "$WORK"
mkdir -p "$WORK"
cd "$WORK" || exit 1

FAILS=0
fail() {
  echo "FAIL: $*"
  FAILS=$((FAILS + 1))
}
ok() { echo "ok: $*"; }

# run NAME EXPECTED_RC ARGS...: runs BIN, stdout to NAME.out, stderr to NAME.err, checks the exit code.
run() {
  local name=$1 want=$2
  shift 2
  "$BIN" "$@" >"$name.out" 2>"$name.err"
  local rc=$?
  if [ "$rc" -ne "$want" ]; then
    fail "$name: exit code $rc, expected $want ($BIN $*)"
    sed 's/^/  stdout: /' "$name.out" | tail -5
    sed 's/^/  stderr: /' "$name.err" | tail -5
  else
    ok "$name: exit code $rc"
  fi
  return 0
}

# run_exit NAME EXPECTED_RC SUBSTRING ARGS...: expects that exit code ("nonzero": any but 0) and
# SUBSTRING in stderr+stdout.
run_exit() {
  local name=$1 want=$2 want_text=$3
  shift 3
  "$BIN" "$@" >"$name.out" 2>"$name.err"
  local rc=$?
  if { [ "$want" = nonzero ] && [ "$rc" -eq 0 ]; } || { [ "$want" != nonzero ] && [ "$rc" -ne "$want" ]; }; then
    fail "$name: exit code $rc, expected $want ($(basename "$BIN") $*)"
    sed 's/^/  /' "$name.err" | head -5
  elif ! grep -qF -- "$want_text" "$name.out" "$name.err"; then
    fail "$name: exit code $rc but the message lacks '$want_text':"
    sed 's/^/  /' "$name.err" | head -5
  else
    ok "$name: exit code $rc, message: $(grep -hF -- "$want_text" "$name.out" "$name.err" | head -1)"
  fi
}
# run_nonzero NAME SUBSTRING ARGS...: a non-zero exit and SUBSTRING in stderr+stdout.
run_nonzero() {
  local name=$1 want_text=$2
  shift 2
  run_exit "$name" nonzero "$want_text" "$@"
}

# Small settings per program, so a check that wrongly lets a run start still ends quickly. The
# forecasters' series has 200 points: with --t-end 1e308 the last ones are sin(inf) = NaN.
small_args() {
  case "$(basename "$1")" in
  sine_anomaly) echo --samples 60 --length 40 --epochs 1 --hidden 4 --quiet ;;
  sine_forecast) echo --points 100 --window 10 --epochs 2 --hidden 4 --horizon 100 --quiet ;;
  seq2seq_forecast) echo --points 100 --window 10 --horizon 5 --tail 100 --epochs 2 --hidden 4 --quiet ;;
  transformer_forecast) echo --points 100 --window 10 --tail 100 --epochs 2 --d-model 8 --heads 2 --ff 8 --quiet ;;
  esac
}

# The final report of sine_anomaly: from "test (" up to (not including) "total time".
anomaly_report() { sed -n '/^test (/,/^total time/p' "$1" | grep -v '^total time'; }
# The final report of sine_forecast: the fit and held-out lines.
forecast_report() { grep -E '^(in-sample MSE|held-out)' "$1"; }
# metrics.csv without the last column (wall-clock seconds per epoch).
metrics_wo_time() { sed 's/,[^,]*$//' "$1"; }

same() {  # same WHAT FILE_A FILE_B
  if cmp -s "$2" "$3"; then
    ok "$1 identical ($(wc -l <"$2") lines)"
  else
    fail "$1 differ:"
    diff "$2" "$3" | head -20
  fi
}

check_nonempty() { [ -s "$2" ] || fail "$1: $2 is empty or missing"; }

case "$CASE" in
anomaly_resume | anomaly_sigint)
  ARGS=(--samples 200 --length 60 --epochs 3 --hidden 8 --seed 3 --quiet)
  # The SIGINT run is longer (~3 s here with 2 threads) so that a signal after 1 s usually lands in training.
  [ "$CASE" = anomaly_sigint ] && ARGS=(--samples 2000 --length 150 --epochs 8 --hidden 16 --seed 3 --quiet)
  run A 0 "${ARGS[@]}" --out-dir A --save A/ckpt
  anomaly_report A.out >A.report
  metrics_wo_time A/metrics.csv >A.metrics
  check_nonempty "uninterrupted report" A.report
  check_nonempty "uninterrupted metrics" A.metrics
  if [ "$CASE" = anomaly_resume ]; then
    # B: --stop-after 5 = the last batch of epoch 1 (140 training series, batch 32: 5 batches).
    run B1 130 "${ARGS[@]}" --out-dir B --save B/ckpt --stop-after 5
    grep -q '^interrupted' B1.out || fail "B1: no 'interrupted' line"
    [ -f B/ckpt ] || fail "B1: no checkpoint written"
    run B2 0 "${ARGS[@]}" --out-dir B --load B/ckpt --save B/ckpt
    # C: stopped mid-epoch 2 (batch 7), again mid-epoch 3 (5 batches later), then to the end.
    run C1 130 "${ARGS[@]}" --out-dir C --save C/ckpt --stop-after 7
    run C2 130 "${ARGS[@]}" --out-dir C --load C/ckpt --save C/ckpt --stop-after 5
    run C3 0 "${ARGS[@]}" --out-dir C --load C/ckpt --save C/ckpt
    for r in B2:B C3:C; do
      out=${r%%:*}
      dir=${r##*:}
      anomaly_report "$out.out" >"$dir.report"
      metrics_wo_time "$dir/metrics.csv" >"$dir.metrics"
      same "$dir: final test report vs uninterrupted" A.report "$dir.report"
      same "$dir: metrics.csv (without seconds) vs uninterrupted" A.metrics "$dir.metrics"
      same "$dir: best model checkpoint vs uninterrupted" A/ckpt.best "$dir/ckpt.best"
    done
  else
    # A real SIGINT after ~1 s (the handler lets the current batch finish, saves, exits 130).
    "$BIN" "${ARGS[@]}" --out-dir S --save S/ckpt >S1.out 2>S1.err &
    pid=$!
    sleep 1
    kill -INT "$pid" 2>/dev/null
    wait "$pid"
    rc=$?
    echo "SIGINT run: exit code $rc; $(grep -h '^interrupted' S1.out || echo 'finished before the signal')"
    if [ "$rc" -eq 130 ] && [ -f S/ckpt ] && grep -q '^interrupted' S1.out; then
      ok "SIGINT: saved and exited 130"
      run S2 0 "${ARGS[@]}" --out-dir S --load S/ckpt --save S/ckpt
      anomaly_report S2.out >S.report
    elif [ "$rc" -eq 0 ]; then
      ok "SIGINT: the run had finished before the signal"
      anomaly_report S1.out >S.report
    else
      fail "SIGINT run: exit code $rc without a saved checkpoint"
      sed 's/^/  /' S1.out S1.err | tail -5
      anomaly_report S1.out >S.report
    fi
    metrics_wo_time S/metrics.csv >S.metrics
    same "S: final test report vs uninterrupted" A.report S.report
    same "S: metrics.csv (without seconds) vs uninterrupted" A.metrics S.metrics
    same "S: best model checkpoint vs uninterrupted" A/ckpt.best S/ckpt.best
  fi
  ;;

anomaly_threads)
  # The same run with 1 and 2 threads: identical final numbers (thread-count invariance end to end).
  ARGS=(--samples 200 --length 60 --epochs 2 --hidden 8 --seed 3 --quiet)
  run T1 0 "${ARGS[@]}" --out-dir T1 --threads 1 --save T1/ckpt
  run T2 0 "${ARGS[@]}" --out-dir T2 --threads 2 --save T2/ckpt
  anomaly_report T1.out >T1.report
  anomaly_report T2.out >T2.report
  check_nonempty "1-thread report" T1.report
  same "final test report, 1 vs 2 threads" T1.report T2.report
  metrics_wo_time T1/metrics.csv >T1.metrics
  metrics_wo_time T2/metrics.csv >T2.metrics
  same "metrics.csv (without seconds), 1 vs 2 threads" T1.metrics T2.metrics
  same "best model, 1 vs 2 threads" T1/ckpt.best T2/ckpt.best
  ;;

forecast_resume)
  # Mini-batches (190 windows, batch 32: 6 batches per epoch, shuffled) and full batch (the seed's).
  for mode in mini full; do
    if [ $mode = mini ]; then
      ARGS=(--points 200 --window 10 --epochs 5 --hidden 8 --batch-size 32 --horizon 20 --seed 3 --quiet)
      STOP=8  # stops at the end of epoch 2 (the program stops at epoch ends)
    else
      ARGS=(--points 200 --window 10 --epochs 5 --hidden 8 --batch-size 0 --horizon 20 --seed 3 --quiet)  # 0 = full batch
      STOP=2
    fi
    run "${mode}_A" 0 "${ARGS[@]}" --out-dir "${mode}_A" --save "${mode}_A/ckpt"
    run "${mode}_B1" 130 "${ARGS[@]}" --out-dir "${mode}_B" --save "${mode}_B/ckpt" --stop-after $STOP
    run "${mode}_B2" 0 "${ARGS[@]}" --out-dir "${mode}_B" --load "${mode}_B/ckpt" --save "${mode}_B/ckpt"
    forecast_report "${mode}_A.out" >"${mode}_A.report"
    forecast_report "${mode}_B2.out" >"${mode}_B.report"
    check_nonempty "$mode: uninterrupted report" "${mode}_A.report"
    same "$mode: final numbers vs uninterrupted" "${mode}_A.report" "${mode}_B.report"
    metrics_wo_time "${mode}_A/metrics.csv" >"${mode}_A.metrics"
    metrics_wo_time "${mode}_B/metrics.csv" >"${mode}_B.metrics"
    same "$mode: metrics.csv (without seconds) vs uninterrupted" "${mode}_A.metrics" "${mode}_B.metrics"
  done
  ;;

anomaly_bad_input)
  SMALL=(--length 40 --epochs 1 --hidden 4 --seed 3 --quiet)
  # 12 series of 20 points; line 6 (series 5) holds a NaN at index 7.
  : >bad.csv
  for i in $(seq 0 11); do
    line="$((i % 2))"
    for t in $(seq 0 19); do
      if [ "$i" -eq 5 ] && [ "$t" -eq 7 ]; then line="$line,nan"; else line="$line,0.$t"; fi
    done
    echo "$line" >>bad.csv
  done
  run_nonzero nan_csv "series index 7" --data bad.csv "${SMALL[@]}" --out-dir o1
  grep -qF "bad.csv:6" nan_csv.err || fail "nan_csv: message lacks the line (bad.csv:6)"
  sed 's/nan/inf/' bad.csv >inf.csv
  run_nonzero inf_csv "series index 7" --data inf.csv "${SMALL[@]}" --out-dir o2
  : >empty.csv
  run_nonzero empty_csv "holds no series" --data empty.csv "${SMALL[@]}" --out-dir o3
  # 4 valid series: the 70/15/15 split leaves validation or test empty.
  head -4 bad.csv >four.csv
  run_nonzero tiny_csv "empty train/validation/test split" --data four.csv "${SMALL[@]}" --out-dir o4
  # Fewer samples than the flag allows, and the smallest allowed count.
  run_nonzero samples_5 "--samples" --samples 5 "${SMALL[@]}" --out-dir o5
  "$BIN" --samples 10 "${SMALL[@]}" --out-dir o6 >samples_10.out 2>samples_10.err
  rc=$?
  if [ $rc -eq 0 ] || { [ $rc -eq 1 ] && grep -qE 'empty train/validation/test split|both classes' samples_10.err; }; then
    ok "samples_10: exit code $rc ($(cat samples_10.err samples_10.out | grep -m1 -E 'split|^test'))"
  else
    fail "samples_10: exit code $rc"
  fi
  # A batch larger than the training set: one batch per epoch.
  run big_batch 0 --samples 60 --batch-size 100000 "${SMALL[@]}" --out-dir o7
  grep -q '^test (' big_batch.out || fail "big_batch: no test report"
  # Bad flags: exit code 2 and a message.
  run bad_flag_unknown 2 --no-such-flag
  run bad_flag_value 2 --epochs abc
  run bad_flag_choice 2 --attention nonsense
  run bad_flag_range 2 --hidden 0
  run bad_flag_missing_file 2 --data does_not_exist.csv
  # A damaged checkpoint: refused with a message, nothing crashes.
  run ok_ckpt 0 --samples 60 "${SMALL[@]}" --out-dir o8 --save o8/ckpt
  head -c 100 o8/ckpt >o8/truncated
  run_nonzero truncated_ckpt "exceeds the file" --samples 60 "${SMALL[@]}" --out-dir o9 --load o8/truncated
  printf 'not a checkpoint at all' >o8/garbage
  run_nonzero garbage_ckpt "sine_anomaly: error" --samples 60 "${SMALL[@]}" --out-dir o9 --load o8/garbage
  # A checkpoint of another model shape (hidden 4 vs 6) is refused.
  run_nonzero wrong_model_ckpt "sine_anomaly: error" --samples 60 --length 40 --epochs 1 --hidden 6 --seed 3 --quiet \
    --out-dir o9 --load o8/ckpt
  ;;

forecast_bad_input)
  run big_batch 0 --points 100 --window 10 --epochs 2 --hidden 4 --batch-size 100000 --horizon 5 --seed 3 --quiet --out-dir o1
  grep -q '^in-sample MSE' big_batch.out || fail "big_batch: no report"
  run_nonzero short_series "sine_forecast: error" --points 5 --window 10 --epochs 1 --hidden 4 --quiet --out-dir o2
  run bad_flag_unknown 2 --no-such-flag
  run bad_flag_value 2 --window -3
  run bad_flag_range 2 --points 1
  # --device cuda: trains on the GPU where attn was built with CUDA and one is present; elsewhere a
  # clear error and exit code 1 (not an abort)
  "$BIN" --device cuda --points 100 --window 10 --epochs 1 --hidden 4 --quiet --out-dir o3 >cuda.out 2>cuda.err
  rc=$?
  if [ "$rc" -eq 0 ]; then ok "device_cuda: trained on the GPU"
  elif [ "$rc" -eq 1 ] && grep -qF -- "--device cuda: no usable CUDA device" cuda.err; then ok "device_cuda: clear error"
  else fail "device_cuda: exit code $rc: $(head -2 cuda.err)"; fi
  ;;

anomaly_bad_checkpoint)
  EDIT=${MORE[0]}
  ARGS=(--samples 200 --length 60 --epochs 2 --hidden 8 --seed 3 --quiet --out-dir o)
  # The reported crash: saved mid-epoch with 2000 series, resumed with 200 (the saved permutation
  # indexed series 200..1999: heap-buffer-overflow in gather_batch). Refused as other data.
  run big 130 --samples 2000 --length 60 --epochs 2 --hidden 8 --seed 3 --quiet --out-dir o --save big.ck --stop-after 3
  run_exit other_samples 1 "big.ck: checkpoint metadata 'data' says the checkpoint was trained on other data" \
    "${ARGS[@]}" --load big.ck
  # The same data at an epoch boundary: refused too (it used to skip the rest of the epoch silently).
  run big_epoch 130 --samples 2000 --length 60 --epochs 2 --hidden 8 --seed 3 --quiet --out-dir o --save big_e.ck \
    --stop-after 44
  run_exit other_samples_epoch_end 1 "'data'" "${ARGS[@]}" --load big_e.ck
  # A mid-epoch checkpoint of this run (batch 2 of 5), then one damaged entry at a time.
  run mid 130 "${ARGS[@]}" --save mid.ck --stop-after 2
  run resume_ok 0 "${ARGS[@]}" --load mid.ck
  damaged() {  # damaged NAME KEY VALUE EXPECTED_TEXT
    cp mid.ck "$1.ck" && cp mid.ck.best "$1.ck.best" && "$EDIT" "$1.ck" "$2" "$3" || fail "$1: ckpt_edit"
    run_exit "$1" 1 "$1.ck: checkpoint metadata '$2' $4" "${ARGS[@]}" --load "$1.ck"
  }
  damaged perm_out_of_range perm 1999 "entry 0 is 1999, outside [0, 199]"
  damaged perm_negative perm "-1,2" "entry 0 is -1, outside [0, 199]"
  damaged perm_short perm "3,1,2" "is not an ordering of this run's 140 training series"
  damaged perm_text perm "3,x" "entry 1 is not an integer: 'x'"
  damaged epoch_text epoch abc "is not an integer: 'abc'"
  damaged epoch_negative epoch -1 "is -1, outside [0, 100000]"
  damaged batch_past_end batch 99 "is 99, outside [0, 5]"
  damaged batch_missing batch --delete "is missing"
  damaged best_val_nan best_val nan "is nan, outside"
  damaged done_two done 2 "is 2, outside [0, 1]"
  damaged history_text history "epoch,train_loss
1,zz" "row 1 holds 'zz', not a number"
  damaged task_other task sine_forecast "is 'sine_forecast', not 'sine_anomaly'"
  damaged ranks_zero ranks 0 "is 0, outside [1, 1048576]"
  damaged ranks_missing ranks --delete "is missing"
  damaged ranks_other ranks 3 "is 3: the run was saved with that many MPI ranks"
  cp mid.ck rng.ck && cp mid.ck.best rng.ck.best && "$EDIT" rng.ck rng_state "1 2 3"
  run_exit rng_state_garbage 1 "unreadable 'rng_state'" "${ARGS[@]}" --load rng.ck
  ;;

forecast_bad_checkpoint)
  EDIT=${MORE[0]}
  ARGS=(--points 200 --window 10 --epochs 3 --hidden 4 --horizon 5 --seed 3 --quiet --out-dir o)
  for mode in full mini; do
    [ $mode = full ] && B=0 || B=32
    run "${mode}_saved" 130 "${ARGS[@]}" --batch-size $B --save "$mode.ck" --stop-after 1
    # Other data (--points): full batch used to resume silently on it.
    run_exit "${mode}_other_points" 1 "$mode.ck: checkpoint metadata 'data'" --points 300 --window 10 --epochs 3 \
      --hidden 4 --horizon 5 --seed 3 --quiet --out-dir o --batch-size $B --load "$mode.ck"
  done
  cp mini.ck order.ck && "$EDIT" order.ck order 5000
  run_exit order_out_of_range 1 "order.ck: checkpoint metadata 'order' entry 0 is 5000, outside [0, 189]" \
    "${ARGS[@]}" --batch-size 32 --load order.ck
  cp full.ck epoch.ck && "$EDIT" epoch.ck epoch 1x
  run_exit epoch_text 1 "epoch.ck: checkpoint metadata 'epoch' is not an integer: '1x'" "${ARGS[@]}" --batch-size 0 \
    --load epoch.ck
  cp full.ck hist.ck && "$EDIT" hist.ck history "epoch,train_mse,seconds"
  run_exit history_rows 1 "'history' has 0 rows for 1 finished epochs" "${ARGS[@]}" --batch-size 0 --load hist.ck
  ;;

bad_numbers)
  # Non-finite flag values are refused (exit 2); a diverging run stops with a message (exit 1),
  # never reports NaN as a result.
  for prog in "${MORE[@]}"; do
    BIN=$prog
    p=$(basename "$prog")
    read -r -a SMALL <<<"$(small_args "$prog")"
    for v in inf nan -inf 1e999; do run "${p}_lr_$v" 2 "${SMALL[@]}" --out-dir "o_$p" --lr "$v"; done
    if [ "$p" != sine_forecast ]; then  # the programs with --clip
      for v in nan inf; do run "${p}_clip_$v" 2 "${SMALL[@]}" --out-dir "o_$p" --clip "$v"; done
    fi
    if [ "$p" != sine_anomaly ]; then  # the programs with --t-end: sin(inf) = NaN data
      run_exit "${p}_t_end" 1 "non-finite value" "${SMALL[@]}" --out-dir "o_$p" --t-end 1e308
    fi
  done
  BIN=${MORE[1]}  # sine_forecast: a learning rate that makes the loss overflow
  run_exit forecast_diverges 1 "training diverged" --points 100 --window 10 --epochs 5 \
    --hidden 4 --horizon 5 --quiet --out-dir o_div --lr 1e30
  ! grep -qi nan forecast_diverges.out || fail "forecast_diverges: NaN reported as a result"
  ;;

out_dir)
  # --out-dir naming a file, a device or a place that cannot hold a directory: exit 1 and a message
  # (it was an uncaught std::filesystem::filesystem_error, exit 134).
  echo "not a directory" >a_file
  for prog in "${MORE[@]}"; do
    BIN=$prog
    p=$(basename "$prog")
    read -r -a SMALL <<<"$(small_args "$prog")"
    run_exit "${p}_file" 1 "$p: error: --out-dir 'a_file'" "${SMALL[@]}" --out-dir a_file
    run_exit "${p}_dev_null" 1 "$p: error: --out-dir '/dev/null'" "${SMALL[@]}" --out-dir /dev/null
    run_exit "${p}_proc" 1 "$p: error: --out-dir '/proc/attn_x/y'" "${SMALL[@]}" --out-dir /proc/attn_x/y
    run_exit "${p}_under_file" 1 "$p: error: --out-dir 'a_file/sub'" "${SMALL[@]}" --out-dir a_file/sub
  done
  ;;

seq2seq_bad_input)
  SMALL=(--points 100 --window 10 --epochs 1 --hidden 4 --quiet)
  run_exit tail_short 2 "--tail 3 is shorter than --horizon 5" "${SMALL[@]}" --tail 3 --horizon 5 --out-dir o
  run tail_equal 0 "${SMALL[@]}" --tail 5 --horizon 5 --out-dir o
  grep -q '^  all ' tail_equal.out || fail "tail_equal: no report"
  run saved 0 "${SMALL[@]}" --tail 10 --horizon 5 --out-dir o --save s.ck
  run_exit other_points 1 "s.ck: checkpoint metadata 'data'" --points 120 --window 10 --epochs 2 --hidden 4 --quiet \
    --tail 10 --horizon 5 --out-dir o --load s.ck
  run resumed 0 --points 100 --window 10 --epochs 2 --hidden 4 --quiet --tail 10 --horizon 5 --out-dir o --load s.ck
  ;;

encdec_runs_and_bad_input)
  CO2=${MORE[0]}
  run sine 0 --epochs 2 --points 200 --tail 30 --out-dir o --quiet
  grep -q '^onepass .*free-running' sine.out || fail "sine: no onepass report"
  grep -q '^autoregressive .*free-running' sine.out || fail "sine: no autoregressive report"
  [ -s o/forecast.svg ] && [ -s o/metrics.csv ] || fail "sine: forecast.svg or metrics.csv missing"
  run co2 0 --data co2 --csv "$CO2" --epochs 1 --mode onepass --out-dir o2 --quiet
  grep -q '^seasonal+drift ' co2.out || fail "co2: no baseline report"
  sed '5s/,317\.24,/,nan,/' "$CO2" >bad.csv
  grep -q ',nan,' bad.csv || fail "bad.csv: the edit did not apply"
  run_exit co2_nan 1 "bad.csv:5: column 3 'average': missing value 'nan'" --data co2 --csv bad.csv --epochs 1 --out-dir o3
  head -50 "$CO2" >short.csv
  run_exit co2_short 1 "short.csv: only 49 monthly values" --data co2 --csv short.csv --epochs 1 --out-dir o3
  run_exit co2_missing 2 "no.csv" --data co2 --csv no.csv --out-dir o3
  run_exit label_len 2 "--label-len <= --window" --window 5 --label-len 6 --out-dir o3
  run_exit heads 2 "--heads dividing --d-model" --d-model 10 --heads 4 --out-dir o3
  run_exit short_series 2 "too few" --points 10 --window 20 --out-dir o3
  ;;

transformer_attention)
  CO2=${MORE[0]}
  for a in dense linear sliding_window strided global_window bigbird; do
    run "sine_$a" 0 --attention "$a" --block 4 --window 16 --points 120 --tail 20 --epochs 1 --d-model 8 --heads 2 \
      --ff 8 --out-dir "o_$a" --quiet
    grep -q '^held-out 20 points: one-step MAE' "sine_$a.out" || fail "sine_$a: no held-out report"
  done
  run co2_bigbird 0 --attention bigbird --data co2 --csv "$CO2" --window 16 --tail 24 --epochs 1 --d-model 8 \
    --heads 2 --ff 8 --out-dir o_co2 --quiet
  grep -q '^co2: one-step MAE .* ppm' co2_bigbird.out || fail "co2_bigbird: no ppm report"
  run_exit bad_attention 2 "--attention" --attention spiral --out-dir o3
  run_exit relative_linear 2 "--positional relative needs --attention dense" --attention linear \
    --positional relative --out-dir o3
  run_exit block_zero 2 "--block" --attention strided --block 0 --out-dir o3
  ;;

anomaly_kclass)
  SMALL=(--length 40 --epochs 2 --hidden 4 --seed 3 --quiet)
  run kind 0 --classes kind --anomaly mix --samples 300 "${SMALL[@]}" --out-dir o1
  grep -q 'macro F1 .*(5 classes)' kind.out || fail "kind: no 5-class report"
  for c in none flat zero noise spike; do grep -q "^  $c " kind.out || fail "kind: no row for class $c"; done
  grep -q 'confusion matrix (rows: true class' kind.out || fail "kind: no confusion matrix"
  grep -q 'attention: peak inside' kind.out || fail "kind: no attention figure for generated data"
  [ -s o1/confusion.svg ] || fail "kind: confusion.svg missing"
  # 60 series of 20 points with labels 3, 5, 9 (a smooth ramp, a constant, an alternating series)
  : >three.csv
  for i in $(seq 0 59); do
    case $((i % 3)) in 0) line=3 ;; 1) line=5 ;; *) line=9 ;; esac
    for t in $(seq 0 19); do
      case $((i % 3)) in 0) v="0.$t" ;; 1) v="0.5" ;; *) v=$((t % 2)) ;; esac
      line="$line,$v"
    done
    echo "$line" >>three.csv
  done
  run three 0 --data three.csv "${SMALL[@]}" --out-dir o2
  grep -q '(3 classes)' three.out || fail "three: no 3-class report"
  grep -q '^  label 9 ' three.out || fail "three: no row for label 9"
  grep -q 'attention: peak' three.out && fail "three: an attention figure for a CSV without anomaly positions"
  sed 's/^3,/0,/; s/^5,/1,/; s/^9,/1,/' three.csv >two.csv
  run two 0 --data two.csv "${SMALL[@]}" --out-dir o3
  grep -q 'ROC-AUC' two.out || fail "two: no binary report"
  grep -q 'attention: peak' two.out && fail "two: an attention figure for a CSV without anomaly positions"
  run_exit kind_csv 1 "--classes kind needs generated data" --classes kind --data three.csv "${SMALL[@]}" --out-dir o4
  ;;

anomaly_score_runs)
  run short 0 --samples 300 --length 64 --epochs 2 --channels 4 --out-dir o --quiet
  grep -q 'ROC-AUC of the scores [0-9.]*; flagged [0-9]*: precision' short.out || fail "short: no score report"
  grep -q 'the window of largest error overlaps the anomaly' short.out || fail "short: no localisation figure"
  [ -s o/scores.svg ] && [ -s o/errors.svg ] || fail "short: plots missing"
  run_exit long_window 2 "--window 100 is longer than --length 64" --length 64 --window 100 --out-dir o2
  run_exit bad_fraction 2 "--anomaly-fraction" --anomaly-fraction 0.9 --out-dir o2
  ;;

co2_forecast_quality_and_bad_input)
  CO2=${MORE[0]}
  run full 0 --csv "$CO2" --out-dir o --quiet
  gain=$(sed -n 's/.*model MAE vs seasonal-naive: \([0-9.]*\)% lower.*/\1/p' full.out)
  if [ -z "$gain" ] || ! awk -v g="$gain" 'BEGIN { exit !(g >= 30) }'; then
    fail "full: the model's MAE is not >= 30% below seasonal-naive's (got '${gain}')"
    cat full.out
  else
    ok "full: MAE ${gain}% below seasonal-naive"
  fi
  grep -q 'linear trend + season .*MASE' full.out || fail "full: no trend+season baseline"
  [ -s o/forecast.svg ] && [ -s o/metrics.csv ] || fail "full: forecast.svg or metrics.csv missing"
  sed '5s/,317\.24,/,31x.24,/' "$CO2" >bad.csv
  run_exit bad_value 1 "bad.csv:5: column 3 'average' is not a number: '31x.24'" --csv bad.csv --epochs 1 --out-dir o2
  sed '$s/,420\.46,/,-99.99,/' "$CO2" >gap_end.csv
  grep -q ',-99.99,' gap_end.csv || fail "gap_end.csv: the edit did not apply"
  run_exit gap_at_end 1 "ends with a missing value, which cannot be interpolated" --csv gap_end.csv --epochs 1 --out-dir o2
  sed '100s/^\([0-9]*,[0-9]*,[0-9.]*\),[0-9.]*,/\1,-99.99,/' "$CO2" >gap_mid.csv
  run_exit gap_in_the_middle 0 "(1 gaps interpolated)" --csv gap_mid.csv --epochs 1 --out-dir o2
  run_exit unknown_column 1 "no value column named 'co2'" --csv "$CO2" --column co2 --epochs 1 --out-dir o2
  head -150 "$CO2" >short.csv
  run_exit short 2 "rows are too few" --csv short.csv --epochs 1 --out-dir o2
  run_exit bad_flag 2 "--lookback" --lookback 5 --out-dir o2
  ;;

transformer_approx_attention)
  # Each approximate variant trains and forecasts; bad choices fail cleanly.
  for a in probsparse performer lsh linformer; do
    run "$a" 0 --points 100 --window 12 --tail 50 --epochs 2 --d-model 8 --heads 2 --ff 8 --attention "$a" --out-dir "$a"
    grep -q '^held-out 50 points' "$a.out" || fail "$a: no held-out line"
    check_nonempty "$a metrics" "$a/metrics.csv"
  done
  run_exit unknown 2 "--attention" --attention nope --out-dir o
  run_exit relative 2 "needs --attention dense" --attention lsh --positional relative --epochs 1 --out-dir o
  ;;

*)
  echo "unknown case $CASE"
  exit 2
  ;;
esac

if [ "$FAILS" -gt 0 ]; then
  echo "$CASE: $FAILS check(s) failed"
  exit 1
fi
echo "$CASE: all checks passed"
