"""The connectivity (Conn) metric's level map, computed with OpenCV components.

Definition (Rhemann et al., as coded by Deep Image Matting and by GFM): for the
thresholds ``t_1 .. t_10`` (0.1 .. 1), take the largest 4-connected component
``omega_i`` of ``pred >= t_i and truth >= t_i``. A pixel gets the level
``l = t_{i-1}`` at the first threshold whose ``omega_i`` does not contain it, and
``l = 1`` if it is never left out. Then ``phi = 1 - d * (d >= 0.15)`` with
``d = alpha - l``, and Conn sums ``|phi_pred - phi_truth|``.

Since ``pred >= t and truth >= t`` is ``min(pred, truth) >= t``, only the minimum
matters. A pixel is still unassigned after threshold ``i`` exactly when it lies in
``omega_1 .. omega_i`` (all of them), so the level is ``t[k]`` where ``k`` counts
those thresholds. The masks shrink as the threshold grows, so each threshold
only has to look inside the bounding box of the previous mask.

The two reference implementations differ in two places, kept here as options:

- ties between equally large components: MATLAB's ``bwconncomp`` numbers
  components in column-major order, skimage's ``label`` in row-major order, and
  both take the first largest (``column_major``);
- a threshold with no common pixel: MATLAB's loop assigns the previous threshold
  to every unassigned pixel; GFM's ``continue`` skips it, so those pixels end
  with ``l = 1`` (``empty="previous"`` or ``"one"``).
"""
from __future__ import annotations

import cv2
import numpy as np

#: Number of thresholds after 0 (0.1, 0.2, ..., 1.0).
STEPS = 10
#: float32 counts are exact below this many pixels (2**24).
_HIST_EXACT = 1 << 24


def _labels(mask: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """4-connected labels of a 0/1 uint8 mask, and the pixel count of every label."""
    if mask.size < _HIST_EXACT:
        try:
            n, labels = cv2.connectedComponents(mask, connectivity=4, ltype=cv2.CV_16U)
        except cv2.error:  # more than 65534 components: fall back to 32-bit labels
            n = 0
        else:
            if n <= 2:
                return n, labels, np.array([0, int(mask.size)] if n == 2 else [mask.size])[:n]
            hist = cv2.calcHist([labels], [0], None, [n], [0, n]).ravel()
            return n, labels, hist.astype(np.int64)
    n, labels = cv2.connectedComponents(mask, connectivity=4, ltype=cv2.CV_32S)
    return n, labels, np.bincount(labels.ravel(), minlength=n)


def _largest(labels: np.ndarray, areas: np.ndarray, column_major: bool) -> int:
    """Label of the largest component; ties go to the one seen first in scan order."""
    if len(areas) == 2:
        return 1
    sizes = areas[1:]
    tied = np.flatnonzero(sizes == sizes.max()) + 1
    if len(tied) == 1:
        return int(tied[0])
    best, best_key = -1, None
    for lab in tied:
        ys, xs = np.nonzero(labels == lab)
        if column_major:
            x = xs.min()
            key = (int(x), int(ys[xs == x].min()))
        else:
            key = (int(ys[0]), int(xs[0]))  # np.nonzero is row-major ordered
        if best_key is None or key < best_key:
            best, best_key = int(lab), key
    return best


def level_counts(
    m: np.ndarray,
    thresholds: np.ndarray,
    *,
    column_major: bool,
    empty: str,
) -> np.ndarray:
    """For every pixel, how many thresholds it survives inside the largest component.

    Parameters
    ----------
    m:
        ``min(pred, truth)`` (any dtype that compares correctly with ``thresholds``).
    thresholds:
        The 11 comparison values ``t_0 .. t_10`` in ``m``'s units (``t_0`` unused).
    column_major:
        Break ties between equally large components in column-major scan order
        (MATLAB) instead of row-major (skimage).
    empty:
        ``"previous"`` (MATLAB) or ``"one"`` (GFM): what unassigned pixels get when a
        threshold has no common pixel at all.

    Returns
    -------
    uint8 array ``k`` in 0..10; the level map is ``t[k]`` with ``t[10] = 1``.
    """
    if empty not in ("previous", "one"):
        raise ValueError(f"empty must be 'previous' or 'one', got {empty!r}")
    h, w = m.shape
    count = np.zeros((h, w), np.uint8)
    alive = np.ones((h, w), np.uint8)  # in omega_1 .. omega_i so far (valid inside the box)
    y0, y1, x0, x1 = 0, h, 0, w
    for i in range(1, STEPS + 1):
        mask = np.greater_equal(m[y0:y1, x0:x1], thresholds[i]).view(np.uint8)
        bx, by, bw, bh = cv2.boundingRect(mask) if mask.size else (0, 0, 0, 0)
        if bw == 0 or bh == 0:
            if empty == "one":
                box = count[y0:y1, x0:x1]
                box[alive[y0:y1, x0:x1] == 1] = STEPS
            break
        mask = mask[by : by + bh, bx : bx + bw]
        y0, x0 = y0 + by, x0 + bx
        y1, x1 = y0 + bh, x0 + bw
        n, labels, areas = _labels(np.ascontiguousarray(mask))
        best = _largest(labels, areas, column_major)
        omega = np.equal(labels, best).view(np.uint8)
        box_alive = alive[y0:y1, x0:x1]
        np.bitwise_and(box_alive, omega, out=box_alive)
        box_count = count[y0:y1, x0:x1]
        np.add(box_count, box_alive, out=box_count)
    return count


def phi(alpha: np.ndarray, level: np.ndarray, theta: float = 0.15) -> np.ndarray:
    """``1 - d * (d >= theta)`` with ``d = alpha - level``, in float32 like both references.

    ``d >= theta`` (theta rounded to float32) is ``d > the float32 just below it``,
    which is what ``cv2.threshold(..., THRESH_TOZERO)`` tests.
    """
    d = cv2.subtract(np.asarray(alpha, np.float32), np.asarray(level, np.float32))
    below = float(np.nextafter(np.float32(theta), np.float32(-np.inf)))
    kept = cv2.threshold(d, below, 0.0, cv2.THRESH_TOZERO)[1]
    return np.subtract(np.float32(1), kept, out=kept)
