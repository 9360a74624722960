"""Stages 2 and 3: the HD filter and the resize to a fixed shorter side.

BG-20k keeps only photos whose shorter side is at least 1080 px and brings every
kept photo to a shorter side of exactly 1080 px with its aspect ratio kept. These
are pure functions on sizes and arrays; files are read and written elsewhere.
"""
from __future__ import annotations

import cv2
import numpy as np


def is_hd(width: int, height: int, min_side: int) -> bool:
    """True when the shorter side reaches ``min_side``.

    Parameters
    ----------
    width, height:
        Size of the decoded photo (orientation applied).
    min_side:
        The smallest allowed shorter side, in pixels.
    """
    return min(width, height) >= min_side


def target_size(width: int, height: int, min_side: int) -> tuple[int, int]:
    """(width, height) after scaling the shorter side to exactly ``min_side``.

    The longer side is rounded to the nearest pixel, so the aspect ratio is kept
    to within half a pixel.

    Returns
    -------
    (new_width, new_height)
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if width <= height:
        return min_side, max(1, int(round(height * min_side / width)))
    return max(1, int(round(width * min_side / height))), min_side


def resize_to_min_side(rgb: np.ndarray, min_side: int) -> np.ndarray:
    """Scale an ``H x W x 3`` image so its shorter side is exactly ``min_side``.

    Area interpolation averages the source pixels under each output pixel, which
    is the alias-free choice for the (usual) downscale.
    """
    h, w = rgb.shape[:2]
    tw, th = target_size(w, h, min_side)
    if (tw, th) == (w, h):
        return rgb
    return cv2.resize(rgb, (tw, th), interpolation=cv2.INTER_AREA)


def thumbnail(rgb: np.ndarray, max_side: int = 256) -> np.ndarray:
    """A small copy whose longer side is ``max_side`` (for review pages and hashing).

    Area interpolation is slow for a non-integer factor on a large image, so the
    image is first shrunk by the largest whole factor (OpenCV's fast block-mean
    path; up to factor-1 pixels of the right and bottom edges are dropped).
    """
    h, w = rgb.shape[:2]
    if max(h, w) <= max_side:
        return rgb
    k = max(h, w) // max_side
    if k >= 2:
        hh, ww = h // k * k, w // k * k
        rgb = cv2.resize(rgb[:hh, :ww], (ww // k, hh // k), interpolation=cv2.INTER_AREA)
        h, w = rgb.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return rgb
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
