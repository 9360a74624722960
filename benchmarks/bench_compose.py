"""Benchmark of `rssn compose`: composites per second per core at 1080p, caches warm,
beside the floor (decode the inputs + encode the outputs, same images).

    python benchmarks/bench_compose.py            # 1080x1620 foregrounds on 1200x1800 backgrounds
    python benchmarks/bench_compose.py --quick    # half the side, fewer repetitions

Everything runs on one core (OpenCV limited to one thread, as in a worker).
Printed, side by side in one run:

- per composite, every input decoded afresh: the floor (read + decode F, alpha,
  B; encode the composite and background JPEGs; F and alpha PNG bytes are copied
  into the shard as they are, so the floor copies them too) and our pipeline
  (the same I/O plus fit, blur, blend, noise), for three route mixes; the ratio
  floor_time / our_time (goal: >= 0.6);
- the arithmetic alone (fit + blur + blend + noise with OpenCV) beside the same
  steps written with numpy float64 (numpy's normal generator);
- a whole `compose()` run on one worker (shard writing, sha256, fsync, each
  foreground decoded once for its K composites): composites per second per core;
- the peak memory (max RSS) of a fresh worker process making one shard.

The denoise cache is filled beforehand with stand-in entries (a Gaussian blur of
each image, stored where and how BM3D results are stored): real BM3D at this size
takes minutes per image, and reading an entry costs the same whatever it holds.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

os.environ.setdefault("RSSN_PROGRESS", "0")

from rssn.compose import ops  # noqa: E402
from rssn.compose.composite import make_composite  # noqa: E402
from rssn.compose.job import compose, list_backgrounds, plan_composites, read_foregrounds, resolve_denoised  # noqa: E402
from rssn.compose.route import RouteConfig  # noqa: E402
from rssn.denoise import cached_path  # noqa: E402
from rssn.executor import limit_threads  # noqa: E402
from rssn.io import encode_image, read_alpha, read_bytes, read_rgb, write_image, write_text_atomic  # noqa: E402
from rssn.sample_data import animal_alpha, fur_colour, landscape  # noqa: E402
from rssn.seeding import generator  # noqa: E402


def make_inputs(root: Path, fg_size: tuple[int, int], bg_size: tuple[int, int], n_fg: int, n_bg: int) -> None:
    """A prepared set (fg PNG, alpha PNG, samples.jsonl) and JPEG backgrounds, plus
    stand-in denoise cache entries for all of them."""
    (fw, fh), (bw, bh) = fg_size, bg_size
    rows = []
    for i in range(n_fg):
        rng = generator(0, "bench-fg", i)
        sid = f"m_bench{i:02d}"
        write_image(root / "prepared/train/alpha" / f"{sid}.png", np.round(animal_alpha(rng, fh, fw, ss=2) * 255).astype(np.uint8))
        write_image(root / "prepared/train/fg" / f"{sid}.png", fur_colour(rng, fh, fw, (196, 152, 98)))
        rows.append(f'{{"id": "{sid}", "split": "train", "category": "cat", "image": null, '
                    f'"alpha": "train/alpha/{sid}.png", "fg": "train/fg/{sid}.png", "trimap": null, '
                    f'"width": {fw}, "height": {fh}, "fg_method": "given"}}\n')
    write_text_atomic(root / "prepared/samples.jsonl", "".join(rows))
    for j in range(n_bg):
        write_image(root / "bgs" / f"h_bench{j:02d}.jpg", landscape(generator(0, "bench-bg", j), bh, bw), quality=92)
    cache = root / "prepared/denoise"
    for p in list((root / "prepared/train/fg").glob("*.png")) + list((root / "bgs").glob("*.jpg")):
        write_image(cached_path(p, cache), cv2.GaussianBlur(read_rgb(p), (0, 0), 1.0))


def plan(root: Path, config: RouteConfig, per_fg: int) -> list[dict]:
    items = plan_composites(read_foregrounds(root / "prepared"), list_backgrounds(root / "bgs"), config, per_fg, 0)
    resolve_denoised(items, root / "prepared/denoise", missing="error", profile="default", sigma=None, max_side=None)
    return items


def floor_once(item: dict, outputs: tuple[np.ndarray, np.ndarray], quality: int) -> None:
    """Decode the inputs our pipeline decodes, encode the outputs it encodes."""
    fg_bytes, alpha_bytes = read_bytes(item["fg"]), read_bytes(item["alpha"])
    read_rgb(fg_bytes, name=item["fg"])
    read_alpha(alpha_bytes, name=item["alpha"])
    read_rgb(item["bg"])
    comp, bg = outputs
    encode_image(comp, "jpg", quality=quality)
    encode_image(bg, "jpg", quality=quality)
    bytes(fg_bytes), bytes(alpha_bytes)  # copied into the shard as they are


def time_per_item(fn, items, reps: int) -> float:
    """Median over repetitions of the mean seconds per item."""
    runs = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for it in items:
            fn(it)
        runs.append((time.perf_counter() - t0) / len(items))
    return statistics.median(runs)


def arithmetic(fg, alpha, bg_src, d, sigma) -> np.ndarray:
    bg, _ = ops.fit_background(bg_src, (fg.shape[1], fg.shape[0]), d["crop_u"])
    if d["blur_kernel"]:
        bg = ops.box_blur(bg, d["blur_kernel"])
    comp = ops.blend(fg, bg, alpha)
    return ops.add_noise(comp, sigma, d["noise_seed"]) if d["noise"] else comp


def arithmetic_numpy(fg, alpha, bg_src, d, sigma, rng) -> np.ndarray:
    """The same steps in numpy float64 (resize and blur still OpenCV)."""
    h, w = alpha.shape
    fit = ops.cover_box((bg_src.shape[1], bg_src.shape[0]), (w, h), d["crop_u"])
    x, y, bw, bh = fit.box
    bg = cv2.resize(bg_src[y:y + bh, x:x + bw].astype(np.float64), (w, h), interpolation=cv2.INTER_LINEAR)
    if d["blur_kernel"]:
        bg = cv2.blur(bg, (d["blur_kernel"], d["blur_kernel"]))
    a = alpha.astype(np.float64)[..., None] / 255.0
    comp = a * fg + (1 - a) * bg
    if d["noise"]:
        comp = comp + rng.normal(0, sigma, comp.shape)
    return np.clip(np.round(comp), 0, 255).astype(np.uint8)


PEAK_WORKER = """
import json, resource, sys
from pathlib import Path
from rssn.executor import limit_threads
from rssn.compose.job import compose


