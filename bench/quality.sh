#!/usr/bin/env bash
# Detection quality on the shared CIFAR-10 fixtures (issue 7): train the heatmap decoder with N seeds,
# evaluate every method on tin32-test, mnist-test, textures10, uniform and Gaussian noise (2,000 each;
# textures10 has 1,200), then print mean and spread over the seeds.
#
#   bench/quality.sh                       # CPU defaults below: ~10 min per seed on 2 idle cores (40+ loaded)
#   DEVICE=cuda EPOCHS=150 NUM_ID= NUM_OOD=10000 SEEDS="0 1 2" bench/quality.sh   # the paper's budget
#
# Knobs (environment): SHARED (../shared), ARCH (wrn40_2 | resnet18), DEVICE (auto), EPOCHS (25),
# NUM_ID (10000; empty = all 50,000), NUM_OOD (5000), SEEDS ("0"), OUTPUT_SCALE (1 = the paper),
# METHODS (every method but ODIN, which adds ~15 min on 2 CPU cores; METHODS=all includes it), ID_TEST_COUNT (empty = all 10,000), OOD_COUNT (2000), OUT_DIR (runs/quality),
# VAL_ID_PER_CLASS / VAL_AUX_CLASSES (0 / 0; e.g. 100 / 16 = issue 7's validation split: held out of
# training, and `hood evaluate --validation` prints a validation table before the test table),
# VAL_OOD (uniform-noise,blobs: the built-in synthetic sets validation adds, each a draw apart from the test
# set's; blobs since 2026-11-27, earlier validation figures averaged held-out classes and uniform noise only),
# TRAIN_SET (extra train-decoder overrides, e.g. "decoder.fw_layers=2 decoder.lr=0.001"; part of the run name),
# EVAL_SET (extra evaluate overrides, e.g. "evaluate.partner_weight=2"; the decoders are reused),
# TEST (1; 0 = validation table only, for choosing settings without looking at the test sets),
# PY (.venv/bin/python when present, else python3),
# CONFIG (a config by path or bundled name; default configs/cifar10_$ARCH.yaml with the budget above): its
# architecture, budget (decoder.epochs / num_id / num_ood / output_scale) and validation split
# (data.val_id_per_class / val_aux_classes) become the defaults of those knobs, e.g.
#   CONFIG=cifar10_wrn40_2_cpu SEEDS="0 1 2 3 4" bench/quality.sh   # the CPU profile's table (README)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}  # python3: a GPU machine's own PyTorch
CONFIG=${CONFIG:-}
if [ -n "$CONFIG" ]; then
  # a config that holds its own budget (e.g. cifar10_wrn40_2_cpu): its values are the knobs' defaults below
  cfg_sh=$("$PY" - "$CONFIG" <<'PYEOF'
import shlex, sys
from hood.cli.options import config_path
from hood.config import resolve
from hood.errors import ConfigError
path = config_path(sys.argv[1])
try:
    c = resolve(path)
except ConfigError as e:
    sys.exit(f"error: {e}")
d = c.decoder
for k, v in {"CFG_FILE": path, "CFG_NAME": c.name, "CFG_ARCH": c.model.arch, "CFG_EPOCHS": d.epochs,
             "CFG_NUM_ID": d.num_id or "", "CFG_NUM_OOD": d.num_ood, "CFG_OUTPUT_SCALE": f"{d.output_scale:g}",
             "CFG_VAL_ID": c.data.val_id_per_class, "CFG_VAL_AUX": c.data.val_aux_classes}.items():
    print(f"{k}={shlex.quote(str(v))}")
PYEOF
)
  eval "$cfg_sh"
  if [ -n "${ARCH:-}" ] && [ "$ARCH" != "$CFG_ARCH" ]; then
    echo "error: ARCH=$ARCH but $CONFIG is for $CFG_ARCH (drop ARCH or pick the $ARCH config)" >&2; exit 2
  fi
