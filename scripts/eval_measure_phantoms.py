#!/usr/bin/python3
"""spine-measure against CT phantoms with exact truth (SYNTHETIC; issue 14).

Makes N CT phantoms (T11..L5 or T4..L5, random seeds) with random vertebral fractures of
every type and grade, random trabecular attenuation and coronal curves, runs
spine-measure on each with the phantom's own label map (--labels), and compares with
the phantom's truth.json: body heights (mean absolute error, mm), Genant grade agreement,
disc heights, lumbar lordosis and coronal Cobb angle (degrees), trabecular HU, canal.
Every figure is on synthetic data.

usage: scripts/eval_measure_phantoms.py [N] [--out DIR] [--spacing MM] [--kind ct|mr-t1|mr-t2] [--bin build/bin]
"""
import argparse, json, os, random, statistics, subprocess, sys


def run(cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout[-2000:]}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument('n', nargs='?', type=int, default=12)
    p.add_argument('--out', default='work-data/eval-measure-phantoms')
    p.add_argument('--spacing', type=float, default=1.0)
    p.add_argument('--cervical', action='store_true', help='C3..T2 phantoms instead of thoracolumbar ones')
    p.add_argument('--kind', default='ct', choices=['ct', 'mr-t1', 'mr-t2'], help='phantom modality (MR: no HU)')
    p.add_argument('--bin', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'build', 'bin'))
    a = p.parse_args()
    rng = random.Random(2026)
    os.makedirs(a.out, exist_ok=True)
    height_err, disc_err, grade_pairs, hu_err, lordosis_err, cobb_err, canal_err = [], [], [], [], [], [], []
    kyphosis_err = []
    for i in range(a.n):
        name = f'ph{i:03d}'
        first = 'T4' if i % 3 == 0 else 'T11'
        last = 'L5'
        levels = ['T4', 'T5', 'T6', 'T7', 'T8', 'T9', 'T10', 'T11', 'T12', 'L1', 'L2', 'L3', 'L4', 'L5']
        if a.cervical:
            first, last, levels = 'C3', 'T2', ['C3', 'C4', 'C5', 'C6', 'C7', 'T1', 'T2']
        levels = levels[levels.index(first):]
        fractures = []
        for v in rng.sample(levels[1:-1], 2):  # not the end vertebrae (their neighbours are missing)
            kind = rng.choice(['wedge', 'biconcave', 'crush'])
            fractures.append(f'{v}:{kind}:{rng.uniform(0.1, 0.55):.2f}')
        marrow = rng.uniform(60, 260)
        scoliosis = rng.choice([0, rng.uniform(-30, 30)])
        args = [os.path.join(a.bin, 'spine-phantom'), '--kind', a.kind, '--first', first, '--last', last,
                '--spacing', str(a.spacing), '--seed', str(100 + i), '--marrow-hu', f'{marrow:.1f}',
                '--scoliosis', f'{scoliosis:.1f}', '-q', '--force', '-o', os.path.join(a.out, 'phantoms'), '--name', name]
        for f in fractures:
            args += ['--fracture', f]
        run(args)
        study = os.path.join(a.out, 'phantoms', name)
        run([os.path.join(a.bin, 'spine-measure'), os.path.join(study, 'image.nii.gz'), '--labels',
             os.path.join(study, 'labels.nii.gz'), '--modality', 'ct' if a.kind == 'ct' else 'mr', '-q', '--force', '-o', os.path.join(a.out, 'measured', name)])
        truth = json.load(open(os.path.join(study, 'truth.json')))
        m = json.load(open(os.path.join(a.out, 'measured', name, 'image', 'measurements.json')))
        mv = {v['name']: v for v in m['vertebrae']}
        for t in truth['vertebrae']:
            if 'heights_mm' not in t:
                continue
            x = mv.get(t['name'])
            if x is None or x['heights'] is None:
                height_err.append(float('nan'))
                continue
            for k in ('anterior', 'middle', 'posterior'):
                height_err.append(abs(x['heights'][k]['value'] - t['heights_mm'][k]))
            # The end vertebrae have one neighbour: a crush there is graded against it.
            grade_pairs.append((t['fracture']['genant_grade'], x['genant']['grade'], t['name'], name))
            if 'trabecular_attenuation' in x:
                hu_err.append(abs(x['trabecular_attenuation']['median']['value'] - t['trabecular_hu']))
            if 'canal' in x:
                canal_err.append(abs(x['canal']['ap_diameter']['value'] - t['canal']['ap_mm']))
        md = {d['name']: d for d in m['discs']}
        for d in truth['discs']:
            x = md.get(d['name'])
            if x and x['heights']:
                for k in ('anterior', 'middle', 'posterior'):
                    disc_err.append(abs(x['heights'][k]['value'] - d['heights_mm'][k]))
        angles = {g['name']: g['angle']['value'] for g in m['angles']}
        if 'lumbar_lordosis_deg' in truth and 'lumbar lordosis' in angles:
            lordosis_err.append(abs(angles['lumbar lordosis'] - truth['lumbar_lordosis_deg']))
        if 'thoracic_kyphosis_deg' in truth and 'thoracic kyphosis' in angles:
            kyphosis_err.append(abs(angles['thoracic kyphosis'] - truth['thoracic_kyphosis_deg']))
        if 'coronal Cobb' in angles:
            cobb_err.append(abs(angles['coronal Cobb'] - truth['coronal_cobb_deg']))
    agree = sum(1 for t, x, _, _ in grade_pairs if t == x)
    fractured = [(t, x) for t, x, _, _ in grade_pairs if t > 0]
    mean = lambda v: statistics.mean(v) if v else float('nan')
    report = {
        'synthetic': True, 'kind': a.kind, 'phantoms': a.n, 'spacing_mm': a.spacing,
        'body_height_mae_mm': round(mean(height_err), 3), 'body_height_max_mm': round(max(height_err), 3),
        'body_heights': len(height_err),
        'genant_agreement': f'{agree}/{len(grade_pairs)}', 'genant_agreement_pct': round(100 * agree / len(grade_pairs), 1),
        'fractured_vertebrae_graded_right': f'{sum(1 for t, x in fractured if t == x)}/{len(fractured)}',
        'disc_height_mae_mm': round(mean(disc_err), 3), 'disc_heights': len(disc_err),
        'lordosis_abs_error_deg': round(mean(lordosis_err), 2),
        'kyphosis_abs_error_deg': round(mean(kyphosis_err), 2), 'kyphosis_cases': len(kyphosis_err), 'coronal_cobb_abs_error_deg': round(mean(cobb_err), 2),
        'trabecular_hu_mae': round(mean(hu_err), 2), 'canal_ap_mae_mm': round(mean(canal_err), 3),
        'disagreements': [f'{n} {v}: truth {t}, measured {x}' for t, x, v, n in grade_pairs if t != x],
    }
    print(json.dumps(report, indent=2))
    with open(os.path.join(a.out, 'report.json'), 'w') as f:
        json.dump(report, f, indent=2)


if __name__ == '__main__':
    main()
