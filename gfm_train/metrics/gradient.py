"""Gradient magnitudes for the Grad metric, as each protocol defines them.

Both protocols compare the gradient magnitude of the prediction with that of the
truth, but they filter differently:

- **GFM protocol** (the paper's reference code): ``scipy.ndimage.gaussian_filter``
  with sigma 1.4, ``order`` (1, 0) and (0, 1), its default ``truncate=4``
  (13 taps), kernels normalised to sum 1 (derivative: times ``-x / sigma**2``),
  ``reflect`` borders (``d c b a | a b c d``), results stored as float32.
- **DIM protocol** (Deep Image Matting's MATLAB ``gaussgradient``): a 9 x 9 kernel
  ``gauss(u) * dgauss(v)`` (half size ``ceil(sigma * sqrt(-2 log(sqrt(2 pi) sigma
  0.01)))`` = 4), divided by its Frobenius norm, applied by ``imfilter(...,
  'replicate', 'conv')`` in double precision, after ``mat2gray`` has stretched
  each image to its own minimum and maximum.

Both 2-D kernels are outer products, so two 1-D passes (``cv2.sepFilter2D``) give
the same result as the 2-D filter at a fraction of the cost.
"""
from __future__ import annotations

import functools
import math

import cv2
import numpy as np

SIGMA = 1.4


@functools.lru_cache(maxsize=None)
def gfm_kernels(sigma: float = SIGMA, truncate: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """scipy's 1-D Gaussian (order 0) and Gaussian-derivative (order 1) kernels.

    Returns
    -------
    (smooth, derivative): float64 arrays of length ``2 * radius + 1`` with
    ``radius = int(truncate * sigma + 0.5)``, as ``scipy.ndimage`` builds them.
    """
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 / (sigma * sigma) * x**2)
    phi /= phi.sum()
    return phi, -x / (sigma * sigma) * phi


@functools.lru_cache(maxsize=None)
def dim_kernels(sigma: float = SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """The 1-D factors of MATLAB ``gaussgradient``'s kernel, each of unit norm.

    ``hx(i, j) = gauss(i) * dgauss(j) / ||gauss (x) dgauss||_F`` is the outer
    product of ``gauss / ||gauss||`` (down the rows) and ``dgauss / ||dgauss||``
    (along the columns), because the Frobenius norm of an outer product is the
    product of the two vector norms.
    """
    half = math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * 1e-2)))
    u = np.arange(-half, half + 1, dtype=np.float64)
    g = np.exp(-(u**2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))
    dg = -u * g / sigma**2
    return g / np.linalg.norm(g), dg / np.linalg.norm(dg)


def _filter(src: np.ndarray, depth: int, kx: np.ndarray, ky: np.ndarray, border: int) -> np.ndarray:
    return cv2.sepFilter2D(src, depth, kx, ky, borderType=border)


def _magnitude(gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    # Not cv2.magnitude: its vectorised square root rounds differently depending on
    # where the output lands in memory, so equal inputs could give unequal results.
    np.multiply(gx, gx, out=gx)
    np.multiply(gy, gy, out=gy)
    np.add(gx, gy, out=gx)
    return np.sqrt(gx, out=gx)


def gfm_gradient_magnitude(img: np.ndarray) -> np.ndarray:
    """float32 gradient magnitude of ``img`` (values in [0, 1]) as the GFM code computes it."""
    smooth, deriv = gfm_kernels()
    # scipy correlates with the reversed kernel (a convolution); OpenCV correlates.
    k0, k1 = smooth[::-1].copy(), deriv[::-1].copy()
    src = np.ascontiguousarray(img, dtype=np.float32)
    gy = _filter(src, cv2.CV_32F, k0, k1, cv2.BORDER_REFLECT)  # scipy order (1, 0)
    gx = _filter(src, cv2.CV_32F, k1, k0, cv2.BORDER_REFLECT)  # scipy order (0, 1)
    return _magnitude(gx, gy)


def mat2gray(img: np.ndarray) -> np.ndarray:
    """MATLAB ``mat2gray``: rescale by the image's own minimum and maximum, to double.

    A constant image is returned as ``double(img)`` clipped to [0, 1], as MATLAB does.
    """
    a = np.asarray(img, dtype=np.float64)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if hi == lo:
        return np.clip(a, 0.0, 1.0)
    delta = 1.0 / (hi - lo)
    # imlincomb(delta, A, -lo*delta): the same two-term form, then clipped.
    return np.clip(a * delta + (-lo * delta), 0.0, 1.0)


def dim_gradient_magnitude(gray: np.ndarray) -> np.ndarray:
    """float64 gradient magnitude of an already ``mat2gray``-ed image, MATLAB style."""
    g, dg = dim_kernels()
    # imfilter(..., 'conv') flips the kernel; dgauss is odd, so its flip is -dgauss.
    src = np.ascontiguousarray(gray, dtype=np.float64)
    gx = _filter(src, cv2.CV_64F, -dg, g, cv2.BORDER_REPLICATE)
    gy = _filter(src, cv2.CV_64F, g, -dg, cv2.BORDER_REPLICATE)
    return _magnitude(gx, gy)
