"""Straightforward implementations of the metric definitions, and their own checks.

Two independent references for ``gfm_train.metrics``:

- ``ref_gfm`` / ``ref_dim``: line-by-line ports of the two protocols' definitions
  (the GFM reference code's numpy/scipy/skimage steps; the MATLAB code's steps in
  single precision, its 9 x 9 kernel built by a double loop and applied tap by tap,
  components numbered by ``scipy.ndimage.label`` in MATLAB's column-major order);
- ``loop_*``: per-pixel Python loops (flood fill, kernel sums) for tiny arrays.

The fast implementation is compared against both (tests/test_metrics.py); the
benchmark (benchmarks/bench_metrics.py) times them side by side.
"""
from __future__ import annotations

import math
from collections import deque

import numpy as np
import pytest
from scipy import ndimage

# --------------------------------------------------------------------------- ports


def _gfm_conn_port(pd, gt):
    h, w = pd.shape
    thresh = np.arange(0, 1.1, 0.1)
    l_map = -1 * np.ones((h, w), dtype=np.float32)
    for i in range(1, thresh.size):
        both = (pd >= thresh[i]) & (gt >= thresh[i])
        lab, n = ndimage.label(both, structure=[[0, 1, 0], [1, 1, 1], [0, 1, 0]])
        if n == 0:
            continue  # the GFM code skips a threshold with no common pixel
        sizes = np.bincount(lab.ravel())[1:]
        omega = lab == (np.argmax(sizes) + 1)
        flag = (l_map == -1) & ~omega
        l_map[flag] = thresh[i - 1]
    l_map[l_map == -1] = 1
    d_pd, d_gt = pd - l_map, gt - l_map
    phi_pd = 1 - d_pd * (d_pd >= 0.15).astype(np.float32)
    phi_gt = 1 - d_gt * (d_gt >= 0.15).astype(np.float32)
    return float(np.sum(np.abs(phi_pd - phi_gt))) / 1000


def _gfm_grad_port(pd, gt):
    from scipy.ndimage import gaussian_filter

    mags = []
    for im in (pd, gt):
        a = gaussian_filter(im, sigma=1.4, order=[1, 0], output=np.float32)
        b = gaussian_filter(im, sigma=1.4, order=[0, 1], output=np.float32)
        mags.append(np.sqrt(a**2 + b**2))
    return float(np.sum(np.square(mags[0] - mags[1]), dtype=np.float64)) / 10


def ref_gfm(pred, truth, trimap=None):
    """GFM protocol, step by step. pred: float (or uint8 -> /255), truth: uint8 or float."""
    pd = pred / 255.0 if pred.dtype == np.uint8 else pred
    gt = truth / 255.0 if truth.dtype == np.uint8 else truth
    n = pd.size
    diff = pd.astype(np.float64) - gt
    out = {
        "sad": np.sum(np.abs(diff)) / 1000,
        "mse": np.sum(diff**2) / n,
        "mad": np.sum(np.abs(diff)) / n,
        "grad": _gfm_grad_port(pd, gt),
        "conn": _gfm_conn_port(pd, gt),
    }
    if trimap is not None:
        forced = pd.astype(np.float64).copy()
        forced[trimap == 255] = 1.0
        forced[trimap == 0] = 0.0
        out["sad_trans"] = np.sum(np.abs(forced - gt)) / 1000
        out["sad_fg"] = np.sum(np.abs(diff) * (trimap == 255)) / 1000
        out["sad_bg"] = np.sum(np.abs(diff) * (trimap == 0)) / 1000
    return {k: float(v) for k, v in out.items()}


def matlab_gaussgradient_kernel(sigma=1.4):
    """hx exactly as gaussgradient.m builds it (double loop), normalised."""
    eps = 1e-2
    half = math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * eps)))
    size = 2 * half + 1

    def gauss(x):
        return math.exp(-(x**2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))

    def dgauss(x):
        return -x * gauss(x) / sigma**2

    hx = np.zeros((size, size))
    for i in range(size):
        for j in range(size):
            hx[i, j] = gauss(i - half) * dgauss(j - half)
    return hx / math.sqrt(np.sum(np.abs(hx) * np.abs(hx)))


