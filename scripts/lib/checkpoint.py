"""Resumable training state: model, optimiser, finished epochs and per-epoch history."""
import os

import torch


def resume(model, opt, path):
    """Loads `path` into model and optimiser when it exists; returns the state dict."""
    if not os.path.exists(path):
        return {"epoch": 0, "history": []}
    state = torch.load(path)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    print(f"resumed at epoch {state['epoch']}", flush=True)
    return state


def save(path, model, opt, epoch, history):
    """Writes atomically, so a stop during the write leaves the previous checkpoint."""
    state = {"epoch": epoch, "model": model.state_dict(), "opt": opt.state_dict(), "history": history}
    torch.save(state, path + ".tmp")
    os.replace(path + ".tmp", path)
    return state
