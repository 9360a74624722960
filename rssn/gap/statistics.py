"""Per-sample statistics of the composite-vs-real gap: pure functions on arrays.

A composite betrays itself when its foreground and its background disagree in
ways a real photo's two regions do not: one is noisier, sharper, richer in fine
detail (higher native resolution), brighter, more contrasted or more saturated.
Each statistic here is measured once on the foreground region and once on the
background region of the same image, and the **discrepancy** compares the two:

- scale-like statistics (noise, sharpness, contrast): ``log2((fg + eps) / (bg + eps))``
  with ``eps`` = 1 grey level, so +1 means "the foreground has twice the
  background's value" and near-flat regions do not blow the ratio up;
- bounded or offset statistics (fine-detail fraction, luminance, saturation):
  ``fg - bg``.

0 always means "no discrepancy". Regions come from the alpha: foreground where
alpha >= 0.98, background where alpha <= 0.02, each eroded by a margin so that
no filter below reaches across the soft edge into the other region.

Noise is measured per RGB channel and averaged; the other grey-level statistics use luma ``Y = 0.299 R + 0.587 G + 0.114 B`` on the
0-255 scale, in floating point (rounding to 8 bits would itself add noise).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

# The median of |x| for a standard normal x (scipy.stats.norm.ppf(0.75)), the
# constant estimate_sigma divides by.
_NORMAL_MAD = 0.6744897501960817


@dataclass(frozen=True)
class Statistic:
    """How one statistic is named, compared and put into words."""

    name: str
    label: str
    unit: str  # of the per-region value: "grey levels" (0-255 scale), "grey levels/px" or "0-1"
    kind: str  # "log2_ratio" or "difference"
    eps: float  # added to both sides of a log2 ratio
    floor: float  # smallest spread used to judge a distance (see rssn.gap.compare)
    more: str  # "the foreground is <more> than the background"
    less: str
    same: str  # "the foreground is <same> the background"

    @property
    def definition(self) -> str:
        if self.kind == "log2_ratio":
            return f"log2((fg + {self.eps:g}) / (bg + {self.eps:g}))"
        return "fg - bg"


STATISTICS: dict[str, Statistic] = {
    s.name: s
    for s in (
        Statistic("noise", "noise level", "grey levels", "log2_ratio", 1.0, 0.25,
                  "noisier", "cleaner", "as noisy as"),
        Statistic("sharpness", "sharpness", "grey levels/px", "log2_ratio", 1.0, 0.25,
                  "sharper", "softer", "as sharp as"),
        Statistic("detail", "fine-detail fraction", "0-1", "difference",
                  0.0, 0.02, "richer in pixel-scale detail", "poorer in pixel-scale detail",
                  "as rich in pixel-scale detail as"),
        Statistic("luminance", "luminance", "grey levels", "difference", 0.0, 5.0,
                  "brighter", "darker", "as bright as"),
        Statistic("contrast", "contrast", "grey levels", "log2_ratio", 1.0, 0.25,
                  "more contrasted", "less contrasted", "as contrasted as"),
        Statistic("saturation", "saturation", "0-1", "difference", 0.0, 0.02,
                  "more saturated", "less saturated", "as saturated as"),
    )
}

FG_THRESHOLD = 0.98
BG_THRESHOLD = 0.02
MIN_PIXELS = 400


# --------------------------------------------------------------------------- inputs


def _check_image(image: np.ndarray) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 RGB image, got shape {image.shape}")
    return image


def _alpha01(alpha: np.ndarray) -> np.ndarray:
    if alpha.ndim != 2:
        raise ValueError(f"expected an H x W alpha, got shape {alpha.shape}")
    if alpha.dtype == np.uint8:
        return alpha.astype(np.float32) / 255.0
    if alpha.dtype == np.uint16:
        return alpha.astype(np.float32) / 65535.0
    return alpha.astype(np.float32)


def luma(image: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of an RGB image, float32 on the 0-255 scale.

    Parameters
    ----------
    image:
        H x W x 3 RGB, uint8 (or float on the 0-255 scale).

    Returns
    -------
    H x W float32.
    """
    rgb = _check_image(image).astype(np.float32)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def default_margin(height: int, width: int) -> int:
    """Erosion margin in pixels: 1 % of the shorter side, at least 4.

    4 px keeps the widest filter used here (a Gaussian of sigma 2) from mixing the
    two regions; the 1 % keeps the same share of a high-resolution image away
    from its soft edge.
    """
    return max(4, int(round(0.01 * min(height, width))))


