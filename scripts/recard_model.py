#!/usr/bin/python3
"""Puts newly measured validation figures and/or known limitations into the card inside an
exported model, keeping its weights exactly (checked), e.g. after re-measuring a shipped
model with changed code.
Usage: /usr/bin/python3 scripts/recard_model.py MODEL.pt [FIGURES.json] [--limitations LIMITATIONS.json]
           [--operating-point FINDING=THRESHOLD ...] [--head-foot-spacing-checked MM]
FIGURES.json: the card's "validation" object; LIMITATIONS.json: a list of sentences that
the tools show with every result of the model; --operating-point: a finding's threshold
in a grading model's card (operating_points), chosen anew on data the model never saw;
--head-foot-spacing-checked: a segmentation model's widest head-to-foot slice spacing its
outputs were checked on (scripts/eval_seg_ct_thickness.py): spine-seg flags thicker inputs."""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib.model_card import read_card, replace_card_fields  # noqa: E402

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("figures", nargs="?")
    ap.add_argument("--limitations")
    ap.add_argument("--operating-point", action="append", default=[], metavar="FINDING=THRESHOLD")
    ap.add_argument("--head-foot-spacing-checked", type=float, metavar="MM")
    args = ap.parse_args()
    fields = {}
    if args.head_foot_spacing_checked is not None:
        if not args.head_foot_spacing_checked > 0:
            sys.exit("--head-foot-spacing-checked: expected a positive number of mm")
        fields["head_foot_spacing_checked_mm"] = args.head_foot_spacing_checked
    if args.operating_point:
        points = dict(read_card(args.model).get("operating_points") or {})
        for item in args.operating_point:
            finding, _, value = item.partition("=")
            if finding not in points:
                sys.exit(f"{args.model}: no operating point named {finding!r} in its card ({', '.join(points)})")
            try:
                threshold = float(value)
            except ValueError:
                sys.exit(f"--operating-point {item}: expected FINDING=THRESHOLD, a number after '='")
            if not 0.0 < threshold < 1.0:
                sys.exit(f"--operating-point {item}: the threshold must lie between 0 and 1")
            points[finding] = threshold
        fields["operating_points"] = points
    if args.figures:
        fields["validation"] = json.load(open(args.figures))
    if args.limitations:
        limitations = json.load(open(args.limitations))
        if not isinstance(limitations, list) or not all(isinstance(s, str) for s in limitations):
            sys.exit(f"{args.limitations}: expected a JSON list of sentences")
        fields["limitations"] = limitations
    if not fields:
        sys.exit("nothing to change: give FIGURES.json, --limitations, --operating-point and/or "
                 "--head-foot-spacing-checked")
    replace_card_fields(args.model, fields)
    print(f"card of {args.model} updated: {', '.join(fields)}")
