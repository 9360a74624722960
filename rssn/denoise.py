"""BM3D-denoised copies of images, kept in a content-addressed cache.

RSSN composites use denoised versions of both the foreground and the background
half of the time (one coin for the pair), so that the two halves of a composite
share one noise level instead of carrying the sharp, noise-free look of a cut-out
pasted on a grainy photo. BM3D (the reference ``bm3d`` package) is slow, tens to
hundreds of seconds per megapixel on one CPU core, so each source image is
denoised once and the result is cached under a key made of the source's bytes
and the parameters. Any dataset that holds the same bytes reuses the entry.

Profiles
--------
``default``
    The package's normal profile (``'np'``): hard thresholding followed by
    Wiener filtering, colour handled in the opponent colour space with block
    matching on luminance (exactly :func:`bm3d.bm3d_rgb`).
``fast``
    Hard-thresholding stage only (no Wiener pass) with the block-matching
    settings of the package's low-complexity ``'lc'`` profile (reference step 6,
    search window 25). Three to five times faster, about 0.5 dB lower PSNR;
    ``benchmarks/bench_denoise.py`` measures both side by side.

The noise level is estimated per image (:func:`skimage.restoration.estimate_sigma`,
wavelet median absolute deviation) unless a sigma is given. BM3D runs single
threaded, so an entry's pixels do not depend on the machine; parallelism comes
from running one image per work unit (:func:`rssn.executor.run_units`).

Cache layout (``docs/formats.md``): ``DIR/<key[:2]>/<key>.png`` (lossless RGB)
and ``DIR/<key[:2]>/<key>.json`` (source path, profile, sigma used, seconds).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .io import (
    ImageError,
    PathLike,
    decode_image,
    file_digest,
    list_images,
    read_bytes,
    read_rgb,
    write_image,
    write_text_atomic,
)

PROFILES = ("default", "fast")

#: Bumped when the computation behind a key changes, so old entries are not reused.
CACHE_VERSION = 1


# --------------------------------------------------------------------------- pure functions


def estimate_noise_sigma(rgb: np.ndarray) -> float:
    """Standard deviation of the image's noise on the 0-255 scale.

    Parameters
    ----------
    rgb:
        ``H x W x 3`` uint8 (or float in 0..255) image.

    Returns
    -------
    float
        The wavelet-domain estimate of :func:`skimage.restoration.estimate_sigma`,
        averaged over the three channels.
    """
    from skimage.restoration import estimate_sigma

    _check_rgb(rgb)
    img = np.asarray(rgb, np.float64) / 255.0
    return float(estimate_sigma(img, channel_axis=-1, average_sigmas=True)) * 255.0


def bm3d_profile(profile: str = "default"):
    """The :class:`bm3d.BM3DProfile` behind a profile name (single threaded)."""
    import bm3d

    if profile not in PROFILES:
        raise ValueError(f"unknown BM3D profile {profile!r}; choose from {', '.join(PROFILES)}")
    pro = bm3d.BM3DProfile()
    if profile == "fast":
        lc = bm3d.BM3DProfileLC()
        pro.step_ht = lc.step_ht
        pro.search_window_ht = lc.search_window_ht
        pro.max_3d_size_ht = lc.max_3d_size_ht
    # Threads > 1 make the aggregation order, and so the last bits, vary between
    # runs; a cache entry must not depend on the machine that made it.
    pro.num_threads = 1
    return pro


def _check_rgb(rgb: np.ndarray) -> None:
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 RGB image, got shape {rgb.shape}")


def _bm3d_opp(z: np.ndarray, sigma: float, profile: str) -> np.ndarray:
    """BM3D of a float RGB image in [0, 1] with noise std ``sigma`` (same scale).

    Mirrors :func:`bm3d.bm3d_rgb` (opponent colour space, block matching on the
    luminance channel) but can stop after hard thresholding, and copes with
    images whose chroma is constant (grey pictures), where the package's
    per-channel normalisation divides by zero.
    """
    import bm3d

    pro = bm3d_profile(profile)
    stage = bm3d.BM3DStages.HARD_THRESHOLDING if profile == "fast" else bm3d.BM3DStages.ALL_STAGES
    lum = z.mean(axis=2)
    chroma = z - lum[..., None]
    lo, hi = lum.min(), lum.max()
    if hi - lo < 1e-6:
        return z.copy()  # a flat picture: nothing to denoise
    if np.ptp(chroma.reshape(-1, 3), axis=0).max() < 1e-6:
        # Grey (or grey plus a constant tint): the package would normalise the
        # constant chroma channels by a zero range; denoise the one that varies.
        y = bm3d.bm3d((lum - lo) / (hi - lo), sigma / (hi - lo), pro, stage_arg=stage)
        return np.asarray(y)[..., None] * (hi - lo) + lo + chroma
    o, o_max, o_min, scale, _ = bm3d.rgb_to(z, "opp")
    psd = sigma * np.transpose(np.atleast_3d(np.sqrt(scale)), (0, 2, 1))
    y = bm3d.bm3d(o, psd, pro, stage_arg=stage)
    out, *_ = bm3d.rgb_to(np.asarray(y), "opp", True, o_max, o_min)
    return out


def _run_bm3d(z: np.ndarray, sigma: float, profile: str) -> np.ndarray:
    """The one place BM3D itself is called (tests count calls through it)."""
    return _bm3d_opp(z, sigma, profile)


def denoise_array(
    rgb: np.ndarray,
    *,
    sigma: float | None = None,
    profile: str = "default",
    max_side: int | None = None,
) -> tuple[np.ndarray, float]:
    """BM3D-denoise an RGB image.

    Parameters
    ----------
    rgb:
        ``H x W x 3`` uint8 image.
    sigma:
        Noise standard deviation on the 0-255 scale; ``None`` estimates it
        (:func:`estimate_noise_sigma`).
    profile:
        ``default`` or ``fast`` (see the module docstring).
    max_side:
        When the longer side exceeds it, BM3D runs on the image shrunk to that
        side (area averaging) and the noise it finds there, enlarged back
        (bilinear), is subtracted from the full-size image. Cost scales with
        the reduced pixel count (a 1440 x 1080 photo at ``max_side=720`` costs a
        quarter), nothing is blurred, and noise coarser than the reduced scale
        is removed; grain finer than it stays (it averages away when the copy
        is shrunk, as compose does to backgrounds). The sigma then refers to the
        reduced image (a given sigma is scaled by the shrink factor, since
        area averaging lowers independent noise by about that factor).

    Returns
    -------
    (denoised, sigma_used)
        The uint8 image, same shape as ``rgb``, and the sigma BM3D ran with
        (0-255 scale, at the scale it ran).
    """
    import cv2

    _check_rgb(rgb)
    if max_side is not None and max_side < 16:
        raise ValueError(f"max_side must be at least 16 pixels, got {max_side}")
    h, w = rgb.shape[:2]
    full = np.asarray(rgb).astype(np.float64) / 255.0
    z, factor = full, 1.0
    if max_side is not None and max(h, w) > max_side:
        factor = max_side / max(h, w)
        size = (max(1, round(w * factor)), max(1, round(h * factor)))
        z = cv2.resize(full, size, interpolation=cv2.INTER_AREA)  # float: no rounding noise added
    if sigma is None:
        sigma_used = estimate_noise_sigma(z * 255.0)
    else:
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        sigma_used = float(sigma) * factor
    # A zero sigma is a legal estimate for a clean image; BM3D then changes
    # (almost) nothing, but it must not divide by zero.
    sigma_run = max(sigma_used, 1e-3)
    y = np.nan_to_num(_run_bm3d(z, sigma_run / 255.0, profile), nan=0.0)
    if factor != 1.0:
        # Subtract the coarse noise rather than enlarge the small result: the
        # copy keeps its full-size detail instead of turning soft.
        noise = cv2.resize(z - y, (w, h), interpolation=cv2.INTER_LINEAR)
        y = full - noise
    out = np.clip(np.round(y * 255.0), 0, 255).astype(np.uint8)
    return out, sigma_used


# --------------------------------------------------------------------------- the cache


def param_string(profile: str = "default", sigma: float | None = None, max_side: int | None = None) -> str:
    """The parameter part of a cache key (stable text)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown BM3D profile {profile!r}; choose from {', '.join(PROFILES)}")
    s = "auto" if sigma is None else f"{float(sigma):g}"
    m = "none" if max_side is None else str(int(max_side))
    return f"bm3d-v{CACHE_VERSION};profile={profile};sigma={s};max_side={m}"


