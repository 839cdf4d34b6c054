#!/usr/bin/env bash
# The GPU speed targets, in one prepared script for a session that is lent a GPU.
#
#   5. `hood pretrain` ResNet18 on CIFAR-10: <= 1.5 s per epoch (and the recipe's accuracy)
#   6. `hood train-decoder`, ResNet18 setting, 150 epochs, 10,000 outliers: <= 120 s in total,
#      feature extraction and prototype search included
#   7. the whole pipeline end to end (pretrain + train-decoder + evaluate on every available OOD set)
#
# Order: tests/test_cuda.py (graphed = eager training; when it passes, pretrain replays CUDA graphs), then
# the pipeline itself (pretrain -> train-decoder -> evaluate, configs/paper/cifar10_resnet18.yaml), then with
# what is left of the budget the decoder again with eager steps (same classifier and seed: its losses
# must match) and a few eager pretrain epochs. results.md is rewritten after every step. Every step
# runs under `timeout` so the script ends inside BUDGET_S; a step cut short still leaves its run.json
# (per-epoch seconds), which the table reads. Epoch times come from the runs' own `epoch_seconds`
# (training steps only, device work included), whole-command times from the wall clock.
#
# Expects FIXTURES, a folder holding the archives (cifar10-jpg.tar.gz and
# tin32-pool.tar.gz required; tin32-test, mnist-test, textures10 used as OOD sets when present;
# cifar10_resnet18.pt, the shared classifier, is the decoder's fallback if pretraining fails), e.g.
#   FIXTURES=/path/to/fixtures OUT=out bench/gpu.sh
# Uses .venv/bin/python when present, else python3 (a GPU machine's own PyTorch). Writes to $OUT
# (default bench-gpu-out/): results.md (the table for docs/speed.md), timings.jsonl, each step's log;
# the run directories go to $RUNS (default $OUT/runs).
#
# Knobs (environment): BUDGET_S (default 470: seconds the whole script may take), RESERVE_S (200: of it
# kept from pretraining for the decoder and evaluate), PRETRAIN_EPOCHS (100,
# the paper's recipe), DECODER_EPOCHS (150), NUM_OOD (10000), CUDA_TESTS (1; 0 skips them, and then pretrain
# runs eager steps: it replays CUDA graphs only once the graph tests have passed on this machine), and for a
# dry run without a GPU:
# DEVICE=cpu CIFAR=<tiny id archive> POOL=<tiny pool> with small epochs.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench-gpu-out}"
mkdir -p "$OUT"
PY="${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
HOOD=("$PY" -m hood)
BUDGET_S="${BUDGET_S:-470}"
RESERVE_S="${RESERVE_S:-200}"
PRETRAIN_EPOCHS="${PRETRAIN_EPOCHS:-100}"
DECODER_EPOCHS="${DECODER_EPOCHS:-150}"
NUM_OOD="${NUM_OOD:-10000}"
FIXTURES="${FIXTURES:-${HOOD_FIXTURES:?set FIXTURES to the folder holding the archives and classifier}}"
CIFAR="${CIFAR:-$FIXTURES/cifar10-jpg.tar.gz}"
POOL="${POOL:-$FIXTURES/tin32-pool.tar.gz}"
FALLBACK_CLASSIFIER="${FALLBACK_CLASSIFIER:-$FIXTURES/cifar10_resnet18.pt}"
DEVICE="${DEVICE:-cuda}"
export HOOD_CACHE="${HOOD_CACHE:-$PWD/bench-gpu-cache}"   # decoded archives, reused between steps
export HOOD_DATA="${HOOD_DATA:-$PWD/bench-gpu-data}"
export PYTHONUNBUFFERED=1
START=$(date +%s)
RUNS="${RUNS:-$OUT/runs}"   # run directories (checkpoints included): keep them off a small $OUT
mkdir -p "$RUNS"

for f in "$CIFAR" "$POOL"; do
  [ -f "$f" ] || { echo "missing $f: put $(basename "$f") into $FIXTURES" >&2; exit 2; }
done
OOD_SETS=""
for f in $FIXTURES/tin32-test.tar.gz $FIXTURES/mnist-test.tar.gz $FIXTURES/textures10.tar.gz; do
  [ -f "$f" ] && OOD_SETS="${OOD_SETS:+$OOD_SETS,}$f"
done
OOD_SETS="${OOD_SETS:+$OOD_SETS,}uniform-noise,gaussian-noise"

