"""Metric speed at 1080p: gfm_train.metrics against direct implementations of the same definitions.

Three columns per metric and protocol, measured in one run on one core:

- ``ours``: :mod:`gfm_train.metrics` (separable filters, OpenCV components);
- ``port``: the step-by-step port of the definition (numpy/scipy, components by
  ``scipy.ndimage.label``, the MATLAB 9 x 9 kernel applied tap by tap), the
  reference of the tests (tests/test_metrics_reference.py), at full size;
- ``loops``: per-pixel Python loops (flood fill, kernel sums) on a crop, scaled
  to the full pixel count (they would take minutes to hours at 1080p).

Usage::

    python benchmarks/bench_metrics.py            # 1080 x 1920
    python benchmarks/bench_metrics.py --quick    # 540 x 960, smaller loop crop

Never asserts on timing; prints seconds and ratios (port / ours, loops / ours).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import test_metrics_reference as ref  # noqa: E402

from gfm_train.metrics import METRICS, dim_metrics, gfm_metrics  # noqa: E402
from rssn.sample_data import animal_alpha  # noqa: E402
from rssn.trimap import trimap_from_alpha  # noqa: E402
from rssn.seeding import generator  # noqa: E402


def make_pair(h: int, w: int, seed: int = 0):
    """A hairy procedural matte, a plausible prediction (blurred, noisy, a stray blob) and a trimap."""
    rng = generator(seed, "bench-metrics")
    truth = np.rint(animal_alpha(rng, h, w, ss=1) * 255).astype(np.uint8)
    soft = cv2.GaussianBlur(truth.astype(np.float32) / 255, (0, 0), 1.5)
    noise = rng.normal(0, 0.04, truth.shape).astype(np.float32) * (soft > 0.02)
    pred = np.clip(soft + noise + 1e-3, 0, 1).astype(np.float32)
    pred[h // 20 : h // 10, w // 20 : w // 10] = 0.7  # a false positive in the background
    trimap = trimap_from_alpha(truth, 25)
    return pred, truth, trimap


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="540 x 960 and a smaller loop crop")
    ap.add_argument("--size", nargs=2, type=int, metavar=("H", "W"), help="image size (default 1080 1920)")
    ap.add_argument("--crop", type=int, default=None, help="side of the square crop for per-pixel loops")
    ap.add_argument("--repeat", type=int, default=5, help="repeats of the fast path (best is kept)")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    h, w = args.size or ((540, 960) if args.quick else (1080, 1920))
    crop = args.crop or (40 if args.quick else 64)
    pred, truth, tri = make_pair(h, w)
    p8 = np.rint(pred * 255).astype(np.uint8)
    unknown = tri == 128
    # the crop for loops: centred on the matte's edge region
    ys, xs = np.nonzero(unknown)
    cy, cx = int(np.median(ys)), int(np.median(xs))
    sl = (slice(max(cy - crop // 2, 0), max(cy - crop // 2, 0) + crop), slice(max(cx - crop // 2, 0), max(cx - crop // 2, 0) + crop))
    scale = (h * w) / (crop * crop)
    gt = truth / 255.0

    port_gfm = {
        "sad": lambda: np.sum(np.abs(pred - gt)) / 1000,
        "mse": lambda: np.sum((pred - gt) ** 2) / gt.size,
        "mad": lambda: np.sum(np.abs(pred - gt)) / gt.size,
        "grad": lambda: ref._gfm_grad_port(pred, gt),
        "conn": lambda: ref._gfm_conn_port(pred, gt),
        "sad_trans": lambda: _forced(pred, gt, tri),
        "sad_fg": lambda: np.sum(np.abs(pred - gt) * (tri == 255)) / 1000,
        "sad_bg": lambda: np.sum(np.abs(pred - gt) * (tri == 0)) / 1000,
    }
    port_dim = {
        "sad": lambda: np.sum(np.abs(p8.astype(np.int64) - truth) / 255 * unknown) / 1000,
        "mse": lambda: np.sum((np.abs(p8.astype(np.int64) - truth) / 255) ** 2 * unknown) / unknown.sum(),
        "mad": lambda: np.sum(np.abs(p8.astype(np.int64) - truth) / 255 * unknown) / unknown.sum(),
        "grad": lambda: ref._dim_grad_port(p8, truth, unknown),
        "conn": lambda: ref._dim_conn_port(p8, truth, unknown),
        "sad_trans": lambda: np.sum(np.abs(p8.astype(np.int64) - truth) / 255 * unknown) / 1000,
        "sad_fg": lambda: np.sum(np.abs(p8.astype(np.int64) - truth) / 255 * (tri == 255)) / 1000,
        "sad_bg": lambda: np.sum(np.abs(p8.astype(np.int64) - truth) / 255 * (tri == 0)) / 1000,
    }
    cp, ct, cu, cp8, ctri = pred[sl], truth[sl], unknown[sl], p8[sl], tri[sl]
    loop_gfm = {
        "sad": lambda: ref.loop_sad_mse_mad(cp, ct / 255.0),
        "mse": lambda: ref.loop_sad_mse_mad(cp, ct / 255.0),
        "mad": lambda: ref.loop_sad_mse_mad(cp, ct / 255.0),
        "grad": lambda: ref.loop_grad_gfm(cp, ct / 255.0),
        "conn": lambda: ref.loop_conn(cp, ct, None, "gfm"),
        "sad_trans": lambda: ref.loop_sad_mse_mad(cp, ct / 255.0, ctri != 0),
        "sad_fg": lambda: ref.loop_sad_mse_mad(cp, ct / 255.0, ctri == 255),
        "sad_bg": lambda: ref.loop_sad_mse_mad(cp, ct / 255.0, ctri == 0),
    }
    loop_dim = {
        "sad": lambda: ref.loop_sad_mse_mad(cp8 / 255.0, ct / 255.0, cu),
        "mse": lambda: ref.loop_sad_mse_mad(cp8 / 255.0, ct / 255.0, cu),
        "mad": lambda: ref.loop_sad_mse_mad(cp8 / 255.0, ct / 255.0, cu),
        "grad": lambda: ref.loop_grad_dim(cp8, ct, cu),
        "conn": lambda: ref.loop_conn(cp8, ct, cu, "dim"),
        "sad_trans": lambda: ref.loop_sad_mse_mad(cp8 / 255.0, ct / 255.0, cu),
        "sad_fg": lambda: ref.loop_sad_mse_mad(cp8 / 255.0, ct / 255.0, ctri == 255),
        "sad_bg": lambda: ref.loop_sad_mse_mad(cp8 / 255.0, ct / 255.0, ctri == 0),
    }
    print(f"image {h} x {w}, one core; loops on a {crop} x {crop} crop scaled x{scale:.0f}; best of {args.repeat}")
    for protocol, fast, port, loops in (("gfm", gfm_metrics, port_gfm, loop_gfm), ("dim", dim_metrics, port_dim, loop_dim)):
        # agreement first: the fast values against the port's
        ours_vals = fast(pred, truth, tri)
        ref_vals = ref.ref_gfm(pred, truth, tri) if protocol == "gfm" else ref.ref_dim(p8, truth, tri)
        worst = max(abs(ours_vals[k] - ref_vals[k]) / max(abs(ref_vals[k]), 1e-12) for k in METRICS)
        print(f"\n{protocol.upper()} protocol (largest relative difference to the port: {worst:.1e})")
        print(f"{'metric':10s} {'value':>12s} {'ours s':>9s} {'port s':>9s} {'loops s':>10s} {'port/ours':>10s} {'loops/ours':>11s}")
        for m in METRICS:
            t_ours = best(lambda: fast(pred, truth, tri, metrics=[m]), args.repeat)
            t_port = best(port[m], 1)
            t_loop = best(loops[m], 1) * scale
            print(f"{m:10s} {ours_vals[m]:12.5g} {t_ours:9.4f} {t_port:9.3f} {t_loop:10.1f} {t_port / t_ours:10.1f} {t_loop / t_ours:11.0f}")
        t_all = best(lambda: fast(pred, truth, tri), args.repeat)
        t_port_all = best(lambda: ref.ref_gfm(pred, truth, tri) if protocol == "gfm" else ref.ref_dim(p8, truth, tri), 1)
        print(f"{'all':10s} {'':12s} {t_all:9.4f} {t_port_all:9.3f} {'':10s} {t_port_all / t_all:10.1f}")


def _forced(pred, gt, tri):
    f = pred.astype(np.float64).copy()
    f[tri == 255] = 1
    f[tri == 0] = 0
    return np.sum(np.abs(f - gt)) / 1000


if __name__ == "__main__":
    main()