def cache_key(
    path: PathLike, profile: str = "default", sigma: float | None = None, max_side: int | None = None
) -> str:
    """sha256 of the file's bytes followed by the parameter string, hex."""
    return file_digest(path, extra=param_string(profile, sigma, max_side))


def entry_path(cache_dir: PathLike, key: str) -> Path:
    return Path(cache_dir) / key[:2] / f"{key}.png"


def cached_path(
    path: PathLike, cache_dir: PathLike, profile: str = "default", sigma: float | None = None,
    max_side: int | None = None,
) -> Path:
    """Where the entry for ``path`` is or would be; computes nothing."""
    return entry_path(cache_dir, cache_key(path, profile, sigma, max_side))


def _load_entry(entry: Path, shape: tuple[int, ...] | None = None) -> np.ndarray | None:
    """The cached array, or None when missing or unreadable (then it is recomputed)."""
    if not entry.is_file():
        return None
    try:
        arr = decode_image(read_bytes(entry), name=str(entry))
    except (ImageError, OSError):
        return None
    if shape is not None and arr.shape != shape:
        return None
    return arr


def _store(entry: Path, out: np.ndarray, meta: dict[str, Any]) -> None:
    # The sidecar first, the image last: a present PNG means a complete entry.
    write_text_atomic(entry.with_suffix(".json"), json.dumps(meta, indent=2, sort_keys=True) + "\n")
    write_image(entry, out, compress_level=3)


