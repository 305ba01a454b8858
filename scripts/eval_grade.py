"""Scores spine-grade's outputs on SPIDER series against the reference gradings: disc
detection and naming, Pfirrmann (exact, within one, linearly weighted kappa, confusion
matrix), each binary finding (AUC, sensitivity and specificity at the model card's
operating point), Modic; overall, per sequence and per scanner group.

  /usr/bin/python3 scripts/eval_grade.py OUTDIR --data ../shared/data/mri-spider-gradings \
      --subset validation [--json metrics.json] [--card validation.json --command "..."]

--card writes the model card's "validation" object (the shape models/mr-disc-grading.pt
carries), for scripts/recard_model.py.
"""
import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent / "grade"))
from spider import FINDINGS, group_of, read_gradings, read_series, sequence_of, spider_index  # noqa: E402

LUMBAR = 6  # SPIDER discs 1..6 = L5/S1 .. T12/L1


def auc(y, p):
    y, p = np.asarray(y), np.asarray(p)
    pos, neg = p[y == 1], p[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return None
    ranks = np.argsort(np.argsort(np.concatenate([pos, neg]), kind="mergesort"), kind="mergesort") + 1.0
    # ties: average ranks
    allv = np.concatenate([pos, neg])
    for v in np.unique(allv):
        m = allv == v
        if m.sum() > 1:
            ranks[m] = ranks[m].mean()
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def weighted_kappa(t, p, k=5):
    t, p = np.asarray(t) - 1, np.asarray(p) - 1
    o = np.zeros((k, k))
    for a, b in zip(t, p):
        o[a, b] += 1
    w = np.abs(np.arange(k)[:, None] - np.arange(k)[None, :]) / (k - 1)
    e = np.outer(o.sum(1), o.sum(0)) / max(1, o.sum())
    return float(1 - (w * o).sum() / max(1e-9, (w * e).sum())), o.astype(int).tolist()


def score(items):
    """items: list of (reference grading, predicted disc json)."""
    out = {"discs": len(items)}
    if not items:
        return out
    t = [g["pfirrmann"] for g, _ in items]
    p = [d["pfirrmann"]["grade"] for _, d in items]
    diff = np.abs(np.array(t) - np.array(p))
    kappa, conf = weighted_kappa(t, p)
    out["pfirrmann"] = {"exact": float((diff == 0).mean()), "within_one": float((diff <= 1).mean()),
                        "weighted_kappa": kappa, "confusion_rows_reference_cols_predicted": conf}
    out["findings"] = {}
    for f in FINDINGS:
        y = [g[f] for g, _ in items]
        pr = [d["findings"][f]["probability"] for _, d in items]
        pres = [d["findings"][f]["present"] for _, d in items]
        tp = sum(1 for a, b in zip(y, pres) if a and b)
        tn = sum(1 for a, b in zip(y, pres) if not a and not b)
        npos = sum(y)
        out["findings"][f] = {"auc": auc(y, pr), "positives": npos,
                              "sensitivity": tp / npos if npos else None,
                              "specificity": tn / (len(y) - npos) if len(y) > npos else None}
    modic_types = defaultdict(lambda: [0, 0])
    for g, d in items:
        pred = d["findings"]["modic_change"]["present"]
        modic_types[g["modic"]][0] += 1
        modic_types[g["modic"]][1] += int(pred == (g["modic"] > 0))
    out["modic"] = {"accuracy_change_or_not": float(np.mean([d["findings"]["modic_change"]["present"] == (g["modic"] > 0)
                                                             for g, d in items])),
                    "recall_per_type": {str(k): {"discs": v[0], "recall": v[1] / v[0]} for k, v in sorted(modic_types.items())}}
    return out


def mean_disc(discs):
    """A disc graded by the mean of several series' probabilities (grade: the most
    probable; findings: present at the model card's operating point)."""
    probs = np.mean([[d["pfirrmann"]["probabilities"][str(g)] for g in range(1, 6)] for d in discs], axis=0)
    findings = {}
    for f in FINDINGS:
        p = float(np.mean([d["findings"][f]["probability"] for d in discs]))
        findings[f] = {"probability": p, "present": p >= discs[0]["findings"][f]["threshold"]}
    return {"pfirrmann": {"grade": int(np.argmax(probs)) + 1}, "findings": findings}


def t1_t2_naming(results, data, series):
    """Names checked without reference positions: a patient's T1 and T2 middle slices of one
    size and pixel spacing show the same discs in the same place, so a disc of one found
    within 6 mm of a disc of the other should carry the same name. SPIDER has no masks, so
    this is the only check of the names' positions here; it cannot tell which of the two
    is wrong, and agreement does not prove both right. `results`: series -> its grades.json."""
    from PIL import Image

    pairs = agreeing = discs = same = both_reliable = both_reliable_agreeing = 0
    for name, row in series.items():
        t2 = name[:-3] + "_t2"
        if not name.endswith("_t1") or t2 not in series or row["PixelSpacing"] != series[t2]["PixelSpacing"]:
            continue
        ja, jb = results.get(name), results.get(t2)
        if ja is None or jb is None:
            continue
        if Image.open(Path(data) / "images" / f"{name}.png").size != Image.open(Path(data) / "images" / f"{t2}.png").size:
            continue
        spacing = float(row["PixelSpacing"].strip("[]").split(",")[0])
        matched = differ = 0
        for a in ja["discs"]:
            ca = np.array(a["centre_px"])
            near = [b for b in jb["discs"] if np.linalg.norm(np.array(b["centre_px"]) - ca) * spacing <= 6]
            if near:
                matched += 1
                differ += near[0]["name"] != a["name"]
        if not matched:
            continue
        pairs += 1
        agreeing += differ == 0
        discs += matched
        same += matched - differ
        reliable = ja["naming_reliable"] and jb["naming_reliable"]
        both_reliable += reliable
        both_reliable_agreeing += reliable and differ == 0
    return {"pairs": pairs, "pairs_agreeing": agreeing, "discs_matched": discs, "discs_same_name": same,
            "pairs_both_named_reliably": both_reliable, "of_those_agreeing": both_reliable_agreeing}


def card_validation(res, command):
    """The card's validation object: overall, per sequence and per scanner, and which of
    issue 15's targets are met."""
    def r3(v):
        return None if v is None else round(float(v), 3)

    def block(s):
        pf = s["pfirrmann"]
        return {"discs": s["discs"], "pfirrmann_exact": r3(pf["exact"]), "pfirrmann_within_one": r3(pf["within_one"]),
                "pfirrmann_weighted_kappa": r3(pf["weighted_kappa"]),
                "auc": {f: r3(m["auc"]) for f, m in s["findings"].items()}}

    g, det = res["grading"], res["detection"]["all"]
    a = g["all"]
    auc = {f: m["auc"] or 0 for f, m in a["findings"].items()}
    return {
        "data": f"SPIDER {res['subset']} subset"
                + (": its patients never trained on" if res["subset"] == "validation" else ": the grader's own training patients")
                + f"; {a['discs']} graded discs matched by name",
        "command": command,
        "detection": {"graded_lumbar_discs": det["graded_lumbar_discs"], "found_named": det["found_named"],
                      "found_named_not_flagged": det["found_named_not_flagged"]},
        "all": block(a),
        "pfirrmann_confusion_rows_reference_cols_predicted": a["pfirrmann"]["confusion_rows_reference_cols_predicted"],
        "operating_point_sensitivity_specificity": {f: [r3(m["sensitivity"]), r3(m["specificity"])]
                                                    for f, m in a["findings"].items()},
        "modic_change_accuracy": r3(a["modic"]["accuracy_change_or_not"]),
        "t1_t2_same_names": res["t1_t2_naming"],
        "by_sequence": {k[len("sequence "):]: block(s) for k, s in g.items() if k.startswith("sequence ") and "pfirrmann" in s},
        "by_scanner": {k: block(g[k]) for k in res["scanner_groups"] if "pfirrmann" in g.get(k, {})},
        "targets_met": {"pfirrmann_exact>=0.75": a["pfirrmann"]["exact"] >= 0.75,
                        "within_one>=0.97": a["pfirrmann"]["within_one"] >= 0.97,
                        "weighted_kappa>=0.80": a["pfirrmann"]["weighted_kappa"] >= 0.80,
                        "auc>=0.85 herniation": auc["herniation"] >= 0.85, "narrowing": auc["narrowing"] >= 0.85,
                        "bulging": auc["bulging"] >= 0.85, "spondylolisthesis": auc["spondylolisthesis"] >= 0.85,
                        "detection>=0.98": det["fraction"] >= 0.98},
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--data", default="../shared/data/mri-spider-gradings")
    ap.add_argument("--subset", default="validation")
    ap.add_argument("--json")
    ap.add_argument("--card", help="write the model card's validation object here")
    ap.add_argument("--command", default="scripts/eval_grade.sh", help="the command named in --card's object")
    args = ap.parse_args()
    series = read_series(args.data)
    gradings = read_gradings(args.data)
    # group -> [graded lumbar discs in view, found with that name, of those not flagged]
    det = defaultdict(lambda: [0, 0, 0])
    failed, overnamed, paired = [], 0, defaultdict(list)
    scanner_groups = set()
    results = {}  # series -> its grades.json
    by_sequence = defaultdict(dict)  # (patient, disc) -> {sequence: disc json}
    for name, row in sorted(series.items()):
        if row["subset"] != args.subset:
            continue
        ref = gradings.get(row["patient"], {})
        in_view = [k for k in ref if 1 <= k <= min(LUMBAR, int(row["num_discs"]))]
        f = Path(args.outdir) / name / "grades.json"
        discs = {}
        if f.exists():
            j = results[name] = json.load(open(f))
            discs = {spider_index(d["name"]): d for d in j["discs"] if spider_index(d["name"])}
            overnamed += sum(1 for k in discs if k > int(row["num_discs"]))
        else:
            failed.append(name)
        scanner_groups.add(group_of(row))
        for key in ("all", sequence_of(name), group_of(row)):
            det[key][0] += len(in_view)
            det[key][1] += sum(1 for k in in_view if k in discs)
            det[key][2] += sum(1 for k in in_view if k in discs and discs[k].get("reliable", False))
        for k, d in discs.items():
            if k in ref and "pfirrmann" in d:
                keys = ["all", "sequence " + sequence_of(name), group_of(row)]
                # The discs a user would keep when filtering on `reliable` (the disc's own
                # flags and the series' naming).
                if d["reliable"] and j["naming_reliable"]:
                    keys.append("reliable discs of reliably named series")
                if d["reliable"]:
                    keys.append("reliable discs")
                for key in keys:
                    paired[key].append((ref[k], d))
                by_sequence[(row["patient"], k)][sequence_of(name)] = d
    # T1 and T2 of one patient: does averaging the two series' probabilities beat T2 alone?
    for (patient, k), seqs in sorted(by_sequence.items()):
        if "t1" in seqs and "t2" in seqs:
            paired["pairs: t2 alone"].append((gradings[patient][k], seqs["t2"]))
            paired["pairs: mean of t1 and t2"].append((gradings[patient][k], mean_disc([seqs["t1"], seqs["t2"]])))
    # A study's series named together (spine-grade's default): how many were compared with
    # another series of their study, and how many had their names moved down to it.
    together = [j.get("series_of_study") for j in results.values() if j.get("series_of_study")]
    pairing = {"series_with_another_series_of_their_study": len(together),
               "compared": sum(any(o.get("compared") for o in t["other_series"]) for t in together),
               "names_moved_down": sum(t["names_moved_down_levels"] > 0 for t in together),
               "discs_left_out_below_l5_s1": sum(t["discs_left_out"] for t in together)}
    res = {"subset": args.subset, "series_failed": failed, "series_of_study": pairing,
           "detection": {k: {"graded_lumbar_discs": v[0], "found_named": v[1], "fraction": v[1] / max(1, v[0]),
                             "found_named_not_flagged": v[2]}
                         for k, v in det.items()},
           "discs_named_beyond_the_discs_in_view": overnamed,
           "scanner_groups": sorted(scanner_groups),
           "t1_t2_naming": t1_t2_naming(results, args.data, series),
           "grading": {k: score(v) for k, v in sorted(paired.items())}}
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    if args.card:
        Path(args.card).write_text(json.dumps(card_validation(res, args.command), indent=1))
    d = res["detection"]["all"]
    print(f"detection: {d['found_named']}/{d['graded_lumbar_discs']} = {d['fraction']:.3f} "
          f"graded lumbar discs found with their name; {overnamed} discs named beyond the discs in view; "
          f"{len(failed)} series failed {failed}")
    for k, v in res["detection"].items():
        print(f"  detection {k}: {v['found_named']}/{v['graded_lumbar_discs']} = {v['fraction']:.3f} "
              f"({v['found_named_not_flagged']} of them not flagged)")
    p = res["series_of_study"]
    print(f"series of a study named together: {p['series_with_another_series_of_their_study']} series with another of "
          f"their study, {p['compared']} compared, {p['names_moved_down']} had their names moved down "
          f"({p['discs_left_out_below_l5_s1']} discs left out below L5/S1)")
    t = res["t1_t2_naming"]
    print(f"T1/T2 names (same-size pairs): {t['pairs_agreeing']}/{t['pairs']} pairs agree on every disc in the same place, "
          f"{t['discs_same_name']}/{t['discs_matched']} discs; pairs with both series named reliably: "
          f"{t['of_those_agreeing']}/{t['pairs_both_named_reliably']} agree")
    for k, s in res["grading"].items():
        if "pfirrmann" not in s:
            continue
        pf = s["pfirrmann"]
        line = f"{k} ({s['discs']} discs): Pfirrmann exact {pf['exact']:.3f} within-one {pf['within_one']:.3f} kappa {pf['weighted_kappa']:.3f}"
        for f, m in s["findings"].items():
            if m["auc"] is not None:
                line += f" | {f} AUC {m['auc']:.3f}"
                if k == "all":
                    line += f" sens {m['sensitivity']:.2f} spec {m['specificity']:.2f} (n+ {m['positives']})"
        print(line)
    if "all" in res["grading"] and "pfirrmann" in res["grading"]["all"]:
        print("confusion (rows reference 1..5, columns predicted):", res["grading"]["all"]["pfirrmann"]["confusion_rows_reference_cols_predicted"])
        print("modic:", json.dumps(res["grading"]["all"]["modic"]))


if __name__ == "__main__":
    main()
