#!/bin/bash
# The attention zoo suite, end to end (docs/attention-zoo.md): the PyTorch side, attn's variants
# (time, peak memory, error, plots), then task quality (transformer_forecast with each variant on
# the sine and on Mauna Loa CO2). Everything on 2 threads; results in $OUT.
#   cmake --build build --target bench_attention_zoo transformer_forecast -j2
#   bash bench/run_attention_zoo.sh            # BUILD=build OUT=out/attention_zoo by default
set -euo pipefail
BUILD=${BUILD:-build}
OUT=${OUT:-out/attention_zoo}
EPOCHS=${EPOCHS:-20}
mkdir -p "$OUT"
export OMP_NUM_THREADS=2
start=$(date +%s)
lscpu | grep -m1 "Model name" | tee "$OUT/cpu.txt"
# PyTorch's calls vary more from call to call than attn's (its intra-op pool and OpenBLAS's own
# threads share the 2 cores): a 2 s budget per case gives its median more calls.
/usr/bin/python3 bench/torch_attention_zoo.py "$OUT/torch.csv" --max-L "${TORCH_MAX_L:-4096}" --budget "${TORCH_BUDGET:-2}"
"$BUILD/bench/bench_attention_zoo" --out-dir "$OUT" --torch "$OUT/torch.csv" --max-L "${MAX_L:-65536}"
# Task quality: held-out one-step error of transformer_forecast per attention (same seed and
# settings; window 32 so that blocks of 4 leave 8 blocks per window).
{
  echo "| attention | sine one-step MAE | sine one-step RMSE | CO2 one-step MAE (ppm) | CO2 one-step RMSE (ppm) |"
  echo "|---|---:|---:|---:|---:|"
  for a in dense linear sliding_window strided global_window bigbird probsparse performer lsh linformer; do
    s=$(OMP_NUM_THREADS=1 "$BUILD/examples/transformer_forecast" --attention "$a" --window 32 --epochs "$EPOCHS" \
        --quiet --out-dir "$OUT/tf_sine_$a" | grep "^held-out")
    c=$(OMP_NUM_THREADS=1 "$BUILD/examples/transformer_forecast" --attention "$a" --window 32 --epochs "$EPOCHS" \
        --data co2 --tail 120 --quiet --out-dir "$OUT/tf_co2_$a" | grep "^co2:")
    smae=$(echo "$s" | sed -E 's/.*one-step MAE ([0-9.]+) RMSE ([0-9.]+).*/\1/')
    srmse=$(echo "$s" | sed -E 's/.*one-step MAE ([0-9.]+) RMSE ([0-9.]+).*/\2/')
    cmae=$(echo "$c" | sed -E 's/.*one-step MAE ([0-9.]+) ppm, RMSE ([0-9.]+) ppm.*/\1/')
    crmse=$(echo "$c" | sed -E 's/.*one-step MAE ([0-9.]+) ppm, RMSE ([0-9.]+) ppm.*/\2/')
    echo "| $a | $smae | $srmse | $cmae | $crmse |"
  done
} | tee "$OUT/task_quality.md"
echo "suite end to end: $(( $(date +%s) - start )) s" | tee "$OUT/suite_time.txt"
