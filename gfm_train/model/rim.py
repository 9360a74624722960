"""RIM: the RoSTa integration module, fusing the TT, FT and BT results of one model.

The three CM outputs are concatenated, mapped by a 1x1 conv to 16 channels,
re-weighted by squeeze-and-excitation (reduction 4) and mapped to one channel.
The result is clamped to [0, 1] (the published module leaves it unbounded).
Names (``rim.0``, ``rim.1.fc.0``, ``rim.1.fc.2``, ``rim.2``) follow the authors'
released ``gfm_d121_rim.pth``.
"""
from __future__ import annotations

import torch
from torch import nn


class SqueezeExcitation(nn.Module):
    """Channel attention: global average pool, two bias-free linear layers, sigmoid gate."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(channels // reduction, channels, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.fc(x.mean(dim=(2, 3)))
        return x * weights[:, :, None, None]


class RIM(nn.Module):
    """Fuses the three RoSTa alphas (N x 3 x H x W, order TT, FT, BT) into one (N x 1 x H x W)."""

    def __init__(self, hidden: int = 16, reduction: int = 4):
        super().__init__()
        self.rim = nn.Sequential(nn.Conv2d(3, hidden, 1), SqueezeExcitation(hidden, reduction), nn.Conv2d(hidden, 1, 1))

    def forward(self, alphas: torch.Tensor) -> torch.Tensor:
        return self.rim(alphas).clamp(0.0, 1.0)
