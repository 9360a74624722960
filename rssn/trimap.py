"""Trimaps generated from a truth alpha matte."""
from __future__ import annotations

import cv2
import numpy as np

#: Values of a trimap: background, unknown (transition), foreground.
BACKGROUND, UNKNOWN, FOREGROUND = 0, 128, 255


def trimap_from_alpha(alpha: np.ndarray, kernel: int = 25) -> np.ndarray:
    """A 0 / 128 / 255 trimap from an 8-bit alpha matte.

    unknown = dilate(alpha > 0) minus erode(alpha == 255), both with an elliptical
    structuring element of side ``kernel`` (the RoSTa TT definition).

    Parameters
    ----------
    alpha : H x W uint8 array (0..255).
    kernel : side of the elliptical kernel in pixels.

    Returns
    -------
    H x W uint8 array of 0 (background), 128 (unknown) and 255 (foreground).
    """
    if alpha.ndim != 2:
        raise ValueError(f"alpha must be H x W, got shape {alpha.shape}")
    if kernel < 1:
        raise ValueError(f"kernel must be at least 1, got {kernel}")
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel, kernel))
    fg = cv2.erode((alpha >= 255).astype(np.uint8), k)
    maybe = cv2.dilate((alpha > 0).astype(np.uint8), k)
    tri = np.full(alpha.shape, UNKNOWN, np.uint8)
    tri[maybe == 0] = BACKGROUND
    tri[fg == 1] = FOREGROUND
    return tri
