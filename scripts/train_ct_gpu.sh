#!/usr/bin/env bash
# The CT model's leave-one-out folds and its all-data model, trained at once on one GPU
# (the GPU machine some tasks are lent; a CPU machine takes scripts/train_ct_loo.sh): one
# process per run, each with its own sampling workers, all for the same time budget.
# Inputs travel as two files (the machine has neither ../shared nor the phantom generator):
#   PACK  scripts/train_seg.py --task ct --write-pack PACK --phantoms CLEAN --noisy-phantoms NOISY
#         (CLEAN: PHANTOM_NOISE=0 scripts/make_ct_phantoms.sh CLEAN 24; NOISY: the same without it)
#   INIT  the phantom-only model 1.0.0 (git show 5004b3f:models/ct-spine-seg.pt) as float16
#         arrays: scripts/train_ct_gpu.sh --init-from MODEL.pt INIT.npz
# Both in one command (about 15 min of CPU; work-data/ does not outlive a session, so a
# session lent a GPU makes them first): scripts/train_ct_gpu.sh --prepare DIR
# writes DIR/ct-pack.npz and DIR/ct-1.0.0-fp16.npz (DIR/phantoms-* are the phantoms).
# Then:  scripts/train_ct_gpu.sh PACK INIT OUTDIR SECONDS [WORKERS_PER_RUN]
# OUTDIR/<run>/weights.npz comes back; here, scripts/train_ct_gpu.sh --export OUTDIR exports
# each run as OUTDIR/<run>/ct-spine-seg.pt (with this machine's torch), the layout
# scripts/eval_seg_ct_loo.sh OUTDIR takes.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
py=${PYTHON:-python3}
if [ "${1:-}" = --init-from ]; then
  /usr/bin/python3 - "$2" "$3" <<'PY'
import sys, numpy as np, torch
sd = torch.jit.load(sys.argv[1]).state_dict()
np.savez(sys.argv[2], **{k: v.numpy().astype(np.float16) if v.is_floating_point() else v.numpy() for k, v in sd.items()})
PY
  exit
fi
if [ "${1:-}" = --prepare ]; then
  dir=$(realpath -m "${2:?usage: train_ct_gpu.sh --prepare DIR}")
  mkdir -p "$dir"
  PHANTOM_NOISE=0 "$root/scripts/make_ct_phantoms.sh" "$dir/phantoms-clean" 24
  "$root/scripts/make_ct_phantoms.sh" "$dir/phantoms-noisy" 24
  /usr/bin/python3 "$root/scripts/train_seg.py" --task ct --phantoms "$dir/phantoms-clean" \
    --noisy-phantoms "$dir/phantoms-noisy" --write-pack "$dir/ct-pack.npz" --out "$dir/pack-log"
  git -C "$root" show 5004b3f:models/ct-spine-seg.pt > "$dir/ct-1.0.0.pt"
  "$0" --init-from "$dir/ct-1.0.0.pt" "$dir/ct-1.0.0-fp16.npz"
  ls -l "$dir/ct-pack.npz" "$dir/ct-1.0.0-fp16.npz"
  exit
fi
if [ "${1:-}" = --export ]; then
  for d in "$2"/fold-* "$2"/all; do
    run=$(basename "$d"); hold=(); [ "$run" = all ] || hold=(--hold-out "${run#fold-}")
    /usr/bin/python3 "$root/scripts/train_seg.py" --task ct --phantoms "$root/work-data/ct-phantoms" --real-ct 0.4 \
      --mask-ct 0.3 "${hold[@]}" --out "$d" --import-weights "$d/weights.npz" --export "$d/ct-spine-seg.pt" \
      --model-version "${MODEL_VERSION:-3.0.0}" > "$d/export.log"
  done
  exit
fi
pack=$(realpath "$1") init=$(realpath "$2") out=$(realpath -m "$3") seconds=$4 workers=${5:-3}
mkdir -p "$out"
# THICK_SLICES=P: a sample seen as thick axial slices with chance P (train_seg.py --thick-slices;
# 0, 3.0.0's recipe, by default; models/ct-spine-seg.md "Thick axial slices" gives the plan).
common=(--task ct --pack "$pack" --init "$init" --steps 1000000 --seconds "$seconds" --lr 1e-3 --batch 16
        --real-ct 0.4 --mask-ct 0.3 --device "${DEVICE:-cuda}" --workers "$workers" --threads 1
        --thick-slices "${THICK_SLICES:-0}")
runs=()
for c in sub-verse005 sub-verse007 sub-verse008; do  # the real CT of the pack (ct-verse)
  "$py" "$root/scripts/train_seg.py" "${common[@]}" --out "$out/fold-$c" --hold-out "$c" > "$out/fold-$c.log" 2>&1 &
  runs+=($!)
done
"$py" "$root/scripts/train_seg.py" "${common[@]}" --out "$out/all" > "$out/all.log" 2>&1 &
runs+=($!)
status=0
for p in "${runs[@]}"; do wait "$p" || status=1; done
tail -n 3 "$out"/*.log
exit $status
