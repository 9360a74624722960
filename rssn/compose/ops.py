"""The composition operations of RSSN as pure functions on arrays.

Every function takes uint8 images (``H x W x 3`` RGB, alpha ``H x W``) and returns
new arrays; randomness comes in as numbers (crop fractions, a noise seed) drawn by
:mod:`rssn.compose.route`, so the same inputs always give the same output.

The arithmetic is done with OpenCV because it is several times faster than numpy
for these steps at 1080p on one core: the background is resized once (only the
region that is kept), blurred in uint8, blended in float32 and rounded once, and
the noise comes from OpenCV's generator seeded per composite.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import cv2
import numpy as np

#: Downscaling by more than this factor uses area averaging (no aliasing, which
#: would add exactly the artificial sharpness RSSN tries to remove); milder
#: scaling uses bilinear interpolation, which is faster and as good there.
AREA_BELOW_SCALE = 0.75


class Fit(NamedTuple):
    """Where a background was cut: ``box`` = (x, y, w, h) in the source pixels,
    ``scale`` = output pixels per source pixel."""

    box: tuple[int, int, int, int]
    scale: float


def _check_rgb(name: str, img: np.ndarray) -> None:
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{name} must be an H x W x 3 uint8 array, got {img.dtype} {img.shape}")


def cover_box(src_size: tuple[int, int], dst_size: tuple[int, int], u: tuple[float, float]) -> Fit:
    """The source region that, scaled uniformly, covers ``dst_size`` exactly.

    The background is scaled by ``s = max(W / w, H / h)`` (the smallest scale at
    which it covers the target), so one side fits exactly and the other has some
    slack; ``u`` (two numbers in [0, 1)) places the crop inside that slack.

    Parameters
    ----------
    src_size, dst_size:
        (width, height) of the background and of the target.
    u:
        Crop position as fractions of the slack along x and y.

    Returns
    -------
    Fit
        The box in source pixels (its aspect ratio equals the target's up to one
        source pixel of rounding) and the scale.
    """
    (w, h), (tw, th) = src_size, dst_size
    if min(w, h, tw, th) < 1:
        raise ValueError(f"sizes must be positive, got background {src_size} and target {dst_size}")
    s = max(tw / w, th / h)
    bw = min(w, max(1, round(tw / s)))
    bh = min(h, max(1, round(th / s)))
    x = min(w - bw, int(math.floor(float(u[0]) * (w - bw + 1))))
    y = min(h - bh, int(math.floor(float(u[1]) * (h - bh + 1))))
    return Fit((x, y, bw, bh), s)


def fit_background(bg: np.ndarray, size: tuple[int, int], u: tuple[float, float]) -> tuple[np.ndarray, Fit]:
    """Bring a background to ``size`` = (width, height) without distorting it.

    Scale to cover, then crop (the crop is taken first in source pixels, so only
    the kept region is resized: one resize, proportional to the output size).

    Example:
        >>> bg = np.zeros((1080, 1920, 3), np.uint8)
        >>> out, fit = fit_background(bg, (1200, 1600), (0.5, 0.5))
        >>> out.shape, fit.box[3]
        ((1600, 1200, 3), 1080)
    """
    _check_rgb("background", bg)
    tw, th = int(size[0]), int(size[1])
    fit = cover_box((bg.shape[1], bg.shape[0]), (tw, th), u)
    x, y, bw, bh = fit.box
    region = bg[y : y + bh, x : x + bw]
    if (bw, bh) == (tw, th):
        return np.ascontiguousarray(region), fit
    interp = cv2.INTER_AREA if fit.scale < AREA_BELOW_SCALE else cv2.INTER_LINEAR
    return cv2.resize(region, (tw, th), interpolation=interp), fit


def box_blur(img: np.ndarray, kernel: int) -> np.ndarray:
    """OpenCV's averaging (box) filter with a ``kernel x kernel`` window, on uint8.

    Mimics a large-aperture photo whose background is out of focus.
    """
    _check_rgb("image", img)
    if int(kernel) < 1:
        raise ValueError(f"blur kernel must be at least 1, got {kernel}")
    return cv2.blur(img, (int(kernel), int(kernel)))


def alpha_weights(alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(alpha/255, 1 - alpha/255)`` as float32, the blending weights of F and B.

    Separate from :func:`blend` so a caller blending one foreground onto several
    backgrounds computes them once.
    """
    if alpha.dtype != np.uint8 or alpha.ndim != 2:
        raise ValueError(f"alpha must be an H x W uint8 array, got {alpha.dtype} {alpha.shape}")
    a = alpha.astype(np.float32)
    a *= np.float32(1.0 / 255.0)
    return a, np.float32(1.0) - a


def blend(fg: np.ndarray, bg: np.ndarray, alpha: np.ndarray | None = None,
          weights: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """The composite ``C = alpha * F + (1 - alpha) * B``, rounded to uint8.

    Computed in float32 (OpenCV's ``blendLinear``) and rounded once, so every
    pixel is within 0.5 (+ 0.003 from OpenCV's guard against a zero weight sum)
    of the exact value.

    Parameters
    ----------
    fg, bg:
        H x W x 3 uint8 foreground colour and background.
    alpha:
        H x W uint8 matte (255 = foreground); or pass ``weights`` from
        :func:`alpha_weights` instead.
    """
    _check_rgb("foreground", fg)
    _check_rgb("background", bg)
    if weights is None:
        if alpha is None:
            raise ValueError("blend needs alpha or weights")
        weights = alpha_weights(alpha)
    if fg.shape != bg.shape or weights[0].shape != fg.shape[:2]:
        raise ValueError(f"sizes differ: foreground {fg.shape}, background {bg.shape}, alpha {weights[0].shape}")
    return cv2.blendLinear(fg, bg, weights[0], weights[1])


def gaussian_noise(shape: tuple[int, ...], sigma: float, seed: int) -> np.ndarray:
    """Float32 Gaussian noise, mean 0, standard deviation ``sigma``, from OpenCV's
    generator seeded with ``seed``: the same seed gives the same noise.

    (numpy's normal generator is about four times slower at 1080p.)
    """
    n = np.empty((int(np.prod(shape[:-1])) if len(shape) > 1 else 1, shape[-1]), np.float32)
    # Seeding OpenCV's generator is per thread, so concurrent workers do not interfere.
    cv2.setRNGSeed(int(seed))
    # One channel: cv2.randn applies a scalar sigma to channel 0 only of a multi-channel array.
    cv2.randn(n, 0.0, float(sigma))
    return n.reshape(shape)


def add_noise(img: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """``clip(round(img + noise), 0, 255)``: noise that never wraps around.

    (250 + 10 stays 255, it does not become 4 as a plain uint8 cast would make it.)
    """
    if img.dtype != np.uint8:
        raise ValueError(f"add_noise needs uint8 data, got {img.dtype}")
    noise = gaussian_noise(img.shape, sigma, seed)
    # A mixed-type add computes in float and saturates: rounding and clipping in one pass.
    return cv2.add(img, noise, dtype=cv2.CV_8U)
