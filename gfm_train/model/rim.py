"""RIM: the RoSTa integration module, fusing the TT, FT and BT results of one model.

The three CM outputs are concatenated, mapped by a 1x1 conv to 16 channels,
re-weighted by squeeze-and-excitation (reduction 4) and mapped to one channel.
The result is clamped to [0, 1] (the published module leaves it unbounded).
Names (``rim.0``, ``rim.1.fc.0``, ``rim.1.fc.2``, ``rim.2``) follow the authors'
released ``gfm_d121_rim.pth``.

Nothing non-linear lies between the two 1x1 convs except the excitation gate,
which depends only on the image's global average. So, given the per-channel sums
of the three inputs, the whole module is one affine map of the three alphas per
pixel (:meth:`RIM.coefficients`, then :meth:`RIM.apply`). ``forward`` computes it
that way: no 16-channel tensor at full size, and a full-size fusion can run in row
chunks (two passes: the sums, then the map) with exactly the result of one pass,
because the sums are per-row float64 sums added up in row order
(:func:`row_sums`) whatever the chunking.
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


def row_sums(x: torch.Tensor) -> torch.Tensor:
    """N x C x H x W -> N x C x H float64 sums of every row (the first half of a global average)."""
    return x.double().sum(dim=3)


class RIM(nn.Module):
    """Fuses the three RoSTa alphas (N x 3 x H x W, order TT, FT, BT) into one (N x 1 x H x W)."""

    def __init__(self, hidden: int = 16, reduction: int = 4):
        super().__init__()
        self.rim = nn.Sequential(nn.Conv2d(3, hidden, 1), SqueezeExcitation(hidden, reduction), nn.Conv2d(hidden, 1, 1))

    def coefficients(self, sums: torch.Tensor, count: int) -> torch.Tensor:
        """The per-image affine map ``(a0, a1, a2, a3)`` (N x 4) of the fusion.

        Parameters
        ----------
        sums : N x 3 per-channel sums of the three alphas over the image (float64,
            e.g. ``row_sums(alphas).sum(2)``).
        count : the number of pixels they were summed over.

        Returns
        -------
        N x 4 tensor on the module's device: fused = a0 + a1 TT + a2 FT + a3 BT (before clamping).
        """
        conv1, se, conv2 = self.rim
        w1 = conv1.weight[:, :, 0, 0]  # hidden x 3
        # a few dozen numbers: always in float32, even under autocast
        with torch.autocast(w1.device.type, enabled=False):
            # the mean of the hidden layer is the hidden layer of the mean (a 1x1 conv is affine)
            mean = (sums.to(w1.device) / count).to(w1.dtype)
            gate = se.fc(mean @ w1.t() + conv1.bias)  # N x hidden
            v = gate * conv2.weight[0, :, 0, 0]  # the second conv, scaled by the gate
            return torch.cat([(v @ conv1.bias + conv2.bias)[:, None], v @ w1], 1)

    @staticmethod
    def apply(alphas: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
        """Pointwise fusion of N x 3 x h x W alphas (any rows of the image) with :meth:`coefficients`."""
        a = coefficients.to(alphas.device)[:, :, None, None]
        out = a[:, 0:1] + a[:, 1:2] * alphas[:, 0:1] + a[:, 2:3] * alphas[:, 1:2] + a[:, 3:4] * alphas[:, 2:3]
        return out.clamp(0.0, 1.0)

    def forward(self, alphas: torch.Tensor) -> torch.Tensor:
        sums = row_sums(alphas).sum(dim=2)
        return self.apply(alphas, self.coefficients(sums, alphas.shape[2] * alphas.shape[3]))
