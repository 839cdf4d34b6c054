#!/usr/bin/env bash
# Detection quality at the paper's training budget (150 decoder epochs, all ID training images left after the
# validation split, 10,000 outliers) on a GPU; ARCH (resnet18 | wrn40_2) picks the classifier and CONFIG
# (default cifar10_$ARCH) the settings.
#
# Settings are chosen on validation data only, inside the script, before any test set is scored:
#   1. seed 0, the config's settings, validation table only
#   2. seed 0, the alternative ALT_SET (default: the paper's decoder, fw_layers 1 and the nearest prototype,
#      against the recommended config's fw_layers 4 and mean-of-5 prototypes), validation table only
#   3. the setting with the lower validation FPR95 of CHOOSE_BY (ties within TIE_POINTS go to the config's
#      own settings) is trained for SEEDS on everything -- all ID training images and all pool classes, as
#      the configs train -- and scored on the test sets (TEST_SPLIT=1 keeps the validation split held out)
#   4. with what is left: a second validation seed for the setting not chosen
# Each phase is research/quality.sh under `timeout`, so the script ends inside BUDGET_S; its printed tables go
# to $OUT/quality.md and the runs' small files (results, validation, scores, run.json) to
# $OUT/quality-runs.tar.gz (decoders and fits stay behind).
#
# FIXTURES: a folder holding cifar10-jpg, tin32-pool, tin32-test, mnist-test, textures10 (and, for far-OOD
# validation, omniglot-val) .tar.gz and the classifier cifar10_$ARCH.pt, side by side (default $HOOD_FIXTURES).
# Knobs: ARCH (resnet18), CONFIG, ALT_SET, CHOOSE_BY (the config's first combination in evaluate.methods), BUDGET_S (520), TIE_POINTS (0.5),
# EPOCHS (150), NUM_OOD (10000), SEEDS ("0 1 2"), TEST_SPLIT (0, see 3.), VALIDATE (1; 0 runs only phase 3
# with the config's settings, for a classifier whose validation round at this budget already chose them;
# alt runs ALT_SET's validation seed 0 and then its test SEEDS (default "0")), RUNS (/tmp/hood-quality: the
# run directories, one folder per phase), and for a dry run on CPU:
# DEVICE=cpu NUM_ID=500 NUM_OOD=100 EPOCHS=1 ID_TEST_COUNT=500 OOD_COUNT=200.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench-gpu-out}"
mkdir -p "$OUT"
PY="${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
BUDGET_S="${BUDGET_S:-520}"
TIE_POINTS="${TIE_POINTS:-0.5}"
START=$(date +%s)
left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }

# the fixtures in the data/ + models/ layout research/quality.sh reads
FIXTURES="${FIXTURES:-${HOOD_FIXTURES:-}}"
[ -n "$FIXTURES" ] || { echo "set FIXTURES (or HOOD_FIXTURES) to the folder holding the archives and the classifier" >&2; exit 2; }
SHARED="${SHARED_DIR:-/tmp/hood-shared}"
mkdir -p "$SHARED/data" "$SHARED/models"
for f in cifar10-jpg tin32-pool tin32-test mnist-test textures10; do
  [ -f "$FIXTURES/$f.tar.gz" ] || { echo "missing $FIXTURES/$f.tar.gz (set FIXTURES=the folder holding the archives)" >&2; exit 2; }
  ln -sf "$(cd "$FIXTURES" && pwd)/$f.tar.gz" "$SHARED/data/$f.tar.gz"
done
[ -f "$FIXTURES/omniglot-val.tar.gz" ] && ln -sf "$(cd "$FIXTURES" && pwd)/omniglot-val.tar.gz" "$SHARED/data/omniglot-val.tar.gz"
ARCH="${ARCH:-resnet18}"
[ -f "$FIXTURES/cifar10_$ARCH.pt" ] || { echo "missing $FIXTURES/cifar10_$ARCH.pt (set FIXTURES=the folder holding the classifier)" >&2; exit 2; }
ln -sf "$(cd "$FIXTURES" && pwd)/cifar10_$ARCH.pt" "$SHARED/models/cifar10_$ARCH.pt"
RUNS="${RUNS:-/tmp/hood-quality}"
export CONFIG="${CONFIG:-cifar10_$ARCH}"
# the config's recommended detector: the first combination among its methods (else the paper's heatmap)
CHOOSE_BY="${CHOOSE_BY:-$("$PY" -c "import sys; from hood.cli.options import config_path; from hood.config import resolve
from hood.detectors.combined import COMBINATIONS
m = resolve(config_path(sys.argv[1])).evaluate.methods; print(next((x for x in m if x in COMBINATIONS), 'heatmap'))" "$CONFIG")}"
export SHARED PY ARCH DEVICE="${DEVICE:-cuda}" EPOCHS="${EPOCHS:-150}" NUM_ID="${NUM_ID-}" NUM_OOD="${NUM_OOD:-10000}"
export VAL_AUX_CLASSES=16
export HOOD_CACHE="${HOOD_CACHE:-/tmp/hood-cache}" PYTHONUNBUFFERED=1
ALT="${ALT_SET:-decoder.fw_layers=1 decoder.prototype_k=1}"  # the paper's decoder settings
"$PY" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')" \
  | tee "$OUT/quality.md"

