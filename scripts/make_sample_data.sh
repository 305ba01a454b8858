#!/usr/bin/env bash
# Rebuilds the synthetic sample studies shipped in data/sample/ with spine-phantom
# (never real patient data). Deterministic: the same seeds give the same files.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/bin
out=$(mktemp -d)
"$bin/spine-phantom" --kind ct --first T12 --last L3 --spacing 1.5 --scoliosis 12 --seed 7 --noise 0.5 -q -o "$out" --name phantom_ct
"$bin/spine-phantom" --kind ct --torso --first T10 --last L5 --spacing 2.5 --noise 0.4 --scoliosis -10 --seed 13 -q -o "$out" --name phantom_ct_torso
"$bin/spine-phantom" --kind xray --scoliosis 32 --apex 0.45 --second-curve 18 --pixel 0.6 --seed 11 -q -o "$out" --name phantom_xray
mkdir -p data/sample
cp "$out/phantom_ct/image.nii.gz" data/sample/phantom_ct.nii.gz
cp "$out/phantom_ct/labels.nii.gz" data/sample/phantom_ct_labels.nii.gz
cp "$out/phantom_ct/truth.json" data/sample/phantom_ct_truth.json
cp "$out/phantom_ct_torso/image.nii.gz" data/sample/phantom_ct_torso.nii.gz
cp "$out/phantom_ct_torso/labels.nii.gz" data/sample/phantom_ct_torso_labels.nii.gz
cp "$out/phantom_ct_torso/truth.json" data/sample/phantom_ct_torso_truth.json
cp "$out/phantom_xray/image.png" data/sample/phantom_xray.png
cp "$out/phantom_xray/truth.json" data/sample/phantom_xray_truth.json
rm -rf "$out"
ls -la data/sample
