#!/usr/bin/python3
"""spine-measure on real images: measurements from the manual labels against those from
spine-seg's labels on the same images (issue 14).

MRI: the 15 held-out volumes of the MR model's validation split (scripts/seg/data.py
mr_split; never trained on), vertebral-body labels. CT: the three VerSe CTs with manual
whole-vertebra masks (--ct); the shipped CT model was trained on them, so the CT
agreement is NOT independent and is reported apart.

Per measure: bias (spine-seg minus manual) and 95 % limits of agreement (bias +- 1.96 sd)
over the vertebrae both label maps have and neither flags; a Bland-Altman plot per
modality as PNG (numpy and zlib only).

usage: scripts/eval_measure_real.py [--out DIR] [--ct]
"""
import argparse, json, os, struct, subprocess, sys, zlib

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, 'build', 'bin')
DATA = os.path.join(ROOT, '..', 'shared', 'data')
MEASURES = [('anterior_height', 'mm'), ('middle_height', 'mm'), ('posterior_height', 'mm')]


def run(cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode not in (0, 3):
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout[-3000:]}")


def vertebra_values(path):
    m = json.load(open(path))
    out = {}
    for v in m['vertebrae']:
        if not v['reliable'] or v['heights'] is None:
            continue
        out[v['name']] = {'anterior_height': v['heights']['anterior']['value'],
                          'middle_height': v['heights']['middle']['value'],
                          'posterior_height': v['heights']['posterior']['value']}
        if 'trabecular_attenuation' in v:
            out[v['name']]['trabecular_hu'] = v['trabecular_attenuation']['median']['value']
    return out


def png(path, img):
    h, w, _ = img.shape
    raw = b''.join(b'\x00' + img[r].astype(np.uint8).tobytes() for r in range(h))
    def chunk(t, d):
        return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
    with open(path, 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0)) +
                chunk(b'IDAT', zlib.compress(raw, 9)) + chunk(b'IEND', b''))


def bland_altman(path, pairs, title_colour):
    """Mean (x) against difference (y) of the height pairs, with bias and limits drawn."""
    W, H, M = 640, 420, 40
    img = np.full((H, W, 3), 255, np.uint8)
    means = np.array([(a + b) / 2 for a, b in pairs])
    diffs = np.array([b - a for a, b in pairs])
    bias, sd = diffs.mean(), diffs.std(ddof=1)
    x0, x1 = means.min() - 1, means.max() + 1
    lim = max(abs(diffs).max(), abs(bias) + 2 * sd) * 1.15
    X = lambda x: int(M + (x - x0) / (x1 - x0) * (W - 2 * M))
    Y = lambda y: int(H / 2 - y / lim * (H / 2 - M))
    img[M:H - M, M] = 0
    img[H - M, M:W - M] = 0
    for y, c in ((0, (150, 150, 150)), (bias, (0, 0, 200)), (bias + 1.96 * sd, (200, 0, 0)), (bias - 1.96 * sd, (200, 0, 0))):
        img[Y(y), M:W - M] = c
    for mm in range(int(np.ceil(-lim)), int(lim) + 1):  # 1 mm ticks
        img[Y(mm), M - 6:M] = 0
    for x, y in zip(means, diffs):
        img[max(0, Y(y) - 2):Y(y) + 3, max(0, X(x) - 2):X(x) + 3] = title_colour
    png(path, img)


def evaluate(cases, out, modality):
    rows = {k: [] for k, _ in MEASURES + [('trabecular_hu', 'HU')]}
    for name, image, labels in cases:
        manual = os.path.join(out, modality, 'manual', name)
        auto = os.path.join(out, modality, 'spine-seg', name)
        run([os.path.join(BIN, 'spine-measure'), image, '--labels', labels, '--modality', modality, '--threads', '2',
             '--force', '-q', '-o', manual])
        run([os.path.join(BIN, 'spine-measure'), image, '--modality', modality, '--threads', '2', '--force', '-q', '-o', auto])
        study = os.path.basename(image).replace('.nii.gz', '')
        try:
            a = vertebra_values(os.path.join(manual, study, 'measurements.json'))
            b = vertebra_values(os.path.join(auto, study, 'measurements.json'))
        except FileNotFoundError as e:
            print(f'{name}: no result ({e})')
            continue
        for v in sorted(set(a) & set(b)):
            for k in rows:
                if k in a[v] and k in b[v]:
                    rows[k].append((a[v][k], b[v][k]))
    report = {}
    for k, pairs in rows.items():
        if len(pairs) < 2:
            continue
        d = np.array([y - x for x, y in pairs])
        report[k] = {'n': len(pairs), 'bias': round(float(d.mean()), 2), 'sd': round(float(d.std(ddof=1)), 2),
                     'loa_low': round(float(d.mean() - 1.96 * d.std(ddof=1)), 2),
                     'loa_high': round(float(d.mean() + 1.96 * d.std(ddof=1)), 2),
                     'mean_abs_diff': round(float(abs(d).mean()), 2)}
    heights = rows['anterior_height'] + rows['middle_height'] + rows['posterior_height']
    if len(heights) >= 2:
        bland_altman(os.path.join(out, f'bland-altman-{modality}-heights.png'), heights, (0, 110, 0))
    return report


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--out', default=os.path.join(ROOT, 'work-data', 'eval-measure-real'))
    p.add_argument('--ct', action='store_true', help='also the three VerSe CTs (not independent: in the CT model\'s training)')
    a = p.parse_args()
    sys.path.insert(0, os.path.join(ROOT, 'scripts'))
    from seg import data
    _, val = data.mr_split()
    report = {'mri_validation_split': evaluate([(c[0], c[3], c[4]) for c in val], a.out, 'mr')}
    if a.ct:
        ct = [(f'sub-verse{c}', os.path.join(DATA, 'ct-verse', f'sub-verse{c}_ct.nii.gz'),
               os.path.join(DATA, 'ct-verse', f'sub-verse{c}_seg-vert_msk.nii.gz')) for c in ('005', '007', '008')]
        report['ct_verse_in_training'] = evaluate(ct, a.out, 'ct')
    print(json.dumps(report, indent=2))
    with open(os.path.join(a.out, 'report.json'), 'w') as f:
        json.dump(report, f, indent=2)


if __name__ == '__main__':
    main()