fi
SHARED=${SHARED:-../shared}
ARCH=${ARCH:-${CFG_ARCH:-wrn40_2}}
CFG_FILE=${CFG_FILE:-configs/cifar10_$ARCH.yaml}
DEVICE=${DEVICE:-auto}
EPOCHS=${EPOCHS:-${CFG_EPOCHS:-25}}
NUM_ID=${NUM_ID-${CFG_NUM_ID-10000}}
NUM_OOD=${NUM_OOD:-${CFG_NUM_OOD:-5000}}
SEEDS=${SEEDS:-0}
OUTPUT_SCALE=${OUTPUT_SCALE:-${CFG_OUTPUT_SCALE:-1}}
METHODS=${METHODS:-heatmap,heatmap+energy,heatmap+knn,heatmap+vim,heatmap+vim+mahalanobis,msp,energy,maxlogit,mahalanobis,knn,react,vim}
ID_TEST_COUNT=${ID_TEST_COUNT:-}
OOD_COUNT=${OOD_COUNT:-2000}
OUT_DIR=${OUT_DIR:-runs/quality}
VAL_ID_PER_CLASS=${VAL_ID_PER_CLASS:-${CFG_VAL_ID:-0}}
VAL_AUX_CLASSES=${VAL_AUX_CLASSES:-${CFG_VAL_AUX:-0}}
TRAIN_SET=${TRAIN_SET:-}
VAL_OOD=${VAL_OOD:-uniform-noise,blobs}
EVAL_SET=${EVAL_SET:-}
TEST=${TEST:-1}
HOOD=("$PY" -m hood)
D=$SHARED/data
for f in "$D/cifar10-jpg.tar.gz" "$D/tin32-pool.tar.gz" "$SHARED/models/cifar10_$ARCH.pt"; do
  [ -e "$f" ] || { echo "error: $f is missing (set SHARED=...)" >&2; exit 2; }
done
OOD="$D/tin32-test.tar.gz,$D/mnist-test.tar.gz,$D/textures10.tar.gz,uniform-noise,gaussian-noise"
extra=()
[ -n "$NUM_ID" ] && extra+=(--num-id "$NUM_ID")
for kv in $TRAIN_SET; do extra+=(--set "$kv"); done
eval_extra=()
[ -n "$ID_TEST_COUNT" ] && eval_extra+=(--set "data.id_test_count=$ID_TEST_COUNT")
for kv in $EVAL_SET; do eval_extra+=(--set "$kv"); done
tag="$ARCH-e$EPOCHS-id${NUM_ID:-all}-ood$NUM_OOD-s$OUTPUT_SCALE"
[ "$VAL_ID_PER_CLASS" != 0 ] && tag="$tag-val$VAL_ID_PER_CLASS-$VAL_AUX_CLASSES"
[ -n "$CONFIG" ] && tag="$tag-$CFG_NAME"
[ -n "$TRAIN_SET" ] && tag="$tag-$(echo "$TRAIN_SET" | sed 's/decoder\.//g; s/[^A-Za-z0-9.=_-]\+/_/g; s/=//g')"
start=$(date +%s)
for seed in $SEEDS; do
  run="$OUT_DIR/$tag-seed$seed"
  if [ ! -f "$run/decoder.pt" ]; then
    "${HOOD[@]}" train-decoder --config "$CFG_FILE" --classifier "$SHARED/models/cifar10_$ARCH.pt" \
      --dataset "$D/cifar10-jpg.tar.gz" --aux "$D/tin32-pool.tar.gz" --num-ood "$NUM_OOD" "${extra[@]}" \
      --epochs "$EPOCHS" --seed "$seed" --set "decoder.output_scale=$OUTPUT_SCALE" --device "$DEVICE" --out "$run" \
      --set "data.val_id_per_class=$VAL_ID_PER_CLASS" --set "data.val_aux_classes=$VAL_AUX_CLASSES" --quiet
  fi
  if [ "$VAL_ID_PER_CLASS" != 0 ]; then
    "${HOOD[@]}" evaluate --config "$CFG_FILE" --run "$run" --dataset "$D/cifar10-jpg.tar.gz" --validation \
      --ood "$VAL_OOD" --methods "$METHODS" --device "$DEVICE" "${eval_extra[@]}" --quiet > /dev/null
  fi
  [ "$TEST" = 0 ] && continue
  "${HOOD[@]}" evaluate --config "$CFG_FILE" --run "$run" --dataset "$D/cifar10-jpg.tar.gz" \
    --ood "$OOD" --ood-count "$OOD_COUNT" --methods "$METHODS" --device "$DEVICE" "${eval_extra[@]}" --quiet > /dev/null
done
if [ "$VAL_ID_PER_CLASS" != 0 ]; then
  echo "VALIDATION (held-out ID rows vs held-out auxiliary classes and $VAL_OOD):"
  "$PY" bench/quality_table.py "$OUT_DIR"/"$tag"-seed*/validation.json
  [ "$TEST" != 0 ] && { echo; echo "TEST:"; }
fi
[ "$TEST" != 0 ] && "$PY" bench/quality_table.py "$OUT_DIR"/"$tag"-seed*/results.json
echo "total $(( $(date +%s) - start )) s on $DEVICE for seeds: $SEEDS"
