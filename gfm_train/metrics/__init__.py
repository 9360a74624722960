"""Matting metrics (SAD, MSE, MAD, Grad, Conn, SAD-Trans/FG/BG) in two protocols.

- ``gfm``: the GFM paper's protocol, whole image (its reference code's definitions,
  including Grad / 10).
- ``dim``: Deep Image Matting's MATLAB protocol, the trimap's unknown region only.

Example:
    >>> from gfm_train.metrics import compute_metrics
    >>> scores = compute_metrics(pred, truth, trimap, protocol="gfm")  # doctest: +SKIP
    >>> scores["sad"]                                                  # doctest: +SKIP

Numbers from the two protocols are not comparable; see ``docs/eval.md``.
"""
from .connectivity import level_counts
from .gradient import dim_gradient_magnitude, dim_kernels, gfm_gradient_magnitude, gfm_kernels, mat2gray
from .protocols import (
    BACKGROUND,
    DIM_THRESHOLDS,
    DIM_THRESHOLDS_U8,
    FOREGROUND,
    GFM_THRESHOLDS,
    METRICS,
    PROTOCOLS,
    THETA,
    TRIMAP_METRICS,
    UNKNOWN,
    as_float_alpha,
    as_uint8_alpha,
    compute_metrics,
    dim_connectivity,
    dim_gradient,
    dim_metrics,
    gfm_connectivity,
    gfm_gradient,
    gfm_metrics,
)

__all__ = [
    "BACKGROUND", "DIM_THRESHOLDS", "DIM_THRESHOLDS_U8", "FOREGROUND", "GFM_THRESHOLDS", "METRICS",
    "PROTOCOLS", "THETA", "TRIMAP_METRICS", "UNKNOWN", "as_float_alpha", "as_uint8_alpha",
    "compute_metrics", "dim_connectivity", "dim_gradient", "dim_gradient_magnitude", "dim_kernels",
    "dim_metrics", "gfm_connectivity", "gfm_gradient", "gfm_gradient_magnitude", "gfm_kernels",
    "gfm_metrics", "level_counts", "mat2gray",
]
