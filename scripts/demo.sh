#!/usr/bin/env bash
# Installs what is missing, builds Release into build/, and runs the main jobs on the
# synthetic sample studies shipped in data/sample/ (made by scripts/make_sample_data.sh):
#   spine-seg and spine-detect on a phantom torso CT, names beside the phantom's truth;
#   spine-cobb on a phantom radiograph, printed beside the phantom's true angles;
#   spine-prep on a phantom CT (bone window, 1 mm resampling);
#   spine-measure on the torso CT with the labels spine-seg made;
#   spine-grade on real lumbar T2 and T1 slices of one study (SPIDER, CC BY 4.0), beside the reference gradings.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
out=demo-out
rm -rf "$out"

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
/usr/bin/python3 - "$out/measure/phantom_ct_torso/measurements.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
for v in m["vertebrae"]:
    h = v["heights"]
    hs = "/".join(f"{h[k]['value']:.1f}" for k in ("anterior", "middle", "posterior")) if h else "-"
    hu = v.get("trabecular_attenuation", {}).get("median", {}).get("value")
    print(f"{v['name']:>4}  heights {hs} mm  Genant {v['genant']['grade']}  HU {hu}")
for a in m["angles"]:
    if not a["name"].startswith("segmental"):
        print(f"{a['name']}: {a['angle']['value']:.1f} deg")
PY
echo "result: $out/measure/phantom_ct_torso/ (measurements.json, overlay.png), $out/measure/measurements.csv"

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
