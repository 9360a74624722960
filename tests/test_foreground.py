"""Foreground estimation against the sample set's true foreground and background."""
from __future__ import annotations

import numpy as np
import pytest

from rssn.foreground import estimate_foreground, estimate_foreground_cf, estimate_foreground_ml
from rssn.io import list_images, read_alpha, read_rgb

#: Mean |alpha*F_est + (1-alpha)*B_true - I| where alpha > 0, in 0-255 levels. The
#: images carry camera noise (std 1.5) and JPEG loss, and the estimate never sees B,
#: so a few levels remain; the same sum with F = I (the raw photo) is ~6-11 levels.
RECON_TOL = 6.0


def _samples(sample_data):
    """(image, alpha, true F, true B) of every sample, uint8."""
    out = []
    for img in list_images(sample_data.am2k):
        if img.parent.name != "original":
            continue
        sid = img.stem
        alpha = read_alpha(img.parent.parent / "mask" / f"{sid}.png")
        out.append((sid, read_rgb(img), alpha, read_rgb(sample_data.truth / "fg" / f"{sid}.png"),
                    read_rgb(sample_data.truth / "bg" / f"{sid}.png")))
    assert len(out) == 6
    return out


def _scores(image, alpha, f_est, f_true, b_true):
    i = image / 255.0
    a = (alpha / 255.0)[..., None]
    f_est, f_true, b = f_est / 255.0, f_true / 255.0, b_true / 255.0
    pos = alpha > 0
    soft = (alpha > 0) & (alpha < 255)
    recon = np.abs(a * f_est + (1 - a) * b - i)[pos].mean() * 255
    recon_raw = np.abs(a * i + (1 - a) * b - i)[pos].mean() * 255
    f_err = np.abs(f_est - f_true)[soft].mean() * 255
    raw_err = np.abs(i - f_true)[soft].mean() * 255
    return recon, recon_raw, f_err, raw_err


@pytest.mark.parametrize("method", ["ml", "cf"])
def test_estimated_foreground_recomposes_the_image_and_beats_the_raw_photo(sample_data, method):
    recons, raws = [], []
    for sid, image, alpha, f_true, b_true in _samples(sample_data):
        f_est = estimate_foreground(image, alpha, method)
        assert f_est.shape == image.shape and f_est.dtype == np.uint8
        recon, recon_raw, f_err, raw_err = _scores(image, alpha, f_est, f_true, b_true)
        assert recon <= RECON_TOL, f"{sid}: recomposition error {recon:.2f} levels"
        assert recon < recon_raw, f"{sid}: no better than blending the raw photo"
        # In the soft edge the raw photo is half old background; the estimate must
        # be well closer to the true foreground (measured ratios: ml <= 0.45, cf <= 0.6).
        assert f_err < 0.7 * raw_err, f"{sid}: F error {f_err:.1f} vs raw photo {raw_err:.1f}"
        recons.append(recon)
        raws.append(recon_raw)
    assert np.mean(recons) < 0.5 * np.mean(raws)


def test_where_alpha_is_one_the_foreground_is_the_image(sample_data):
    sid, image, alpha, _, _ = _samples(sample_data)[0]
    for f in (estimate_foreground_ml(image, alpha), estimate_foreground_cf(image, alpha)):
        solid = alpha == 255
        assert solid.sum() > 500
        assert np.abs(f[solid] * 255 - image[solid]).mean() < 1.0


def test_tiled_closed_form_matches_the_whole_image_solve(sample_data):
    sid, image, alpha, f_true, b_true = _samples(sample_data)[1]
    whole = estimate_foreground_cf(image, alpha)
    # 128 x 128 tiles with 24 px context (80 px kept): 4 tiles over the 160 x 120 image.
    tiled = estimate_foreground_cf(image, alpha, max_pixels=128 * 128, margin=24)
    pos = alpha > 0
    assert np.abs(tiled - whole)[pos].mean() * 255 < 0.5
    assert np.abs(tiled - whole)[pos].max() * 255 < 8
    # Tiles without soft alpha are not solved: there F is the image.
    empty = np.zeros_like(alpha)
    empty[:8, :8] = 255
    f = estimate_foreground_cf(image, empty, max_pixels=112 * 112, margin=32)
    assert np.array_equal(np.round(f * 255).astype(np.uint8), image)


def test_bad_inputs_are_refused_with_a_reason():
    img = np.zeros((10, 12, 3), np.uint8)
    with pytest.raises(ValueError, match="does not match"):
        estimate_foreground(img, np.zeros((10, 11), np.uint8))
    with pytest.raises(ValueError, match="H x W x 3"):
        estimate_foreground(np.zeros((10, 12), np.uint8), np.zeros((10, 12), np.uint8))
    with pytest.raises(ValueError, match="unknown foreground method"):
        estimate_foreground(img, np.zeros((10, 12), np.uint8), "knn")
    with pytest.raises(ValueError, match="no room"):
        estimate_foreground_cf(np.zeros((100, 100, 3)), np.full((100, 100), 0.5), max_pixels=50 * 50, margin=32)
