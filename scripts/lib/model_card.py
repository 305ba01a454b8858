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
