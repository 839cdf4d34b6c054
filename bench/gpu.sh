#!/usr/bin/env bash
# GPU targets of issue 5, in one prepared script for a session that is lent a GPU (not yet measured).
#
#   5. `hood pretrain` ResNet18 on CIFAR-10: <= 1.5 s per epoch (and the recipe's accuracy)
#   6. `hood train-decoder`, ResNet18 setting, 150 epochs, 10,000 outliers: <= 120 s in total,
#      feature extraction and prototype search included
#   7. the whole pipeline end to end (pretrain + train-decoder + evaluate on every available OOD set)
#
# Expects the shared archives copied into the git-ignored .carry/ (cifar10-jpg.tar.gz and
# tin32-pool.tar.gz required; tin32-test, mnist-test, textures10 used as OOD sets when present), e.g.
#   mkdir -p .carry && cp ../shared/data/*.tar.gz .carry/
# and a venv with hood installed (.venv, or `python` on PATH). Writes timings to $OUT (default
# bench-gpu-out/): results.md (the table for bench/RESULTS.md), timings.jsonl, and each command's log.
#
# Knobs (environment): PRETRAIN_EPOCHS (full-recipe run for the accuracy check; default 100, the
# METHOD.md recipe; 0 skips it and the decoder uses the timing run's classifier), TIMING_EPOCHS (default
# 12), DECODER_EPOCHS (default 150), BUDGET_S (skip optional steps past this many seconds; default 480),
# and for a dry run without a GPU: DEVICE=cpu CIFAR=<tiny id archive> POOL=<tiny pool> NUM_OOD=<n>.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench-gpu-out}"
mkdir -p "$OUT"
PY="${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}"
HOOD=("$PY" -m hood)
PRETRAIN_EPOCHS="${PRETRAIN_EPOCHS:-100}"
TIMING_EPOCHS="${TIMING_EPOCHS:-12}"
DECODER_EPOCHS="${DECODER_EPOCHS:-150}"
BUDGET_S="${BUDGET_S:-480}"
CIFAR="${CIFAR:-.carry/cifar10-jpg.tar.gz}"
POOL="${POOL:-.carry/tin32-pool.tar.gz}"
NUM_OOD="${NUM_OOD:-10000}"
DEVICE="${DEVICE:-cuda}"   # DEVICE=cpu with tiny CIFAR/POOL archives dry-runs this script without a GPU
export HOOD_CACHE="${HOOD_CACHE:-$PWD/.carry/cache}"   # decoded archives, reused between steps
export HOOD_DATA="${HOOD_DATA:-$PWD/.carry/data}"
START=$(date +%s)
RUNS="$OUT/runs"

for f in "$CIFAR" "$POOL"; do
  [ -f "$f" ] || { echo "missing $f: copy ../shared/data/$(basename "$f") into .carry/" >&2; exit 2; }
done
OOD_SETS=""
for f in .carry/tin32-test.tar.gz .carry/mnist-test.tar.gz .carry/textures10.tar.gz; do
  [ -f "$f" ] && OOD_SETS="${OOD_SETS:+$OOD_SETS,}$f"
done
OOD_SETS="${OOD_SETS:+$OOD_SETS,}uniform-noise,gaussian-noise"

