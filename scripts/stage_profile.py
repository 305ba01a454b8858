#!/usr/bin/python3
"""Mean seconds per stage over a run's result files (their `timing`), as one line:
  stage_profile.py LABEL 'OUTDIR/*/cobb.json' read_s landmarks_s ..."""
import glob
import json
import sys

label, pattern, stages = sys.argv[1], sys.argv[2], sys.argv[3:]
ts = [json.load(open(f)).get("timing", {}) for f in glob.glob(pattern)]
if ts:
    print(f"{label} profile (mean of {len(ts)}): " +
          ", ".join(f"{s[:-2].replace('_', ' ')} {sum(t.get(s, 0) for t in ts) / len(ts):.3f} s" for s in stages))