left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }
# step NAME LIMIT CMD...: run under `timeout LIMIT`, log, record wall seconds and exit code (124: cut short)
step() {
  local name=$1 limit=$2; shift 2
  if [ "$limit" -lt 10 ]; then
    echo "{\"step\": \"$name\", \"seconds\": 0, \"rc\": \"skipped\"}" >>"$OUT/timings.jsonl"
    echo "$name: skipped (budget)" >&2
    return 1
  fi
  local t0 t1 rc secs
  t0=$(date +%s.%N)
  timeout --signal=INT --kill-after=15 "$limit" "$@" >"$OUT/$name.log" 2>&1; rc=$?
  t1=$(date +%s.%N)
  secs=$("$PY" -c "print(round($t1 - $t0, 2))")
  echo "{\"step\": \"$name\", \"seconds\": $secs, \"rc\": $rc}" >>"$OUT/timings.jsonl"
  echo "$name: ${secs}s rc=$rc (budget left $(left) s)" >&2
  tail -4 "$OUT/$name.log" >&2
  "$PY" research/gpu_table.py "$OUT" "$RUNS" >"$OUT/results.md" 2>&1  # kept current: a cut-off call still returns it
  return $rc
}

{
  echo "machine: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1), $(getconf _NPROCESSORS_ONLN) CPU cores"
  "$PY" -c "import torch, hood; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'hood', hood.__version__)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null)$(git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo +dirty)"
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
} >"$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt" >&2

COMMON=(--device "$DEVICE" --quiet --json)
# what only a GPU can check (graph replay = eager training for pretrain and decoder, fused optimizers);
# pretrain replays CUDA graphs below (its default) only when these pass
PRETRAIN_GRAPH=false
if [ "$DEVICE" = cuda ] && [ "${CUDA_TESTS:-1}" = 1 ]; then
  step cuda_tests 120 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py && PRETRAIN_GRAPH=true
fi
# decode the archives once (a one-off per machine; later commands read the cached tensors)
step decode "$(left)" "$PY" -c "
from pathlib import Path
from hood.data.sources import load_id_splits, load_image_set
s = load_id_splits('$CIFAR', Path('.'), 32); p = load_image_set('$POOL', Path('.'), 32)
print(len(s['train']), len(s['test']), len(p))"

# 5 + 7a. pretrain with the recipe; leaves RESERVE_S for the decoder and evaluate, cut short past that
echo "$PRETRAIN_GRAPH" > "$OUT/pretrain_graphs"  # which steps the pretrain below replays, for the table
HOOD_CUDA_GRAPHS=$( [ "$PRETRAIN_GRAPH" = true ] && echo 1 || echo 0 ) \
step pretrain "$(( $(left) - RESERVE_S ))" "${HOOD[@]}" pretrain -c paper/cifar10_resnet18 -d "$CIFAR" --epochs "$PRETRAIN_EPOCHS" \
  --out "$RUNS/pretrain" "${COMMON[@]}"
CLASSIFIER="$RUNS/pretrain/classifier.pt"
[ -f "$CLASSIFIER" ] || CLASSIFIER="$FALLBACK_CLASSIFIER"
echo "decoder classifier: $CLASSIFIER" >&2

# 6 + 7b. train-decoder: the config's defaults, 150 epochs, 10,000 outliers; wall time of the whole command
step train_decoder "$(( $(left) - 45 ))" "${HOOD[@]}" train-decoder -c paper/cifar10_resnet18 -d "$CIFAR" --aux "$POOL" \
  --classifier "$CLASSIFIER" --num-ood "$NUM_OOD" --epochs "$DECODER_EPOCHS" --out "$RUNS/decoder" "${COMMON[@]}"

# 7c. evaluate every available OOD set with the config's methods
step evaluate "$(left)" "${HOOD[@]}" evaluate -c paper/cifar10_resnet18 -d "$CIFAR" --run "$RUNS/decoder" --ood "$OOD_SETS" \
  --device "$DEVICE" --quiet --json

# 6'. the same decoder run with eager steps (HOOD_CUDA_GRAPHS=0), while the budget lasts: same
# classifier and seed, so its losses must match the graphed run's
HOOD_CUDA_GRAPHS=0 step train_decoder_eager "$(( $(left) - 60 ))" "${HOOD[@]}" train-decoder -c paper/cifar10_resnet18 -d "$CIFAR" \
  --aux "$POOL" --classifier "$CLASSIFIER" --num-ood "$NUM_OOD" --epochs "$DECODER_EPOCHS" \
  --out "$RUNS/decoder-eager" "${COMMON[@]}"

# 5'. pretrain with eager steps for a few epochs, while the budget lasts: the graphs' speed-up on this machine
if [ "$PRETRAIN_GRAPH" = true ]; then
  HOOD_CUDA_GRAPHS=0 step pretrain_eager "$(( $(left) - 5 ))" "${HOOD[@]}" pretrain -c paper/cifar10_resnet18 -d "$CIFAR" \
    --epochs 6 --out "$RUNS/pretrain-eager" "${COMMON[@]}"
fi

"$PY" research/gpu_table.py "$OUT" "$RUNS" | tee "$OUT/results.md"
