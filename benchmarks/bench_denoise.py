"""BM3D profiles side by side: seconds per megapixel and PSNR.

Runs the ``default`` profile (hard thresholding + Wiener), the ``fast`` profile
(hard thresholding only, lighter block matching) and ``fast`` with ``max_side``
(BM3D at half size, the noise it finds there subtracted at full size) on the
same noisy crops of scikit-image's bundled photos, with the noise level
estimated as in production. The noisy input's PSNR is the floor every variant
must beat. PSNR is given at full size and after shrinking to half size
(``@1/2``), which is what a composite sees of a background shrunk to a
foreground's size: ``max_side`` leaves the grain finer than its scale, so it
gains little at full size and most of its gain shows at the reduced size.
Timings are wall-clock on whatever else the machine is doing; the ratios come
from one run, side by side.

    python benchmarks/bench_denoise.py            # 256 x 256 crops, sigma 5 and 15 (~1-2 min)
    python benchmarks/bench_denoise.py --quick    # one 128 x 128 crop, sigma 15
    python benchmarks/bench_denoise.py --size 512 --sigmas 10
"""
from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
from skimage import data
from skimage.metrics import peak_signal_noise_ratio as psnr

from rssn.denoise import denoise_array


def crops(size: int, names: list[str]) -> list[tuple[str, np.ndarray]]:
    out = []
    for name in names:
        img = getattr(data, name)()[..., :3]
        s = max(size / img.shape[0], size / img.shape[1]) * 1.25  # a little detail is lost, as in a photo
        img = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
        y, x = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
        out.append((name, np.ascontiguousarray(img[y:y + size, x:x + size])))
    return out


def half(img: np.ndarray) -> np.ndarray:
    return cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256, help="side of the square crops")
    ap.add_argument("--sigmas", type=float, nargs="+", default=[5.0, 15.0], help="noise std (0-255)")
    ap.add_argument("--images", nargs="+", default=["astronaut", "coffee"], help="skimage.data photos")
    ap.add_argument("--quick", action="store_true", help="one 128 x 128 crop, sigma 15")
    args = ap.parse_args()
    if args.quick:
        args.size, args.sigmas, args.images = 128, [15.0], ["astronaut"]

    variants = [("default", {"profile": "default"}), ("fast", {"profile": "fast"}),
                ("fast+max_side/2", {"profile": "fast", "max_side": args.size // 2})]
    mp = args.size * args.size / 1e6
    totals = {name: [0.0, 0.0, 0.0, 0] for name, _ in variants}
    print(f"{'image':<10} {'sigma':>5} {'noisy dB':>8} {'@1/2':>6} | " + " | ".join(f"{n:>29}" for n, _ in variants))
    print(f"{'':<10} {'':>5} {'':>8} {'':>6} | "
          + " | ".join(f"{'s/MP':>7} {'PSNR dB':>7} {'gain':>5} {'@1/2':>6}" for _ in variants))
    for name, clean in crops(args.size, args.images):
        for sigma in args.sigmas:
            rng = np.random.default_rng(0)
            noisy = np.clip(np.round(clean + rng.normal(0, sigma, clean.shape)), 0, 255).astype(np.uint8)
            floor = psnr(clean, noisy)
            floor2 = psnr(half(clean), half(noisy))
            cells = []
            for vname, kw in variants:
                t0 = time.perf_counter()
                out, _ = denoise_array(noisy, **kw)
                secs = time.perf_counter() - t0
                p, p2 = psnr(clean, out), psnr(half(clean), half(out))
                totals[vname][0] += secs
                totals[vname][1] += p - floor
                totals[vname][2] += p2 - floor2
                totals[vname][3] += 1
                cells.append(f"{secs / mp:>7.1f} {p:>7.2f} {p - floor:>+5.1f} {p2:>6.2f}")
            print(f"{name:<10} {sigma:>5g} {floor:>8.2f} {floor2:>6.2f} | " + " | ".join(cells), flush=True)
    ref_t, ref_g, ref_g2, n = totals["default"]
    print()
    print(f"crop {args.size}x{args.size} ({mp:.3f} MP), single-threaded BM3D, noise sigma estimated per image")
    for vname, (t, g, g2, k) in totals.items():
        print(f"{vname:<16} {t / k / mp:6.1f} s/MP  speed x{ref_t / t:5.2f} vs default  "
              f"PSNR gain {g / k:+.2f} dB ({g / k - ref_g / n:+.2f} vs default), "
              f"at half size {g2 / k:+.2f} dB ({g2 / k - ref_g2 / n:+.2f} vs default)")


if __name__ == "__main__":
    main()
