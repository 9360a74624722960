"""gfm_train.metrics against hand-worked values, properties and the references."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gfm_train.metrics import (
    DIM_THRESHOLDS,
    DIM_THRESHOLDS_U8,
    METRICS,
    compute_metrics,
    dim_kernels,
    dim_metrics,
    gfm_kernels,
    gfm_metrics,
    mat2gray,
)
from test_metrics_reference import loop_conn, loop_grad_dim, loop_grad_gfm, ref_dim, ref_gfm

# --------------------------------------------------------------------------- hand-worked values

PRED = np.array([[0.2, 0.5, 0.9]])
TRUTH = np.array([[0.0, 0.4, 1.0]])
TRI = np.array([[0, 128, 255]], np.uint8)


def test_gfm_hand_values_three_pixels():
    m = gfm_metrics(PRED, TRUTH, TRI)
    assert m["sad"] == pytest.approx((0.2 + 0.1 + 0.1) / 1000)
    assert m["mse"] == pytest.approx((0.04 + 0.01 + 0.01) / 3)
    assert m["mad"] == pytest.approx(0.4 / 3)
    # forced to 0 on background and 1 on foreground: only the middle pixel's 0.1 is left
    assert m["sad_trans"] == pytest.approx(0.1 / 1000)
    assert m["sad_fg"] == pytest.approx(0.1 / 1000)
    assert m["sad_bg"] == pytest.approx(0.2 / 1000)
    # Conn: min = (0, .4, .9); levels l = (0, .4, 1) (the last pixel survives every
    # threshold until 1.0 has no common pixel, which GFM skips, so it ends at 1).
    # phi_pred = 1 - d*(d >= .15) with d = (.2, .1, -.1) -> (.8, 1, 1); phi_truth = (1, 1, 1).
    assert m["conn"] == pytest.approx(0.2 / 1000, rel=1e-6)


def test_dim_hand_values_three_pixels():
    p8 = np.array([[51, 128, 230]], np.uint8)
    t8 = np.array([[0, 102, 255]], np.uint8)
    m = dim_metrics(p8, t8, TRI)
    assert m["sad"] == pytest.approx(26 / 255 / 1000)
    assert m["sad_trans"] == m["sad"]
    assert m["mse"] == pytest.approx((26 / 255) ** 2)
    assert m["mad"] == pytest.approx(26 / 255)
    assert m["sad_fg"] == pytest.approx(25 / 255 / 1000)
    assert m["sad_bg"] == pytest.approx(51 / 255 / 1000)
    # the unknown pixel: min 102 -> level 0.4; d_pred = 128/255 - .4 < .15, d_truth = 0
    assert m["conn"] == 0.0
    # on a 1 x 3 row the centre's x-gradient only sees the two ends, equal after mat2gray
    assert m["grad"] == 0.0


def test_conn_previous_threshold_rule_hand_values():
    # 1 x 4: the last pixel is cut off from the big component at the first threshold
    pred = np.array([[255, 255, 0, 128]], np.uint8)
    truth = np.array([[255, 255, 0, 255]], np.uint8)
    tri = np.full(pred.shape, 128, np.uint8)
    # levels: (1, 1, 0, 0); phi_pred = (1, 1, 1, 1 - 128/255), phi_truth = (1, 1, 1, 0)
    expect = (1 - 128 / 255) / 1000
    assert dim_metrics(pred, truth, tri)["conn"] == pytest.approx(expect, rel=1e-6)
    assert gfm_metrics(pred, truth)["conn"] == pytest.approx(expect, rel=1e-6)


def test_conn_empty_threshold_differs_between_protocols():
    # one pixel, pred 1.0, truth 128: at 0.6 no pixel is common.
    pred, truth = np.array([[255]], np.uint8), np.array([[128]], np.uint8)
    tri = np.array([[128]], np.uint8)
    # DIM: the pixel gets the previous threshold 0.5: phi_pred = 1 - .5, phi_truth = 1
    assert dim_metrics(pred, truth, tri)["conn"] == pytest.approx(0.5 / 1000, rel=1e-6)
    # GFM: the empty threshold is skipped, the pixel ends at level 1: both phi = 1
    assert gfm_metrics(pred, truth)["conn"] == 0.0


def test_truth_153_reaches_threshold_06_only_in_single_precision():
    # 153/255 is 0.6 exactly; in double it is below 0.1 * 6 = 0.6000000000000001.
    pred, truth = np.array([[255]], np.uint8), np.array([[153]], np.uint8)
    tri = np.array([[128]], np.uint8)
    # DIM: survives 0.6, level 0.6 at 0.7: phi_pred = 0.6, phi_truth = 1
    assert dim_metrics(pred, truth, tri)["conn"] == pytest.approx(0.4 / 1000, rel=1e-6)
    assert gfm_metrics(pred, truth)["conn"] == 0.0
    assert DIM_THRESHOLDS_U8[6] == 153


def test_dim_thresholds_do_not_depend_on_single_or_double_comparison():
    vals32 = np.arange(256, dtype=np.float32) / np.float32(255)
    for i, t in enumerate(np.arange(11) / 10):
        first_single = int(np.argmax(vals32 >= np.float32(t)))
        first_double = int(np.argmax(vals32.astype(np.float64) >= t))
        assert first_single == first_double == DIM_THRESHOLDS_U8[i]
    assert DIM_THRESHOLDS[0] == 0 and DIM_THRESHOLDS[10] == 1


def test_grad_impulse_hand_values_and_mat2gray():
    # DIM: the impulse is stretched to 1 by mat2gray; a unit-norm kernel per direction
    # gives a summed squared magnitude of exactly 2, whatever the impulse's height.
    # GFM: no stretch; the sum is 2 * v^2 * sum(k1^2) * sum(k0^2), / 10.
    k0, k1 = gfm_kernels()
    for v in (40, 255):
        p = np.zeros((31, 31), np.uint8)
        p[15, 15] = v
        t = np.zeros_like(p)
        tri = np.full(p.shape, 128, np.uint8)
        assert dim_metrics(p, t, tri)["grad"] == pytest.approx(2 / 1000, rel=1e-6)
        expect = 2 * (v / 255) ** 2 * np.sum(k1**2) * np.sum(k0**2) / 10
        assert gfm_metrics(p, t)["grad"] == pytest.approx(expect, rel=1e-5)


def test_grad_of_scaled_prediction_zero_in_dim_not_in_gfm():
    rng = np.random.default_rng(0)
    truth = np.clip(rng.normal(0.5, 0.3, (24, 24)), 0, 1)
    t8 = np.rint(truth * 200).astype(np.uint8)  # peaks below 255
    full = np.rint(t8 * (255 / t8.max())).astype(np.uint8)  # the same matte stretched to 255
    tri = np.full(t8.shape, 128, np.uint8)
    assert mat2gray(t8) == pytest.approx(mat2gray(full), abs=3e-3)
    assert dim_metrics(t8, t8, tri)["grad"] == 0.0
    assert dim_metrics(full, t8, tri)["grad"] < 1e-3 * gfm_metrics(full, t8)["grad"] * 10


def test_kernels_match_their_definitions():
    g, dg = dim_kernels()
    assert len(g) == 9 and np.linalg.norm(g) == pytest.approx(1) and np.linalg.norm(dg) == pytest.approx(1)
    k0, k1 = gfm_kernels()
    assert len(k0) == 13 and k0.sum() == pytest.approx(1)
    from scipy.ndimage import gaussian_filter1d

    impulse = np.zeros(27)
    impulse[13] = 1
    assert np.allclose(gaussian_filter1d(impulse, 1.4, order=1)[7:20], k1, atol=1e-15)


# --------------------------------------------------------------------------- properties

alpha8 = st.integers(1, 14).flatmap(
    lambda h: st.integers(1, 14).flatmap(
        lambda w: st.tuples(
            arrays(np.uint8, (h, w), elements=st.sampled_from([0, 0, 25, 26, 51, 77, 128, 153, 179, 204, 254, 255, 255])),
            arrays(np.uint8, (h, w), elements=st.integers(0, 255)),
            arrays(np.uint8, (h, w), elements=st.sampled_from([0, 128, 255])),
        )
    )
)


def _close(a: dict, b: dict, rel=1e-5, abs_=1e-9):
    assert set(a) == set(b)
    for k in a:
        if math.isnan(b[k]):
            assert math.isnan(a[k]), k
        else:
            assert a[k] == pytest.approx(b[k], rel=rel, abs=abs_), k


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(alpha8)
def test_fast_equals_reference_on_random_8bit(data):
    truth, noise, tri = data
    # predictions near the truth, so components and thresholds interact
    pred = np.where(noise > 128, truth, noise).astype(np.uint8)
    _close(gfm_metrics(pred, truth, tri), ref_gfm(pred, truth, tri))
    _close(dim_metrics(pred, truth, tri), ref_dim(pred, truth, tri))


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 12).flatmap(
        lambda h: st.integers(1, 12).flatmap(
            lambda w: st.tuples(
                arrays(np.float32, (h, w), elements=st.floats(0, 1, width=32)),
                arrays(np.uint8, (h, w), elements=st.sampled_from([0, 51, 128, 153, 255])),
            )
        )
    )
)
def test_fast_equals_reference_on_float_predictions(data):
    pred, truth = data
    _close(gfm_metrics(pred, truth), ref_gfm(pred, truth))


def test_fast_equals_per_pixel_loops():
    rng = np.random.default_rng(7)
    for h, w in ((1, 1), (1, 7), (6, 1), (9, 11)):
        truth = rng.choice([0, 40, 128, 153, 255], size=(h, w)).astype(np.uint8)
        pred = np.clip(truth.astype(int) + rng.integers(-90, 90, (h, w)), 0, 255).astype(np.uint8)
        tri = rng.choice([0, 128, 255], size=(h, w)).astype(np.uint8)
        pf = (pred / 255.0).astype(np.float32)
        g = gfm_metrics(pf, truth)
        d = dim_metrics(pred, truth, tri)
        assert g["conn"] == pytest.approx(loop_conn(pf, truth, None, "gfm"), rel=1e-5, abs=1e-12)
        assert g["grad"] == pytest.approx(loop_grad_gfm(pf, truth / 255.0), rel=1e-5, abs=1e-12)
        assert d["conn"] == pytest.approx(loop_conn(pred, truth, tri == 128, "dim"), rel=1e-5, abs=1e-12)
        assert d["grad"] == pytest.approx(loop_grad_dim(pred, truth, tri == 128), rel=1e-5, abs=1e-12)


def test_ties_between_largest_components_follow_each_scan_order():
    # Two 2-pixel components: A (top right) comes first row by row, B (left,
    # lower) first column by column. The levels differ, so Conn tells which won.
    truth = np.zeros((4, 6), np.uint8)
    truth[0, 4:6] = 255  # A
    truth[2:4, 0] = 255  # B
    pred = truth.copy()
    pred[0, 4] = 200  # A holds 200 (drops out at 0.8), B holds 255
    tri = np.full(truth.shape, 128, np.uint8)
    _close(dim_metrics(pred, truth, tri), ref_dim(pred, truth, tri))
    _close(gfm_metrics(pred, truth, tri), ref_gfm(pred, truth, tri))
    assert dim_metrics(pred, truth, tri)["conn"] != pytest.approx(gfm_metrics(pred, truth)["conn"])


@settings(max_examples=60, deadline=None)
@given(alpha8)
def test_identical_inputs_score_zero(data):
    truth, _, tri = data
    # a trimap that agrees with the truth (SAD-Trans forces the known regions)
    tri = tri.copy()
    tri[(tri == 0) & (truth != 0)] = 128
    tri[(tri == 255) & (truth != 255)] = 128
    for protocol in ("gfm", "dim"):
        m = compute_metrics(truth, truth, tri, protocol=protocol)
        for k, v in m.items():
            assert v == 0.0 or (math.isnan(v) and k in ("mse", "mad")), (protocol, k, v)


@settings(max_examples=60, deadline=None)
@given(alpha8)
def test_symmetric_metrics(data):
    a, b, tri = data
    for protocol, names in (("gfm", ("sad", "mse", "mad", "grad", "conn", "sad_fg", "sad_bg")),
                            ("dim", ("sad", "mse", "mad", "grad", "conn", "sad_fg", "sad_bg"))):
        x = compute_metrics(a, b, tri, protocol=protocol, metrics=names)
        y = compute_metrics(b, a, tri, protocol=protocol, metrics=names)
        _close(x, y, rel=1e-6, abs_=1e-12)


def test_sad_trans_is_not_symmetric_gfm():
    # forcing applies to the prediction only
    a, b = np.array([[0.5]]), np.array([[1.0]])
    tri = np.array([[255]], np.uint8)
    assert gfm_metrics(a, b, tri)["sad_trans"] == 0.0
    assert gfm_metrics(b, a, tri)["sad_trans"] == pytest.approx(0.5 / 1000)


def test_scaling_of_sad_mse_grad():
    rng = np.random.default_rng(1)
    truth = rng.random((40, 50))
    err = rng.normal(0, 1, truth.shape) * 0.02
    m1 = gfm_metrics(np.clip(truth + err, 0, 1), truth, metrics=["sad", "mse", "mad"])
    pred1 = np.clip(truth + err, 0, 1)
    pred2 = truth + 2 * (pred1 - truth)
    ok = (pred2 >= 0) & (pred2 <= 1)
    truth, pred1, pred2 = (np.where(ok, x, 0.5) for x in (truth, pred1, pred2))
    m1 = gfm_metrics(pred1, truth, metrics=["sad", "mse", "mad"])
    m2 = gfm_metrics(pred2, truth, metrics=["sad", "mse", "mad"])
    # doubling the error doubles SAD and MAD, quadruples MSE
    assert m2["sad"] == pytest.approx(2 * m1["sad"], rel=1e-6)
    assert m2["mad"] == pytest.approx(2 * m1["mad"], rel=1e-6)
    assert m2["mse"] == pytest.approx(4 * m1["mse"], rel=1e-6)
    # GFM Grad is linear in the images: (mag) scales with them, so Grad scales by 4
    g1 = gfm_metrics(pred1 * 0.5, truth * 0.5, metrics=["grad"])["grad"]
    g2 = gfm_metrics(pred1, truth, metrics=["grad"])["grad"]
    assert g2 == pytest.approx(4 * g1, rel=1e-4)
    # SAD scales with the number of pixels: tiling the pair 2 x 2 multiplies it by 4
    t = gfm_metrics(np.tile(pred1, (2, 2)), np.tile(truth, (2, 2)), metrics=["sad", "mse"])
    assert t["sad"] == pytest.approx(4 * m1["sad"], rel=1e-9)
    assert t["mse"] == pytest.approx(m1["mse"], rel=1e-9)


def test_protocols_differ_where_they_should():
    # An error far from the trimap's unknown band counts in GFM, not in DIM SAD.
    truth = np.zeros((20, 20), np.uint8)
    truth[5:15, 5:15] = 255
    tri = np.zeros_like(truth)
    tri[4:16, 4:16] = 128
    tri[6:14, 6:14] = 255
    pred = truth.copy()
    pred[0:2, 0:2] = 255  # a blob in the background
    g = gfm_metrics(pred, truth, tri)
    d = dim_metrics(pred, truth, tri)
    assert g["sad"] == pytest.approx(4 / 1000)
    assert d["sad"] == 0.0 and d["sad_bg"] == pytest.approx(4 / 1000)
    assert g["sad_trans"] == 0.0  # forced to 0 there
    assert g["sad_bg"] == pytest.approx(4 / 1000)


def test_metric_subset_and_order():
    m = gfm_metrics(PRED, TRUTH, TRI, metrics=["conn", "sad"])
    assert list(m) == ["conn", "sad"]
    assert list(gfm_metrics(PRED, TRUTH)) == [k for k in METRICS if not k.startswith("sad_")]


def test_bad_inputs_say_what_is_wrong():
    with pytest.raises(ValueError, match="shape"):
        gfm_metrics(np.zeros((2, 2, 3)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="3x2"):
        gfm_metrics(np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        gfm_metrics(np.full((2, 2), 3.0), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="trimap"):
        dim_metrics(np.zeros((2, 2)), np.zeros((2, 2)), None)
    with pytest.raises(ValueError, match="protocol"):
        compute_metrics(np.zeros((2, 2)), np.zeros((2, 2)), protocol="matlab")
    with pytest.raises(ValueError, match="unknown metric"):
        gfm_metrics(np.zeros((2, 2)), np.zeros((2, 2)), metrics=["psnr"])


def test_no_unknown_pixels_gives_nan_means():
    a = np.zeros((3, 3), np.uint8)
    m = dim_metrics(a, a + 10, np.zeros_like(a))
    assert math.isnan(m["mse"]) and math.isnan(m["mad"]) and m["sad"] == 0 and m["conn"] == 0
    assert m["sad_bg"] == pytest.approx(9 * 10 / 255 / 1000)


def test_large_image_matches_reference():
    # a realistic matte at a moderate size: many components, all code paths
    from rssn.sample_data import animal_alpha
    from rssn.seeding import generator

    rng = generator(0, "metrics-test")
    truth = np.rint(animal_alpha(rng, 120, 200) * 255).astype(np.uint8)
    noise = rng.normal(0, 0.08, truth.shape)
    pred = np.clip(truth / 255 + noise * (truth > 0), 0, 1).astype(np.float32)
    from rssn.trimap import trimap_from_alpha

    tri = trimap_from_alpha(truth, 15)
    _close(gfm_metrics(pred, truth, tri), ref_gfm(pred, truth, tri))
    _close(dim_metrics(pred, truth, tri), ref_dim(np.rint(pred * 255).astype(np.uint8), truth, tri))


def test_all_zero_prediction_conn_gfm_zero_dim_counts_truth():
    # Nothing is common at 0.1: GFM skips every threshold (levels end at 1, both
    # phi are 1); DIM gives every pixel the level 0, so phi_truth = 1 - g where g >= 0.15.
    truth = np.array([[0, 30, 38, 39, 128, 255]], np.uint8)
    pred = np.zeros_like(truth)
    tri = np.full(truth.shape, 128, np.uint8)
    assert gfm_metrics(pred, truth)["conn"] == 0.0
    expect = sum(v / 255 for v in (39, 128, 255)) / 1000  # 38/255 = 0.149 < 0.15
    assert dim_metrics(pred, truth, tri)["conn"] == pytest.approx(expect, rel=1e-6)
