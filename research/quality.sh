#!/usr/bin/env bash
# Detection quality of a config on CIFAR-10: train its heatmap decoder with each seed of SEEDS, evaluate
# every method on the validation split and on the test sets, and print two tables (validation, then
# test) of FPR95 / AUROC, mean ± std over the seeds, per set and their mean.
#
#   SEEDS="0 1 2" research/quality.sh                        # configs/cifar10_wrn40_2.yaml's settings and budget
#   CONFIG=cifar10_resnet18 SEEDS="0 1 2" research/quality.sh
#   DEVICE=cuda CONFIG=configs/paper/cifar10_resnet18.yaml research/quality.sh   # the paper's settings and budget
#
# Test sets: tin32-test, mnist-test, textures10, uniform and Gaussian noise; OOD_COUNT images of each
# (textures10 has 1,200), a seeded random draw of each larger set, the same images for every method and
# seed (OOD_DRAW=first: the first images, the official protocol's reading). The test table's mean is over
# tin32-test, mnist-test, textures10 and uniform noise (Gaussian noise is shown beside them). Validation:
# the validation ID images (VAL_ID_SOURCE) against the held-out pool classes and the VAL_OOD sets; its mean
# is over every validation set.
#
# Knobs (environment):
#   SHARED      the fixtures folder, holding data/*.tar.gz and models/cifar10_<arch>.pt (default $HOOD_FIXTURES)
#   CONFIG      a config by path or bundled name (default cifar10_$ARCH); its architecture, decoder budget
#               (decoder.epochs / num_id / num_ood) and validation split (data.val_id_source / val_aux_classes)
#               are the defaults of ARCH, EPOCHS, NUM_ID, NUM_OOD, VAL_ID_SOURCE, VAL_AUX_CLASSES
#   VAL_AUX_CLASSES  the outlier pool's classes held out of decoder training as near-OOD validation (default: the
#               config's, else the last 16; 0 = none)
#   VAL_ID_SOURCE  the validation ID images (default: the config's data.val_id_source, else test): test = a seeded
#               half of the CIFAR-10 test images, the test table scoring the other half (the classifiers were
#               trained on every training image)
#   ARCH        wrn40_2 | resnet18, picks the classifier (default: the config's, else wrn40_2)
#   SEEDS       decoder seeds ("0")
#   METHODS     comma-separated detectors (default: every method but ODIN, which costs a classifier pass per
#               image and gradient; METHODS=all includes it)
#   DEVICE      auto | cpu | cuda (auto)
#   OOD_COUNT   images per test set (2000); OOD_DRAW random | first (random); ID_TEST_COUNT (empty: all 10,000)
#   VAL_OOD     validation OOD sets beside the held-out classes, comma-separated (default uniform-noise, and
#               data/omniglot-val.tar.gz when the fixtures hold it): built-in noise is another seeded draw
#               than the test set's; none may be a test set
#   TRAIN_SET   extra train-decoder overrides, e.g. "decoder.fw_layers=2 decoder.lr=0.001" (part of the run name)
#   EVAL_SET    extra evaluate overrides, e.g. "evaluate.params.knn.k=100" (the decoders are reused)
#   TEST        1; 0 prints the validation table only, to choose settings without looking at the test sets
#   OUT_DIR     where the runs go (runs/quality); a run whose decoder.pt exists is evaluated, not retrained
#   PY          the interpreter (.venv/bin/python when present, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}  # python3: a GPU machine's own PyTorch
ARCH_GIVEN=${ARCH:-}
CONFIG=${CONFIG:-cifar10_${ARCH:-wrn40_2}}
# the config's own budget and split are the knobs' defaults; METHODS' default is read off this hood
cfg_sh=$("$PY" - "$CONFIG" <<'PYEOF'
import shlex, sys
from hood.cli.options import config_path
from hood.config import resolve
from hood.detectors import all_methods
from hood.errors import ConfigError
path = config_path(sys.argv[1])
try:
    c = resolve(path)
except ConfigError as e:
    sys.exit(f"error: {e}")
d = c.decoder
for k, v in {"CFG_FILE": path, "CFG_NAME": c.name, "CFG_ARCH": c.model.arch, "CFG_EPOCHS": d.epochs,
             "CFG_NUM_ID": d.num_id or "", "CFG_NUM_OOD": d.num_ood,
             "CFG_VAL_AUX": c.data.val_aux_classes, "CFG_VAL_SOURCE": c.data.val_id_source or "test",
             "ALL_BUT_ODIN": ",".join(m for m in all_methods() if m != "odin")}.items():
    print(f"{k}={shlex.quote(str(v))}")
PYEOF
)
eval "$cfg_sh"
if [ -n "$ARCH_GIVEN" ] && [ "$ARCH_GIVEN" != "$CFG_ARCH" ]; then
  echo "error: ARCH=$ARCH_GIVEN but $CONFIG is for $CFG_ARCH (drop ARCH or pick the $ARCH_GIVEN config)" >&2; exit 2
