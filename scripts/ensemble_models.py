#!/usr/bin/python3
"""Exports several exported models of one task (trained from different seeds) as one
TorchScript model whose output is the mean of theirs: a seed ensemble. The members'
outputs must be averageable as they are (heatmaps, offsets: what flip averaging already
averages). The card is the first member's, with the version given, the members listed
(name, version, SHA-256, training) and `training.command` saying how it was made, so
spine-cobb loads the ensemble exactly as it loads one member. A member that is itself an
ensemble is opened into its members (each network weighs the same).

  /usr/bin/python3 scripts/ensemble_models.py OUT.pt A.pt B.pt --version 1.2.0
"""
import argparse
import hashlib
import sys
from pathlib import Path
from typing import List

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lib.model_card import read_card, save_with_card  # noqa: E402


class MeanOf(nn.Module):
    """The mean of the members' outputs (one tensor each, of one shape)."""

    def __init__(self, members: List[torch.jit.ScriptModule]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.count = float(len(members))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = torch.zeros(0)
        first = True
        for m in self.members:
            y = m(x)
            if first:
                total = y
                first = False
            else:
                total = total + y
        return total / self.count


def member_command(training: dict) -> str:
    """A member's training command with its seed, which older cards kept beside it only."""
    command, seed = training.get("command", ""), training.get("seed", 0)
    return command + (f" --seed {seed}" if seed and "--seed" not in command else "")


def sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("members", nargs="+")
    ap.add_argument("--version", required=True, help="the ensemble's model version")
    args = ap.parse_args()
    if len(args.members) < 2:
        raise SystemExit("an ensemble needs at least two members")
    cards = [read_card(m) for m in args.members]
    for m, c in zip(args.members[1:], cards[1:]):
        for key in ("name", "task", "patch_size", "normalisation", "output", "classes"):
            if c.get(key) != cards[0].get(key):
                raise SystemExit(f"{m}: its card's {key} differs from {args.members[0]}'s")
    # A member that is itself an ensemble gives its own members, so that every network
    # weighs the same in the mean (an ensemble of two and a third model: thirds, not
    # 1/4, 1/4, 1/2), with the entries its card keeps for them.
    members, entries = [], []
    for m, c in zip(args.members, cards):
        loaded = torch.jit.load(m).eval()
        if "ensemble" in c:
            subs = list(loaded.members.children())
            if len(subs) != len(c["ensemble"]):
                raise SystemExit(f"{m}: its card lists {len(c['ensemble'])} members, the model holds {len(subs)}")
            members += subs
            entries += c["ensemble"]
        else:
            members.append(loaded)
            entries.append({"name": c["name"], "version": c["version"], "sha256": sha256(m),
                            "training": c.get("training", {})})
    card = dict(cards[0])
    card["version"] = args.version
    card["ensemble"] = entries
    card["training"] = {
        "command": "/usr/bin/python3 scripts/ensemble_models.py OUT " + " ".join(
            f"MEMBER{k + 1}" for k in range(len(args.members))) + f" --version {args.version}",
        "members": [member_command(e.get("training", {})) for e in entries],
        "note": f"the mean of {len(members)} models' outputs, each trained as its command says",
    }
    model = MeanOf(members).eval()
    with torch.no_grad():
        # The ensemble must give the mean of its members on the members' input size.
        w, h = card["patch_size"][:2]
        x = torch.randn(2, int(card.get("input_channels", 1)), h, w)
        want = sum(m(x) for m in members) / len(members)
        got = torch.jit.script(model)(x)
        if not torch.allclose(got, want, atol=1e-5):
            raise SystemExit("the scripted ensemble does not reproduce the members' mean")
    save_with_card(torch.jit.script(model), card, args.out)
    print(f"exported {args.out}: mean of {len(members)} members", flush=True)


if __name__ == "__main__":
    main()
