#!/usr/bin/env bash
# Installs what is missing, builds Release into build/, and runs the main jobs on the
# sample studies shipped in data/sample/ (the synthetic ones made by
# scripts/make_sample_data.sh, the real ones copied by scripts/make_real_samples.sh):
#   spine-seg and spine-detect on a REAL abdominal CT the CT model never saw (Apache-2.0),
#   beside its reference labels (another model's output, not manual);
#   spine-seg and spine-detect on a phantom torso CT, names beside the phantom's truth;
#   spine-cobb on a phantom radiograph, printed beside the phantom's true angles;
#   spine-prep on a phantom CT (bone window, 1 mm resampling);
#   spine-measure on the torso CT with the labels spine-seg made;
#   spine-measure on a REAL CT with its MANUAL vertebra masks (VerSe, CC BY-SA 4.0);
#   spine-grade on real lumbar T2 and T1 slices of one study (SPIDER, CC BY 4.0), beside the reference gradings.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
out=demo-out
rm -rf "$out"

# Per vertebra its heights, Genant grade and trabecular HU, then the bone screen and the angles.
print_measurements() {
/usr/bin/python3 - "$1" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
for v in m["vertebrae"]:
    h = v["heights"]
    hs = "/".join(f"{h[k]['value']:.1f}" for k in ("anterior", "middle", "posterior")) if h else "-"
    hu = v.get("trabecular_attenuation", {}).get("median", {}).get("value")
    g = v["genant"]
    print(f"{v['name']:>4}  heights {hs} mm  Genant {g['grade']}" + (f" ({g['type']})" if g["grade"] else "")
          + (f"  HU {hu:.0f}" if hu is not None else "")
          + ("" if v["reliable"] else "  [not reliable: " + "; ".join(v["flags"]) + "]"))
b = m["bone_screen"]
print(f"bone screen: {b['category']} ({b['level']} trabecular median {b['trabecular_hu_median']:.0f} HU; {b['warning']})")
for a in m["angles"]:
    if not a["name"].startswith("segmental"):
        print(f"{a['name']}: {a['angle']['value']:.1f} deg")
print(f"flags: {'; '.join(m['flags']) or 'none'}")
PY
}


echo
echo "== spine-seg and spine-detect on data/sample/real_ct_abdomen.nii.gz (REAL abdominal CT, 3 mm, full field; the CT model never saw it) =="
build/bin/spine-seg data/sample/real_ct_abdomen.nii.gz -o "$out/seg-real" --threads "$(nproc)"
build/bin/spine-detect data/sample/real_ct_abdomen.nii.gz -o "$out/detect-real" --threads "$(nproc)"
/usr/bin/python3 - "$out/seg-real/real_ct_abdomen/labels.nii.gz" data/sample/real_ct_abdomen_reference_labels.nii.gz \
    "$out/detect-real/real_ct_abdomen/vertebrae.json" <<'PY'
import json, sys
import numpy as np
sys.path.insert(0, "scripts")
from lib.nifti import read_nifti
from seg.names import vertebra_name
got, aff = read_nifti(sys.argv[1])
ref, _ = read_nifti(sys.argv[2])
found = {v["name"]: v for v in json.load(open(sys.argv[3]))["vertebrae"]}
def centre(mask):  # millimetres, in the image's world frame
    return aff[:3, :3] @ np.argwhere(mask).mean(axis=0) + aff[:3, 3]
def dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())
print(f"{'vertebra':10}{'Dice':>7}{'centre to reference':>22}{'spine-detect confidence':>26}")
for v in sorted(int(x) for x in np.unique(ref) if 0 < x < 30):
    name, r, g = vertebra_name(v), ref == v, got == v
    d = f"{np.linalg.norm(centre(g) - centre(r)):.1f} mm" if g.any() else "not found"
    c = found.get(name, {}).get("confidence")
    print(f"{name:10}{dice(g, r):7.2f}{d:>22}{(f'{c:.2f}' if c is not None else '-'):>26}")
print(f"all vertebrae as one class: Dice {dice((got > 0) & (got < 30), (ref > 0) & (ref < 30)):.2f}")
print("The reference labels are TotalSegmentator's output, not a manual segmentation: a check, not ground truth.\n"
      "The CT model's figures on real CT with manual masks (leave-one-out) are in models/ct-spine-seg.md.")
PY
echo "labels: $out/seg-real/real_ct_abdomen/labels.nii.gz, overlay: $out/seg-real/real_ct_abdomen/overlay.png, markups: $out/detect-real/real_ct_abdomen/vertebrae.mrk.json"

echo
echo "== spine-seg and spine-detect on data/sample/phantom_ct_torso.nii.gz (synthetic CT, 2.5 mm) =="
build/bin/spine-seg data/sample/phantom_ct_torso.nii.gz -o "$out/seg" --threads "$(nproc)"
build/bin/spine-detect data/sample/phantom_ct_torso.nii.gz -o "$out/detect" --threads "$(nproc)"
/usr/bin/python3 - "$out/detect/phantom_ct_torso/vertebrae.json" data/sample/phantom_ct_torso_truth.json <<'PY'
import json, math, sys
got, truth = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))["vertebrae"]
found = {v["name"]: v for v in got["vertebrae"]}
print(f"{'vertebra':10}{'found':>8}{'distance to true centre':>26}{'confidence':>12}")
for t in truth:
    v = found.get(t["name"])
    d = f"{math.dist(v['centroid_lps_mm'], t['centroid_lps_mm']):.1f} mm" if v else "-"
    print(f"{t['name']:10}{('yes' if v else 'no'):>8}{d:>26}{(v['confidence'] if v else 0):12.2f}")
