#!/usr/bin/python3
"""Runs every case of the malformed-input corpus (make_corpus.py) through one command and
checks the contract for each run:

  - no signal (crash), no hang (timeout), no exit status 4 (internal error);
  - a case that must be refused exits with 2 and one error line that names the file
    (a silent accept, exit 0, is a failure); a valid control case exits with 0;
  - no partial output: after a refusal no study folder and no hidden work folder remain;
  - no raw control character on the terminal or in the log (file names are escaped);
  - no DICOM patient name, ID or date in any output file.

    /usr/bin/python3 tests/malformed/run_corpus.py BIN_DIR COMMAND CORPUS_DIR WORK_DIR [--batch]

With --batch every case (but the list files) goes to the command in one run, as a list
file: the batch must end with status 3, each broken study reported by name with nothing
left of it, each valid one done, and no crash may take the batch down. (One process per
case costs a second of start-up each; the readers behind every command are the same,
so CI runs each case alone through spine-prep and all cases as batches through the
model commands.)

Prints one line per problem and a count summary; exits 1 when anything failed.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PRIVATE = [b"CORPUS^PATIENT", b"PID-CORPUS-0042", b"19700101", b"20010203"]
# What a command may leave in its output folder after refusing its only study: its log,
# the cohort files (a table with a header and no rows, report.html, the list files) and
# the failure record that puts the study on the failed list.
ALLOWED_AFTER_FAILURE = re.compile(
    r"^(spine-[a-z]+-[0-9TZ:.\-]+-[0-9]+\.log|(cobb|seg|detect|grades|measurements|prep)\.csv|report\.html|"
    r"(failed|flagged)\.txt|failures|\.spine-lock)$")
CONTROL = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]")
TIMEOUT_S = 180

# The kinds of image each command works on; a valid file of another kind (a CT volume
# given to spine-cobb) must be refused like a broken one.
KINDS = {"spine-prep": {"3d", "2d"}, "spine-seg": {"3d"}, "spine-detect": {"3d"}, "spine-cobb": {"2d"},
         "spine-measure": {"3d"}}

COMMAND_ARGS = {
    "spine-prep": [],
    "spine-seg": ["--threads", "1"],
    "spine-detect": ["--threads", "1"],
    "spine-cobb": ["--threads", "1", "--no-overlay"],
    "spine-measure": ["--threads", "1"],
}


def escaped(name):
    """How spine prints a name with control characters: \\xHH for each one."""
    return "".join(c if 0x20 <= ord(c) < 0x7f or ord(c) > 0x9f else f"\\x{ord(c):02x}" for c in name)


def run_case(bin_dir, command, corpus, work, case, extra):
    out = work / case["name"].encode("unicode_escape").decode().replace("\\", "_")
    if out.exists():
        shutil.rmtree(out)
    inp = corpus / case["path"]
    argv = [str(bin_dir / command), str(inp), "-o", str(out)] + COMMAND_ARGS[command] + extra
    t0 = time.time()
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return case, "hang", [f"no result after {TIMEOUT_S} s"], time.time() - t0
    problems = []
    if case["expect"] == "accept" and case["kind"] not in KINDS[command]:
        case = dict(case, expect="refuse", why=case["why"] + ", of a kind this command refuses")
    rc = p.returncode
    stderr = p.stderr
    if b"ERROR: AddressSanitizer" in stderr or b"runtime error:" in stderr or rc == 99:
        outcome = "sanitizer"
        first = next((l for l in stderr.decode("utf-8", "replace").splitlines()
                      if "Sanitizer" in l or "runtime error" in l), "")
        problems.append(f"sanitizer report: {first[:300]}")
    elif rc < 0:
        outcome = "crash"
        problems.append(f"killed by signal {-rc}")
    elif rc == 4:
        outcome = "internal"
        problems.append("exit 4 (internal error)")
    elif case["expect"] == "refuse" and rc == 0:
        outcome = "silent-accept"
        problems.append("exit 0: a broken input was accepted")
    elif case["expect"] == "accept" and rc != 0:
        outcome = "wrongly-refused"
        problems.append(f"exit {rc} on a valid file")
    else:
        outcome = "ok"
    expected_status = case.get("status", 2)
    if rc not in (0, expected_status) and outcome == "ok":
        outcome = "bad-status"
        problems.append(f"exit {rc}, expected {expected_status}")
    if CONTROL.search(stderr):
        problems.append("raw control characters on stderr")
        outcome = "unsafe-output" if outcome == "ok" else outcome
    text = stderr.decode("utf-8", "replace")
    if rc != 0:
        errors = [l for l in text.splitlines() if "error" in l]
        if not errors:
            problems.append("no error line")
        for base in [escaped(n) for n in case.get("names", [Path(case["path"]).name])]:
            if errors and not any(base in l for l in errors):
                problems.append(f"no error line names '{base}': {errors[-1][:200]!r}")
        if outcome == "ok" and problems:
            outcome = "unclear-error"
        if out.exists():
            left = [e.name for e in out.iterdir() if not ALLOWED_AFTER_FAILURE.match(e.name)]
            if left:
                problems.append(f"partial output left: {left}")
                outcome = "partial-output" if outcome in ("ok", "unclear-error") else outcome
    if out.exists():
        for f in out.rglob("*"):
            if f.is_file():
                data = f.read_bytes()
                if any(s in data for s in PRIVATE):
                    problems.append(f"patient data in {f.relative_to(out)}")
                    outcome = "privacy"
                if f.suffix == ".log" and CONTROL.search(data.replace(b"\n", b"")):
                    problems.append(f"raw control characters in {f.name}")
                    outcome = "unsafe-output" if outcome == "ok" else outcome
    return case, outcome, problems, time.time() - t0


IMAGE_EXT = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr", ".png", ".jpg", ".jpeg", ".dcm", ".dicom")


def study_name(path):
    name = path.name
    for ext in IMAGE_EXT:
        if name.lower().endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)]
    return name


def run_batch(bin_dir, command, corpus, work, cases):
    # List files cannot be listed, and a list naming a file with control characters is
    # refused as binary: those cases run alone (through spine-prep).
    cases = [c for c in cases if not c["path"].endswith(".txt") and not CONTROL.search(os.fsencode(c["path"]))]
    out = work / "batch"
    if out.exists():
        shutil.rmtree(out)
    work.mkdir(parents=True, exist_ok=True)
    listing = work / "cases.txt"
    listing.write_bytes(b"".join(os.fsencode(corpus / c["path"]) + b"\n" for c in cases))
    argv = [str(bin_dir / command), str(listing), "-o", str(out)] + COMMAND_ARGS[command]
    t0 = time.time()
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=TIMEOUT_S * 5)
    except subprocess.TimeoutExpired:
        print(f"FAIL {command} batch: no result after {TIMEOUT_S * 5} s")
        return 1
    problems = []
    text = p.stderr.decode("utf-8", "replace")
    if b"ERROR: AddressSanitizer" in p.stderr or b"runtime error:" in p.stderr:
        problems.append("sanitizer report: " + next(l for l in text.splitlines() if "Sanitizer" in l or "runtime error" in l))
    if p.returncode != 3:
        problems.append(f"batch exit status {p.returncode}, expected 3 (some studies failed)")
    if CONTROL.search(p.stderr):
        problems.append("raw control characters on stderr")
    counts = {"done": 0, "refused": 0}
    for c in cases:
        name = c["path"] if (corpus / c["path"]).is_dir() else study_name(Path(c["path"]))
        folder = out / name
        accept = c["expect"] == "accept" and c["kind"] in KINDS[command]
        if accept:
            if not (folder / "provenance.json").is_file():
                problems.append(f"{escaped(name)} ({c['why']}): valid study not done")
            counts["done"] += 1
            continue
        counts["refused"] += 1
        if folder.exists():
            problems.append(f"{escaped(name)} ({c['why']}): broken study left output")
        if not any(l.startswith(f"error: {escaped(name)}: ") and escaped(Path(c["path"]).name) in l
                   for l in text.splitlines()):
            problems.append(f"{escaped(name)} ({c['why']}): no error line naming it")
    if out.exists():
        left = [e.name for e in out.iterdir() if e.name.startswith(".") and e.name != ".spine-lock"]
        if left:
            problems.append(f"hidden work left: {left}")
        for f in out.rglob("*"):
            if f.is_file():
                data = f.read_bytes()
                if any(s in data for s in PRIVATE):
                    problems.append(f"patient data in {f.relative_to(out)}")
                if f.suffix == ".log" and CONTROL.search(data.replace(b"\n", b"")):
                    problems.append(f"raw control characters in {f.name}")
    for pr in problems[:25]:
        print(f"FAIL {command} batch: {pr}")
    if len(problems) > 25:
        print(f"... and {len(problems) - 25} more")
    print(f"{command}: {len(cases)} cases in one batch, {counts['done']} done, {counts['refused']} refused, "
          f"{len(problems)} problems; {time.time() - t0:.0f} s")
    return 1 if problems else 0


def main():
    bin_dir, command, corpus, work = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
    extra = [a for a in sys.argv[5:] if a != "--batch"]
    cases = json.loads((corpus / "manifest.json").read_text())
    if "--batch" in sys.argv[5:]:
        sys.exit(run_batch(bin_dir, command, corpus, work, cases))
    work.mkdir(parents=True, exist_ok=True)
    jobs = int(os.environ.get("CORPUS_JOBS", "2"))
    counts = {}
    failed = 0
    slowest = (0.0, "")
    with ThreadPoolExecutor(jobs) as pool:
        for case, outcome, problems, seconds in pool.map(lambda c: run_case(bin_dir, command, corpus, work, c, extra),
                                                         cases):
            counts[outcome] = counts.get(outcome, 0) + 1
            slowest = max(slowest, (seconds, case["name"]))
            if problems:
                failed += 1
                print(f"FAIL {command} {escaped(case['name'])} ({case['why']}): {outcome}: {'; '.join(problems)}")
    print(f"{command}: {len(cases)} cases, " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) +
          f"; slowest {slowest[1]!r} {slowest[0]:.1f} s")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
