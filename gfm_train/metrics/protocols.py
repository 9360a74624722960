"""The metric sets of the two evaluation protocols.

``gfm_metrics``: the GFM paper's reference evaluation (whole image; alphas as
floats in [0, 1]). ``dim_metrics``: Deep Image Matting's MATLAB evaluation (the
trimap's unknown region; alphas as 8-bit values, as read from PNG files).
Both return a dict keyed by :data:`METRICS`. See ``docs/eval.md`` for why their
numbers differ.
"""
from __future__ import annotations

import math
from typing import Iterable

import cv2
import numpy as np

from . import connectivity as _conn
from .gradient import dim_gradient_magnitude, gfm_gradient_magnitude

PROTOCOLS = ("gfm", "dim")
#: Metric names, in the column order of the paper's tables.
METRICS = ("sad", "mse", "mad", "grad", "conn", "sad_trans", "sad_fg", "sad_bg")
#: Metrics that need a trimap.
TRIMAP_METRICS = ("sad_trans", "sad_fg", "sad_bg")
#: Trimap values.
BACKGROUND, UNKNOWN, FOREGROUND = 0, 128, 255
#: Connectivity thresholds of the GFM code: ``np.arange(0, 1.1, 0.1)`` (float64, 0.1 * i).
GFM_THRESHOLDS = np.arange(0, 1.1, 0.1)
#: MATLAB ``0:0.1:1`` compared against single-precision alphas.
DIM_THRESHOLDS = (np.arange(11) / 10).astype(np.float32)
#: The smallest 8-bit value whose single-precision alpha reaches each DIM threshold.
DIM_THRESHOLDS_U8 = np.searchsorted(np.arange(256, dtype=np.float32) / np.float32(255), DIM_THRESHOLDS, side="left")
THETA = 0.15


