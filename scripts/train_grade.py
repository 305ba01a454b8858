"""Trains the disc grading model (models/mr-disc-grading.pt) on SPIDER's training series.

The patches are what spine-grade itself cuts (`spine-grade --discs-only --write-patches`),
so training sees exactly what inference sees. A small CNN encodes each disc's patch; a
bidirectional LSTM runs over the series' discs top to bottom (neighbouring discs share a
patient's degeneration); heads give 5 Pfirrmann logits and 7 finding logits per disc.
SPIDER's own validation patients are never read here; a fifth of the training patients
(spider.tune_patient) chooses the epoch and the operating points.

  /usr/bin/python3 scripts/grade/spider_to_mha.py ../shared/data/mri-spider-gradings work-data/spider-mha
  build/bin/spine-grade work-data/spider-mha --discs-only --write-patches --no-overlay -o work-data/grade-discs
  /usr/bin/python3 scripts/train_grade.py --patches work-data/grade-discs --out work-data/grade-ens \
      --seeds 0,1,2 --export work-data/grade-ens/mr-disc-grading.pt

With several seeds the exported model is their average (Ensemble); the tuning patients
choose each seed's epoch and the operating points of the average.

--folds K trains one grader per patient fold instead (train_folds) and gives the recipe's
cross-validated figures; --carry-operating-point carries a finding's threshold from them
to an exported grader (models/mr-disc-grading.md, "Five graders by cross-validation").
"""
import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

# Before torch is imported: run as a script, it starts again on huge pages
# (scripts/lib/huge_pages.py); imported by another script, it leaves that one alone.
if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
    from huge_pages import restart_with_huge_pages

    restart_with_huge_pages()

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "lib"))
sys.path.insert(0, str(HERE / "grade"))
from model_card import export_scripted  # noqa: E402
from nifti import read_nifti  # noqa: E402
from spider import FINDINGS, patient_fold, read_gradings, read_series, spider_index, tune_patient  # noqa: E402
sys.path.insert(0, str(HERE))
from eval_grade import weighted_kappa  # noqa: E402

# Name shifts the training may weigh (--name-shifts), in SPIDER disc numbers.
SHIFTS = (-1, 0, 1)
PATCH = {"width_px": 96, "height_px": 64, "spacing_mm": 0.7, "posterior_shift_mm": 4.0}


