#!/usr/bin/env bash
# Installs the Debian 12 packages spine needs to build, test and train. Idempotent:
# when every package is already there it only checks and returns in about a second.
set -euo pipefail

packages=(
  build-essential cmake ninja-build git pkg-config clang libclang-rt-14-dev
  libinsighttoolkit5-dev
  libtorch-dev libzip-dev
  libcli11-dev libspdlog-dev nlohmann-json3-dev libgtest-dev
  libopencv-imgproc-dev libopencv-imgcodecs-dev libpng-dev libjpeg62-turbo-dev zlib1g-dev libssl-dev
  python3-torch python3-numpy python3-pil
  # The cohort tests: report.html rendered in headless Chromium, the tables read by
  # pandas and by R as a user's own script would.
  chromium python3-pandas r-base-core
  # The cohort workflow and its test on a real single-node Slurm cluster.
  snakemake slurm-wlm munge
  # DICOM SEG output (DCMTK's dcmseg), checked as users' tools see it: dciodvfy from
  # dicom3tools validates it, pydicom reads it back.
  libdcmtk-dev dicom3tools python3-pydicom
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
