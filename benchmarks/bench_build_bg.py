"""Throughput of ``rssn build-bg`` without the detector, beside its floor.

The floor is the work no background-set builder can avoid: decode each photo,
resize it to the target shorter side and encode the JPEG. build-bg adds the pixel
hash, the review thumbnail, three perceptual hashes, the cache records, dedup,
split and the output folders. Both run on the same images in one process (one
core), and the ratio is printed. A second part times the near-duplicate index on
hashes of a 50,000-image collection.

Usage: python benchmarks/bench_build_bg.py [--images N] [--size W H] [--quick]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RSSN_PROGRESS", "0")

import numpy as np  # noqa: E402

from rssn.bgset import build_background_set, dedup  # noqa: E402
from rssn.bgset.hd import resize_to_min_side  # noqa: E402
from rssn.executor import limit_threads  # noqa: E402
from rssn.io import encode_image, list_images, read_rgb, write_image  # noqa: E402
from rssn.sample_data import landscape  # noqa: E402
from rssn.seeding import generator  # noqa: E402


def make_photos(folder: Path, n: int, w: int, h: int) -> None:
    for k in range(n):
        rng = generator(0, "bench-photo", k)
        ww, hh = (w, h) if k % 3 else (h, w)  # a third portrait
        write_image(folder / f"photo_{k:04d}.jpg", landscape(rng, hh, ww), quality=92)


def floor(paths: list[Path], min_side: int, quality: int) -> float:
    t = time.perf_counter()
    for p in paths:
        encode_image(resize_to_min_side(read_rgb(p), min_side), "jpg", quality=quality)
    return time.perf_counter() - t


def ours(src: Path, out: Path, min_side: int, quality: int) -> float:
    if out.exists():
        shutil.rmtree(out)
    t = time.perf_counter()
    build_background_set([src], out, detector="none", min_side=min_side, quality=quality, workers=1, progress=False)
    return time.perf_counter() - t


def bench_index(n: int) -> tuple[float, int]:
    rng = np.random.default_rng(0)
    sets = [[int(x) for x in rng.integers(0, 2**63, 3, dtype=np.int64)] for _ in range(n)]
    for k in range(0, n, 100):  # plant near duplicates: 1 % of the images
        sets[k + 1][0] = sets[k][0] ^ 0b10110
    t = time.perf_counter()
    i, _, _ = dedup.near_pairs_sets(sets, 8)
    return time.perf_counter() - t, len(i)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--size", nargs=2, type=int, default=(2048, 1536), metavar=("W", "H"))
    ap.add_argument("--min-side", type=int, default=1080)
    ap.add_argument("--index-images", type=int, default=50_000)
    ap.add_argument("--quick", action="store_true", help="8 images of 1440x1080, index of 10,000")
    a = ap.parse_args(argv)
    if a.quick:
        a.images, a.size, a.index_images = 8, (1440, 1080), 10_000
    limit_threads(1)  # one core for both, so the ratio is per core
    with tempfile.TemporaryDirectory(prefix="bench-bg-") as tmp:
        src = Path(tmp) / "photos"
        make_photos(src, a.images, *a.size)
        paths = list_images(src)
        floor(paths[:2], a.min_side, 95)  # warm up caches and imports
        t_floor = floor(paths, a.min_side, 95)
        t_ours = ours(src, Path(tmp) / "out", a.min_side, 95)
        t0 = time.perf_counter()
        build_background_set([src], Path(tmp) / "out", detector="none", min_side=a.min_side, workers=1, progress=False)
        t_rerun = time.perf_counter() - t0
    n = len(paths)
    print(f"{n} photos of {a.size[0]}x{a.size[1]} -> shorter side {a.min_side}, one core")
    print(f"  floor (decode + resize + encode): {n / t_floor:6.2f} images/s/core")
    print(f"  build-bg, no detector:            {n / t_ours:6.2f} images/s/core")
    print(f"  ratio build-bg / floor:           {t_floor / t_ours:6.2f}")
    print(f"  rerun, everything cached:         {n / t_rerun:6.1f} images/s ({t_rerun:.2f} s)")
    t_index, pairs = bench_index(a.index_images)
    print(f"near-duplicate index: {a.index_images} images x 3 hashes, radius 8: {t_index:.2f} s, {pairs} pairs")


if __name__ == "__main__":
    sys.exit(main())