def regions(
    alpha: np.ndarray,
    *,
    margin: int | None = None,
    fg_threshold: float = FG_THRESHOLD,
    bg_threshold: float = BG_THRESHOLD,
) -> tuple[np.ndarray, np.ndarray]:
    """Foreground and background masks from an alpha matte.

    Parameters
    ----------
    alpha:
        H x W alpha, uint8 (0-255) or float (0-1).
    margin:
        Pixels eroded from each region (default :func:`default_margin`).
    fg_threshold, bg_threshold:
        Alpha at or above which a pixel is foreground, at or below which it is
        background.

    Returns
    -------
    ``(fg, bg)``: two H x W boolean masks, disjoint.
    """
    a = _alpha01(alpha)
    if margin is None:
        margin = default_margin(*a.shape)
    fg = (a >= fg_threshold).astype(np.uint8)
    bg = (a <= bg_threshold).astype(np.uint8)
    if margin > 0:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
        # Pixels outside the image do not count as the other region: an animal
        # cut by the frame keeps its border pixels (OpenCV's default border).
        fg, bg = cv2.erode(fg, k), cv2.erode(bg, k)
    return fg.astype(bool), bg.astype(bool)


# --------------------------------------------------------------------------- statistics


def _coefficient_mask(mask: np.ndarray) -> np.ndarray:
    """Which finest-level db2 coefficients see only pixels of ``mask``.

    Coefficient ``k`` of :func:`pywt.dwt2` (db2, symmetric mode) along an axis
    combines pixels ``2k-2 .. 2k+1``; it is kept only if all of them are in the
    mask (pixels beyond the image border mirror pixels inside it).
    """
    m = mask.astype(bool)
    for axis in (0, 1):
        n = m.shape[axis]
        k = (n + 3) // 2
        pad = [(0, 0), (0, 0)]
        pad[axis] = (2, 2 * k + 2 - (n + 2))
        padded = np.pad(m, pad, mode="edge")
        parts = [np.take(padded, np.arange(d, d + 2 * k, 2), axis=axis) for d in range(4)]
        m = np.logical_and.reduce(parts)
    return m


def _db2_high_pass() -> np.ndarray:
    import pywt

    # Reversed: OpenCV correlates, a wavelet transform convolves.
    return np.asarray(pywt.Wavelet("db2").dec_hi[::-1], np.float64)