def _compute_entry(
    path: Path, entry: Path, key: str, profile: str, sigma: float | None, max_side: int | None
) -> dict:
    rgb = read_rgb(path)
    t0 = time.perf_counter()
    out, sigma_used = denoise_array(rgb, sigma=sigma, profile=profile, max_side=max_side)
    seconds = time.perf_counter() - t0
    meta = {
        "key": key, "source": str(path), "source_sha256": file_digest(path), "profile": profile,
        "sigma": sigma_used,
        "sigma_given": sigma is not None, "max_side": max_side, "width": rgb.shape[1],
        "height": rgb.shape[0], "seconds": round(seconds, 3), "params": param_string(profile, sigma, max_side),
    }
    _store(entry, out, meta)
    return {"array": out, "sigma": sigma_used, "seconds": seconds}


def denoise_cached(
    path: PathLike, cache_dir: PathLike, profile: str = "default", sigma: float | None = None,
    max_side: int | None = None,
) -> np.ndarray:
    """The denoised copy of the image file ``path`` as an ``H x W x 3`` uint8 array.

    Returns the cached entry when there is one; otherwise runs BM3D, stores the
    result atomically and returns it.
    """
    path = Path(path)
    key = cache_key(path, profile, sigma, max_side)
    entry = entry_path(cache_dir, key)
    arr = _load_entry(entry)
    if arr is not None:
        return arr
    return _compute_entry(path, entry, key, profile, sigma, max_side)["array"]


# --------------------------------------------------------------------------- many images


def denoise_unit(unit: dict) -> dict:
    """Work unit: make (or find) the cache entry of one image."""
    path, entry = Path(unit["path"]), Path(unit["entry"])
    if _load_entry(entry) is not None:
        return {"fate": "cached", "seconds": 0.0}
    res = _compute_entry(path, entry, unit["key"], unit["profile"], unit["sigma"], unit["max_side"])
    return {"fate": "denoised", "sigma": res["sigma"], "seconds": round(res["seconds"], 3)}


@dataclass
class DenoiseReport:
    """Per-input rows (``input``, ``fate``, ``key``, ``entry``, ``reason``) and counts."""

    rows: list[dict] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        from .records import count_fates

        return count_fates(self.rows)

    def entry_for(self, path: PathLike) -> Path | None:
        for r in self.rows:
            if r["input"] == str(path) and r.get("entry_path"):
                return Path(r["entry_path"])
        return None