def _imfilter_conv_replicate(im, k):
    """imfilter(im, k, 'replicate', 'conv'), one kernel tap at a time."""
    r = k.shape[0] // 2
    padded = np.pad(im, r, mode="edge")
    h, w = im.shape
    out = np.zeros_like(im, dtype=np.float64)
    for i in range(k.shape[0]):
        for j in range(k.shape[1]):
            # convolution: out(y, x) += k(i, j) * im(y - (i - r), x - (j - r))
            out += k[i, j] * padded[2 * r - i : 2 * r - i + h, 2 * r - j : 2 * r - j + w]
    return out


def _mat2gray(a):
    a = a.astype(np.float64)
    lo, hi = a.min(), a.max()
    if hi == lo:
        return np.clip(a, 0, 1)
    delta = 1 / (hi - lo)
    return np.clip(a * delta + (-lo * delta), 0, 1)


def _dim_grad_port(p8, g8, unknown):
    hx = matlab_gaussgradient_kernel()
    amps = []
    for im in (p8, g8):
        im = _mat2gray(im)
        gx = _imfilter_conv_replicate(im, hx)
        gy = _imfilter_conv_replicate(im, hx.T)
        amps.append(np.sqrt(gx**2 + gy**2).astype(np.float32))
    err = (amps[0] - amps[1]) ** 2
    return float(np.sum(err * unknown.astype(np.float32), dtype=np.float64)) / 1000


def _dim_conn_port(p8, g8, unknown):
    pred = p8.astype(np.float32) / np.float32(255)
    target = g8.astype(np.float32) / np.float32(255)
    thresh = np.float32(np.arange(11) / 10)
    l_map = np.full(pred.shape, -1.0)
    for ii in range(1, 11):
        both = (pred >= thresh[ii]) & (target >= thresh[ii])
        # bwconncomp numbers components in column-major order: label the transpose.
        lab_t, n = ndimage.label(both.T, structure=[[0, 1, 0], [1, 1, 1], [0, 1, 0]])
        omega = np.zeros(pred.shape, bool)
        if n:
            sizes = np.bincount(lab_t.ravel())[1:]
            omega = (lab_t == np.argmax(sizes) + 1).T
        flag = (l_map == -1) & ~omega
        l_map[flag] = thresh[ii - 1]
    l_map[l_map == -1] = 1
    l32 = l_map.astype(np.float32)
    pred_d, target_d = pred - l32, target - l32
    pred_phi = 1 - pred_d * (pred_d >= 0.15).astype(np.float32)
    target_phi = 1 - target_d * (target_d >= 0.15).astype(np.float32)
    return float(np.sum(np.abs(pred_phi - target_phi) * unknown, dtype=np.float64)) / 1000


def ref_dim(pred, truth, trimap):
    """DIM protocol, step by step (8-bit inputs)."""
    p8, g8 = pred.astype(np.int64), truth.astype(np.int64)
    unknown = trimap == 128
    n = int(unknown.sum())
    err = np.abs(p8 - g8) / 255
    sad = float(np.sum(err * unknown)) / 1000
    return {
        "sad": sad,
        "mse": float(np.sum(err**2 * unknown)) / n if n else math.nan,
        "mad": float(np.sum(err * unknown)) / n if n else math.nan,
        "grad": _dim_grad_port(pred, truth, unknown),
        "conn": _dim_conn_port(pred, truth, unknown),
        "sad_trans": sad,
        "sad_fg": float(np.sum(err * (trimap == 255))) / 1000,
        "sad_bg": float(np.sum(err * (trimap == 0))) / 1000,
    }


# --------------------------------------------------------------------------- per-pixel loops


def loop_sad_mse_mad(pred, truth, region=None):
    """Sum, mean of squares and mean of |pred - truth| over ``region`` (bool), pixel by pixel."""
    h, w = pred.shape
    s = sq = 0.0
    n = 0
    for y in range(h):
        for x in range(w):
            if region is not None and not region[y, x]:
                continue
            d = float(pred[y, x]) - float(truth[y, x])
            s += abs(d)
            sq += d * d
            n += 1
    return s / 1000, (sq / n if n else math.nan), (s / n if n else math.nan)


