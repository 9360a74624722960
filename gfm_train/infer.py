"""Hybrid-resolution and resize inference with a GFM network, and ``rssn predict``.

Hybrid (the paper's test-time scheme): the Glance decoder sees the image
downscaled by 1/3, the Focus decoder sees it downscaled by 1/2; sides are rounded
down to multiples of 32 and capped at 1600. Each pass runs the encoder and only
the decoder whose output is used (``forward_glance`` / ``forward_focus``), which
costs about half of running the whole network twice and gives the same numbers.
Both outputs are upsampled (bilinear) to the image's size and merged there by
Collaborative Matting (:func:`merge_full_size`, which gives exactly ``model.merge``;
RIM fusion for RIM models).

Resize: one full forward pass at 1/2 (same rounding and cap); the merged alpha is
upsampled to the image's size.

Memory: the network never sees more than 1600 x 1600 pixels. The full-size merge
(:func:`merge_full_size`) holds the upsampled Glance scores and Focus output and
runs CM over row chunks of about a megapixel, writing alpha over the upsampled
Focus output: 16 bytes per image pixel for TT, 12 for FT/BT; RIM keeps the three
merged heads and fuses them in two passes (global sums, then the per-pixel map),
about 24 bytes per pixel. The result is exactly that of ``model.merge`` on the
whole upsampled outputs. Images are processed one at a time.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from rssn.io import PathLike, is_image_file, list_images, read_rgb, write_image
from rssn.records import RunRecord, count_fates, relative_to, write_manifest

MODES = ("hybrid", "resize")
GLANCE_SCALE = 1 / 3
FOCUS_SCALE = 1 / 2
RESIZE_SCALE = 1 / 2
MAX_SIDE = 1600
MULTIPLE = 32
#: Pixels per row chunk of the full-size merge (bounds its temporaries).
CHUNK_PIXELS = 1 << 20


def network_size(height: int, width: int, scale: float, cap: int = MAX_SIDE) -> tuple[int, int]:
    """(h, w) the network sees: ``int(side * scale)`` rounded down to a multiple of 32,
    at most ``cap`` and at least 32."""

    def side(n: int) -> int:
        s = int(n * scale)
        return max(MULTIPLE, min(cap, s - s % MULTIPLE))

    return side(height), side(width)


def resolve_device(device: str | torch.device | None = "auto", local_rank: int = 0) -> torch.device:
    """The torch device for a ``--device`` value.

    ``auto`` (or None) -> CUDA device ``local_rank`` when CUDA is available, else the
    CPU; anything else is parsed by torch. Raises ValueError (a one-line message on
    the command line) for a name torch does not know or a CUDA device this machine
    does not have.
    """
    if device is None or str(device) == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"unknown device {str(device)!r} (use auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device} was asked for but no CUDA device is available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


def image_tensor(img: np.ndarray, size: tuple[int, int], convention: str, device: torch.device) -> torch.Tensor:
    """Resize an H x W x 3 uint8 RGB image to ``size`` (h, w) and make the network input.

    Downscaling uses area averaging (anti-aliased); upscaling (images smaller than
    32 px a side) bilinear. The resize works on the 8-bit image, so no full-size
    float copy is ever made.
    """
    from gfm_train.model import prepare_input

    h, w = size
    src = img
    if (h, w) != img.shape[:2]:
        shrink = h <= img.shape[0] and w <= img.shape[1]
        src = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    x = torch.from_numpy(np.ascontiguousarray(src.transpose(2, 0, 1)))[None].to(device)
    return prepare_input(x, convention)


def _upsample(out: Any, size: tuple[int, int]) -> Any:
    if isinstance(out, dict):
        return {k: _upsample(v, size) for k, v in out.items()}
    if out.shape[1] == 1:
        return F.interpolate(out, size=size, mode="bilinear", align_corners=False)
    # one channel at a time: the same values (channels are independent), but torch's
    # kernel for several channels holds a second full-size copy on the CPU
    up = out.new_empty((*out.shape[:2], *size))
    for c in range(out.shape[1]):
        up[:, c:c + 1] = F.interpolate(out[:, c:c + 1], size=size, mode="bilinear", align_corners=False)
    return up


def _row_chunks(height: int, width: int, chunk_pixels: int) -> list[slice]:
    step = max(1, chunk_pixels // max(1, width))
    return [slice(r, min(height, r + step)) for r in range(0, height, step)]


def _merge_head(rosta: str, glance: torch.Tensor, focus: torch.Tensor, size: tuple[int, int],
                chunk_pixels: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """Upsample one head's outputs to ``size`` and apply CM in row chunks, into ``out``
    (default: over the upsampled Focus output, which is no longer needed)."""
    from gfm_train.model import collaborative_matting

    g = _upsample(glance, size)
    f = _upsample(focus, size)
    out = f if out is None else out
    for rows in _row_chunks(size[0], size[1], chunk_pixels):
        # CM is pointwise, so each chunk gets exactly the values of the whole-image merge
        out[:, :, rows] = collaborative_matting(rosta, g[:, :, rows], f[:, :, rows])
    return out


def merge_full_size(model: torch.nn.Module, glance: Any, focus: Any, size: tuple[int, int],
                    chunk_pixels: int = CHUNK_PIXELS) -> torch.Tensor:
    """Upsample (bilinear) the network's Glance and Focus outputs to ``size`` and merge them there.

    The result equals ``model.merge(_upsample(glance, size), _upsample(focus, size))``
    exactly, with a fraction of its memory: CM runs over row chunks of about
    ``chunk_pixels`` pixels and writes over the upsampled Focus output; for RIM the
    three merged heads are fused in two passes (their global sums, then the
    pointwise map of :meth:`RIM.apply`).

    Parameters
    ----------
    model : the GFM whose outputs these are.
    glance, focus : its ``forward_glance`` / ``forward_focus`` outputs (dicts for RIM).
    size : (H, W) of the image.
    chunk_pixels : about how many pixels each chunk holds.

    Returns
    -------
    N x 1 x H x W alpha on the outputs' device.
    """
    if model.rosta != "RIM":
        return _merge_head(model.rosta, glance, focus, size, chunk_pixels)
    from gfm_train.model.rim import row_sums
    from gfm_train.model.rosta import ROSTAS

    ref = focus[ROSTAS[0]]
    heads = torch.empty((ref.shape[0], len(ROSTAS), *size), dtype=ref.dtype, device=ref.device)
    for i, rosta in enumerate(ROSTAS):
        _merge_head(rosta, glance[rosta], focus[rosta], size, chunk_pixels, out=heads[:, i:i + 1])
    chunks = _row_chunks(size[0], size[1], chunk_pixels)
    sums = torch.empty((heads.shape[0], heads.shape[1], size[0]), dtype=torch.float64, device=heads.device)
    for rows in chunks:
        sums[:, :, rows] = row_sums(heads[:, :, rows])
    coefficients = model.rim.coefficients(sums.sum(dim=2), size[0] * size[1])
    alpha = torch.empty((heads.shape[0], 1, *size), dtype=heads.dtype, device=heads.device)
    for rows in chunks:
        alpha[:, :, rows] = model.rim.apply(heads[:, :, rows], coefficients)
    return alpha


@torch.inference_mode()
def predict_alpha(
    model: torch.nn.Module,
    img: np.ndarray,
    convention: str,
    *,
    mode: str = "hybrid",
    device: torch.device | None = None,
    full_forward: bool = False,
) -> np.ndarray:
    """Predict the alpha matte of one RGB image.

    Parameters
    ----------
    model:
        A GFM (``gfm_train.model``) in eval mode.
    img:
        H x W x 3 uint8 RGB.
    convention:
        The checkpoint's ``input_convention`` (``raw255`` or ``imagenet``).
    mode:
        ``hybrid`` or ``resize`` (see the module docstring).
    device:
        Where the network runs (default: the model's device).
    full_forward:
        Hybrid only: run the whole network for both passes and keep the Glance
        output of the first and the Focus output of the second (the slower route
        that ``forward_glance``/``forward_focus`` reproduce exactly).

    Returns
    -------
    H x W float32 alpha in [0, 1].
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 RGB image, got shape {img.shape}")
    device = device or next(model.parameters()).device
    h, w = img.shape[:2]
    if mode == "resize":
        x = image_tensor(img, network_size(h, w, RESIZE_SCALE), convention, device)
        alpha = _upsample(model(x)["alpha"], (h, w))
    else:
        xg = image_tensor(img, network_size(h, w, GLANCE_SCALE), convention, device)
        xf = image_tensor(img, network_size(h, w, FOCUS_SCALE), convention, device)
        if full_forward:
            glance, focus = model(xg)["glance"], model(xf)["focus"]
        else:
            glance, focus = model.forward_glance(xg), model.forward_focus(xf)
        alpha = merge_full_size(model, glance, focus, (h, w))
    return alpha[0, 0].clamp_(0.0, 1.0).float().cpu().numpy()


def load_model(checkpoint: PathLike, device: str | torch.device | None = "auto") -> tuple[torch.nn.Module, dict, torch.device]:
    """Load a checkpoint (ours or the authors') for inference: (model in eval mode, meta, device)."""
    from gfm_train.model import load_checkpoint

    dev = resolve_device(device)
    model, meta = load_checkpoint(checkpoint, map_location=dev)
    model.to(dev).eval()
    return model, meta, dev


# --------------------------------------------------------------------------- rssn predict


def to_alpha8(alpha: np.ndarray) -> np.ndarray:
    """float alpha in [0, 1] -> uint8, rounded (what an alpha PNG stores)."""
    return np.rint(np.clip(alpha, 0.0, 1.0) * 255.0).astype(np.uint8)


def cutout(img: np.ndarray, alpha8: np.ndarray) -> np.ndarray:
    """H x W x 4 RGBA: the image's colours with the predicted alpha as opacity."""
    return np.dstack([img, alpha8])


@dataclasses.dataclass
class PredictInput:
    path: Path
    name: str  # output name without extension (relative, POSIX)


def collect_inputs(paths: Sequence[PathLike]) -> tuple[list[PredictInput], list[dict]]:
    """Expand files and folders into images with unique output names.

    A file keeps its stem; an image inside a given folder keeps its path relative
    to that folder. Returns the inputs and a manifest row for every argument that
    could not be used (missing, not an image, name clash).
    """
    items: list[PredictInput] = []
    problems: list[dict] = []
    seen: dict[str, Path] = {}
    for arg in paths:
        p = Path(arg)
        if p.is_dir():
            found = [(q, q.relative_to(p).with_suffix("").as_posix()) for q in list_images(p)]
            if not found:
                problems.append({"input": str(p), "fate": "skipped", "reason": "folder holds no images"})
        elif p.is_file() and is_image_file(p):
            found = [(p, p.stem)]
        elif p.exists():
            problems.append({"input": str(p), "fate": "skipped", "reason": "not an image file (by extension)"})
            continue
        else:
            problems.append({"input": str(p), "fate": "skipped", "reason": "does not exist"})
            continue
        for q, name in found:
            if name in seen:
                problems.append({"input": str(q), "fate": "skipped",
                                 "reason": f"output name {name!r} already taken by {seen[name]}"})
                continue
            seen[name] = q
            items.append(PredictInput(q, name))
    return items, problems


def predict_images(
    checkpoint: PathLike,
    inputs: Sequence[PathLike],
    out: PathLike,
    *,
    mode: str = "hybrid",
    device: str = "auto",
    overwrite: bool = False,
    progress: bool | None = None,
) -> dict:
    """``rssn predict``: an alpha PNG and an RGBA cut-out for every image.

    Parameters
    ----------
    checkpoint:
        A GFM checkpoint (ours or the authors').
    inputs:
        Image files and/or folders (searched recursively).
    out:
        Output folder: ``alpha/<name>.png`` (8-bit), ``cutout/<name>.png`` (RGBA),
        ``run.json``, ``manifest.jsonl``.
    mode:
        ``hybrid`` or ``resize``.
    device:
        ``auto``, ``cpu``, ``cuda``, ``cuda:1``, ...
    overwrite:
        Predict again images whose two outputs already exist (default: keep them,
        so a rerun resumes).

    Returns
    -------
    Summary dict (counts by fate, seconds).
    """
    from tqdm.auto import tqdm

    from rssn.executor import progress_enabled

    out = Path(out)
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    items, rows = collect_inputs(inputs)
    model, meta, dev = load_model(checkpoint, device)
    record = RunRecord.start(out, "predict", {
        "checkpoint": str(checkpoint), "inputs": [str(p) for p in inputs], "mode": mode, "device": str(dev),
        "model": meta.get("model"), "input_convention": meta["input_convention"], "overwrite": overwrite,
    })
    show = progress_enabled() if progress is None else progress
    t0 = time.perf_counter()
    for item in tqdm(items, desc="predict", unit="image", disable=not show or not items, dynamic_ncols=True):
        alpha_path = out / "alpha" / f"{item.name}.png"
        cut_path = out / "cutout" / f"{item.name}.png"
        row = {"input": str(item.path), "alpha": relative_to(out, alpha_path), "cutout": relative_to(out, cut_path)}
        if not overwrite and alpha_path.is_file() and cut_path.is_file():
            rows.append({**row, "fate": "kept", "reason": "outputs already exist"})
            continue
        try:
            img = read_rgb(item.path)
            t = time.perf_counter()
            alpha8 = to_alpha8(predict_alpha(model, img, meta["input_convention"], mode=mode, device=dev))
            seconds = time.perf_counter() - t
            write_image(alpha_path, alpha8)
            write_image(cut_path, cutout(img, alpha8))
        except Exception as e:  # noqa: BLE001 - recorded per image; the rest goes on
            reason = getattr(e, "reason", None) or f"{type(e).__name__}: {e}"
            rows.append({**row, "fate": "failed", "reason": reason})
            continue
        rows.append({**row, "fate": "written", "width": img.shape[1], "height": img.shape[0],
                     "seconds": round(seconds, 4)})
    write_manifest(out / "manifest.jsonl", rows)
    counts = count_fates(rows)
    summary = {"counts": counts, "seconds": round(time.perf_counter() - t0, 3), "device": str(dev)}
    record.finish(summary)
    return summary
