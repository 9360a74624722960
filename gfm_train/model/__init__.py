"""The GFM network: encoders, Glance/Focus decoders, RoSTa, RIM and checkpoints.

Importable without any data or training code::

    from gfm_train.model import build_gfm, prepare_input, load_checkpoint
"""
from __future__ import annotations

import torch

from .checkpoints import CONVENTIONS as INPUT_CONVENTIONS
from .checkpoints import load_checkpoint, save_checkpoint
from .encoders import BACKBONES, PretrainedWeightsError
from .gfm import ALL_ROSTAS, GFM, build_gfm
from .rosta import collaborative_matting

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def prepare_input(img: torch.Tensor, convention: str) -> torch.Tensor:
    """Turn 0-255 RGB images into the network's input.

    Parameters
    ----------
    img : ... x 3 x H x W tensor, uint8 or float on the 0-255 scale.
    convention : ``"raw255"`` (the authors' checkpoints: the 0-255 values as float,
        no normalisation) or ``"imagenet"`` (scaled to 0-1 and normalised with the
        ImageNet mean and std, what torchvision's weights expect).

    Returns
    -------
    float32 tensor of the same shape, on the same device.
    """
    if img.dim() < 3 or img.shape[-3] != 3:
        raise ValueError(f"expected ... x 3 x H x W RGB, got shape {tuple(img.shape)}")
    x = img.float()
    if convention == "raw255":
        return x
    if convention == "imagenet":
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(3, 1, 1)
        return (x / 255.0 - mean) / std
    raise ValueError(f"unknown input convention {convention!r} (choose from {', '.join(INPUT_CONVENTIONS)})")


__all__ = [
    "ALL_ROSTAS", "BACKBONES", "GFM", "INPUT_CONVENTIONS", "PretrainedWeightsError", "build_gfm",
    "collaborative_matting", "load_checkpoint", "prepare_input", "save_checkpoint",
]
