"""Saving TorchScript models with their card inside (extra file model_card.json), the
contract the C++ loader (spine::Model) checks."""
import json

import torch

REQUIRED = ("name", "version", "task", "modality", "dimension", "patch_size", "classes")


def save_with_card(scripted: torch.jit.ScriptModule, card: dict, path: str) -> None:
    missing = [k for k in REQUIRED if k not in card]
    if missing:
        raise ValueError(f"model card lacks {missing}")
    torch.jit.save(scripted, path, _extra_files={"model_card.json": json.dumps(card, indent=2)})


def read_card(path: str) -> dict:
    extra = {"model_card.json": ""}
    torch.jit.load(path, _extra_files=extra)
    return json.loads(extra["model_card.json"])


def export_scripted(model: torch.nn.Module, card: dict, path: str) -> None:
    """Scripts the model in eval mode and saves it with its card."""
    model.eval()
    save_with_card(torch.jit.script(model), card, path)
    print(f"exported {path}", flush=True)


def replace_card_fields(path: str, fields: dict) -> None:
    """Rewrites fields of the card inside an exported model (measured figures after a
    re-measurement, known limitations); the weights stay exactly as they are (checked)."""
    card = read_card(path)
    model = torch.jit.load(path)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    card.update(fields)
    save_with_card(model, card, path)
    after = torch.jit.load(path).state_dict()
    if before.keys() != after.keys() or not all(torch.equal(before[k], after[k]) for k in before):
        raise RuntimeError(f"{path}: weights changed while rewriting the card")