def kib(field):
    # /proc's VmRSS / VmHWM: ru_maxrss would include the parent's size inherited through fork.
    try:
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


limit_threads(1)
root, k = Path(sys.argv[1]), int(sys.argv[2])
base = kib("VmRSS")
compose(root / "prepared", root / "bgs", root / "mem", per_fg=k, shard_size=k, denoise_missing="error",
        p_denoise=1.0, p_blur=1.0, p_noise=1.0)
print(json.dumps([base, kib("VmHWM")]))
"""


def peak_worker_memory(root: Path, k: int) -> tuple[float, float]:
    """(RSS after imports, max RSS after one shard) of a fresh process that imports
    only what a composing worker imports, in MiB."""
    out = subprocess.run([sys.executable, "-c", PEAK_WORKER, str(root), str(k)], check=True,
                         capture_output=True, text=True, env={**os.environ, "RSSN_PROGRESS": "0"})
    base, peak = json.loads(out.stdout.strip().splitlines()[-1])
    return base / 1024, peak / 1024


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="half-size images and fewer repetitions")
    ap.add_argument("--reps", type=int, default=None)
    args = ap.parse_args(argv)
    limit_threads(1)
    scale = 2 if args.quick else 1
    fg_size, bg_size = (1080 // scale, 1620 // scale), (1200 // scale, 1800 // scale)
    reps = args.reps or (2 if args.quick else 3)
    per_fg = 3
    with tempfile.TemporaryDirectory(prefix="bench-compose-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        make_inputs(root, fg_size, bg_size, n_fg=3, n_bg=4)
        print(f"foreground {fg_size[0]}x{fg_size[1]}, background {bg_size[0]}x{bg_size[1]}, one core "
              f"(inputs made in {time.perf_counter() - t0:.1f} s)")
        quality = 95
        print("\nper composite, every input decoded afresh (median of mean ms over "
              f"{reps} repetitions of {3 * per_fg} composites):")
        print(f"  {'route mix':<34} {'floor ms':>9} {'ours ms':>9} {'floor/ours':>11}")
        mixes = [("rssn, p = 0.5 (typical)", RouteConfig()),
                 ("rssn, every step (worst case)", RouteConfig(p_denoise=1, p_blur=1, p_noise=1)),
                 ("plain blending (COMP-COCO/BG20K)", RouteConfig(route="plain"))]
        floors = {}
        for label, config in mixes:
            items = plan(root, config, per_fg)
            settings = {"route": config.to_dict(), "seed": 0, "jpeg_quality": quality}
            outputs = {}
            for it in items:  # the exact arrays our pipeline encodes
                fg, alpha, bg_src = read_rgb(it["fg"]), read_alpha(it["alpha"]), read_rgb(it["bg"])
                bg, _ = ops.fit_background(bg_src, (fg.shape[1], fg.shape[0]), it["decisions"]["crop_u"])
                outputs[it["key"]] = (arithmetic(fg, alpha, bg_src, it["decisions"], 10.0), bg)
            floor = time_per_item(lambda it: floor_once(it, outputs[it["key"]], quality), items, reps)
            ours = time_per_item(lambda it: make_composite(it, settings), items, reps)
            floors[label] = floor
            print(f"  {label:<34} {floor * 1e3:9.1f} {ours * 1e3:9.1f} {floor / ours:11.2f}")

        items = plan(root, RouteConfig(p_denoise=1, p_blur=1, p_noise=1), 1)
        it = items[0]
        fg, alpha, bg_src = read_rgb(it["fg"]), read_alpha(it["alpha"]), read_rgb(it["bg"])
        rng = np.random.default_rng(0)
        cv_t = time_per_item(lambda _: arithmetic(fg, alpha, bg_src, it["decisions"], 10.0), [0] * 3, reps)
        np_t = time_per_item(lambda _: arithmetic_numpy(fg, alpha, bg_src, it["decisions"], 10.0, rng), [0], reps)
        print("\narithmetic alone, every step on (fit + blur + blend + noise):")
        print(f"  OpenCV (ours) {cv_t * 1e3:.1f} ms   numpy float64 {np_t * 1e3:.1f} ms   "
              f"numpy/ours {np_t / cv_t:.1f}x")

        t0 = time.perf_counter()
        res = compose(root / "prepared", root / "bgs", root / "shards", per_fg=4, shard_size=6,
                      denoise_missing="error")
        dt = time.perf_counter() - t0
        n = res.composites
        floor_typ = floors[mixes[0][0]]
        print(f"\nwhole compose() run (rssn, p = 0.5), 1 worker, {n} composites in {res.shards} shards, "
              f"K=4 per foreground:\n  {dt:.2f} s = {n / dt:.1f} composites/s/core; per composite "
              f"{dt / n * 1e3:.1f} ms vs floor {floor_typ * 1e3:.1f} ms: floor/ours {floor_typ * n / dt:.2f}")

        base, peak = peak_worker_memory(root, 4)
        print(f"\npeak memory of one worker process making a shard of 4 (every step on): {peak:.0f} MiB "
              f"(of which {base:.0f} MiB after its imports)")


if __name__ == "__main__":
    main()
