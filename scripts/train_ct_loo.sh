#!/usr/bin/env bash
# Trains the CT model on real CT: one leave-one-out fold per real CT with manual masks
# (ct-verse; each fold trains without its case, and without that case's mask rendered
# as CT), then the model on all of them (the shipped one). Every run fine-tunes the
# phantom-pretrained model (models/ct-spine-seg.pt of 1.0.0, kept as PRETRAINED) on a mix
# of real CT, manual masks rendered as CT and torso phantoms.
#   scripts/train_ct_loo.sh [OUTDIR] [STEPS] [folds|all|both]
# Needs ../shared/data and the phantoms of scripts/make_ct_phantoms.sh work-data/ct-phantoms 24
# (the shipped 2.0.0 was trained with those 24; the 1.0.0 starting point had 36).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out=$(realpath -m "${1:-$root/work-data/ct-loo}")
steps=${2:-500}
what=${3:-both}
pretrained=${PRETRAINED:-$out/ct-spine-seg-phantoms.pt}
[ -f "$pretrained" ] || { mkdir -p "$out"; git -C "$root" show 5004b3f:models/ct-spine-seg.pt > "$pretrained"; }
common=(--task ct --phantoms "$root/work-data/ct-phantoms" --init "$pretrained" --steps "$steps" --lr 1e-3
        --real-ct 0.4 --mask-ct 0.3 --threads 2)
cases=$(cd "$root/../shared/data/ct-verse" && ls *_ct.nii.gz | sed 's/_ct.nii.gz//')
if [ "$what" != all ]; then
  for c in $cases; do
    [ -f "$out/fold-$c/ct-spine-seg.pt" ] && continue
    /usr/bin/python3 "$root/scripts/train_seg.py" "${common[@]}" --out "$out/fold-$c" --hold-out "$c" \
      > "$out/fold-$c.log" 2>&1
  done
fi
if [ "$what" != folds ] && [ ! -f "$out/all/ct-spine-seg.pt" ]; then
  /usr/bin/python3 "$root/scripts/train_seg.py" "${common[@]}" --out "$out/all" > "$out/all.log" 2>&1
fi
