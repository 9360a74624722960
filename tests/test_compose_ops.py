"""The RSSN operations and decisions, checked against their definitions."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rssn.compose import ops
from rssn.compose.route import DEFAULT_BLUR_KERNELS, RouteConfig, draw
from rssn.seeding import generator


def _rand(rng, shape):
    return rng.integers(0, 256, shape, dtype=np.uint8)


# --------------------------------------------------------------------------- blend


def test_blend_equation_holds_within_rounding():
    rng = np.random.default_rng(1)
    fg, bg, alpha = _rand(rng, (37, 53, 3)), _rand(rng, (37, 53, 3)), _rand(rng, (37, 53))
    alpha[0, :] = 0
    alpha[1, :] = 255
    c = ops.blend(fg, bg, alpha)
    a = alpha.astype(np.float64)[..., None] / 255.0
    exact = a * fg + (1 - a) * bg
    assert c.dtype == np.uint8 and c.shape == fg.shape
    # Rounded once: within half a level (plus OpenCV's 1e-5 guard on the weight sum).
    assert np.abs(c - exact).max() <= 0.5 + 255 * 1e-5
    assert np.array_equal(c[0], bg[0]) and np.array_equal(c[1], fg[1])
    # Precomputed weights give the same result.
    assert np.array_equal(ops.blend(fg, bg, weights=ops.alpha_weights(alpha)), c)


def test_blend_rejects_mismatched_sizes():
    rng = np.random.default_rng(2)
    with pytest.raises(ValueError, match="sizes differ"):
        ops.blend(_rand(rng, (10, 12, 3)), _rand(rng, (10, 13, 3)), _rand(rng, (10, 12)))
    with pytest.raises(ValueError, match="uint8"):
        ops.blend(np.zeros((4, 4, 3), np.float32), _rand(rng, (4, 4, 3)), _rand(rng, (4, 4)))


# --------------------------------------------------------------------------- noise


@pytest.mark.parametrize("level", [0, 3, 250, 255])
def test_noise_clips_and_never_wraps(level):
    img = np.full((64, 80, 3), level, np.uint8)
    out = ops.add_noise(img, 10.0, seed=7)
    noise = ops.gaussian_noise(img.shape, 10.0, seed=7)
    assert np.array_equal(out, np.clip(np.rint(img + noise.astype(np.float64)), 0, 255).astype(np.uint8))
    # A wrap-around cast would turn 250 + 10 into 4 and 3 - 10 into 249.
    if level >= 250:
        assert out.min() >= level - 60 and (out == 255).mean() > 0.25
    else:
        assert out.max() <= level + 60 and (out == 0).mean() > 0.25


def test_noise_is_gaussian_on_every_channel_and_seeded():
    n = ops.gaussian_noise((120, 160, 3), 10.0, seed=3)
    assert n.dtype == np.float32
    for c in range(3):  # every channel, not only the first
        assert abs(n[..., c].mean()) < 0.3 and abs(n[..., c].std() - 10.0) < 0.3
    assert np.array_equal(n, ops.gaussian_noise((120, 160, 3), 10.0, seed=3))
    assert not np.array_equal(n, ops.gaussian_noise((120, 160, 3), 10.0, seed=4))
    img = np.full((120, 160, 3), 128, np.uint8)
    assert abs(ops.add_noise(img, 10.0, 3).astype(float).std() - 10.0) < 0.3


# --------------------------------------------------------------------------- blur


@pytest.mark.parametrize("k", DEFAULT_BLUR_KERNELS)
def test_box_blur_is_the_window_mean(k):
    rng = np.random.default_rng(k)
    img = _rand(rng, (150, 170, 3))
    out = ops.box_blur(img, k)
    y, x = 75, 85  # interior: the window [x - k//2, x + k - 1 - k//2] lies inside
    win = img[y - k // 2 : y + k - k // 2, x - k // 2 : x + k - k // 2].astype(np.float64)
    assert np.abs(out[y, x] - win.mean(axis=(0, 1))).max() <= 0.5 + 1e-6
    assert out.dtype == np.uint8 and out.std() < img.std() / 5


# --------------------------------------------------------------------------- fit


def _ramps(w, h):
    """Background whose red grows linearly with x and green with y."""
    x = np.linspace(0, 255, w, dtype=np.float64)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h, dtype=np.float64)[:, None].repeat(w, 1)
    return np.dstack([x, y, np.zeros_like(x)]).round().astype(np.uint8), 255.0 / (w - 1), 255.0 / (h - 1)


@pytest.mark.parametrize("bg_size,target", [((1200, 800), (300, 400)), ((400, 300), (900, 500)),
                                            ((640, 640), (200, 100))])
def test_fit_keeps_aspect_ratio(bg_size, target):
    bg, gx, gy = _ramps(*bg_size)
    out, fit = ops.fit_background(bg, target, (0.3, 0.7))
    assert out.shape == (target[1], target[0], 3)
    x, y, w, h = fit.box
    assert 0 <= x and x + w <= bg_size[0] and 0 <= y and y + h <= bg_size[1]
    # One side is used whole (cover), and the box has the target's aspect ratio.
    assert w == bg_size[0] or h == bg_size[1]
    assert abs(w / h - target[0] / target[1]) <= (target[0] / target[1]) * 2.0 / min(w, h)
    # Measured on the pixels: the same scale along x and y (a stretch would differ).
    inner = out[2:-2, 2:-2].astype(np.float64)
    slope_x = np.polyfit(np.arange(inner.shape[1]), inner[inner.shape[0] // 2, :, 0], 1)[0] / gx
    slope_y = np.polyfit(np.arange(inner.shape[0]), inner[:, inner.shape[1] // 2, 1], 1)[0] / gy
    assert slope_x == pytest.approx(1 / fit.scale, rel=0.03)
    assert slope_y == pytest.approx(1 / fit.scale, rel=0.03)
    # The crop starts where the box says: red at the left edge = x * gx.
    assert out[target[1] // 2, 0, 0] == pytest.approx(x * gx, abs=2 + 0.6 * gx / fit.scale)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 4000), st.integers(1, 4000), st.integers(1, 4000), st.integers(1, 4000),
       st.floats(0, 1, exclude_max=True), st.floats(0, 1, exclude_max=True))
def test_cover_box_property(w, h, tw, th, ux, uy):
    fit = ops.cover_box((w, h), (tw, th), (ux, uy))
    x, y, bw, bh = fit.box
    assert 0 <= x <= w - bw and 0 <= y <= h - bh and 1 <= bw <= w and 1 <= bh <= h
    assert bw == w or bh == h  # covers: one side is used whole
    # Uniform scaling: each side's own scale is the common one, up to one source pixel.
    assert abs(tw / bw - fit.scale) <= fit.scale / bw + 1e-9 or bw == 1
    assert abs(th / bh - fit.scale) <= fit.scale / bh + 1e-9 or bh == 1


def test_fit_of_same_size_is_a_copy():
    rng = np.random.default_rng(0)
    bg = _rand(rng, (60, 80, 3))
    out, fit = ops.fit_background(bg, (80, 60), (0.9, 0.9))
    assert np.array_equal(out, bg) and fit.box == (0, 0, 80, 60) and fit.scale == 1.0


# --------------------------------------------------------------------------- decisions


def _draws(config, n=4000, n_bg=7):
    return [draw(generator(11, f"m_{i % 50:03d}", i // 50), config, n_bg) for i in range(n)]


@pytest.mark.parametrize("p", [(0.5, 0.5, 0.5), (0.2, 0.8, 0.35)])
def test_step_frequencies_match_probabilities(p):
    n = 4000
    ds = _draws(RouteConfig(p_denoise=p[0], p_blur=p[1], p_noise=p[2]), n)
    for prob, fired in zip(p, (sum(d.denoise for d in ds), sum(d.blur_kernel is not None for d in ds),
                               sum(d.noise for d in ds))):
        assert abs(fired - n * prob) <= 4.5 * math.sqrt(n * prob * (1 - prob))
    kernels = [d.blur_kernel for d in ds if d.blur_kernel is not None]
    assert set(kernels) == set(DEFAULT_BLUR_KERNELS)  # only (and all of) the set
    for k in DEFAULT_BLUR_KERNELS:  # uniform over the set
        share = len(kernels) / len(DEFAULT_BLUR_KERNELS)
        assert abs(kernels.count(k) - share) <= 4.5 * math.sqrt(share)
    bgs = np.bincount([d.bg_index for d in ds], minlength=7)
    assert bgs.min() > n / 7 * 0.8 and bgs.max() < n / 7 * 1.2  # no fixed pairing, uniform
    # Coins are independent: P(denoise and noise) = P(denoise) P(noise).
    both = sum(d.denoise and d.noise for d in ds)
    assert abs(both - n * p[0] * p[2]) <= 4.5 * math.sqrt(n * p[0] * p[2])


def test_kernels_come_only_from_a_custom_set():
    ds = _draws(RouteConfig(blur_kernels=(3, 9), p_blur=1.0), 500)
    assert {d.blur_kernel for d in ds} == {3, 9}


def test_switches_and_routes_change_only_their_step():
    base = _draws(RouteConfig(), 300)
    no_blur = _draws(RouteConfig(blur=False), 300)
    plain = _draws(RouteConfig(route="plain"), 300)
    for a, b, c in zip(base, no_blur, plain):
        assert b.blur_kernel is None and (b.denoise, b.noise) == (a.denoise, a.noise)
        assert (a.bg_index, a.crop_u, a.noise_seed) == (b.bg_index, b.crop_u, b.noise_seed)
        assert (c.bg_index, c.crop_u) == (a.bg_index, a.crop_u)
        assert not (c.denoise or c.noise or c.blur_kernel)
    assert RouteConfig(route="bg20k").probabilities() == {"denoise": 0.0, "blur": 0.0, "noise": 0.0}


def test_route_config_rejects_bad_values():
    with pytest.raises(ValueError, match="route"):
        RouteConfig(route="coco")
    with pytest.raises(ValueError, match="probability"):
        RouteConfig(p_blur=1.5)
    with pytest.raises(ValueError, match="kernel"):
        RouteConfig(blur_kernels=(0, 20))
    with pytest.raises(ValueError, match="no backgrounds"):
        draw(generator(0, "x", 0), RouteConfig(), 0)