def _components(mask, column_major):
    """4-connected components by flood fill, numbered in scan order."""
    h, w = mask.shape
    seen = np.zeros((h, w), bool)
    comps = []
    order = [(y, x) for x in range(w) for y in range(h)] if column_major else [(y, x) for y in range(h) for x in range(w)]
    for y, x in order:
        if not mask[y, x] or seen[y, x]:
            continue
        comp, queue = [], deque([(y, x)])
        seen[y, x] = True
        while queue:
            cy, cx = queue.popleft()
            comp.append((cy, cx))
            for ny, nx in ((cy - 1, cx), (cy + 1, cx), (cy, cx - 1), (cy, cx + 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    queue.append((ny, nx))
        comps.append(comp)
    return comps


def loop_conn(pred, truth, region, protocol):
    """Conn pixel by pixel: thresholds, flood-filled components, levels, phi."""
    if protocol == "gfm":
        a = pred / 255.0 if pred.dtype == np.uint8 else pred.astype(np.float64)
        b = truth / 255.0 if truth.dtype == np.uint8 else truth.astype(np.float64)
        thresh, lvl = list(np.arange(0, 1.1, 0.1)), np.float32
        dt_p = np.float32 if pred.dtype == np.float32 else np.float64
    else:
        a = pred.astype(np.float32) / np.float32(255)
        b = truth.astype(np.float32) / np.float32(255)
        thresh, lvl, dt_p = list(np.float32(np.arange(11) / 10)), np.float32, np.float32
    h, w = a.shape
    level = [[None] * w for _ in range(h)]
    for i in range(1, 11):
        mask = np.zeros((h, w), bool)
        for y in range(h):
            for x in range(w):
                mask[y, x] = a[y, x] >= thresh[i] and b[y, x] >= thresh[i]
        comps = _components(mask, column_major=(protocol == "dim"))
        if not comps and protocol == "gfm":
            continue
        largest = set()
        if comps:
            best = max(len(c) for c in comps)
            largest = set(next(c for c in comps if len(c) == best))
        for y in range(h):
            for x in range(w):
                if level[y][x] is None and (y, x) not in largest:
                    level[y][x] = thresh[i - 1]
    total = 0.0
    for y in range(h):
        for x in range(w):
            if region is not None and not region[y, x]:
                continue
            l = lvl(1.0 if level[y][x] is None else level[y][x])
            dp = dt_p(a[y, x]) - l if protocol == "gfm" else a[y, x] - l
            dg = b[y, x] - l
            php = 1 - dp * (dp >= 0.15)
            phg = 1 - dg * (dg >= 0.15)
            total += abs(float(php) - float(phg))
    return total / 1000


def _reflect(i, n):
    """scipy 'reflect' (half-sample symmetric) index, repeated as often as needed."""
    while i < 0 or i >= n:
        i = -i - 1 if i < 0 else 2 * n - i - 1
    return i


def loop_grad_gfm(pred, truth):
    """GFM Grad pixel by pixel: two 1-D Gaussian passes per direction, float32 in between."""
    sigma, radius = 1.4, int(4 * 1.4 + 0.5)
    xs = range(-radius, radius + 1)
    phi = [math.exp(-0.5 / sigma**2 * x * x) for x in xs]
    s = sum(phi)
    k0 = [p / s for p in phi]
    k1 = [-x / sigma**2 * p for x, p in zip(xs, k0)]

    def filt(im, kernel, axis):
        h, w = im.shape
        out = np.zeros((h, w), np.float32)
        for y in range(h):
            for x in range(w):
                acc = 0.0
                for t, kv in enumerate(kernel):
                    u = t - radius
                    # convolution: sum k(u) * im(pos - u)
                    yy, xx = (_reflect(y - u, h), x) if axis == 0 else (y, _reflect(x - u, w))
                    acc += kv * float(im[yy, xx])
                out[y, x] = acc
        return out

    total = 0.0
    mags = []
    for im in (pred, truth):
        g0 = filt(filt(im, k1, 0), k0, 1)
        g1 = filt(filt(im, k0, 0), k1, 1)
        mags.append(np.sqrt(g0.astype(np.float32) ** 2 + g1.astype(np.float32) ** 2))
    for v in (mags[0] - mags[1]).ravel():
        total += float(v) * float(v)
    return total / 10


def loop_grad_dim(p8, g8, region):
    """DIM Grad pixel by pixel: mat2gray, 9 x 9 convolution with replicate borders."""
    hx = matlab_gaussgradient_kernel()
    r = hx.shape[0] // 2
    amps = []
    for im in (p8, g8):
        im = _mat2gray(im)
        h, w = im.shape
        amp = np.zeros((h, w), np.float32)
        for y in range(h):
            for x in range(w):
                gx = gy = 0.0
                for i in range(2 * r + 1):
                    for j in range(2 * r + 1):
                        v = im[min(max(y - (i - r), 0), h - 1), min(max(x - (j - r), 0), w - 1)]
                        gx += hx[i, j] * v
                        gy += hx[j, i] * v
                amp[y, x] = math.sqrt(gx * gx + gy * gy)
        amps.append(amp)
    total = 0.0
    for y in range(p8.shape[0]):
        for x in range(p8.shape[1]):
            if region[y, x]:
                d = np.float32(amps[0][y, x] - amps[1][y, x])
                total += float(d * d)
    return total / 1000


# --------------------------------------------------------------------------- checks of the references


def test_matlab_kernel_is_9x9_unit_norm_and_separable():
    hx = matlab_gaussgradient_kernel()
    assert hx.shape == (9, 9)
    assert np.sum(hx**2) == pytest.approx(1.0, rel=1e-12)
    assert np.linalg.matrix_rank(hx) == 1
    # odd along x (columns), even along y (rows)
    assert np.allclose(hx, -hx[:, ::-1]) and np.allclose(hx, hx[::-1, :])


def test_dim_grad_of_an_impulse_is_two_thousandths():
    # mat2gray stretches the impulse to 1; the squared response of a unit-norm
    # kernel sums to 1 per direction, so Grad = (1 + 1) / 1000 whatever the height.
    for v in (30, 255):
        p = np.zeros((21, 21), np.uint8)
        p[10, 10] = v
        g = np.zeros_like(p)
        tri = np.full(p.shape, 128, np.uint8)
        assert _dim_grad_port(p, g, tri == 128) == pytest.approx(0.002, rel=1e-6)


def test_reference_hand_values():
    # The worked example of docs/eval.md: three pixels, one per trimap class.
    pred = np.array([[0.2, 0.5, 0.9]])
    truth = np.array([[0.0, 0.4, 1.0]])
    tri = np.array([[0, 128, 255]], np.uint8)
    r = ref_gfm(pred, truth, tri)
    assert r["sad"] == pytest.approx(0.4 / 1000)
    assert r["mse"] == pytest.approx((0.04 + 0.01 + 0.01) / 3)
    assert r["sad_trans"] == pytest.approx(0.1 / 1000)
    assert r["sad_fg"] == pytest.approx(0.1 / 1000)
    assert r["sad_bg"] == pytest.approx(0.2 / 1000)


def test_loops_agree_with_ports_on_small_random_arrays():
    rng = np.random.default_rng(3)
    for _ in range(3):
        h, w = rng.integers(1, 9, size=2)
        t8 = rng.choice([0, 20, 51, 128, 153, 200, 255], size=(h, w)).astype(np.uint8)
        p8 = np.clip(t8.astype(int) + rng.integers(-60, 60, size=(h, w)), 0, 255).astype(np.uint8)
        tri = rng.choice([0, 128, 255], size=(h, w)).astype(np.uint8)
        unknown = tri == 128
        pf = (p8 / 255.0).astype(np.float32)
        assert loop_conn(pf, t8, None, "gfm") == pytest.approx(_gfm_conn_port(pf, t8 / 255.0), rel=1e-6, abs=1e-12)
        assert loop_conn(p8, t8, unknown, "dim") == pytest.approx(_dim_conn_port(p8, t8, unknown), rel=1e-6, abs=1e-12)
        assert loop_grad_gfm(pf, t8 / 255.0) == pytest.approx(_gfm_grad_port(pf, t8 / 255.0), rel=1e-5, abs=1e-12)
        assert loop_grad_dim(p8, t8, unknown) == pytest.approx(_dim_grad_port(p8, t8, unknown), rel=1e-5, abs=1e-12)
        s, m, a = loop_sad_mse_mad(pf, t8 / 255.0)
        r = ref_gfm(pf, t8, tri)
        assert (s, m, a) == pytest.approx((r["sad"], r["mse"], r["mad"]), rel=1e-9)
