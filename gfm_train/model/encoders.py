"""Encoders: the shared feature extractor of GFM, five (or seven) levels e0..e4 (..e6).

Each encoder is a module with attributes ``encoder0``, ``encoder1``, ... (the names
the authors' released checkpoints use, under the prefix ``encoder.``) and a
``channels`` tuple giving the width of every level. Level ``k`` of the five-level
encoders has stride ``2**(k+1)``; ``r34_2b`` keeps full resolution at e0 and e1
and reaches stride 32 at e6.

``tiny`` is not from the paper: a small ResNet-like encoder with the same
five-level interface (widths 8..64), for tests and CPU demos.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn
from torchvision import models
from torchvision.models.resnet import BasicBlock

BACKBONES = ("r34", "r34_2b", "d121", "r101", "tiny")

# torchvision constructor and weights enum of each ImageNet backbone
_TORCHVISION = {
    "r34": ("resnet34", "ResNet34_Weights"),
    "r34_2b": ("resnet34", "ResNet34_Weights"),
    "r101": ("resnet101", "ResNet101_Weights"),
    "d121": ("densenet121", "DenseNet121_Weights"),
}


class PretrainedWeightsError(RuntimeError):
    """ImageNet weights were asked for but cannot be had (offline, missing file)."""


def _basic_stage(width: int, blocks: int = 3) -> nn.Sequential:
    """A 2x2 max-pool then ``blocks`` basic residual blocks (the extra stages of r34_2b)."""
    return nn.Sequential(nn.MaxPool2d(2, 2, ceil_mode=True), *[BasicBlock(width, width) for _ in range(blocks)])


def torchvision_weights_file(backbone: str) -> Path:
    """Where torchvision keeps the ImageNet weights of ``backbone`` once downloaded."""
    name, enum_name = _TORCHVISION[backbone]
    weights = getattr(models, enum_name).IMAGENET1K_V1
    filename = Path(weights.url).name
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _imagenet_state(backbone: str, pretrained: str | Path) -> dict:
    """The torchvision-format state dict for ``pretrained`` ("torchvision" or a file path).

    Never downloads: "torchvision" needs the file already in torch's hub cache, so an
    offline machine fails at once with a message saying where to put it.
    """
    if backbone not in _TORCHVISION:
        raise PretrainedWeightsError(f"backbone {backbone!r} has no ImageNet weights (use pretrained=None)")
    if str(pretrained) == "torchvision":
        path = torchvision_weights_file(backbone)
        if not path.is_file():
            url = getattr(models, _TORCHVISION[backbone][1]).IMAGENET1K_V1.url
            raise PretrainedWeightsError(
                f"ImageNet weights for {backbone} are not in the torch cache ({path}); this machine will not "
                f"download them. Fetch {url} elsewhere and copy it to that path, or pass the file path instead."
            )
    else:
        path = Path(pretrained)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: pretrained weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not a weights file we accept"
        raise PretrainedWeightsError(f"{path}: not a readable weights-only file ({type(e).__name__}: {e})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise PretrainedWeightsError(f"{path}: expected a state dict of {backbone} weights, got {type(state).__name__}")
    if backbone == "d121":
        # torchvision's published DenseNet files use the old "norm.1" key style
        pattern = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")
        state = {(pattern.sub(r"\1\2", k) if pattern.match(k) else k): v for k, v in state.items()}
    return state


def _torchvision_model(backbone: str, pretrained: str | Path | None) -> nn.Module:
    name = _TORCHVISION[backbone][0]
    net = getattr(models, name)(weights=None)
    if pretrained is not None:
        state = _imagenet_state(backbone, pretrained)
        missing, unexpected = net.load_state_dict(state, strict=False)
        if len(missing) > 0 and len(missing) >= len(net.state_dict()) // 2:
            raise PretrainedWeightsError(f"{pretrained}: not {name} ImageNet weights ({len(missing)} keys missing)")
    return net


class Encoder(nn.Module):
    """Holds ``encoder0..encoderK`` and runs them in order, returning every level."""

    def __init__(self, stages: list[nn.Module], channels: tuple[int, ...]):
        super().__init__()
        for i, stage in enumerate(stages):
            self.add_module(f"encoder{i}", stage)
        self.channels = tuple(channels)
        self.levels = len(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i in range(self.levels):
            x = getattr(self, f"encoder{i}")(x)
            feats.append(x)
        return feats


def _resnet_encoder(net: nn.Module, channels: tuple[int, ...]) -> Encoder:
    return Encoder(
        [
            nn.Sequential(net.conv1, net.bn1, net.relu),
            nn.Sequential(net.maxpool, net.layer1),
            net.layer2,
            net.layer3,
            net.layer4,
        ],
        channels,
    )


def _r34_2b_encoder(net: nn.Module) -> Encoder:
    # stride-1 3x3 stem without max-pool keeps e0/e1 at full resolution; two extra
    # 512-wide stages bring the deepest level back to stride 32
    stem = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(inplace=True))
    return Encoder(
        [stem, net.layer1, net.layer2, net.layer3, net.layer4, _basic_stage(512), _basic_stage(512)],
        (64, 64, 128, 256, 512, 512, 512),
    )


def _d121_encoder(net: nn.Module) -> Encoder:
    f = net.features
    # no pool0: denseblock1 runs at stride 2; the extra conv + max-pool makes e4 512 wide at stride 32
    return Encoder(
        [
            nn.Sequential(f.conv0, f.norm0, f.relu0),
            nn.Sequential(f.denseblock1, f.transition1),
            nn.Sequential(f.denseblock2, f.transition2),
            nn.Sequential(f.denseblock3, f.transition3),
            nn.Sequential(
                f.denseblock4,
                nn.Conv2d(1024, 512, 3, padding=1),
                nn.BatchNorm2d(512),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2, 2, ceil_mode=True),
            ),
        ],
        (64, 128, 256, 512, 512),
    )


def _tiny_encoder() -> Encoder:
    def down(cin: int, cout: int) -> nn.Module:
        proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2, bias=False), nn.BatchNorm2d(cout))
        return BasicBlock(cin, cout, stride=2, downsample=proj)

    return Encoder(
        [
            nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True)),
            nn.Sequential(nn.MaxPool2d(3, stride=2, padding=1), BasicBlock(8, 8)),
            down(8, 16),
            down(16, 32),
            down(32, 64),
        ],
        (8, 8, 16, 32, 64),
    )


def build_encoder(backbone: str, pretrained: str | Path | None = None) -> Encoder:
    """The encoder of ``backbone``, with ImageNet weights when ``pretrained`` is given.

    Parameters
    ----------
    backbone : one of ``r34``, ``r34_2b``, ``d121``, ``r101``, ``tiny``.
    pretrained : None (random init), ``"torchvision"`` (torchvision's ImageNet weights,
        only from the local torch cache: never downloads) or the path of a
        torchvision-format weights file.

    Returns
    -------
    Encoder whose forward returns the list of feature levels.
    """
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r} (choose from {', '.join(BACKBONES)})")
    if backbone == "tiny":
        if pretrained is not None:
            raise PretrainedWeightsError("the tiny backbone has no ImageNet weights (use pretrained=None)")
        return _tiny_encoder()
    net = _torchvision_model(backbone, pretrained)
    if backbone == "r34":
        return _resnet_encoder(net, (64, 64, 128, 256, 512))
    if backbone == "r101":
        return _resnet_encoder(net, (64, 256, 512, 1024, 2048))
    if backbone == "r34_2b":
        return _r34_2b_encoder(net)
    return _d121_encoder(net)
