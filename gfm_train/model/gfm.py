"""GFM: a shared encoder, the Glance and Focus decoders, and Collaborative Matting (+ RIM)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .decoders import SPECS, FocusDecoder, GlanceDecoder
from .encoders import BACKBONES, build_encoder
from .rim import RIM
from .rosta import GLANCE_CLASSES, ROSTAS, collaborative_matting

ALL_ROSTAS = (*ROSTAS, "RIM")
_RIM_HEADS = {"_tt": 3, "_ft": 2, "_bt": 2}


class GFM(nn.Module):
    """Glance and Focus Matting network.

    ``forward`` returns ``{"glance": logits, "focus": N x 1 x H x W, "alpha": N x 1 x H x W}``
    (Focus and alpha in [0, 1]). For ``rosta="RIM"`` "glance" and "focus" are dicts
    keyed by "TT", "FT", "BT", and "heads_alpha" holds the three CM results before fusion.
    Build with :func:`build_gfm`.
    """

    def __init__(self, backbone: str, rosta: str, pretrained: str | Path | None = None):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r} (choose from {', '.join(BACKBONES)})")
        if rosta not in ALL_ROSTAS:
            raise ValueError(f"unknown RoSTa {rosta!r} (choose from {', '.join(ALL_ROSTAS)})")
        self.backbone = backbone
        self.rosta = rosta
        self.encoder = build_encoder(backbone, pretrained)
        spec = SPECS[backbone]
        deep = self.encoder.channels[-1]
        if rosta == "RIM":
            self.glance = GlanceDecoder(spec, deep, _RIM_HEADS)
            self.focus = FocusDecoder(spec, deep, list(_RIM_HEADS))
            self.rim = RIM()
        else:
            self.glance = GlanceDecoder(spec, deep, {"": GLANCE_CLASSES[rosta]})
            self.focus = FocusDecoder(spec, deep, [""])

    # -- the parts --------------------------------------------------------------
    @staticmethod
    def _check_input(x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"GFM takes N x 3 x H x W images, got shape {tuple(x.shape)}")
        if x.shape[2] % 32 or x.shape[3] % 32:
            raise ValueError(f"GFM needs H and W that are multiples of 32, got {x.shape[2]}x{x.shape[3]}")

    def _focus_out(self, logits):
        if isinstance(logits, dict):
            return {k: torch.sigmoid(v) for k, v in logits.items()}
        return torch.sigmoid(logits)

    def forward_glance(self, x: torch.Tensor):
        """Encoder + Glance decoder(s) only: class logits (a dict for RIM)."""
        self._check_input(x)
        return self.glance(self.encoder(x))

    def forward_focus(self, x: torch.Tensor):
        """Encoder + Focus decoder(s) only: Focus output in [0, 1] (a dict for RIM)."""
        self._check_input(x)
        return self._focus_out(self.focus(self.encoder(x)))

    def merge(self, glance, focus) -> torch.Tensor:
        """Collaborative Matting (and RIM fusion) of same-size Glance and Focus outputs.

        Runs on the inputs' device (any device, CPU included): RIM computes its few
        per-image coefficients where the model's weights are and applies them there.
        For a full-size merge with little memory see :func:`gfm_train.infer.merge_full_size`.
        """
        return self._merge(glance, focus)[0]

    def _merge(self, glance, focus):
        if self.rosta != "RIM":
            return collaborative_matting(self.rosta, glance, focus), None
        heads = {r: collaborative_matting(r, glance[r], focus[r]) for r in ROSTAS}
        # RIM computes its few coefficients where its weights are and fuses on the inputs' device
        return self.rim(torch.cat([heads[r] for r in ROSTAS], 1)), heads

    def forward(self, x: torch.Tensor) -> dict:
        self._check_input(x)
        feats = self.encoder(x)
        glance = self.glance(feats)
        focus = self._focus_out(self.focus(feats))
        alpha, heads = self._merge(glance, focus)
        out = {"glance": glance, "focus": focus, "alpha": alpha}
        if heads is not None:
            out["heads_alpha"] = heads
        return out


def build_gfm(backbone: str, rosta: str, pretrained: str | Path | None = None) -> GFM:
    """Build a GFM network.

    Parameters
    ----------
    backbone : ``r34``, ``r34_2b``, ``d121``, ``r101`` (the paper's) or ``tiny`` (a
        small ResNet-like encoder for tests and CPU demos; not from the paper).
    rosta : ``TT``, ``FT``, ``BT`` or ``RIM``.
    pretrained : None (random init), ``"torchvision"`` (ImageNet weights from the
        local torch cache; fails at once with a clear message when absent, never
        downloads) or the path of a torchvision-format encoder weights file.

    Returns
    -------
    GFM

    Example:
        >>> net = build_gfm("tiny", "TT")
        >>> out = net(torch.zeros(1, 3, 64, 64))
        >>> tuple(out["alpha"].shape)
        (1, 1, 64, 64)
    """
    return GFM(backbone, rosta, pretrained)
