"""Foreground colour estimation: the ``F`` of ``I = alpha*F + (1-alpha)*B``.

Compositing a real photo's pixels onto a new background leaks the old
background into every soft edge (hair, fur): where alpha is 0.5 the pixel is
half old background. RSSN therefore blends an estimated foreground ``F``, found
from the image and its alpha matte, not the image itself.

Methods
-------
``ml``
    Germer et al.'s multilevel estimation (:func:`pymatting.estimate_foreground_ml`):
    fast (about 2 s per megapixel on one core after numba's first compile) and
    light on memory. The default.
``cf``
    Levin et al.'s closed-form estimation (:func:`pymatting.estimate_foreground_cf`),
    the method the paper used. It solves a sparse linear system over all
    pixels: about 6-7 s and 0.7 GB of memory per megapixel on one core, so a
    whole AM-2k image (1.8 MP) needs well over a gigabyte. Here the system is
    bounded: images above ``max_pixels`` are solved in overlapping tiles of at
    most ``max_pixels`` each (tiles without any soft alpha are skipped, since
    there ``F`` is the image itself where alpha is 1 and irrelevant where it
    is 0), so memory stays under about ``0.7 GB * max_pixels / 1e6``.
"""
from __future__ import annotations

import math

import numpy as np

FG_METHODS = ("ml", "cf")

#: Largest system (pixels) the closed-form method solves at once.
CF_MAX_PIXELS = 1_000_000

#: Pixels of context around each closed-form tile (the tile's border is discarded).
CF_MARGIN = 32


def _as_unit(image: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check shapes and bring both arrays to float64 in [0, 1]."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be H x W x 3, got shape {image.shape}")
    if alpha.ndim == 3 and alpha.shape[2] == 1:
        alpha = alpha[..., 0]
    if alpha.shape != image.shape[:2]:
        raise ValueError(f"alpha shape {alpha.shape} does not match image {image.shape[:2]}")
    img = image.astype(np.float64) / 255.0 if image.dtype == np.uint8 else np.asarray(image, np.float64)
    a = alpha.astype(np.float64) / 255.0 if alpha.dtype == np.uint8 else np.asarray(alpha, np.float64)
    return np.clip(img, 0, 1), np.clip(a, 0, 1)


def estimate_foreground_ml(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Multilevel foreground estimation (pymatting).

    Parameters
    ----------
    image:
        ``H x W x 3`` image, uint8 or float in [0, 1].
    alpha:
        ``H x W`` alpha matte, uint8 or float in [0, 1].

    Returns
    -------
    np.ndarray
        ``H x W x 3`` float64 foreground in [0, 1].
    """
    from pymatting import estimate_foreground_ml as ml

    img, a = _as_unit(image, alpha)
    return np.clip(ml(img, a), 0, 1)


def estimate_foreground_cf(
    image: np.ndarray, alpha: np.ndarray, *, max_pixels: int = CF_MAX_PIXELS, margin: int = CF_MARGIN
) -> np.ndarray:
    """Closed-form foreground estimation (pymatting), tiled above ``max_pixels``.

    Parameters
    ----------
    image, alpha:
        As for :func:`estimate_foreground_ml`.
    max_pixels:
        Largest number of pixels solved in one system. Above it the image is
        cut into tiles of at most that many pixels including a ``margin`` of
        context on each side; only the inner part of each tile is kept.
    margin:
        Context pixels around each tile.

    Returns
    -------
    np.ndarray
        ``H x W x 3`` float64 foreground in [0, 1]. In tiles with no soft alpha
        the foreground is the image itself.
    """
    from pymatting import estimate_foreground_cf as cf

    img, a = _as_unit(image, alpha)
    h, w = a.shape
    if h * w <= max_pixels:
        return np.clip(cf(img, a), 0, 1)
    side = int(math.isqrt(int(max_pixels)))
    core = side - 2 * margin
    if core < 16:
        raise ValueError(f"max_pixels={max_pixels} leaves no room inside a margin of {margin} pixels "
                         f"(needs at least {(16 + 2 * margin) ** 2})")
    out = img.copy()
    soft = (a > 0) & (a < 1)
    for y0 in range(0, h, core):
        for x0 in range(0, w, core):
            y1, x1 = min(y0 + core, h), min(x0 + core, w)
            ty0, tx0, ty1, tx1 = max(0, y0 - margin), max(0, x0 - margin), min(h, y1 + margin), min(w, x1 + margin)
            if not soft[ty0:ty1, tx0:tx1].any():
                continue
            f = cf(img[ty0:ty1, tx0:tx1], a[ty0:ty1, tx0:tx1])
            out[y0:y1, x0:x1] = f[y0 - ty0:y1 - ty0, x0 - tx0:x1 - tx0]
    return np.clip(out, 0, 1)


def estimate_foreground(
    image: np.ndarray, alpha: np.ndarray, method: str = "ml", *, cf_max_pixels: int = CF_MAX_PIXELS
) -> np.ndarray:
    """Estimate the foreground colour with ``method`` (``ml`` or ``cf``).

    Returns
    -------
    np.ndarray
        ``H x W x 3`` uint8 foreground, ready to store as PNG.

    Example:
        >>> fg = estimate_foreground(image, alpha, "ml")  # doctest: +SKIP
    """
    if method == "ml":
        f = estimate_foreground_ml(image, alpha)
    elif method == "cf":
        f = estimate_foreground_cf(image, alpha, max_pixels=cf_max_pixels)
    else:
        raise ValueError(f"unknown foreground method {method!r}; choose from {', '.join(FG_METHODS)}")
    return np.round(f * 255.0).astype(np.uint8)


__all__ = [
    "CF_MARGIN", "CF_MAX_PIXELS", "FG_METHODS", "estimate_foreground", "estimate_foreground_cf",
    "estimate_foreground_ml",
]