class DiscGrader(nn.Module):
    """Input [discs, 1, 64, 96]: one series' discs, top to bottom. Output [discs, 12]."""

    def __init__(self, width=24, hidden=32, patch_norm=False):
        super().__init__()
        # patch_norm: each patch scaled by its own 1st..99th percentiles first, so that a
        # disc's signal is read against its own neighbourhood (the canal's fluid, the
        # bodies beside it) rather than the whole slice, whose percentiles move with the
        # field of view, the coil's shading and the scanner.
        self.patch_norm = patch_norm
        c = [width, 2 * width, 3 * width, 4 * width]

        def stage(a, b):
            return nn.Sequential(nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True),
                                 nn.Conv2d(b, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True))
        self.encoder = nn.Sequential(stage(1, c[0]), nn.MaxPool2d(2), stage(c[0], c[1]), nn.MaxPool2d(2),
                                     stage(c[1], c[2]), nn.MaxPool2d(2), stage(c[2], c[3]),
                                     nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2))
        self.context = nn.LSTM(c[3], hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(c[3] + 2 * hidden, 5 + len(FINDINGS))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        if not self.patch_norm:
            return x
        flat = x.reshape(x.shape[0], -1)
        lo = torch.quantile(flat, 0.01, dim=1, keepdim=True)
        hi = torch.quantile(flat, 0.99, dim=1, keepdim=True)
        flat = ((flat - lo) / (hi - lo).clamp(min=1e-3)).clamp(-0.5, 1.5)
        return flat.reshape(x.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.encoder(self.normalise(x))
        ctx, _ = self.context(f.unsqueeze(0))
        return self.head(torch.cat([f, ctx.squeeze(0)], dim=1))

    def forward_series(self, patches, lengths):
        """Training: several series at once; patches of all of them concatenated."""
        f = self.encoder(self.normalise(patches))
        seqs = list(torch.split(f, lengths))
        padded = nn.utils.rnn.pad_sequence(seqs, batch_first=True)
        packed = nn.utils.rnn.pack_padded_sequence(padded, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
        out, _ = self.context(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
        ctx = torch.cat([out[i, :n] for i, n in enumerate(lengths)])
        return self.head(torch.cat([f, ctx], dim=1))


def load(patch_dir, data_dir):
    series = read_series(data_dir)
    gradings = read_gradings(data_dir)
    items = []
    for name, row in sorted(series.items()):
        if row["subset"] != "training":
            continue  # SPIDER's validation patients: never read for training
        f = Path(patch_dir) / name / "grades.json"
        if not f.exists():
            continue
        j = json.load(open(f))
        arr, _ = read_nifti(Path(patch_dir) / name / "disc_patches.nii.gz")
        arr = np.asarray(arr, dtype=np.float32)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        patches = arr.transpose(2, 1, 0)  # [discs, height, width]
        ref = gradings.get(row["patient"], {})
        # The labels each disc would carry were the series' names off by one level:
        # shifted[:, 0] one level too high (SPIDER's disc k - 1: the usual fault, the first
        # sacral segment taken for L5), shifted[:, 1] as named, shifted[:, 2] one level too low.
        shifted = np.full((len(j["discs"]), len(SHIFTS), 1 + len(FINDINGS)), -1, dtype=np.int64)
        for i, d in enumerate(j["discs"]):
            k = spider_index(d["name"])
            for s, shift in enumerate(SHIFTS):
                if k is not None and k + shift in ref:
                    g = ref[k + shift]
                    shifted[i, s] = [g["pfirrmann"] - 1] + [g[f] for f in FINDINGS]
        items.append({"series": name, "patient": row["patient"], "x": patches, "y": shifted[:, 1],
                      "y_shifted": shifted})
    return items


def augment(x, rng):
    """Contrast, noise and small shifts / rotations / scales of the whole sequence's patches."""
    n = x.shape[0]
    gamma = torch.exp(torch.empty(n, 1, 1, 1).uniform_(-0.35, 0.35))
    x = x.clamp(0, 1) ** gamma
    x = x * torch.empty(n, 1, 1, 1).uniform_(0.85, 1.15)
    ang = torch.empty(n).uniform_(-0.12, 0.12)
    sc = torch.empty(n).uniform_(0.9, 1.1)
    tx, ty = torch.empty(n).uniform_(-0.06, 0.06), torch.empty(n).uniform_(-0.08, 0.08)
    theta = torch.stack([torch.stack([sc * torch.cos(ang), -sc * torch.sin(ang), tx], 1),
                         torch.stack([sc * torch.sin(ang), sc * torch.cos(ang), ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, align_corners=False, padding_mode="border")
    return x + 0.02 * torch.randn_like(x)


def log_likelihood(out, y):
    """Per series: the log-likelihood of labels y under the model's outputs, summed over
    the discs y labels (Pfirrmann and every finding)."""
    m = y[:, 0] >= 0
    if m.sum() == 0:
        return out.sum() * 0
    ll = -F.cross_entropy(out[m, :5], y[m, 0], reduction="sum")
    return ll - F.binary_cross_entropy_with_logits(out[m, 5:], y[m, 1:].float(), reduction="sum")


def shift_weights(out, y_shifted, log_prior):
    """Posterior over a series' name shift (SHIFTS), from the discs labelled under every
    shift, so that a shift is not favoured for leaving discs out. Detached: an EM step,
    the labels are weighted, the weights are not learned through."""
    with torch.no_grad():
        common = (y_shifted[:, :, 0] >= 0).all(1)
        if common.sum() == 0:
            return torch.tensor([0.0, 1.0, 0.0])
        ll = torch.stack([log_likelihood(out[common], y_shifted[common, s]) for s in range(len(SHIFTS))])
        return torch.softmax(ll + log_prior, 0)


def shifted_losses(out, lengths, y_shifted, pos_weight, log_prior):
    """Each series' loss averaged over its possible name shifts, weighted by their posterior
    (latent-shift training: a series named a level off teaches little rather than the wrong
    grades). Returns the loss and each series' weights, [series, shifts]."""
    total, weights = out.sum() * 0, []
    for o, ys in zip(torch.split(out, lengths), torch.split(y_shifted, lengths)):
        w = shift_weights(o, ys, log_prior)
        weights.append(w)
        for s in range(len(SHIFTS)):
            if w[s] > 1e-3:
                total = total + w[s] * losses(o, ys[:, s], pos_weight) * len(o)
    return total / sum(lengths), torch.stack(weights)


def losses(out, y, pos_weight):
    pf = y[:, 0]
    m = pf >= 0
    if m.sum() == 0:
        return out.sum() * 0
    # Pfirrmann: cross-entropy plus an ordinal term (expected grade close to the reference).
    ce = F.cross_entropy(out[m, :5], pf[m], label_smoothing=0.05)
    prob = out[m, :5].softmax(1)
    expected = (prob * torch.arange(5.0)).sum(1)
    ordinal = F.smooth_l1_loss(expected, pf[m].float())
    bce = F.binary_cross_entropy_with_logits(out[m, 5:], y[m, 1:].float(), pos_weight=pos_weight)
    return ce + 0.5 * ordinal + bce


def predict(model, items):
    model.eval()
    res = []
    with torch.no_grad():
        for it in items:
            res.append(model(torch.from_numpy(it["x"]).unsqueeze(1)).numpy())
    return res


def auc(y, p):
    y, p = np.asarray(y), np.asarray(p)
    pos, neg = p[y == 1], p[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


def tune_scores(model, items):
    outs = predict(model, items)
    ys = np.concatenate([it["y"] for it in items])
    o = np.concatenate(outs)
    m = ys[:, 0] >= 0
    ys, o = ys[m], o[m]
    pf = o[:, :5].argmax(1)
    exact = float((pf == ys[:, 0]).mean())
    aucs = {f: auc(ys[:, 1 + i], 1 / (1 + np.exp(-o[:, 5 + i]))) for i, f in enumerate(FINDINGS)}
    return exact, aucs, ys, o


def operating_points(ys, o):
    """Per finding, the threshold that maximises sensitivity + specificity (Youden's J)."""
    th = {}
    for i, f in enumerate(FINDINGS):
        y = ys[:, 1 + i]
        p = 1 / (1 + np.exp(-o[:, 5 + i]))
        if y.sum() == 0 or y.sum() == len(y):
            th[f] = 0.5
            continue
        best, bt = -1, 0.5
        for t in np.unique(np.round(p, 3)):
            t = float(min(max(t, 0.01), 0.99))
            pred = p >= t
            j = (pred & (y == 1)).sum() / y.sum() + (~pred & (y == 0)).sum() / (len(y) - y.sum())
            if j > best:
                best, bt = j, t
        th[f] = round(bt, 3)
    return th


class Ensemble(nn.Module):
    """Several graders trained from different seeds, averaged: the mean of their grade
    probabilities (returned as log-probabilities, so a softmax gives the mean back) and
    of their finding probabilities (returned as logits). Same contract as DiscGrader."""

    def __init__(self, members):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.n_findings = len(FINDINGS)  # an attribute: TorchScript cannot read the global list

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grades = torch.zeros(x.shape[0], 5)
        findings = torch.zeros(x.shape[0], self.n_findings)
        for m in self.members:
            out = m(x)
            grades = grades + out[:, :5].softmax(1)
            findings = findings + torch.sigmoid(out[:, 5:])
        n = float(len(self.members))
        grades = (grades / n).clamp(1e-6, 1.0)
        findings = (findings / n).clamp(1e-6, 1 - 1e-6)
        return torch.cat([grades.log(), torch.log(findings / (1 - findings))], dim=1)


def train_one(seed, args, train, tune, pos_weight, out_dir, keep_last=False):
    """One grader from one seed; keeps the epoch with the best tuning score in out_dir/best.pt,
    or with keep_last the last epoch (tune is then only watched, nothing is chosen on it)."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    os.makedirs(out_dir, exist_ok=True)
    model = DiscGrader(patch_norm=args.patch_norm)
    best_file = os.path.join(out_dir, "best.pt")
    if args.reuse and os.path.exists(best_file) and os.path.exists(os.path.join(out_dir, "history.json")):
        model.load_state_dict(torch.load(best_file))
        print(f"seed {seed}: reusing {best_file}", flush=True)
        return model, json.loads(Path(out_dir, "history.json").read_text())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-3)
    steps_per_epoch = (len(train) + args.series_per_step - 1) // args.series_per_step
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch)
    rng = random.Random(seed)
    best, history, t0 = None, [], time.time()
    prior = torch.tensor([args.shift_prior, 1 - 2 * args.shift_prior, args.shift_prior])
    log_prior, shift_posterior = prior.log(), {}
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = train[:]
        rng.shuffle(order)
        tot = 0.0
        for s in range(0, len(order), args.series_per_step):
            batch = order[s:s + args.series_per_step]
            x = augment(torch.from_numpy(np.concatenate([b["x"] for b in batch])).unsqueeze(1), rng)
            y = torch.from_numpy(np.concatenate([b["y"] for b in batch]))
            lengths = [len(b["x"]) for b in batch]
            out = model.forward_series(x, lengths)
            if args.name_shifts and epoch > args.shift_warmup:
                ys = torch.from_numpy(np.concatenate([b["y_shifted"] for b in batch]))
                loss, w = shifted_losses(out, lengths, ys, pos_weight, log_prior)
                for b, wb in zip(batch, w):
                    shift_posterior[b["series"]] = [round(float(v), 3) for v in wb]
            else:
                loss = losses(out, y, pos_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss)
        exact, aucs, _, _ = tune_scores(model, tune)
        score = exact + float(np.nanmean([aucs[f] for f in ("herniation", "narrowing", "bulging", "spondylolisthesis")]))
        history.append({"epoch": epoch, "loss": tot / steps_per_epoch, "tune_exact": exact,
                        "tune_auc": aucs, "seconds": time.time() - t0})
        moved = sum(1 for w in shift_posterior.values() if w[1] < 0.5)  # 0 without --name-shifts
        if args.name_shifts:
            history[-1]["series_weighted_off_their_names"] = moved
        print(f"seed {seed} epoch {epoch} loss {tot / steps_per_epoch:.3f} tune exact {exact:.3f} "
              + " ".join(f"{k[:5]} {v:.2f}" for k, v in aucs.items())
              + (f" shifted {moved}" if args.name_shifts else "") + f" ({time.time() - t0:.0f} s)", flush=True)
        if best is None or score > best[0] or keep_last:
            best = (score, epoch)
            torch.save(model.state_dict(), best_file)
    model.load_state_dict(torch.load(best_file))
    record = {"seed": seed, "best_epoch": best[1], "cpu_seconds": round(time.time() - t0), "history": history}
    if args.name_shifts:
        # The last epoch's posterior over each training series' name shift (-1, 0, +1 levels).
        record["shift_posterior"] = dict(sorted(shift_posterior.items()))
    Path(out_dir, "history.json").write_text(json.dumps(record, indent=2))
    return model, record


def positive_weights(items):
    """Per finding, (1 - p) / p of the items' graded discs, clipped to 1..10."""
    y = np.concatenate([it["y"] for it in items])
    y = y[y[:, 0] >= 0]
    pos = y[:, 1:].mean(0)
    return torch.tensor(np.clip((1 - pos) / np.maximum(pos, 1e-3), 1, 10), dtype=torch.float32), pos, len(y)


def read_oof(cv_dir, folds="fold*"):
    """The out-of-fold labels and outputs train_folds saved (the folds matching `folds`),
    graded discs only."""
    z = [np.load(f) for f in sorted(Path(cv_dir).glob(f"{folds}/oof.npz"))]
    ys, o = np.concatenate([v["y"] for v in z]), np.concatenate([v["out"] for v in z])
    graded = ys[:, 0] >= 0
    return ys[graded], o[graded]


def oof_figures(ys, o):
    """Figures of held-out predictions of graded discs: Pfirrmann exact, within one,
    weighted kappa; AUCs."""
    t, p = ys[:, 0] + 1, o[:, :5].argmax(1) + 1
    kappa, _ = weighted_kappa(t, p)
    aucs = {f: auc(ys[:, 1 + i], 1 / (1 + np.exp(-o[:, 5 + i]))) for i, f in enumerate(FINDINGS)}
    aucs = {f: None if np.isnan(v) else v for f, v in aucs.items()}  # no positive: no AUC (and valid JSON)
    return {"discs": int(len(t)), "pfirrmann_exact": float((t == p).mean()),
            "pfirrmann_within_one": float((abs(t - p) <= 1).mean()), "pfirrmann_weighted_kappa": kappa,
            "auc": aucs, "positives": {f: int(ys[:, 1 + i].sum()) for i, f in enumerate(FINDINGS)}}


def train_folds(args, items):
    """Cross-validated training: the training patients in args.folds folds (patient_fold;
    fold 0 of 5 is the tuning fifth), one grader per fold trained on the others from seed =
    fold for args.epochs epochs and kept at its LAST epoch (nothing chosen on held-out
    discs), so that every training series gets a prediction from a grader that never saw
    its patient. Those out-of-fold predictions give cross-validated figures and every
    finding's operating point (spondylolisthesis too, which the tuning fifth lacks); the
    exported model is the mean of the fold graders. With --only-fold, trains that fold and
    stops (folds can run side by side); without, trains the folds not yet done, then
    assembles."""
    k = args.folds
    fold_of = [patient_fold(it["patient"], k) for it in items]
    todo = [args.only_fold] if args.only_fold is not None else list(range(k))
    for f in todo:
        out_dir = os.path.join(args.out, f"fold{f}")
        if os.path.exists(os.path.join(out_dir, "oof.npz")):
            continue
        train = [it for it, g in zip(items, fold_of) if g != f]
        held = [it for it, g in zip(items, fold_of) if g == f]
        pos_weight, _, n = positive_weights(train)
        print(f"fold {f}: {len(train)} training series ({n} graded discs), {len(held)} held out", flush=True)
        model, record = train_one(f, args, train, held, pos_weight, out_dir, keep_last=True)
        outs = predict(model, held)
        np.savez(os.path.join(out_dir, "oof.npz"), series=np.array([it["series"] for it in held]),
                 y=np.concatenate([it["y"] for it in held]), out=np.concatenate(outs))
    if args.only_fold is not None:
        return
    members, records = [], []
    for f in range(k):
        d = os.path.join(args.out, f"fold{f}")
        member = DiscGrader(patch_norm=args.patch_norm)
        member.load_state_dict(torch.load(os.path.join(d, "best.pt")))
        members.append(member.eval())
        records.append(json.loads(Path(d, "history.json").read_text()))
    ys, o = read_oof(args.out)
    th = operating_points(ys, o)
    cv = oof_figures(ys, o)
    cv["fold0_tuning_patients"] = oof_figures(*read_oof(args.out, "fold0"))
    cv["operating_points"] = th
    cpu_seconds = sum(r["cpu_seconds"] for r in records)
    summary = {"folds": k, "epochs": args.epochs, "cross_validation": cv, "cpu_seconds": cpu_seconds,
               "members": records, "series": len(items)}
    Path(args.out, "training.json").write_text(json.dumps(summary, indent=2))
    print(f"{k}-fold out-of-fold figures: " + json.dumps(cv), flush=True)
    if args.export:
        _, _, n = positive_weights(items)
        export_card(Ensemble(members), args, th, {
            "command": " ".join(sys.argv), "folds": k, "seeds": list(range(k)), "epochs": args.epochs,
            "kept_epoch": "the last", "cpu_seconds": cpu_seconds, "threads": args.threads},
            f"SPIDER (van der Graaf et al. 2024, CC BY 4.0): middle sagittal slices of the training subset, "
            f"{len(items)} series ({n} graded discs) in {k} folds by patient: each of the {k} graders trained on "
            f"{k - 1} folds; their out-of-fold predictions chose the operating points; SPIDER's validation "
            "patients never seen", cv)


def export_card(model, args, th, training, training_data, cross_validation=None):
    card = {
        "name": "mr-disc-grading", "version": args.version, "task": "mr-disc-grading", "modality": "mr",
        "dimension": 2, "input_channels": 1, "patch_size": [PATCH["width_px"], PATCH["height_px"]],
        "input_spacing_mm": [PATCH["spacing_mm"], PATCH["spacing_mm"]],
        "normalisation": {"method": "slice percentiles 1..99 to 0..1"},
        "classes": [{"label": k + 1, "name": f"pfirrmann {k + 1}"} for k in range(5)]
        + [{"label": 6 + i, "name": f} for i, f in enumerate(FINDINGS)],
        "patch": PATCH, "findings": FINDINGS, "operating_points": th,
        "input_contract": "the batch is ONE series' discs, top to bottom (the LSTM runs along it); each patch "
                          "in the disc's frame as spine::disc_patches cuts it",
        "training_data": training_data,
        "training": training,
        "limitations": [
            "Graded on one sagittal slice per series; Modic types 1 and 3 are too rare in its training data "
            "(8 discs) to be told apart, so only a Modic change of any type is reported",
            "Trained on SPIDER (four Dutch hospitals, Philips and Siemens, 1.5 and 3 T); other scanners and "
            "protocols are untested"],
        "validation": {},
    }
    if cross_validation is not None:
        card["cross_validation"] = cross_validation
    export_scripted(model, card, args.export)


def score_model(path, tune):
    """The tuning patients' figures of an exported grader (the A/B baseline for a new one)."""
    _, _, ys, o = tune_scores(torch.jit.load(path), tune)
    print(json.dumps({"model": path, "tuning_patients": oof_figures(ys, o)}), flush=True)


def carry_operating_point(path, tune, cv_dir, finding, specificity=None):
    """A threshold for an exported grader's finding carried over from cross-validation by
    specificity: the recipe's Youden point on the out-of-fold predictions of cv_dir's folds
    (train_folds) has specificity s on their negatives; the grader's threshold is where its
    own specificity on the tuning patients' discs (never trained on; their negatives) is s.
    By specificity, not by value, because a mean of graders gives less extreme
    probabilities than one. `specificity` given: that s, without re-reading the folds."""
    i = FINDINGS.index(finding)
    if specificity is not None:  # the out-of-fold specificity from an earlier run (its card)
        record = {"specificity_given": specificity}
        spec = specificity
    else:
        ys, o = read_oof(cv_dir)
        y, p = ys[:, 1 + i], 1 / (1 + np.exp(-o[:, 5 + i]))
        t = operating_points(ys, o)[finding]
        sens, spec = float((p[y == 1] >= t).mean()), float((p[y == 0] < t).mean())
        record = {"discs": int(len(y)), "positives": int(y.sum()), "auc": auc(y, p), "youden_threshold": t,
                  "sensitivity": sens, "specificity": spec}
    _, _, yt, ot = tune_scores(torch.jit.load(path), tune)
    neg = 1 / (1 + np.exp(-ot[yt[:, 1 + i] == 0, 5 + i]))
    carried = round(float(np.quantile(neg, spec)), 3)
    print(json.dumps({"finding": finding, "out_of_fold": record, "model": path, "tuning_negatives": int(len(neg)),
                      "carried_threshold": carried, "its_specificity_there": float((neg < carried).mean())}),
          flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--patches", default="work-data/grade-discs")
    ap.add_argument("--data", default="../shared/data/mri-spider-gradings")
    ap.add_argument("--out", default="work-data/grade")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--series-per-step", type=int, default=8)
    ap.add_argument("--seeds", default="0", help="comma-separated; more than one: the exported model averages them")
    ap.add_argument("--reuse", action="store_true", help="reuse OUT/seedN/best.pt of a finished earlier run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--patch-norm", action="store_true",
                    help="scale each disc's patch by its own 1st..99th percentiles inside the model")
    ap.add_argument("--name-shifts", action="store_true",
                    help="weigh each training series' labels under its names shifted by -1, 0, +1 levels by their "
                         "posterior (an EM step each batch), so that series named a level off teach little")
    ap.add_argument("--shift-prior", type=float, default=0.1, help="prior of each one-level shift")
    ap.add_argument("--shift-warmup", type=int, default=8, help="epochs trained on the names as they are first")
    ap.add_argument("--folds", type=int, default=0,
                    help="K: cross-validated training by patient (train_folds); the export averages the K graders")
    ap.add_argument("--only-fold", type=int, help="with --folds: train this fold only, then stop")
    ap.add_argument("--score-model", help="print an exported grader's figures on the tuning patients, then stop")
    ap.add_argument("--carry-operating-point", metavar="FINDING",
                    help="with --score-model and --cv-dir: that grader's threshold for FINDING carried over from "
                         "cross-validation by specificity (carry_operating_point), printed")
    ap.add_argument("--cv-dir", help="the --out of a finished --folds run")
    ap.add_argument("--carry-specificity", type=float,
                    help="with --carry-operating-point instead of --cv-dir: the out-of-fold specificity s itself "
                         "(the card records it), when the folds are not at hand")
    ap.add_argument("--version", default="1.0.0", help="the exported card's version")
    ap.add_argument("--export")
    args = ap.parse_args()
    if args.carry_operating_point and not (args.score_model and (args.cv_dir or args.carry_specificity is not None)):
        ap.error("--carry-operating-point needs --score-model and either --cv-dir or --carry-specificity")
    torch.set_num_threads(args.threads)
    seeds = [int(v) for v in args.seeds.split(",")]
    os.makedirs(args.out, exist_ok=True)
    items = load(args.patches, args.data)
    if args.folds:
        return train_folds(args, items)
    train = [it for it in items if not tune_patient(it["patient"])]
    tune = [it for it in items if tune_patient(it["patient"])]
    if args.score_model and args.carry_operating_point:
        return carry_operating_point(args.score_model, tune, args.cv_dir, args.carry_operating_point,
                                     args.carry_specificity)
    if args.score_model:
        return score_model(args.score_model, tune)
    pos_weight, pos, n_graded = positive_weights(train)
    print(f"{len(train)} training series ({n_graded} graded discs), {len(tune)} tuning series; "
          f"positive fractions {dict(zip(FINDINGS, np.round(pos, 3)))}", flush=True)
    members, records = [], []
    for seed in seeds:
        m, r = train_one(seed, args, train, tune, pos_weight, os.path.join(args.out, f"seed{seed}"))
        members.append(m)
        records.append(r)
        exact, aucs, _, _ = tune_scores(m, tune)
        print(f"seed {seed}: best epoch {r['best_epoch']}, tune exact {exact:.3f} "
              + " ".join(f"{k[:5]} {v:.2f}" for k, v in aucs.items()), flush=True)
    model = members[0] if len(members) == 1 else Ensemble(members)
    exact, aucs, ys, o = tune_scores(model, tune)
    th = operating_points(ys, o)
    cpu_seconds = sum(r["cpu_seconds"] for r in records)
    summary = {"seeds": seeds, "tune_exact": exact, "tune_auc": aucs, "operating_points": th,
               "cpu_seconds": cpu_seconds, "members": records,
               "train_series": len(train), "tune_series": len(tune), "train_graded_discs": n_graded}
    Path(args.out, "training.json").write_text(json.dumps(summary, indent=2))
    print(f"model of {len(members)} member(s): tune exact {exact:.3f} "
          + " ".join(f"{k[:5]} {v:.2f}" for k, v in aucs.items()) + f"; operating points {th}", flush=True)
    if args.export:
        export_card(model, args, th, {
            "command": " ".join(sys.argv), "seeds": seeds, "epochs": args.epochs,
            "best_epochs": [r["best_epoch"] for r in records], "cpu_seconds": cpu_seconds, "threads": args.threads},
            "SPIDER (van der Graaf et al. 2024, CC BY 4.0): middle sagittal slices of the training subset, "
            f"{len(train)} series; {len(tune)} series of a fifth of its patients for the epoch and the operating "
            "points; SPIDER's validation patients never seen")


if __name__ == "__main__":
    main()
