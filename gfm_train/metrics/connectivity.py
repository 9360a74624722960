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


def _labels(mask: np.ndarray) -> tuple[int, np.ndarray]:
    """4-connected labels of a 0/1 uint8 mask (16-bit while they fit)."""
    if mask.size < _HIST_EXACT:
        try:
            return cv2.connectedComponents(mask, connectivity=4, ltype=cv2.CV_16U)
        except cv2.error:  # more than 65534 components: 32-bit labels
            pass
    return cv2.connectedComponents(mask, connectivity=4, ltype=cv2.CV_32S)


def _areas(labels: np.ndarray, n: int) -> np.ndarray:
    """Pixel count of every label (float32 counts are exact below 2**24 pixels)."""
    if labels.dtype == np.uint16 and labels.size < _HIST_EXACT:
        return cv2.calcHist([labels], [0], None, [n], [0, n]).ravel().astype(np.int64)
    return np.bincount(labels.ravel(), minlength=n)


def _first_in_scan_order(labels: np.ndarray, tied: np.ndarray, column_major: bool) -> int:
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


def largest_component(mask: np.ndarray, column_major: bool) -> np.ndarray:
    """0/1 uint8 map of the largest 4-connected component of a non-empty 0/1 mask.

    Ties go to the component met first in row-major (skimage) or column-major
    (MATLAB) scan order. Most masks have one dominant component: a histogram of
    every fourth row proposes it, and if it holds more than half of the mask's
    pixels no other component can be as large, so the full histogram is skipped.
    """
    n, labels = _labels(mask)
    if n == 2:  # one component: the mask itself
        return mask
    sample = np.ascontiguousarray(labels[::4])
    counts = _areas(sample, n)
    counts[0] = 0
    guess = int(np.argmax(counts))
    omega = np.equal(labels, guess).view(np.uint8)
    if 2 * cv2.countNonZero(omega) > cv2.countNonZero(mask):
        return omega
    areas = _areas(labels, n)[1:]
    tied = np.flatnonzero(areas == areas.max()) + 1
    best = int(tied[0]) if len(tied) == 1 else _first_in_scan_order(labels, tied, column_major)
    return np.equal(labels, best).view(np.uint8)


def level_counts(
    passed: np.ndarray,
    *,
    column_major: bool,
    empty: str,
    steps: int = STEPS,
) -> np.ndarray:
    """For every pixel, how many thresholds it survives inside the largest component.

    Parameters
    ----------
    passed:
        uint8 map: how many of the thresholds ``t_1 .. t_steps`` both ``pred`` and
        ``truth`` reach at that pixel (so ``pred >= t_i and truth >= t_i`` is
        ``passed >= i``). Each protocol computes it with its own comparison rules.
    column_major:
        Break ties between equally large components in column-major scan order
        (MATLAB) instead of row-major (skimage).
    empty:
        ``"previous"`` (MATLAB) or ``"one"`` (GFM): what unassigned pixels get when a
        threshold has no common pixel at all.

    Returns
    -------
    uint8 array ``k`` in 0..steps; the level map is ``t[k]`` with ``t[steps] = 1``.
    """
    if empty not in ("previous", "one"):
        raise ValueError(f"empty must be 'previous' or 'one', got {empty!r}")
    h, w = passed.shape
    count = np.zeros((h, w), np.uint8)
    alive = np.ones((h, w), np.uint8)  # in omega_1 .. omega_i so far (valid inside the box)
    y0, y1, x0, x1 = 0, h, 0, w
    for i in range(1, steps + 1):
        sub = passed[y0:y1, x0:x1]
        mask = cv2.threshold(sub, i - 1, 1, cv2.THRESH_BINARY)[1] if sub.size else sub
        bx, by, bw, bh = cv2.boundingRect(mask) if mask.size else (0, 0, 0, 0)
        if bw == 0 or bh == 0:
            if empty == "one":
                box = count[y0:y1, x0:x1]
                box[alive[y0:y1, x0:x1] == 1] = steps
            break
        mask = mask[by : by + bh, bx : bx + bw]
        y0, x0 = y0 + by, x0 + bx
        y1, x1 = y0 + bh, x0 + bw
        omega = largest_component(mask, column_major)
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
