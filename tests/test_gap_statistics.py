"""rssn.gap.statistics and rssn.gap.compare on constructed images whose answer is known."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage
from skimage.restoration import estimate_sigma

from rssn.gap.compare import compare_stat, distribution, verdict, wasserstein
from rssn.gap.statistics import (
    STATISTICS, contrast, default_margin, detail_fraction, discrepancy, luma, luminance, measure_sample,
    noise_level, regions, saturation, sharpness,
)
from rssn.io import decode_image, encode_image

H, W = 240, 320


def disc_alpha(radius: int = 85) -> np.ndarray:
    """A disc with a soft (blurred) edge, uint8."""
    a = np.zeros((H, W), np.float32)
    cv2.circle(a, (W // 2, H // 2), radius, 1.0, -1)
    return np.round(cv2.GaussianBlur(a, (0, 0), 2.0) * 255).astype(np.uint8)


def texture(rng: np.random.Generator, h: int = H, w: int = W, mean: float = 128, std: float = 30) -> np.ndarray:
    """Sharp grey texture (detail down to the pixel), float H x W x 3."""
    t = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 0.8)
    t = (t - t.mean()) / t.std()
    return np.repeat((mean + std * t)[..., None], 3, 2)


def shading(top: tuple, bottom: tuple) -> np.ndarray:
    """A smooth vertical colour gradient, float H x W x 3 (no detail, no noise)."""
    y = np.linspace(0, 1, H, dtype=np.float32)[:, None, None]
    return (np.asarray(top, np.float32) * (1 - y) + np.asarray(bottom, np.float32) * y) * np.ones((1, W, 1), np.float32)


def composite(fg: np.ndarray, bg: np.ndarray, alpha8: np.ndarray) -> np.ndarray:
    """Alpha blend, then the JPEG round trip a shard applies."""
    a = alpha8.astype(np.float32)[..., None] / 255
    c = np.clip(np.round(a * fg + (1 - a) * bg), 0, 255).astype(np.uint8)
    return decode_image(encode_image(c, "jpg", quality=95))


def rssn_noise(img: np.ndarray, rng: np.random.Generator, sigma: float = 10.0) -> np.ndarray:
    """RSSN's last step: Gaussian noise of std 10 on the whole composite, clipped (not wrapped)."""
    return np.clip(np.round(img.astype(np.float32) + rng.normal(0, sigma, img.shape)), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- single statistics


def test_noise_equals_skimage_estimate_sigma_on_a_full_mask():
    rng = np.random.default_rng(1)
    img = np.clip(np.round(shading((90, 120, 60), (200, 150, 90)) + rng.normal(0, 3, (H, W, 3))), 0, 255).astype(np.uint8)
    img = np.ascontiguousarray(img[:, :317])  # an odd width exercises the coefficient mask's padding
    ours = noise_level(img, np.ones(img.shape[:2], bool))
    assert ours == pytest.approx(estimate_sigma(img, channel_axis=-1, average_sigmas=True), rel=1e-5)


def test_diagonal_details_equal_pywt():
    import pywt

    from rssn.gap.statistics import _diagonal_details

    img = np.random.default_rng(9).integers(0, 256, (37, 52, 3), dtype=np.uint8)
    for c, ours in enumerate(_diagonal_details(img)):
        ref = pywt.dwt2(img[..., c].astype(np.float64), "db2")[1][2]
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, atol=1e-3)


@pytest.mark.parametrize("sigma", [2.0, 5.0, 10.0])
def test_noise_reads_the_added_sigma(sigma):
    rng = np.random.default_rng(2)
    img = np.clip(np.round(shading((100, 100, 100), (160, 140, 120)) + rng.normal(0, sigma, (H, W, 3))), 0, 255)
    assert noise_level(img.astype(np.uint8), np.ones((H, W), bool)) == pytest.approx(sigma, rel=0.06)


