"""The two landmark stages' exported files as Python networks, for the scripts that drive
them the way spine-cobb does (scripts/bench_cobb.py, scripts/quantize_cobb.py)."""
import torch
from ensemble_models import MeanOf  # scripts/ is on the path, as for lib.layers

from . import fine
from .model import N_VERT

SWAP = fine.MIRROR  # corner order after a horizontal mirror


def eager(path, make):
    """The exported model at `path` as an eager network (make() builds one member's
    network from its weights): a single model, or the mean of an ensemble's members."""
    weights = torch.jit.load(path).state_dict()
    groups = {}  # member index ("" for a single model) -> its weights
    for k, v in weights.items():
        member, rest = k.split(".", 2)[1:] if k.startswith("members.") else ("", k)
        groups.setdefault(member, {})[rest] = v
    nets = []
    for w in groups.values():
        net = make(w)
        net.load_state_dict(w)
        nets.append(net.eval())
    return nets[0] if len(nets) == 1 else MeanOf(nets).eval()


def sides(model, split):
    """The networks that read the image and its mirror: with split (spine-cobb's
    --ensemble-reading split), an ensemble of an even number of networks gives the first
    of every two to the image and the second to the mirror; otherwise the model reads both
    (spine-cobb lets an odd network out read both sides at half weight: not mirrored here,
    the shipped ensembles are pairs)."""
    if split and isinstance(model, MeanOf) and len(model.members) % 2 == 0:
        return MeanOf(list(model.members)[0::2]).eval(), MeanOf(list(model.members)[1::2]).eval()
    return model, model


def flip_average(model, x, split=False):
    """The first stage's output averaged with that of the mirrored image, mapped back:
    heatmaps mirrored; corner offsets mirrored, left and right corners swapped. split:
    see sides()."""
    image_model, mirror_model = sides(model, split)
    o, of = image_model(x), mirror_model(x.flip(-1)).flip(-1)
    offs = of[:, N_VERT:].view(1, 4, 2, *of.shape[-2:])[:, SWAP].clone()
    offs[:, :, 0] = -offs[:, :, 0]
    return torch.cat([(o[:, :N_VERT] + of[:, :N_VERT]) / 2, (o[:, N_VERT:] + offs.view(1, 8, *of.shape[-2:])) / 2], 1)