print(f"modality: {got['modality']['modality']} ({got['modality']['reason']}); flags: {'; '.join(got['flags']) or 'none'}")
print("(the true centre is the vertebral body's; the CT model segments whole vertebrae, whose centroid lies behind it)")
PY
echo "labels: $out/seg/phantom_ct_torso/labels.nii.gz, overlay: $out/seg/phantom_ct_torso/overlay.png, markups: $out/detect/phantom_ct_torso/vertebrae.mrk.json"

echo
echo "== spine-cobb on data/sample/phantom_xray.png (synthetic radiograph) =="
build/bin/spine-cobb data/sample/phantom_xray.png -o "$out/cobb" --threads "$(nproc)"
/usr/bin/python3 - "$out/cobb/phantom_xray/cobb.json" data/sample/phantom_xray_truth.json <<'PY'
import json, sys
got, truth = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))["angles"]
print(f"{'':14}{'spine-cobb':>12}{'phantom truth':>15}")
for k in ("pt", "mt", "tl"):
    print(f"{k.upper() + ' (deg)':14}{got['angles_deg'][k]:12.1f}{truth['aasce_deg'][k]:15.1f}")
m, t = got["major"], truth["major"]
print(f"{'major curve':14}{m['upper_end'] + '-' + m['lower_end']:>12}{t['upper_end'] + '-' + t['lower_end']:>15}")
print(f"{'apex':14}{m['apex']:>12}{t['apex']:>15}")
print(f"grade: {got['grade']}; flags: {'; '.join(got['flags']) or 'none'}")
if got["flags"]:
    print("The landmark model was trained on real radiographs only; this synthetic radiograph lies "
          "outside that domain, and spine-cobb says so through its flags instead of trusting the angles.")
PY
echo "results: $out/cobb/phantom_xray/cobb.json, overlay: $out/cobb/phantom_xray/overlay.png, cohort table: $out/cobb/cobb.csv"

echo
echo "== spine-prep on data/sample/phantom_ct.nii.gz (synthetic CT): bone window, 1 mm =="
build/bin/spine-prep data/sample/phantom_ct.nii.gz --window bone --resample 1 -o "$out/prep"
/usr/bin/python3 - "$out/prep/phantom_ct/provenance.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["result"]
print(f"steps {r['steps']}, size {r['size']}, orientation {r['orientation']}, "
      f"intensities {r['intensity_min']:.2f}..{r['intensity_max']:.2f}")
PY
echo "result: $out/prep/phantom_ct/image.nii.gz (provenance.json beside it)"

echo
echo "== spine-measure on the torso CT with spine-seg's labels from above (synthetic) =="
build/bin/spine-measure data/sample/phantom_ct_torso.nii.gz --labels "$out/seg" -o "$out/measure" --threads "$(nproc)"
print_measurements "$out/measure/phantom_ct_torso/measurements.json"
echo "result: $out/measure/phantom_ct_torso/ (measurements.json, overlay.png), $out/measure/measurements.csv"

echo
echo "== spine-measure on data/sample/verse007_ct.nii.gz with its MANUAL vertebra masks (REAL CT, VerSe 2019, CC BY-SA 4.0) =="
build/bin/spine-measure data/sample/verse007_ct.nii.gz --labels data/sample/verse007_vertebra_masks.nii.gz \
  -o "$out/measure-real" --threads "$(nproc)"
print_measurements "$out/measure-real/verse007_ct/measurements.json"
echo "result: $out/measure-real/verse007_ct/ (measurements.json, overlay.png)"

echo
echo "== spine-grade on data/sample/spider_118_t2.mha and spider_118_t1.mha (REAL lumbar T2 and T1 slices of one study, SPIDER CC BY 4.0; a validation patient) =="
build/bin/spine-grade data/sample/spider_118_t2.mha data/sample/spider_118_t1.mha -o "$out/grade" --threads "$(nproc)"
/usr/bin/python3 - "$out/grade/spider_118_t2/grades.json" data/sample/spider_118_t2_gradings.json <<'PY'
import json, sys
got, ref = json.load(open(sys.argv[1])), {d["name"]: d for d in json.load(open(sys.argv[2]))["discs"]}
findings = ("herniation", "bulging", "narrowing", "spondylolisthesis", "modic_change")
print(f"{'disc':8}{'Pfirrmann':>10}{'(prob)':>8}{'reference':>11}   findings present (reference)")
for d in got["discs"]:
    r = ref.get(d["name"])
    present = [f for f in findings if d["findings"][f]["present"]]
    truth = [f for f in findings if r and (r["modic"] > 0 if f == "modic_change" else r[f])]
    p = d["pfirrmann"]
    print(f"{d['name']:8}{p['grade']:>10}{p['probabilities'][str(p['grade'])]:>8.2f}{(r['pfirrmann'] if r else '-'):>11}   "
          f"{', '.join(present) or 'none'} ({', '.join(truth) or 'none' if r else '-'})"
          + ("" if d["reliable"] else "  [flagged: " + "; ".join(d["flags"]) + "]"))
print(f"naming reliable: {got['naming_reliable']}; flags: {'; '.join(got['flags']) or 'none'}")
for o in got["series_of_study"]["other_series"]:  # the study's T1 slice, given in the same run
    print(f"names against the study's {o['sequence']} series: " + (
        f"{o['matched_discs']} discs in the same place, named {o['this_series_names_levels_higher']} level(s) apart"
        if o["compared"] else "not compared (" + o["why"] + ")"))
PY
echo "results: $out/grade/spider_118_t2/grades.json, overlay: $out/grade/spider_118_t2/overlay.png, cohort table: $out/grade/grades.csv"
