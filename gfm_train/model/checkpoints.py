"""GFM checkpoints: our own format, and the authors' released raw state dicts.

Our format (docs/formats.md, "GFM checkpoints") is a plain dict saved with
``torch.save`` and read back with ``torch.load(weights_only=True)``: no pickled
objects, only tensors, numbers, strings, lists and dicts.

The authors' files (``gfm_r34_tt.pth``, ``gfm_r34_ft.pth``, ``gfm_r34_bt.pth``,
``gfm_d121_tt.pth``, ``gfm_r34_2b_tt.pth``, ``gfm_d121_rim.pth``) are raw state
dicts of their network, whose modules sit at the top level. Conversion
(:func:`convert_authors_state_dict`) is a renaming only:

- ``encoder0..6.*`` -> ``encoder.encoder0..6.*``
- ``psp_module.*``, ``psp1..6.*``, ``decoder*_g*`` -> ``glance.*``
- ``bridge_block.*``, ``decoder*_f*`` -> ``focus.*``
- ``rim.*`` -> ``rim.rim.*``
- dropped: ``resnet.*`` / ``densenet.*`` (the torchvision model the encoder was cut
  from: the same tensors again, plus its unused classifier), ``psp1.*`` of
  ``r34_2b`` (built but never used by their forward pass), a ``module.`` prefix.

The backbone is read from the keys and shapes; the RoSTa from the Glance head
(3 classes: TT; RIM heads: RIM). FT and BT heads have the same shape, so for
2-class files the RoSTa comes from the file name (``_ft`` / ``_bt``) or the
``rosta`` argument. Their network takes raw 0-255 RGB, recorded as
``input_convention = "raw255"``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rssn.io import atomic_path

from .gfm import GFM, build_gfm

FORMAT = "rssn-gfm"
VERSION = 1
CONVENTIONS = ("raw255", "imagenet")


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model.module, GFM) else model


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    input_convention: str,
    optimizer: torch.optim.Optimizer | None = None,
    step: int = 0,
    epoch: int = 0,
    config: dict | None = None,
    rng: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """Write a checkpoint atomically (temporary name in the same folder, then rename).

    Parameters
    ----------
    path : destination file.
    model : the GFM (or a DDP wrapper of one).
    input_convention : ``"raw255"`` or ``"imagenet"``: how images must be fed.
    optimizer : its state is stored for ``--resume`` when given.
    step, epoch : training position.
    config : training parameters (JSON-like values only).
    rng : random-generator state (tensors, numbers, lists only).
    extra : further JSON-like entries stored at the top level (e.g. the AMP scaler state).

    Returns
    -------
    The path written.
    """
    if input_convention not in CONVENTIONS:
        raise ValueError(f"unknown input convention {input_convention!r} (choose from {', '.join(CONVENTIONS)})")
    net = _unwrap(model)
    if not isinstance(net, GFM):
        raise TypeError(f"expected a GFM model, got {type(net).__name__}")
    ckpt: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "model": {"backbone": net.backbone, "rosta": net.rosta},
        "input_convention": input_convention,
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "step": int(step),
        "epoch": int(epoch),
        "config": dict(config or {}),
    }
    if optimizer is not None:
        ckpt["optimizer"] = optimizer.state_dict()
    if rng is not None:
        ckpt["rng"] = rng
    if extra:
        ckpt.update(extra)
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    return path


def _infer_backbone(keys: set[str], state: dict[str, torch.Tensor]) -> str:
    if any(k.startswith("encoder6.") for k in keys):
        return "r34_2b"
    if any("denselayer" in k for k in keys):
        return "d121"
    bottleneck = state.get("psp_module.bottleneck.weight")
    if bottleneck is not None and bottleneck.shape[0] == 2048:
        return "r101"
    if "encoder2.0.conv1.weight" in keys:
        return "r34"
    raise ValueError("cannot tell the backbone from the checkpoint's parameter names")


def _infer_rosta(keys: set[str], state: dict[str, torch.Tensor], path: Path, rosta: str | None) -> str:
    if any(k.startswith("decoder0_g_tt.") for k in keys):
        return "RIM"
    heads = sorted(k for k in keys if k.startswith("decoder0_g.") and k.endswith(".weight") and state[k].dim() == 4)
    if not heads:
        raise ValueError(f"{path}: no Glance head (decoder0_g) in the checkpoint")
    classes = state[heads[-1]].shape[0]
    if classes == 3:
        return "TT"
    if rosta in ("FT", "BT"):
        return rosta
    name = path.name.lower()
    for r in ("FT", "BT"):
        if f"_{r.lower()}" in name:
            return r
    raise ValueError(
        f"{path}: a 2-class Glance head is FT or BT and the file name does not say which; pass rosta='FT' or 'BT'"
    )


def convert_authors_state_dict(state: dict[str, torch.Tensor], backbone: str) -> dict[str, torch.Tensor]:
    """Rename the authors' raw GFM state dict to this package's module names (see module docs)."""
    out = {}
    for key, value in state.items():
        key = key[len("module."):] if key.startswith("module.") else key
        if key.startswith(("resnet.", "densenet.")):
            continue
        if backbone == "r34_2b" and key.startswith("psp1."):
            continue
        if re.match(r"encoder\d+\.", key):
            out["encoder." + key] = value
        elif key.startswith("psp") or re.match(r"decoder\d+_g", key):
            out["glance." + key] = value
        elif key.startswith("bridge_block.") or re.match(r"decoder\d+_f", key):
            out["focus." + key] = value
        elif key.startswith("rim."):
            out["rim." + key] = value
        else:
            raise ValueError(f"unexpected parameter {key!r} in the authors' checkpoint")
    return out


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", *, rosta: str | None = None
) -> tuple[GFM, dict]:
    """Load a GFM checkpoint, ours or one of the authors' released files.

    Parameters
    ----------
    path : the ``.pth`` file (read with ``torch.load(weights_only=True)``).
    map_location : where the tensors go.
    rosta : only for the authors' 2-class files whose name does not say FT or BT.

    Returns
    -------
    (model, meta): the GFM in eval mode on ``map_location``, and the checkpoint's
    other entries (``model``, ``input_convention``, ``step``, ``epoch``, ``config``,
    ``optimizer`` and ``rng`` when stored) plus ``source`` ("rssn" or "authors").
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not a checkpoint we accept"
        raise ValueError(f"{path}: not a readable weights-only checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: expected a dict, got {type(ckpt).__name__}")
    if ckpt.get("format") == FORMAT:
        if ckpt.get("version", 0) > VERSION:
            raise ValueError(f"{path}: checkpoint version {ckpt['version']} is newer than this software ({VERSION})")
        spec = ckpt["model"]
        model = build_gfm(spec["backbone"], spec["rosta"])
        model.load_state_dict(ckpt["state_dict"])
        meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
        meta["source"] = "rssn"
    else:
        state = ckpt.get("state_dict", ckpt) if isinstance(ckpt.get("state_dict"), dict) else ckpt
        if not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ValueError(f"{path}: neither an rssn-gfm checkpoint nor a raw state dict")
        plain = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
        keys = set(plain)
        backbone = _infer_backbone(keys, plain)
        found = _infer_rosta(keys, plain, path, rosta)
        model = build_gfm(backbone, found)
        converted = convert_authors_state_dict(plain, backbone)
        missing, unexpected = model.load_state_dict(converted, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{path}: does not match GFM-{backbone}-{found}: "
                f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})"
            )
        meta = {
            "format": "authors", "model": {"backbone": backbone, "rosta": found}, "input_convention": "raw255",
            "step": 0, "epoch": 0, "config": {}, "source": "authors",
        }
    model.to(map_location).eval()
    return model, meta