fi
SHARED=${SHARED:-${HOOD_FIXTURES:?set SHARED or HOOD_FIXTURES to the fixtures folder}}
ARCH=$CFG_ARCH
DEVICE=${DEVICE:-auto}
EPOCHS=${EPOCHS:-$CFG_EPOCHS}
NUM_ID=${NUM_ID-$CFG_NUM_ID}
NUM_OOD=${NUM_OOD:-$CFG_NUM_OOD}
SEEDS=${SEEDS:-0}
METHODS=${METHODS:-$ALL_BUT_ODIN}
ID_TEST_COUNT=${ID_TEST_COUNT:-}
OOD_COUNT=${OOD_COUNT:-2000}
OOD_DRAW=${OOD_DRAW:-random}
OUT_DIR=${OUT_DIR:-runs/quality}
# the validation split every figure holds out of decoder training (a config may set its own)
VAL_AUX_CLASSES=${VAL_AUX_CLASSES:-$( [ "$CFG_VAL_AUX" != 0 ] && echo "$CFG_VAL_AUX" || echo 16)}
VAL_ID_SOURCE=${VAL_ID_SOURCE:-$CFG_VAL_SOURCE}
VALIDATE=1
TRAIN_SET=${TRAIN_SET:-}
EVAL_SET=${EVAL_SET:-}
TEST=${TEST:-1}
HOOD=("$PY" -m hood)
D=$SHARED/data
for f in "$D/cifar10-jpg.tar.gz" "$D/tin32-pool.tar.gz" "$SHARED/models/cifar10_$ARCH.pt"; do
  [ -e "$f" ] || { echo "error: $f is missing (set SHARED=the fixtures folder)" >&2; exit 2; }
done
if [ -z "${VAL_OOD+x}" ]; then
  VAL_OOD=uniform-noise
  [ -e "$D/omniglot-val.tar.gz" ] && VAL_OOD="$D/omniglot-val.tar.gz,$VAL_OOD"
fi
TEST_FILES="$D/tin32-test.tar.gz,$D/mnist-test.tar.gz,$D/textures10.tar.gz"
OOD="$TEST_FILES,uniform-noise,gaussian-noise"
MEAN_SETS=tin32-test,mnist-test,textures10,uniform-noise
extra=()
[ -n "$NUM_ID" ] && extra+=(--num-id "$NUM_ID")
for kv in $TRAIN_SET; do extra+=(--set "$kv"); done
eval_extra=(--set "data.ood_draw=$OOD_DRAW" --set "data.val_id_source=$VAL_ID_SOURCE")
[ -n "$ID_TEST_COUNT" ] && eval_extra+=(--set "data.id_test_count=$ID_TEST_COUNT")
for kv in $EVAL_SET; do eval_extra+=(--set "$kv"); done
tag="$CFG_NAME-$ARCH-e$EPOCHS-id${NUM_ID:-all}-ood$NUM_OOD"
[ "$VAL_AUX_CLASSES" != 0 ] && tag="$tag-valaux$VAL_AUX_CLASSES"
[ -n "$TRAIN_SET" ] && tag="$tag-$(echo "$TRAIN_SET" | sed 's/decoder\.//g; s/[^A-Za-z0-9.=_-]\+/_/g; s/=//g')"
start=$(date +%s)
for seed in $SEEDS; do
  run="$OUT_DIR/$tag-seed$seed"
  if [ ! -f "$run/decoder.pt" ]; then
    "${HOOD[@]}" train-decoder --config "$CFG_FILE" --classifier "$SHARED/models/cifar10_$ARCH.pt" \
      --dataset "$D/cifar10-jpg.tar.gz" --aux "$D/tin32-pool.tar.gz" --num-ood "$NUM_OOD" "${extra[@]}" \
      --epochs "$EPOCHS" --seed "$seed" --device "$DEVICE" --out "$run" \
      --set "data.val_aux_classes=$VAL_AUX_CLASSES" \
      --set "data.val_id_source=$VAL_ID_SOURCE" --quiet
  fi
  if [ "$VALIDATE" = 1 ]; then
    # --ood names the test sets so that evaluate refuses a VAL_OOD set that is one of them
    "${HOOD[@]}" evaluate --config "$CFG_FILE" --run "$run" --dataset "$D/cifar10-jpg.tar.gz" --validation \
      --ood "$TEST_FILES" --set "data.val_ood=[$VAL_OOD]" --methods "$METHODS" --device "$DEVICE" \
      "${eval_extra[@]}" --quiet > /dev/null
  fi
  [ "$TEST" = 0 ] && continue
  "${HOOD[@]}" evaluate --config "$CFG_FILE" --run "$run" --dataset "$D/cifar10-jpg.tar.gz" \
    --ood "$OOD" --ood-count "$OOD_COUNT" --methods "$METHODS" --device "$DEVICE" "${eval_extra[@]}" --quiet > /dev/null
done
if [ "$VALIDATE" = 1 ]; then
  val_id=$( [ "$VAL_ID_SOURCE" = test ] && echo "half of the CIFAR-10 test images" || echo "the classifier's held-out training images")
  echo "VALIDATION ($val_id vs held-out pool classes and $VAL_OOD):"
  "$PY" research/quality_table.py "$OUT_DIR"/"$tag"-seed*/validation.json
  [ "$TEST" != 0 ] && { echo; echo "TEST:"; }
fi
[ "$TEST" != 0 ] && "$PY" research/quality_table.py --mean-sets "$MEAN_SETS" "$OUT_DIR"/"$tag"-seed*/results.json
echo "total $(( $(date +%s) - start )) s on $DEVICE for seeds: $SEEDS"
