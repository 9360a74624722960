"""The two decoders of GFM: Glance (semantic, pyramid pooling) and Focus (detail, bridge + skips).

Module names follow the authors' released checkpoints (``psp_module``, ``psp4``,
``decoder4_g``, ``bridge_block``, ``decoder4_f``, ...), so their weights load by
name under the prefixes ``glance.`` and ``focus.`` (see ``checkpoints.py``).
Each decoder's layout is a table per backbone (:data:`SPECS`): stage names and
channel widths are data, the forward pass is written once.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Stage:
    """One decoder stage: three 3x3 convs (+BN+ReLU), optionally 2x bilinear upsampling.

    ``branch`` (glance only) is the pyramid-pooling side branch concatenated before the
    stage: (name, channels, upsampling factor). ``skip`` (focus only) is the encoder
    level concatenated after the previous stage's output.
    """

    name: str
    cin: int
    mid1: int
    mid2: int
    cout: int
    upsample: bool = True
    branch: tuple[str, int, int] | None = None
    skip: int | None = None


@dataclass(frozen=True)
class Head:
    """The last stage, producing the decoder's output channels.

    ``plain`` heads are a single 3x3 conv (r34_2b); the others are a stage of three
    convs whose last has no BN/ReLU, then 2x upsampling.
    """

    cin: int
    mid: int
    plain: bool = False
    branch: tuple[str, int, int] | None = None
    skip: int | None = None


@dataclass(frozen=True)
class DecoderSpec:
    psp_channels: int
    glance: tuple[Stage, ...]
    glance_head: Head
    focus: tuple[Stage, ...]
    focus_head: Head


def _r34_like(w: int = 1, focus_skips: tuple[int, int, int, int] | None = None) -> DecoderSpec:
    """The r34 layout with every width divided by ``w`` (w=8 gives the tiny model)."""
    c = lambda n: n // w  # noqa: E731 - a width helper
    skips = focus_skips or (c(256), c(128), c(64), c(64))
    return DecoderSpec(
        psp_channels=c(512),
        glance=(
            Stage("decoder4_g", c(1024), c(512), c(512), c(256)),
            Stage("decoder3_g", c(512), c(256), c(256), c(128), branch=("psp4", c(256), 2)),
            Stage("decoder2_g", c(256), c(128), c(128), c(64), branch=("psp3", c(128), 4)),
            Stage("decoder1_g", c(128), c(64), c(64), c(64), branch=("psp2", c(64), 8)),
        ),
        glance_head=Head(c(128), c(64), branch=("psp1", c(64), 16)),
        focus=(
            Stage("decoder4_f", c(1024), c(512), c(512), c(256), skip=4),
            Stage("decoder3_f", c(256) + skips[0], c(256), c(256), c(128), skip=3),
            Stage("decoder2_f", c(128) + skips[1], c(128), c(128), c(64), skip=2),
            Stage("decoder1_f", c(64) + skips[2], c(64), c(64), c(64), skip=1),
        ),
        focus_head=Head(c(64) + skips[3], c(64), skip=0),
    )


def _r34_2b() -> DecoderSpec:
    return DecoderSpec(
        psp_channels=512,
        glance=(
            Stage("decoder6_g", 1024, 512, 512, 512),
            Stage("decoder5_g", 1024, 512, 512, 512, branch=("psp6", 512, 2)),
            Stage("decoder4_g", 1024, 512, 512, 256, branch=("psp5", 512, 4)),
            Stage("decoder3_g", 512, 256, 256, 128, branch=("psp4", 256, 8)),
            Stage("decoder2_g", 256, 128, 128, 64, branch=("psp3", 128, 16)),
            Stage("decoder1_g", 128, 64, 64, 64, upsample=False, branch=("psp2", 64, 32)),
        ),
        glance_head=Head(64, 64, plain=True),
        focus=(
            Stage("decoder6_f", 1024, 512, 512, 512, skip=6),
            Stage("decoder5_f", 1024, 512, 512, 512, skip=5),
            Stage("decoder4_f", 1024, 512, 512, 256, skip=4),
            Stage("decoder3_f", 512, 256, 256, 128, skip=3),
            Stage("decoder2_f", 256, 128, 128, 64, skip=2),
            Stage("decoder1_f", 128, 64, 64, 64, upsample=False, skip=1),
        ),
        focus_head=Head(64, 64, plain=True),
    )


def _r101() -> DecoderSpec:
    return DecoderSpec(
        psp_channels=2048,
        glance=(
            Stage("decoder4_g", 4096, 2048, 1024, 1024),
            Stage("decoder3_g", 2048, 1024, 512, 512, branch=("psp4", 1024, 2)),
            Stage("decoder2_g", 1024, 512, 256, 256, branch=("psp3", 512, 4)),
            Stage("decoder1_g", 512, 256, 128, 64, branch=("psp2", 256, 8)),
        ),
        glance_head=Head(128, 64, branch=("psp1", 64, 16)),
        focus=(
            Stage("decoder4_f", 4096, 2048, 1024, 1024, skip=4),
            Stage("decoder3_f", 2048, 1024, 512, 512, skip=3),
            Stage("decoder2_f", 1024, 512, 256, 256, skip=2),
            Stage("decoder1_f", 512, 256, 128, 64, skip=1),
        ),
        focus_head=Head(128, 64, skip=0),
    )


SPECS = {
    "r34": _r34_like(),
    "r34_2b": _r34_2b(),
    "r101": _r101(),
    # d121's skips are wider than r34's: e3 512, e2 256, e1 128, e0 64
    "d121": _r34_like(focus_skips=(512, 256, 128, 64)),
    "tiny": _r34_like(8),
}


def conv_block(cin: int, mid1: int, mid2: int, cout: int, last_bnrelu: bool, upsample: bool) -> nn.Sequential:
    """Three 3x3 convs with BN+ReLU (none after the last when ``last_bnrelu`` is False), then 2x upsampling."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, mid1, 3, padding=1), nn.BatchNorm2d(mid1), nn.ReLU(inplace=True),
        nn.Conv2d(mid1, mid2, 3, padding=1), nn.BatchNorm2d(mid2), nn.ReLU(inplace=True),
        nn.Conv2d(mid2, cout, 3, padding=1),
    ]
    if last_bnrelu:
        layers += [nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    if upsample:
        layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
    return nn.Sequential(*layers)


def _head(head: Head, cout: int) -> nn.Sequential:
    if head.plain:
        return nn.Sequential(nn.Conv2d(head.cin, cout, 3, padding=1))
    return conv_block(head.cin, head.mid, head.mid, cout, last_bnrelu=False, upsample=True)


class PyramidPooling(nn.Module):
    """Pyramid pooling: average-pool to bins x bins, 1x1 conv, upsample, concat with the input, 1x1 conv."""

    def __init__(self, channels: int, out_channels: int, bins: tuple[int, ...] = (1, 3, 5)):
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), nn.Conv2d(channels, channels, 1, bias=False)) for b in bins
        )
        self.bottleneck = nn.Conv2d(channels * (len(bins) + 1), out_channels, 1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        priors = [F.interpolate(s(x), size=size, mode="bilinear", align_corners=True) for s in self.stages]
        return self.relu(self.bottleneck(torch.cat([*priors, x], 1)))


def _branch(cin: int, cout: int, scale: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Upsample(scale_factor=scale, mode="bilinear", align_corners=False),
    )


class GlanceDecoder(nn.Module):
    """Semantic decoder: pyramid pooling on the deepest level, fed again to every stage.

    ``heads`` maps a name suffix to the number of classes: ``{"": 3}`` for TT,
    ``{"": 2}`` for FT/BT, ``{"_tt": 3, "_ft": 2, "_bt": 2}`` for RIM.
    """

    def __init__(self, spec: DecoderSpec, deep_channels: int, heads: dict[str, int]):
        super().__init__()
        self.spec = spec
        self.psp_module = PyramidPooling(deep_channels, spec.psp_channels, (1, 3, 5))
        branches = [s.branch for s in spec.glance] + [spec.glance_head.branch]
        for b in branches:
            if b is not None:
                self.add_module(b[0], _branch(spec.psp_channels, b[1], b[2]))
        for s in spec.glance:
            self.add_module(s.name, conv_block(s.cin, s.mid1, s.mid2, s.cout, True, s.upsample))
        self.heads = dict(heads)
        for suffix, classes in self.heads.items():
            self.add_module(f"decoder0_g{suffix}", _head(spec.glance_head, classes))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor | dict[str, torch.Tensor]:
        psp = self.psp_module(feats[-1])
        x = feats[-1]
        for i, s in enumerate(self.spec.glance):
            side = psp if i == 0 else getattr(self, s.branch[0])(psp)
            x = getattr(self, s.name)(torch.cat((side, x), 1))
        head = self.spec.glance_head
        if head.branch is not None:
            x = torch.cat((getattr(self, head.branch[0])(psp), x), 1)
        out = {suffix: getattr(self, f"decoder0_g{suffix}")(x) for suffix in self.heads}
        return out[""] if "" in out else {k[1:].upper(): v for k, v in out.items()}


class FocusDecoder(nn.Module):
    """Detail decoder: a bridge block (dilated convs) on the deepest level, then U-Net stages with encoder skips.

    ``heads`` maps a name suffix to an output (one channel each): ``[""]`` or
    ``["_tt", "_ft", "_bt"]`` for RIM. Outputs are logits; the model applies the sigmoid.
    """

    def __init__(self, spec: DecoderSpec, deep_channels: int, heads: list[str]):
        super().__init__()
        self.spec = spec
        c = deep_channels
        self.bridge_block = nn.Sequential(
            nn.Conv2d(c, c, 3, dilation=2, padding=2), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, dilation=2, padding=2), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, dilation=2, padding=2), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
        )
        for s in spec.focus:
            self.add_module(s.name, conv_block(s.cin, s.mid1, s.mid2, s.cout, True, s.upsample))
        self.heads = list(heads)
        for suffix in self.heads:
            self.add_module(f"decoder0_f{suffix}", _head(spec.focus_head, 1))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor | dict[str, torch.Tensor]:
        x = self.bridge_block(feats[-1])
        for s in self.spec.focus:
            x = getattr(self, s.name)(torch.cat((x, feats[s.skip]), 1))
        head = self.spec.focus_head
        if head.skip is not None:
            x = torch.cat((x, feats[head.skip]), 1)
        out = {suffix: getattr(self, f"decoder0_f{suffix}")(x) for suffix in self.heads}
        return out[""] if "" in out else {k[1:].upper(): v for k, v in out.items()}
