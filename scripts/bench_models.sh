#!/usr/bin/env bash
# Each shipped model's forward pass in the C++ runtime on this machine: FLOPs per pass
# (scripts/model_flops.py, torch's profiler), the fastest of REPEATS runs as the commands run it
# (frozen, optimised for inference) side by side with the module as saved, and the GFLOP/s
# achieved as a share of this machine's convolution throughput measured in the same run.
#   scripts/bench_models.sh [THREADS] [REPEATS]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
repeats=${2:-5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The reference convolutions as TorchScript modules, run the way the models are.
/usr/bin/python3 - "$work" <<'PY'
import sys
import torch
for c, h, w in ((32, 192, 320), (64, 192, 320), (64, 96, 160), (64, 48, 80), (128, 48, 80), (256, 24, 40)):
    conv = torch.nn.Conv2d(c, c, 3, padding=1, bias=False).eval()
    torch.jit.save(torch.jit.script(torch.nn.Sequential(conv)), f"{sys.argv[1]}/conv_{c}_{h}_{w}.pt")
PY
mapfile -t specs < <(/usr/bin/python3 scripts/model_flops.py 2>/dev/null)
build/bin/bench_models "$threads" "$repeats" "$work" "${specs[@]}"
