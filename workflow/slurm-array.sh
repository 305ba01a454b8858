#!/usr/bin/env bash
# One Slurm array job over a cohort, without Snakemake: task K of N runs shard K/N.
#   sbatch --array=1-8 -c 2 workflow/slurm-array.sh COMMAND INPUTS OUTDIR [options...]
# COMMAND is a spine executable (a path, or a name on PATH). Every task writes into
# OUTDIR and rebuilds its cohort files when it ends, so the last task to end leaves the
# complete table and report.html. Exit status 3 (some studies failed) counts as done:
# the failures are in OUTDIR/failed.txt.
#SBATCH --job-name=spine
set -euo pipefail
if [ $# -lt 3 ] || [ -z "${SLURM_ARRAY_TASK_ID:-}" ]; then
  echo "usage: sbatch --array=1-N workflow/slurm-array.sh COMMAND INPUTS OUTDIR [options...]" >&2
  exit 1
fi
command=$1 inputs=$2 out=$3
shift 3
"$command" "$inputs" -o "$out" --shard "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT" --resume \
  --threads "${SLURM_CPUS_PER_TASK:-1}" -q "$@" || [ $? -eq 3 ]