def _count_table(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """For each value, how many of ``thresholds[1:]`` it reaches (``value >= t``)."""
    return (values[:, None] >= thresholds[None, 1:]).sum(axis=1).astype(np.uint8)


#: 8-bit alpha -> thresholds reached, GFM semantics (``k / 255.0 >= 0.1 * i`` in double).
_GFM_PASSED_U8 = _count_table(np.arange(256) / 255.0, GFM_THRESHOLDS)
#: 8-bit alpha -> thresholds reached, MATLAB semantics (single precision).
_DIM_PASSED_U8 = _count_table(np.arange(256, dtype=np.float32) / np.float32(255), DIM_THRESHOLDS)
#: 8-bit alpha -> float32 alpha (k / 255 rounded once).
_U8_TO_F32 = (np.arange(256) / 255.0).astype(np.float32)


def _float32_at_least(t: float) -> np.float32:
    """The smallest float32 ``>= t``: for a float32 ``a``, ``a >= t`` iff ``a >= this``."""
    f = np.float32(t)
    return f if float(f) >= t else np.nextafter(f, np.float32(np.inf))


#: GFM thresholds as float32 comparison values (index 11 = never reached), as 256-entry LUTs
#: for step ``e`` (``_AT``) and step ``e + 1`` (``_NEXT``).
_GFM_F32_STEPS = np.array([_float32_at_least(t) for t in GFM_THRESHOLDS] + [np.inf], np.float32)
_GFM_F32_AT = np.full((1, 256), np.inf, np.float32)
_GFM_F32_AT[0, :12] = _GFM_F32_STEPS
_GFM_F32_NEXT = np.full((1, 256), np.inf, np.float32)
_GFM_F32_NEXT[0, :11] = _GFM_F32_STEPS[1:]


def gfm_passed(a: np.ndarray) -> np.ndarray:
    """uint8 map: how many GFM thresholds (0.1 .. 1.0, compared in double) ``a`` reaches."""
    if a.dtype == np.uint8:
        return cv2.LUT(a, _GFM_PASSED_U8)
    if a.dtype == np.float32 and a.size > 4:
        # floor(10 a) is at most one step off; one comparison each way corrects it.
        est = cv2.multiply(a, np.full_like(a, 10)).astype(np.uint8)  # truncates; a <= 1 keeps it <= 10
        below = cv2.compare(a, cv2.LUT(est, _GFM_F32_AT), cv2.CMP_LT)  # 255 where est is one too high
        above = cv2.compare(a, cv2.LUT(est, _GFM_F32_NEXT), cv2.CMP_GE)  # 255 where est is one too low
        est += above >> 7
        est -= below >> 7
        return est
    return _count_table(a.ravel().astype(np.float64), GFM_THRESHOLDS).reshape(a.shape)


# --------------------------------------------------------------------------- inputs


def _check_pair(pred: np.ndarray, truth: np.ndarray, trimap: np.ndarray | None) -> None:
    for name, a in (("prediction", pred), ("truth", truth)):
        if a.ndim != 2:
            raise ValueError(f"{name} must be a 2-D alpha matte, got shape {a.shape}")
    if pred.shape != truth.shape:
        raise ValueError(f"prediction is {pred.shape[1]}x{pred.shape[0]} but truth is {truth.shape[1]}x{truth.shape[0]}")
    if trimap is not None and trimap.shape != truth.shape:
        raise ValueError(f"trimap is {trimap.shape[1]}x{trimap.shape[0]} but truth is {truth.shape[1]}x{truth.shape[0]}")


def as_float_alpha(a: np.ndarray, name: str = "alpha") -> np.ndarray:
    """uint8 -> float64 ``a / 255``; float arrays are checked to lie in [0, 1] and kept."""
    a = np.asarray(a)
    if a.dtype == np.uint8:
        return a / 255.0
    if a.dtype.kind != "f":
        raise ValueError(f"{name} must be uint8 (0..255) or float (0..1), got {a.dtype}")
    if a.size:
        lo, hi = float(a.min()), float(a.max())
        if not (lo >= 0.0 and hi <= 1.0):  # also false for NaN
            raise ValueError(f"{name} must lie in [0, 1], got values from {lo} to {hi}")
    return a


def as_uint8_alpha(a: np.ndarray, name: str = "alpha") -> np.ndarray:
    """Alpha as 8 bits, the way a PNG file stores it: float ``round(a * 255)``."""
    a = np.asarray(a)
    if a.dtype == np.uint8:
        return a
    a = as_float_alpha(a, name)
    return np.rint(a * 255.0).astype(np.uint8)


def _region(trimap: np.ndarray, value: int) -> np.ndarray:
    return np.equal(trimap, value).view(np.uint8)


def _wanted(metrics: Iterable[str] | None, trimap: np.ndarray | None) -> list[str]:
    names = list(METRICS if metrics is None else metrics)
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {', '.join(METRICS)}")
    if trimap is None:
        names = [n for n in names if n not in TRIMAP_METRICS]
    return names


# --------------------------------------------------------------------------- GFM


def _level_map(count: np.ndarray, levels: np.ndarray) -> np.ndarray:
    lut = np.zeros((1, 256), np.float32)
    lut[0, : len(levels)] = levels
    return cv2.LUT(count, lut)


def gfm_connectivity(pred: np.ndarray, truth: np.ndarray, pred32: np.ndarray | None = None,
                     truth32: np.ndarray | None = None) -> float:
    """GFM Conn over the whole image, / 1000.

    ``pred``/``truth`` as given (uint8 or float): the thresholds are compared in
    their own precision as the reference does (``x >= 0.1 * i`` in double).
    ``pred32``/``truth32`` are float32 copies used for ``phi``.
    """
    passed = cv2.min(gfm_passed(pred), gfm_passed(truth))
    k = _conn.level_counts(passed, column_major=False, empty="one")
    level = _level_map(k, GFM_THRESHOLDS.astype(np.float32))  # the reference's l_map is float32
    p32 = pred32 if pred32 is not None else _to_f32(pred)
    t32 = truth32 if truth32 is not None else _to_f32(truth)
    return cv2.norm(_conn.phi(p32, level), _conn.phi(t32, level), cv2.NORM_L1) / 1000.0


def _to_f32(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return cv2.LUT(a, _U8_TO_F32[None, :])
    return np.ascontiguousarray(a, dtype=np.float32)


def gfm_gradient(pred: np.ndarray, truth: np.ndarray) -> float:
    """GFM Grad over the whole image, / 10 as in the reference code."""
    return cv2.norm(gfm_gradient_magnitude(pred), gfm_gradient_magnitude(truth), cv2.NORM_L2SQR) / 10.0


def gfm_metrics(
    pred: np.ndarray, truth: np.ndarray, trimap: np.ndarray | None = None, metrics: Iterable[str] | None = None
) -> dict[str, float]:
    """The GFM protocol: SAD, MSE, MAD, Grad and Conn over the whole image.

    Parameters
    ----------
    pred, truth:
        H x W alpha mattes, uint8 (0..255) or float (0..1). Floats are used as given
        (the reference scores the network's float output); uint8 becomes ``a / 255``.
    trimap:
        Optional H x W uint8 trimap (0 / 128 / 255) for SAD-Trans (the prediction
        forced to 0 and 1 where the trimap is known, summed over the whole image),
        SAD-FG and SAD-BG. Without it those three are left out.
    metrics:
        A subset of :data:`METRICS` (default: all).

    Returns
    -------
    dict: name -> value. SAD-type values and Conn are / 1000, Grad / 10.
    """
    pred, truth = np.asarray(pred), np.asarray(truth)
    _check_pair(pred, truth, trimap)
    names = _wanted(metrics, trimap)
    p = as_float_alpha(pred, "prediction") if pred.dtype != np.uint8 else pred
    g = as_float_alpha(truth, "truth") if truth.dtype != np.uint8 else truth
    # float32 copies for the sums and filters (sums accumulate in double); the
    # thresholds of Conn are compared in the inputs' own precision.
    p32, g32 = _to_f32(p), _to_f32(g)
    n = p.size
    out: dict[str, float] = {}
    if {"sad", "mad"} & set(names):
        l1 = cv2.norm(p32, g32, cv2.NORM_L1) if n else 0.0
        out["sad"] = l1 / 1000.0
        out["mad"] = l1 / n if n else math.nan
    if "mse" in names:
        out["mse"] = cv2.norm(p32, g32, cv2.NORM_L2SQR) / n if n else math.nan
    if "grad" in names:
        out["grad"] = gfm_gradient(p32, g32) if n else 0.0
    if "conn" in names:
        out["conn"] = gfm_connectivity(p, g, p32, g32) if n else 0.0
    if trimap is not None and set(TRIMAP_METRICS) & set(names):
        fg, bg = _region(trimap, FOREGROUND), _region(trimap, BACKGROUND)
        l1_fg = cv2.norm(p32, g32, cv2.NORM_L1, fg)
        l1_bg = cv2.norm(p32, g32, cv2.NORM_L1, bg)
        out["sad_fg"], out["sad_bg"] = l1_fg / 1000.0, l1_bg / 1000.0
        if "sad_trans" in names:
            # Forcing the prediction to 1 on FG and 0 on BG leaves |1 - truth| and truth there;
            # elsewhere (unknown, or any other trimap value) the prediction's own error.
            l1 = out["sad"] * 1000.0 if "sad" in out else cv2.norm(p32, g32, cv2.NORM_L1)
            n_fg = cv2.countNonZero(fg)
            sum_fg = cv2.norm(g32, cv2.NORM_L1, fg)  # alphas are >= 0: the L1 norm is the sum
            sum_bg = cv2.norm(g32, cv2.NORM_L1, bg)
            out["sad_trans"] = (l1 - l1_fg - l1_bg + (n_fg - sum_fg) + sum_bg) / 1000.0
    return {k: out[k] for k in names}


# --------------------------------------------------------------------------- DIM


def dim_connectivity(pred8: np.ndarray, truth8: np.ndarray, unknown: np.ndarray) -> float:
    """DIM Conn (8-bit inputs) summed over ``unknown`` (0/1 uint8), / 1000."""
    passed = cv2.LUT(cv2.min(pred8, truth8), _DIM_PASSED_U8)
    k = _conn.level_counts(passed, column_major=True, empty="previous")
    level = _level_map(k, DIM_THRESHOLDS)
    # single(x) / 255 is correctly rounded, the same as rounding k / 255 once
    pred, truth = _to_f32(pred8), _to_f32(truth8)
    phi_p = _conn.phi(pred, level)
    phi_t = _conn.phi(truth, level)
    return cv2.norm(phi_p, phi_t, cv2.NORM_L1, unknown) / 1000.0


def _box(mask: np.ndarray, margin: int) -> tuple[slice, slice]:
    x, y, w, h = cv2.boundingRect(mask)
    H, W = mask.shape
    return slice(max(y - margin, 0), min(y + h + margin, H)), slice(max(x - margin, 0), min(x + w + margin, W))


def dim_gradient(pred8: np.ndarray, truth8: np.ndarray, unknown: np.ndarray) -> float:
    """DIM Grad (8-bit inputs) summed over ``unknown``, / 1000.

    ``mat2gray`` uses each image's global minimum and maximum; the filtering then
    only needs the unknown region's bounding box plus the kernel's half size.
    """
    if not unknown.any():
        return 0.0
    ys, xs = _box(unknown, margin=4)
    amps = []
    for img in (pred8, truth8):
        lo, hi = int(img.min()), int(img.max())
        crop = img[ys, xs]
        if hi == lo:  # constant: MATLAB's mat2gray returns it unscaled, its gradient is 0
            gray = np.clip(crop.astype(np.float64), 0, 1)
        else:
            delta = 1.0 / (hi - lo)
            gray = np.clip(crop * delta + (-lo * delta), 0.0, 1.0)
        amps.append(dim_gradient_magnitude(gray).astype(np.float32))
    diff = amps[0] - amps[1]  # MATLAB: (single(pred_amp) - single(target_amp)).^2
    err = diff * diff
    return float(err[unknown[ys, xs] == 1].sum(dtype=np.float64)) / 1000.0


def dim_metrics(
    pred: np.ndarray, truth: np.ndarray, trimap: np.ndarray, metrics: Iterable[str] | None = None
) -> dict[str, float]:
    """The DIM protocol: every metric restricted to the trimap's unknown region (== 128).

    Parameters
    ----------
    pred, truth:
        H x W alpha mattes; uint8 is used as is, floats are rounded to 8 bits first
        (the MATLAB code reads PNG files).
    trimap:
        H x W uint8 trimap; required.
    metrics:
        A subset of :data:`METRICS` (default: all).

    Returns
    -------
    dict: SAD, Grad, Conn / 1000; MSE and MAD are means over the unknown pixels
    (NaN when there are none). SAD-Trans equals SAD here; SAD-FG and SAD-BG apply
    the same SAD to the trimap's foreground and background.
    """
    if trimap is None:
        raise ValueError("the DIM protocol needs a trimap (it scores the unknown region only)")
    pred, truth, trimap = np.asarray(pred), np.asarray(truth), np.asarray(trimap)
    _check_pair(pred, truth, trimap)
    names = _wanted(metrics, trimap)
    p8 = as_uint8_alpha(pred, "prediction")
    g8 = as_uint8_alpha(truth, "truth")
    unknown = _region(trimap, UNKNOWN)
    n = cv2.countNonZero(unknown) if unknown.size else 0
    out: dict[str, float] = {}
    if {"sad", "mad", "sad_trans"} & set(names):
        l1 = cv2.norm(p8, g8, cv2.NORM_L1, unknown) / 255.0 if n else 0.0
        out["sad"] = out["sad_trans"] = l1 / 1000.0
        out["mad"] = l1 / n if n else math.nan
    if "mse" in names:
        out["mse"] = cv2.norm(p8, g8, cv2.NORM_L2SQR, unknown) / 255.0**2 / n if n else math.nan
    if "grad" in names:
        out["grad"] = dim_gradient(p8, g8, unknown)
    if "conn" in names:
        out["conn"] = dim_connectivity(p8, g8, unknown) if n else 0.0
    if {"sad_fg", "sad_bg"} & set(names):
        out["sad_fg"] = cv2.norm(p8, g8, cv2.NORM_L1, _region(trimap, FOREGROUND)) / 255.0 / 1000.0
        out["sad_bg"] = cv2.norm(p8, g8, cv2.NORM_L1, _region(trimap, BACKGROUND)) / 255.0 / 1000.0
    return {k: out[k] for k in names}


def compute_metrics(
    pred: np.ndarray,
    truth: np.ndarray,
    trimap: np.ndarray | None = None,
    protocol: str = "gfm",
    metrics: Iterable[str] | None = None,
) -> dict[str, float]:
    """Score one prediction under ``protocol`` (``"gfm"`` or ``"dim"``); see the two functions."""
    if protocol == "gfm":
        return gfm_metrics(pred, truth, trimap, metrics)
    if protocol == "dim":
        return dim_metrics(pred, truth, trimap, metrics)
    raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