elapsed() { echo $(( $(date +%s) - START )); }
# step NAME CMD...: run, log, record wall seconds and exit code as one JSON line
step() {
  local name=$1; shift
  local t0 t1 rc
  t0=$(date +%s.%N)
  "$@" >"$OUT/$name.log" 2>&1; rc=$?
  t1=$(date +%s.%N)
  local secs; secs=$("$PY" -c "print(round($t1 - $t0, 2))")
  echo "{\"step\": \"$name\", \"seconds\": $secs, \"rc\": $rc}" >>"$OUT/timings.jsonl"
  echo "$name: ${secs}s rc=$rc" >&2
  tail -3 "$OUT/$name.log" >&2
  eval "T_${name//-/_}=$secs"
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
# 0. decode the archives once (a one-off per machine; the cache makes later commands read tensors)
step decode "$PY" -c "
from pathlib import Path
from hood.data.sources import load_id_splits, load_image_set
s = load_id_splits('$CIFAR', Path('.'), 32); p = load_image_set('$POOL', Path('.'), 32)
print(len(s['train']), len(s['test']), len(p))"

# 5a. pretrain seconds per epoch: two runs that differ only in epochs, so start-up and test cancel out
step pretrain_2 "${HOOD[@]}" pretrain -d "$CIFAR" -a resnet18 --epochs 2 --out "$RUNS/pretrain-2" "${COMMON[@]}"
step pretrain_n "${HOOD[@]}" pretrain -d "$CIFAR" -a resnet18 --epochs "$TIMING_EPOCHS" --out "$RUNS/pretrain-n" "${COMMON[@]}"
EPOCH_S=$("$PY" -c "print(round(($T_pretrain_n - $T_pretrain_2) / ($TIMING_EPOCHS - 2), 3))")
echo "pretrain ResNet18 CIFAR-10: $EPOCH_S s/epoch (target <= 1.5)" >&2
CLASSIFIER="$RUNS/pretrain-n/classifier.pt"

# 5b. optional: the same with torch.compile, when the CLI offers --compile
if "${HOOD[@]}" pretrain --help 2>/dev/null | grep -q -- "--compile"; then
  step pretrain_2_compile "${HOOD[@]}" pretrain -d "$CIFAR" -a resnet18 --epochs 2 --compile --out "$RUNS/pretrain-2c" "${COMMON[@]}"
  step pretrain_n_compile "${HOOD[@]}" pretrain -d "$CIFAR" -a resnet18 --epochs "$TIMING_EPOCHS" --compile --out "$RUNS/pretrain-nc" "${COMMON[@]}"
  EPOCH_C=$("$PY" -c "print(round(($T_pretrain_n_compile - $T_pretrain_2_compile) / ($TIMING_EPOCHS - 2), 3))")
  echo "pretrain with --compile: $EPOCH_C s/epoch" >&2
fi

# 6. train-decoder: 150 epochs, 10,000 outliers, wall time of the whole command
step train_decoder "${HOOD[@]}" train-decoder -c cifar10_resnet18 -d "$CIFAR" --aux "$POOL" --classifier "$CLASSIFIER" \
  --num-ood "$NUM_OOD" --epochs "$DECODER_EPOCHS" --out "$RUNS/decoder" "${COMMON[@]}"

# 7. evaluate every available OOD set with the decoder
step evaluate "${HOOD[@]}" evaluate -c cifar10_resnet18 -d "$CIFAR" --run "$RUNS/decoder" --ood "$OOD_SETS" \
  --methods heatmap --device "$DEVICE" --quiet --json

# 5c / 7. the full recipe (accuracy check) and the pipeline end to end, while the budget lasts
if [ "$PRETRAIN_EPOCHS" -gt 0 ] && [ "$(elapsed)" -lt "$BUDGET_S" ]; then
  step pretrain_full "${HOOD[@]}" pretrain -d "$CIFAR" -a resnet18 --epochs "$PRETRAIN_EPOCHS" --out "$RUNS/pretrain-full" "${COMMON[@]}"
  if [ "$(elapsed)" -lt "$BUDGET_S" ]; then
    step train_decoder_full "${HOOD[@]}" train-decoder -c cifar10_resnet18 -d "$CIFAR" --aux "$POOL" \
      --classifier "$RUNS/pretrain-full/classifier.pt" --num-ood "$NUM_OOD" --epochs "$DECODER_EPOCHS" --out "$RUNS/decoder-full" "${COMMON[@]}"
    step evaluate_full "${HOOD[@]}" evaluate -c cifar10_resnet18 -d "$CIFAR" --run "$RUNS/decoder-full" --ood "$OOD_SETS" \
      --methods heatmap --device "$DEVICE" --quiet --json
  fi
fi

# the table
"$PY" - "$OUT" "$EPOCH_S" "$TIMING_EPOCHS" "$DECODER_EPOCHS" "$NUM_OOD" <<'PYEOF' | tee "$OUT/results.md"
import json, sys
from pathlib import Path
out, epoch_s, timing_epochs, dec_epochs, num_ood = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
t = {}
for line in (out / "timings.jsonl").read_text().splitlines():
    r = json.loads(line); t[r["step"]] = r
def info(run):
    f = out / "runs" / run / "run.json"
    return json.loads(f.read_text()) if f.is_file() else {}
print((out / "machine.txt").read_text().strip().replace("\n", "  \n"))
print("\n| target | measured | goal | met |\n| --- | --- | --- | --- |")
print(f"| 5 pretrain ResNet18 CIFAR-10, s/epoch (from {timing_epochs} vs 2 epochs) | {epoch_s:.2f} | <= 1.5 | {'yes' if epoch_s <= 1.5 else 'NO'} |")
if "pretrain_n_compile" in t:
    e = (t["pretrain_n_compile"]["seconds"] - t["pretrain_2_compile"]["seconds"]) / (int(timing_epochs) - 2)
    print(f"| 5 ... with --compile, s/epoch | {e:.2f} | <= 1.5 | {'yes' if e <= 1.5 else 'NO'} |")
if "train_decoder" in t:
    s = t["train_decoder"]["seconds"]
    print(f"| 6 train-decoder {dec_epochs} epochs, {num_ood} outliers, whole command (s) | {s:.1f} | <= 120 | {'yes' if s <= 120 and t['train_decoder']['rc'] == 0 else 'NO'} |")
full = ["pretrain_full", "train_decoder_full", "evaluate_full"]
if all(k in t for k in full):
    total = sum(t[k]["seconds"] for k in full)
    acc = info("pretrain-full").get("test_acc")
    print(f"| 7 whole pipeline end to end (pretrain {info('pretrain-full').get('epochs_done')} epochs + decoder + evaluate), s | {total:.0f} | - | - |")
    print(f"| 5 recipe accuracy (plateau, METHOD.md), test | {acc if acc is None else f'{acc * 100:.2f}%'} | ~ recipe | - |")
print("\nsteps (wall s, exit code): " + ", ".join(f"{k} {v['seconds']:.1f} ({v['rc']})" for k, v in t.items()))
print(f"decode of the archives (one-off, then cached): {t.get('decode', {}).get('seconds', float('nan')):.1f} s")
PYEOF