def denoise_paths(
    paths: Sequence[PathLike],
    cache_dir: PathLike,
    *,
    profile: str = "default",
    sigma: float | None = None,
    max_side: int | None = None,
    workers: int = 1,
    scheduler: Any = None,
    desc: str = "denoise",
) -> DenoiseReport:
    """Fill the cache for every image of ``paths``, one image per work unit.

    Inputs whose bytes are equal share one entry and are computed once. An image
    that cannot be read is reported (fate ``failed`` with the reason) and the rest
    go on. Writes nothing but cache entries (see :func:`denoise_images` for a run
    with ``run.json`` and a manifest).
    """
    from .executor import run_units

    param_string(profile, sigma, max_side)  # validates before any work
    cache_dir = Path(cache_dir)
    rows: list[dict] = []
    units: list[dict] = []
    unit_of_key: dict[str, int] = {}
    for p in paths:
        p = Path(p)
        row: dict[str, Any] = {"input": str(p), "fate": None, "key": None, "entry": None, "reason": None}
        rows.append(row)
        try:
            key = cache_key(p, profile, sigma, max_side)
        except OSError as e:
            row.update(fate="failed", reason=f"cannot read: {e.strerror or e}")
            continue
        entry = entry_path(cache_dir, key)
        row.update(key=key, entry=f"{key[:2]}/{key}.png", entry_path=str(entry))
        if entry.is_file():
            row["fate"] = "cached"
            continue
        if key in unit_of_key:
            row["fate"] = "duplicate"
            row["reason"] = f"same bytes as {units[unit_of_key[key]]['path']}"
            continue
        unit_of_key[key] = len(units)
        units.append({"path": str(p), "entry": str(entry), "key": key, "profile": profile,
                      "sigma": sigma, "max_side": max_side, "row": len(rows) - 1})
    results = run_units(denoise_unit, units, workers=workers, scheduler=scheduler, desc=desc)
    failed_keys = set()
    for unit, res in zip(units, results):
        row = rows[unit["row"]]
        if res.ok:
            row.update(res.value)
        else:
            failed_keys.add(unit["key"])
            row.update(fate="failed", reason=res.error)
    for row in rows:
        if row["fate"] == "duplicate" and row["key"] in failed_keys:
            row.update(fate="failed", reason=f"{row['reason']}, which failed")
        if row["fate"] == "failed":
            row["entry"] = None
            row.pop("entry_path", None)
    return DenoiseReport(rows)


def collect_images(inputs: Iterable[PathLike], exclude: PathLike | None = None) -> list[Path]:
    """Image files named by ``inputs``: files as given, folders searched recursively.

    Files below ``exclude`` (the cache, when it sits inside an input folder) are
    left out: denoising the cache's own entries would add new ones on every run.
    """
    ex = Path(exclude).resolve() if exclude is not None else None
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = list_images(p)
        elif p.exists():
            found = [p]
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
        out.extend(f for f in found if ex is None or ex not in f.resolve().parents)
    return out


def denoise_images(
    inputs: Sequence[PathLike],
    cache_dir: PathLike,
    *,
    profile: str = "default",
    sigma: float | None = None,
    max_side: int | None = None,
    workers: int = 1,
    scheduler: Any = None,
) -> DenoiseReport:
    """``rssn denoise``: fill the cache for images and folders of images.

    Writes ``run.json`` and ``manifest.jsonl`` (one row per input: ``input``,
    ``fate`` = denoised / cached / duplicate / failed, ``entry`` relative to the
    cache, ``reason``) into ``cache_dir``; both describe the latest run.
    """
    from .records import MANIFEST_FILE, RunRecord, write_manifest

    cache_dir = Path(cache_dir)
    paths = collect_images(inputs, exclude=cache_dir)
    params = {"inputs": [str(p) for p in inputs], "cache": str(cache_dir), "profile": profile,
              "sigma": sigma, "max_side": max_side, "workers": workers,
              "scheduler": str(scheduler) if scheduler else None}
    param_string(profile, sigma, max_side)
    rec = RunRecord.start(cache_dir, "denoise", params)
    report = denoise_paths(paths, cache_dir, profile=profile, sigma=sigma, max_side=max_side,
                           workers=workers, scheduler=scheduler)
    rows = [{k: v for k, v in r.items() if k != "entry_path"} for r in report.rows]
    write_manifest(cache_dir / MANIFEST_FILE, rows)
    seconds = sum(float(r.get("seconds") or 0.0) for r in report.rows)
    rec.finish({"images": len(paths), **report.counts, "bm3d_seconds": round(seconds, 2)},
               status="complete" if not report.counts.get("failed") else "complete_with_failures")
    return report


__all__ = [
    "CACHE_VERSION", "DenoiseReport", "PROFILES", "bm3d_profile", "cache_key", "cached_path", "collect_images",
    "denoise_array", "denoise_cached", "denoise_images", "denoise_paths", "denoise_unit", "entry_path",
    "estimate_noise_sigma", "param_string",
]