def _diagonal_details(image: np.ndarray) -> list[np.ndarray]:
    """The finest diagonal ("dd") db2 coefficients of each channel.

    Equal (to float32 rounding) to ``pywt.dwt2(channel, "db2")[1][2]``: the same
    high-pass filter along both axes on the half-sample-symmetric padded image,
    keeping every second output, as one OpenCV separable filter over all channels
    at once (several times faster than three 2-D transforms that also compute the
    three bands not needed).
    """
    arr = np.ascontiguousarray(image, dtype=np.float32)
    h, w = arr.shape[:2]
    k = _db2_high_pass()
    padded = cv2.copyMakeBorder(arr, 3, 3, 3, 3, cv2.BORDER_REFLECT)  # pywt's "symmetric" mode
    out = cv2.sepFilter2D(padded, cv2.CV_32F, k, k, anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)
    dd = out[1::2, 1::2][: (h + 3) // 2, : (w + 3) // 2]
    return [dd] if dd.ndim == 2 else [dd[..., c] for c in range(dd.shape[2])]


def _noise_from_details(details: list[np.ndarray], mask: np.ndarray) -> float:
    keep = _coefficient_mask(mask)
    if not keep.any():
        return math.nan
    return float(np.mean([np.median(np.abs(d[keep])) / _NORMAL_MAD for d in details]))


def noise_level(image: np.ndarray, mask: np.ndarray) -> float:
    """Robust noise std (grey levels, 0-255 scale) inside ``mask``.

    The estimator of ``skimage.restoration.estimate_sigma`` (Donoho's): the
    median absolute value of the finest diagonal db2 wavelet coefficients divided
    by 0.6745, restricted to the coefficients that see only pixels of ``mask``.
    Computed per channel and averaged (``average_sigmas=True``), so Gaussian noise
    of std 10 added to each channel reads as 10, and on a full mask the value
    equals ``estimate_sigma(image, channel_axis=-1, average_sigmas=True)`` (to
    float32 rounding). The wavelet cancels smooth shading; the median ignores
    the minority of coefficients on edges and texture.

    Parameters
    ----------
    image:
        H x W x 3 RGB, or H x W grey.
    mask:
        H x W boolean region.

    Returns
    -------
    The noise std, or NaN when no coefficient lies wholly inside ``mask``.
    """
    return _noise_from_details(_diagonal_details(image), mask)


def _gaussian(grey: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(grey, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def _gradient_energy(smoothed: np.ndarray) -> np.ndarray:
    # Sobel with 1/8 scale: the derivative in grey levels per pixel.
    gx = cv2.Sobel(smoothed, cv2.CV_32F, 1, 0, ksize=3, scale=0.125, borderType=cv2.BORDER_REFLECT)
    gy = cv2.Sobel(smoothed, cv2.CV_32F, 0, 1, ksize=3, scale=0.125, borderType=cv2.BORDER_REFLECT)
    return gx * gx + gy * gy


def _masked_mean(arr: np.ndarray, mask: np.ndarray) -> float:
    return float(np.mean(arr[mask], dtype=np.float64))


def sharpness(grey: np.ndarray, mask: np.ndarray, *, smooth: float = 1.0) -> float:
    """RMS gradient magnitude (grey levels per pixel) inside ``mask``.

    The image is first smoothed with a Gaussian of std ``smooth`` pixels so that
    pixel noise counts less than edges (a noisy flat wall is not sharp).
    """
    g = grey.astype(np.float32)
    g = _gaussian(g, smooth) if smooth > 0 else g
    return math.sqrt(_masked_mean(_gradient_energy(g), mask))


def _detail_from_bands(fine_sq: np.ndarray, coarse_sq: np.ndarray, mask: np.ndarray) -> float:
    fine, coarse = _masked_mean(fine_sq, mask), _masked_mean(coarse_sq, mask)
    total = fine + coarse
    # Below 1e-6 grey levels squared there is only float rounding: call it flat.
    return fine / total if total > 1e-6 else math.nan


def detail_fraction(grey: np.ndarray, mask: np.ndarray) -> float:
    """Share of detail energy at the pixel scale: a cue of native resolution.

    Splits the image into two band-pass layers, fine = ``Y - G1(Y)`` (periods of
    about 1-2 px) and coarse = ``G1(Y) - G2(Y)`` (about 2-4 px), ``Gs`` a Gaussian
    of std ``s``, and returns ``E[fine^2] / (E[fine^2] + E[coarse^2])`` over
    ``mask``. The scale is the pixel grid, so the number is relative to the
    image's size: a region upsampled from a smaller picture has lost its finest
    octave and scores low; a region at native resolution (or a noisy one) scores
    high. NaN for a perfectly flat region.
    """
    y = grey.astype(np.float32)
    g1, g2 = _gaussian(y, 1.0), _gaussian(y, 2.0)
    return _detail_from_bands(np.square(y - g1), np.square(g1 - g2), mask)


def luminance(grey: np.ndarray, mask: np.ndarray) -> float:
    """Mean luma (0-255) inside ``mask``."""
    return _masked_mean(grey, mask)


def contrast(grey: np.ndarray, mask: np.ndarray) -> float:
    """RMS contrast: the std of luma (grey levels) inside ``mask``."""
    return float(np.std(grey[mask], dtype=np.float64))


def saturation_map(image: np.ndarray) -> np.ndarray:
    """HSV saturation ``(max - min) / max`` per pixel, float32 in [0, 1] (0 where black)."""
    rgb = _check_image(image)
    if rgb.dtype not in (np.uint8, np.float32):
        rgb = rgb.astype(np.float32)
    r, g, b = cv2.split(np.ascontiguousarray(rgb))
    hi, lo = cv2.max(cv2.max(r, g), b), cv2.min(cv2.min(r, g), b)
    hi32 = hi.astype(np.float32)
    return np.divide((hi32 - lo.astype(np.float32)), hi32, out=np.zeros_like(hi32), where=hi32 > 0)


def saturation(image: np.ndarray, mask: np.ndarray) -> float:
    """Mean HSV saturation (0-1) inside ``mask``."""
    return _masked_mean(saturation_map(image), mask)


class StatisticMaps:
    """The whole-image maps every statistic reads, computed once per image.

    Measuring two regions of one image then costs two sets of masked means
    instead of two sets of filters. The values equal those of the single-statistic
    functions above.
    """

    def __init__(self, image: np.ndarray):
        _check_image(image)
        self.grey = luma(image)
        g1, g2 = _gaussian(self.grey, 1.0), _gaussian(self.grey, 2.0)
        self.gradient_energy = _gradient_energy(g1)  # sharpness smooths with the same G1
        self.fine_sq = np.square(self.grey - g1)
        self.coarse_sq = np.square(g1 - g2)
        self.saturation = saturation_map(image)
        self.details = _diagonal_details(image)

    def region(self, mask: np.ndarray) -> dict[str, float]:
        """Every statistic of :data:`STATISTICS` for one region (NaN where undefined)."""
        return {
            "noise": _noise_from_details(self.details, mask),
            "sharpness": math.sqrt(_masked_mean(self.gradient_energy, mask)),
            "detail": _detail_from_bands(self.fine_sq, self.coarse_sq, mask),
            "luminance": luminance(self.grey, mask),
            "contrast": contrast(self.grey, mask),
            "saturation": _masked_mean(self.saturation, mask),
        }


def discrepancy(name: str, fg: float, bg: float) -> float:
    """The discrepancy of statistic ``name``: foreground value vs background value.

    ``log2((fg + eps) / (bg + eps))`` for scale-like statistics, ``fg - bg`` for
    the others (see :data:`STATISTICS`); NaN when either value is NaN.
    """
    stat = STATISTICS[name]
    if math.isnan(fg) or math.isnan(bg):
        return math.nan
    if stat.kind == "log2_ratio":
        return math.log2((fg + stat.eps) / (bg + stat.eps))
    return fg - bg


# --------------------------------------------------------------------------- one sample


def measure_sample(
    image: np.ndarray,
    alpha: np.ndarray,
    *,
    margin: int | None = None,
    min_pixels: int = MIN_PIXELS,
    fg_threshold: float = FG_THRESHOLD,
    bg_threshold: float = BG_THRESHOLD,
) -> dict[str, Any]:
    """Foreground and background statistics of one image and their discrepancies.

    Parameters
    ----------
    image:
        H x W x 3 RGB uint8 (a composite or a real photo).
    alpha:
        H x W alpha of the same size, uint8 or float in [0, 1].
    margin:
        Erosion margin (default :func:`default_margin`).
    min_pixels:
        A region with fewer pixels after erosion is not measured.

    Returns
    -------
    A JSON-ready dict: ``margin``, ``fg_pixels``, ``bg_pixels``, ``fg`` and ``bg``
    (statistic -> value, or None), ``discrepancy`` (statistic -> value or None)
    and ``missing`` (statistic -> why its discrepancy is None). A region that is
    too small makes every discrepancy missing, with the reason; it is not an
    error.
    """
    _check_image(image)
    if alpha.shape != image.shape[:2]:
        raise ValueError(f"alpha is {alpha.shape[1]}x{alpha.shape[0]} but the image is {image.shape[1]}x{image.shape[0]}")
    h, w = alpha.shape
    if margin is None:
        margin = default_margin(h, w)
    fg_mask, bg_mask = regions(alpha, margin=margin, fg_threshold=fg_threshold, bg_threshold=bg_threshold)
    out: dict[str, Any] = {
        "margin": int(margin), "fg_pixels": int(fg_mask.sum()), "bg_pixels": int(bg_mask.sum()),
        "fg": None, "bg": None, "discrepancy": {}, "missing": {},
    }
    region_reason: dict[str, str] = {}
    maps: StatisticMaps | None = None
    for name, mask, thr, sign in (("fg", fg_mask, fg_threshold, ">="), ("bg", bg_mask, bg_threshold, "<=")):
        n = int(mask.sum())
        if n < min_pixels:
            region = "foreground" if name == "fg" else "background"
            region_reason[name] = (f"{region} region too small: {n} px with alpha {sign} {thr:g} after eroding "
                                   f"{margin} px from the edge (need {min_pixels})")
            continue
        maps = maps or StatisticMaps(image)
        out[name] = {k: (None if math.isnan(v) else v) for k, v in maps.region(mask).items()}
    for stat in STATISTICS:
        if region_reason:
            out["discrepancy"][stat] = None
            out["missing"][stat] = "; ".join(region_reason.values())
            continue
        fg_v, bg_v = out["fg"][stat], out["bg"][stat]
        if fg_v is None or bg_v is None:
            which = " and ".join(r for r, v in (("foreground", fg_v), ("background", bg_v)) if v is None)
            out["discrepancy"][stat] = None
            out["missing"][stat] = f"{STATISTICS[stat].label} undefined in the {which} (flat region)"
            continue
        out["discrepancy"][stat] = discrepancy(stat, fg_v, bg_v)
    return out
