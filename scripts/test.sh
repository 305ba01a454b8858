#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite (unit, command and
# contract tests) with ctest. Tests needing ../shared/data skip cleanly without it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
start=$(date +%s)
scripts/build.sh
built=$(date +%s)
echo "build: $((built - start)) s"
(cd build && ctest --output-on-failure --parallel "$(nproc)" --timeout 900)
echo "tests: $(( $(date +%s) - built )) s"
# Hardening steps (issue 13): the unit, integrity and malformed-input tests again under
# ASan + UBSan, then a short libFuzzer run of every image reader (clang).
scripts/test-sanitize.sh
scripts/fuzz.sh 20
echo "all steps: $(( $(date +%s) - start )) s"
