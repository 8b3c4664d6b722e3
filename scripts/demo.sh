#!/usr/bin/env bash
# The main job: dense baseline -> cyclical unstructured pruning -> AutoBot filter pruning -> comparison table,
# on the offline default data (Fashion-MNIST). Re-running replaces the demo's own outputs (atomically).
# Knobs: DEMO_MODEL (lenet5), DEMO_DATA (fashion-mnist), DEMO_EPOCHS (8), OUT (demo_out), THREADS (2).
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=${OUT:-demo_out}
MODEL=${DEMO_MODEL:-lenet5}
DATA=${DEMO_DATA:-fashion-mnist}
EPOCHS=${DEMO_EPOCHS:-8}
THREADS=${THREADS:-2}
S="$PY -m secateurs.cli"
mkdir -p "$OUT"

echo "== 1/4 dense baseline: $MODEL on $DATA, $EPOCHS epochs"
$S train --model "$MODEL" --data "$DATA" --epochs "$EPOCHS" --lr 0.05 --threads "$THREADS" \
  --out "$OUT/dense" --overwrite
$S info --checkpoint "$OUT/dense" | tail -n 3

if $S --help | grep -q sparsify; then
  echo "== 2/4 cyclical pruning to 90% sparsity (3 cycles, from the dense checkpoint)"
  $S sparsify --checkpoint "$OUT/dense" --data "$DATA" --sparsity 0.9 --schedule cyclical --cycles 3 \
    --epochs 3 --lr 0.02 --threads "$THREADS" --out "$OUT/cyclical" --overwrite
fi

if $S --help | grep -q autoprune; then
  echo "== 3/4 AutoBot filter pruning to 50% fewer MACs, then a short fine-tune"
  $S autoprune --checkpoint "$OUT/dense" --data "$DATA" --flops-reduction 0.5 --finetune-epochs 2 \
    --threads "$THREADS" --out "$OUT/autobot" --overwrite
fi

echo "== 4/4 comparison (latency: median forward time, 1 thread)"
ROWS=("$OUT/dense"); NAMES=(dense)
[ -d "$OUT/cyclical" ] && ROWS+=("$OUT/cyclical") && NAMES+=(cyclical-90%)
[ -d "$OUT/autobot" ] && ROWS+=("$OUT/autobot") && NAMES+=(autobot-50%MACs)
$S report "${ROWS[@]}" --names "${NAMES[@]}" --threads 1 --out "$OUT/comparison.md"
echo "outputs in $OUT/ (checkpoints, summary.json, plots, comparison.md); every summary field: docs/summary.md"
echo "next: run '. $(dirname "$PY")/activate' in your shell, then the README's command-line examples"