# phase NAME SEEDS TEST TRAIN_SET [SPLIT]: one research/quality.sh call under what is left of the budget;
# SPLIT 0 trains on everything (no validation split held out, no validation table)
phase() {
  local name=$1 seeds=$2 test=$3 train_set=$4 split=${5:-1} t0 rc limit aux_classes=$VAL_AUX_CLASSES
  limit=$(left)
  [ "$limit" -ge 30 ] || { echo "## $name: skipped (budget)" >>"$OUT/quality.md"; return 1; }
  t0=$(date +%s)
  { echo; echo "## $name (SEEDS=\"$seeds\" TEST=$test TRAIN_SET=\"$train_set\" SPLIT=$split)"; } >>"$OUT/quality.md"
  [ "$split" = 1 ] || aux_classes=0
  SEEDS="$seeds" TEST="$test" TRAIN_SET="$train_set" VAL_AUX_CLASSES=$aux_classes OUT_DIR="$RUNS/$name" timeout --signal=INT --kill-after=15 "$limit" \
    research/quality.sh >>"$OUT/quality.md" 2>"$OUT/$name.err"; rc=$?
  echo "($name: $(( $(date +%s) - t0 )) s, rc $rc, budget left $(left) s)" | tee -a "$OUT/quality.md" >&2
  tail -3 "$OUT/$name.err" >&2
  # the runs' small files in one archive (decoders and fits stay behind), rewritten after every phase so
  # that a call cut short still returns what it did
  (cd "$RUNS" && tar czf - --exclude='*.pt' --exclude=fits --exclude=ood_samples.json . ) \
    >"$OUT/quality-runs.tar.gz" 2>/dev/null
  return $rc
}

# mean validation FPR95 (%) of CHOOSE_BY over the validation sets of a phase's seed-0 run
val_fpr() {
  "$PY" - "$CHOOSE_BY" "$RUNS/$1"/*-seed0/validation.json <<'EOF'
import json, sys
d = json.load(open(sys.argv[2]))
print(round(100 * d["results"][sys.argv[1]]["mean"]["fpr95"], 2))
EOF
}

finish() { echo "total $(( $(date +%s) - START )) s" | tee -a "$OUT/quality.md" >&2; exit 0; }

if [ "${VALIDATE:-1}" = 0 ]; then
  # validation already chose the config's settings for this classifier at this budget: only the test phase runs
  phase test_chosen "${SEEDS:-0 1 2}" 1 "" "${TEST_SPLIT:-0}"
  finish
fi
if [ "${VALIDATE:-1}" = alt ]; then
  # one setting against the config's recorded validation figures at this budget: its
  # validation seed 0 first, then its test seeds on everything; the test table counts only where validation won
  phase val_alt 0 0 "$ALT"
  phase test_alt "${SEEDS:-0}" 1 "$ALT" "${TEST_SPLIT:-0}"
  finish
fi
phase val_config 0 0 ""
phase val_alt 0 0 "$ALT"
a=$(val_fpr val_config 2>/dev/null || echo 999)
b=$(val_fpr val_alt 2>/dev/null || echo 999)
chosen=""; other="$ALT"
if "$PY" -c "import sys; sys.exit(0 if $b < $a - $TIE_POINTS else 1)"; then chosen="$ALT"; other=""; fi
echo "validation $CHOOSE_BY FPR95, seed 0: config $a, alt $b -> chosen: '${chosen:-config}'" | tee -a "$OUT/quality.md" >&2
phase test_chosen "${SEEDS:-0 1 2}" 1 "$chosen" "${TEST_SPLIT:-0}"
phase val_other 1 0 "$other"
finish
