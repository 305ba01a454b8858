"""Building blocks shared by the project's networks."""
import torch.nn as nn


def block(cin, cout):
    """Two 3x3 convolutions, each with batch norm and ReLU (a U-Net stage)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))