def test_noise_sees_only_its_own_region():
    # Left half noisy, right half clean: a mask on the right must not pick up the
    # left's noise even though the two halves touch.
    rng = np.random.default_rng(3)
    img = shading((120, 120, 120), (130, 130, 130))
    img[:, : W // 2] += rng.normal(0, 12, (H, W // 2, 3))
    img = np.clip(np.round(img), 0, 255).astype(np.uint8)
    right = np.zeros((H, W), bool)
    right[:, W // 2:] = True
    left = ~right
    assert noise_level(img, right) < 0.5
    assert noise_level(img, left) == pytest.approx(12, rel=0.06)


def test_luminance_contrast_saturation_follow_their_definitions():
    img = np.zeros((40, 40, 3), np.uint8)
    img[:, :20] = (200, 100, 50)
    img[:, 20:] = (100, 100, 100)
    left = np.zeros((40, 40), bool)
    left[:, :20] = True
    y_left = 0.299 * 200 + 0.587 * 100 + 0.114 * 50
    grey = luma(img)
    assert luminance(grey, left) == pytest.approx(y_left, abs=1e-3)
    assert contrast(grey, left) == pytest.approx(0, abs=1e-4)
    everything = np.ones((40, 40), bool)
    assert contrast(grey, everything) == pytest.approx(abs(y_left - 100) / 2, abs=1e-3)  # std of two equal halves
    assert saturation(img, left) == pytest.approx((200 - 50) / 200)
    assert saturation(img, ~left) == 0.0
    far_left = np.zeros((40, 40), bool)
    far_left[:, :8] = True  # more than the Gaussians' reach from the colour edge
    assert math.isnan(detail_fraction(grey, far_left))  # flat: no detail to share out


def test_sharpness_of_a_ramp_is_its_slope():
    ramp = np.repeat((np.arange(W, dtype=np.float32) * 0.5)[None, :], H, 0)  # 0.5 grey levels per pixel
    inner = np.zeros((H, W), bool)
    inner[10:-10, 10:-10] = True
    assert sharpness(ramp, inner) == pytest.approx(0.5, rel=1e-3)


def test_discrepancy_definitions():
    assert discrepancy("noise", 7.0, 3.0) == pytest.approx(math.log2(8 / 4))
    assert discrepancy("contrast", 3.0, 3.0) == 0.0
    assert discrepancy("luminance", 120.0, 100.0) == 20.0
    assert discrepancy("saturation", 0.2, 0.5) == pytest.approx(-0.3)
    assert math.isnan(discrepancy("detail", math.nan, 0.3))
    assert set(STATISTICS) == {"noise", "sharpness", "detail", "luminance", "contrast", "saturation"}


def test_regions_are_thresholded_eroded_and_disjoint():
    alpha = disc_alpha()
    margin = default_margin(H, W)
    fg, bg = regions(alpha, margin=margin)
    assert not (fg & bg).any()
    assert (alpha[fg] >= 0.98 * 255).all() and (alpha[bg] <= 0.02 * 255).all()
    # Every kept pixel is more than `margin` px from any pixel outside its region.
    dist_fg = ndimage.distance_transform_edt(alpha >= 250)
    dist_bg = ndimage.distance_transform_edt(alpha <= 5)
    assert dist_fg[fg].min() > margin and dist_bg[bg].min() > margin
    assert fg.sum() > 10000 and bg.sum() > 10000


# --------------------------------------------------------------------------- the must-show cases


def test_noisy_foreground_on_clean_background_and_rssn_noise_reduces_it():
    rng = np.random.default_rng(4)
    alpha = disc_alpha()
    fg = shading((200, 150, 100), (150, 110, 80)) + rng.normal(0, 8, (H, W, 3))  # a noisy photo's cut-out
    bg = shading((70, 120, 180), (180, 200, 220))  # a clean, smooth background
    comp = composite(fg, bg, alpha)
    before = measure_sample(comp, alpha)["discrepancy"]["noise"]
    after = measure_sample(rssn_noise(comp, rng), alpha)["discrepancy"]["noise"]
    assert before > 2.0  # foreground at least 4x noisier (log2 ratio)
    assert after < 0.6 and after < before / 3
    # A real photo (one noise over both regions) shows no such discrepancy.
    real = rssn_noise(composite(shading((200, 150, 100), (150, 110, 80)), bg, alpha), rng, sigma=8)
    assert abs(measure_sample(real, alpha)["discrepancy"]["noise"]) < 0.3


def test_box_blurred_background_raises_the_sharpness_discrepancy():
    rng = np.random.default_rng(5)
    alpha = disc_alpha()
    fg, bg = texture(rng), texture(rng)
    sharp = measure_sample(composite(fg, bg, alpha), alpha)["discrepancy"]["sharpness"]
    assert abs(sharp) < 0.3  # sharp on sharp: no discrepancy
    blurred = [measure_sample(composite(fg, cv2.blur(bg, (k, k)), alpha), alpha)["discrepancy"]["sharpness"]
               for k in (20, 40, 60)]  # kernels from RSSN's set
    assert blurred[0] > sharp + 2.0  # the foreground is now > 4x sharper than its background
    assert blurred == sorted(blurred)  # a larger kernel, a softer background


def test_upsampled_background_lowers_its_fine_detail():
    rng = np.random.default_rng(6)
    alpha = disc_alpha()
    fg = texture(rng)
    native = measure_sample(composite(fg, texture(rng), alpha), alpha)["discrepancy"]["detail"]
    low = cv2.resize(texture(rng, H // 3, W // 3), (W, H), interpolation=cv2.INTER_CUBIC)
    upsampled = measure_sample(composite(fg, low, alpha), alpha)["discrepancy"]["detail"]
    assert abs(native) < 0.05
    assert upsampled > native + 0.25  # the foreground keeps pixel-scale detail the background lost


def test_too_small_regions_are_recorded_as_missing_not_errors():
    img = np.full((120, 160, 3), 128, np.uint8)
    all_fg = np.full((120, 160), 255, np.uint8)
    m = measure_sample(img, all_fg)
    assert m["bg_pixels"] == 0 and m["bg"] is None and m["fg"] is not None
    assert all(v is None for v in m["discrepancy"].values())
    assert all("background region too small" in r for r in m["missing"].values())
    speck = np.zeros((120, 160), np.uint8)
    speck[50:60, 50:60] = 255  # a 10 px square: a 2 x 2 core survives the 4 px erosion
    m = measure_sample(img, speck)
    assert m["fg"] is None and m["fg_pixels"] == 4
    assert "foreground region too small: 4 px" in m["missing"]["noise"] and "(need 400)" in m["missing"]["noise"]


def test_mismatched_alpha_is_a_clear_error():
    with pytest.raises(ValueError, match="alpha is 10x10 but the image is 20x10"):
        measure_sample(np.zeros((10, 20, 3), np.uint8), np.zeros((10, 10), np.uint8))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), radius=st.integers(40, 95))
def test_swapping_the_regions_negates_every_discrepancy(seed, radius):
    rng = np.random.default_rng(seed)
    img = np.clip(np.round(texture(rng, std=rng.uniform(5, 40)) + rng.normal(0, rng.uniform(0, 10), (H, W, 3))),
                  0, 255).astype(np.uint8)
    alpha = disc_alpha(radius)
    a = measure_sample(img, alpha)["discrepancy"]
    b = measure_sample(img, 255 - alpha)["discrepancy"]
    for name in STATISTICS:
        assert b[name] == pytest.approx(-a[name], abs=1e-9)


# --------------------------------------------------------------------------- set level


def test_identical_statistics_give_distance_zero():
    v = np.random.default_rng(7).normal(0.5, 0.3, 50)
    assert wasserstein(v, v) == 0.0
    c = compare_stat(STATISTICS["noise"], v, v.copy())
    assert c["wasserstein"] == 0.0 and c["normalised"] == 0.0 and c["verdict"] == "close"
    assert c["input"] == c["reference"]


def test_distance_of_a_shift_is_the_shift_and_verdicts_follow_it():
    rng = np.random.default_rng(8)
    ref = rng.normal(0.0, 1.0, 400)
    same = rng.normal(0.0, 1.0, 400)  # a fresh draw from the same distribution
    assert compare_stat(STATISTICS["sharpness"], same, ref)["verdict"] == "close"
    for shift, expected in ((0.2, "close"), (1.0, "different"), (3.0, "far")):
        c = compare_stat(STATISTICS["sharpness"], ref + shift, ref)
        assert c["wasserstein"] == pytest.approx(shift, rel=1e-9)
        assert c["verdict"] == expected, (shift, c)
    far = compare_stat(STATISTICS["sharpness"], ref + 3.0, ref)
    assert "Far from the real photos" in far["words"] and "sharper" in far["words"]


def test_a_tiny_reference_spread_is_floored():
    stat = STATISTICS["luminance"]  # floor: 5 grey levels
    c = compare_stat(stat, [10.0] * 6, [4.0] * 6)  # REAL has no spread at all
    assert c["scale"] == stat.floor and c["normalised"] == pytest.approx(6.0 / 5.0)
    assert verdict(c["normalised"]) == "different"
    assert "Few samples" not in c["words"]
    assert "Few samples (2 vs 6)" in compare_stat(stat, [1.0, 2.0], [4.0] * 6)["words"]


def test_empty_sets_are_described_not_crashed():
    c = compare_stat(STATISTICS["noise"], [], [0.1, 0.2])
    assert c["verdict"] == "unknown" and c["wasserstein"] is None and "no sample of INPUT" in c["words"]
    assert distribution([])["n"] == 0
    assert compare_stat(STATISTICS["noise"], [1.0, 2.0], None)["verdict"] is None
