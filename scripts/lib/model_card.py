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
    # A quantized model keeps its weights in packed parameters that state_dict() does not
    # list, so the outputs on a fixed input are compared too.
    probe = sample_input(card)
    with torch.no_grad():
        out_before = model.eval()(probe) if probe is not None else None
    card.update(fields)
    save_with_card(model, card, path)
    reloaded = torch.jit.load(path).eval()
    after = reloaded.state_dict()
    if before.keys() != after.keys() or not all(torch.equal(before[k], after[k]) for k in before):
        raise RuntimeError(f"{path}: weights changed while rewriting the card")
    if probe is not None:
        with torch.no_grad():
            if not torch.equal(out_before, reloaded(probe)):
                raise RuntimeError(f"{path}: outputs changed while rewriting the card")


def sample_input(card: dict):
    """A fixed input of the size the card gives (2D models), or None."""
    size = card.get("patch_size", [])
    if card.get("dimension") != 2 or len(size) != 2:
        return None
    generator = torch.Generator().manual_seed(0)
    return torch.randn(1, int(card.get("input_channels", 1)), size[1], size[0], generator=generator)
