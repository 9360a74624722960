"""A small, deterministic sample set made by code: what the demo and the tests use.

``make_sample_data(OUT)`` writes:

- ``OUT/am2k/``: an AM-2k-layout matting set (``train/original``, ``train/mask``,
  ``validation/original``, ``validation/mask``, ``validation/trimap``) of
  procedural animals with soft, hair-like alpha edges, plus ``categories.json``
  (sample id -> AM-2k category).
- ``OUT/truth/fg`` and ``OUT/truth/bg``: the true foreground colour and the true
  background of every matting image (``image = alpha*fg + (1-alpha)*bg``, then a
  shared camera noise and JPEG), so foreground estimation can be scored.
- ``OUT/photos/``: background candidates for ``rssn build-bg``: HD procedural
  landscapes in both orientations, scikit-image's bundled photos upscaled to HD,
  one photo below HD, one byte copy and one re-encoded, resized near-duplicate.

Everything derives from ``seed``: the same call writes the same pixels.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .io import PathLike, write_image, write_text_atomic
from .seeding import generator
from .trimap import trimap_from_alpha

AM2K_CATEGORIES = (
    "alpaca", "antelope", "bear", "camel", "cat", "cattle", "deer", "dog", "elephant", "giraffe",
    "horse", "kangaroo", "leopard", "lion", "monkey", "rabbit", "rhinoceros", "sheep", "tiger", "zebra",
)

# Base fur colours (RGB) per sample, cycled.
_FUR = ((196, 152, 98), (120, 112, 104), (214, 128, 52), (90, 70, 55), (230, 220, 200), (160, 120, 80))


@dataclass
class SampleData:
    root: Path
    am2k: Path
    photos: Path
    truth: Path
    categories: Path


# --------------------------------------------------------------------------- textures


def fractal_noise(rng: np.random.Generator, h: int, w: int, octaves: int = 5, base: int = 4) -> np.ndarray:
    """Smooth multi-octave value noise in [0, 1], H x W float32."""
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        cells = base * 2**o
        small = rng.random((cells + 1, int(cells * w / h) + 1), dtype=np.float32)
        out += amp * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
    out /= total
    lo, hi = out.min(), out.max()
    return (out - lo) / max(hi - lo, 1e-6)


def landscape(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A photo-like scene without a salient object: sky, hills, textured ground."""
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    sky_top = rng.uniform([60, 110, 170], [120, 170, 235])
    sky_bot = rng.uniform([170, 190, 210], [235, 235, 245])
    img = (sky_top * (1 - y[..., None]) + sky_bot * y[..., None]) * np.ones((1, w, 1), np.float32)
    clouds = fractal_noise(rng, h, w, octaves=5, base=3)
    img += (np.clip(clouds - 0.55, 0, 1) * 180)[..., None] * (1 - y[..., None])
    for layer in range(3):
        ridge = fractal_noise(rng, 8, w, octaves=4, base=2)[4]
        horizon = (0.45 + 0.15 * layer + 0.2 * (ridge - 0.5)) * h
        mask = (np.arange(h, dtype=np.float32)[:, None] > horizon[None, :]).astype(np.float32)
        mask = cv2.GaussianBlur(mask, (0, 0), 1.5)
        colour = rng.uniform([40, 70, 30], [120, 150, 90]) * (1.0 - 0.2 * layer)
        texture = 0.75 + 0.5 * fractal_noise(rng, h, w, octaves=6, base=8)
        img = img * (1 - mask[..., None]) + (colour * texture[..., None]) * mask[..., None]
    grain = rng.normal(0, 2.0, (h, w, 1)).astype(np.float32)
    return np.clip(img + grain, 0, 255).astype(np.uint8)


def interior(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A plain wall-and-floor scene with soft light."""
    wall = rng.uniform([150, 140, 120], [235, 225, 210])
    floor = rng.uniform([80, 60, 40], [160, 120, 90])
    split = int(h * rng.uniform(0.6, 0.75))
    img = np.empty((h, w, 3), np.float32)
    img[:split] = wall
    img[split:] = floor
    grain = fractal_noise(rng, h, w, octaves=6, base=16)
    img *= (0.85 + 0.3 * grain)[..., None]
    light = fractal_noise(rng, h, w, octaves=2, base=1)
    img *= (0.8 + 0.4 * light)[..., None]
    img += rng.normal(0, 2.0, (h, w, 1)).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def skimage_photo(name: str, h: int, w: int) -> np.ndarray:
    """One of scikit-image's bundled photos, resized to cover (h, w) and cropped."""
    from skimage import data

    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = img[..., :3]
    s = max(h / img.shape[0], w / img.shape[1])
    big = cv2.resize(img, (max(w, round(img.shape[1] * s)), max(h, round(img.shape[0] * s))), interpolation=cv2.INTER_CUBIC)
    y0, x0 = (big.shape[0] - h) // 2, (big.shape[1] - w) // 2
    return np.ascontiguousarray(big[y0:y0 + h, x0:x0 + w])


# --------------------------------------------------------------------------- foregrounds


def animal_alpha(rng: np.random.Generator, h: int, w: int, ss: int = 4) -> np.ndarray:
    """Alpha of a furry blob: anti-aliased body plus thin hair strands, float32 in [0, 1].

    Drawn at ``ss`` times the size and averaged down, so strands thinner than a
    pixel give the fractional alpha real fur has.
    """
    H, W = h * ss, w * ss
    canvas = np.zeros((H, W), np.uint8)
    cx, cy = W * rng.uniform(0.42, 0.58), H * rng.uniform(0.55, 0.65)
    ax, ay = W * rng.uniform(0.22, 0.3), H * rng.uniform(0.16, 0.22)
    parts = [((cx, cy), (ax, ay), rng.uniform(-15, 15))]
    hx, hy = cx + ax * rng.choice([-0.8, 0.8]), cy - ay * 1.1
    parts.append(((hx, hy), (ax * 0.45, ay * 0.6), rng.uniform(-30, 30)))
    for side in (-1, 1):  # ears
        parts.append(((hx + side * ax * 0.3, hy - ay * 0.55), (ax * 0.12, ay * 0.3), side * 20.0))
    for leg in range(4):  # legs reach the bottom edge, as in a photo of a standing animal
        lx = cx + ax * (-0.7 + 0.45 * leg)
        parts.append(((lx, (cy + H) / 2), (ax * 0.1, (H - cy) / 2 + 2), 0.0))
    for (px, py), (rx, ry), ang in parts:
        cv2.ellipse(canvas, (int(px), int(py)), (int(rx), int(ry)), float(ang), 0, 360, 255, -1, cv2.LINE_AA)
    # Hair: strands from boundary points, pointing outwards with a random bend.
    contours, _ = cv2.findContours((canvas > 127).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    pts = np.concatenate([c[:, 0, :] for c in contours]).astype(np.float32)
    n = min(len(pts), 5000)
    idx = rng.choice(len(pts), n, replace=False)
    centre = np.array([cx, cy], np.float32)
    for (x, y) in pts[idx]:
        d = np.array([x, y]) - centre
        d /= np.linalg.norm(d) + 1e-6
        length = rng.uniform(4, 16) * ss
        bend = rng.normal(0, 0.5)
        prev = (x, y)
        for t in (0.33, 0.66, 1.0):
            ang = bend * t
            rot = np.array([d[0] * np.cos(ang) - d[1] * np.sin(ang), d[0] * np.sin(ang) + d[1] * np.cos(ang)])
            nxt = (x + rot[0] * length * t, y + rot[1] * length * t)
            cv2.line(canvas, (int(prev[0]), int(prev[1])), (int(nxt[0]), int(nxt[1])), int(rng.integers(150, 256)), 1, cv2.LINE_AA)
            prev = nxt
    alpha = cv2.resize(canvas.astype(np.float32) / 255.0, (w, h), interpolation=cv2.INTER_AREA)
    return np.clip(alpha, 0, 1)


def fur_colour(rng: np.random.Generator, h: int, w: int, base: tuple[int, int, int]) -> np.ndarray:
    """Foreground colour: a base fur tone with patches and fine directional texture."""
    patches = fractal_noise(rng, h, w, octaves=3, base=2)
    fine = rng.random((h, w), dtype=np.float32)
    fine = cv2.GaussianBlur(cv2.blur(fine, (1, 9)), (0, 0), 0.7)
    fine = (fine - fine.mean()) / (fine.std() + 1e-6)
    shade = 0.7 + 0.5 * patches + 0.08 * fine
    tint = rng.uniform(0.9, 1.1, 3)
    img = np.asarray(base, np.float32)[None, None, :] * tint * shade[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- the set


def _sample_id(rng: np.random.Generator, prefix: str) -> str:
    return f"{prefix}_{int(rng.integers(0, 2**32)):08x}"


def make_sample_data(
    out: PathLike,
    *,
    n_train: int = 6,
    n_val: int = 2,
    fg_size: tuple[int, int] = (480, 360),
    bg_size: tuple[int, int] = (1440, 1080),
    n_photos: int = 6,
    seed: int = 0,
) -> SampleData:
    """Write the sample set to ``out`` (see the module docstring).

    ``fg_size`` and ``bg_size`` are (width, height) of the matting images and of
    the HD background photos.
    """
    out = Path(out)
    am2k, truth, photos = out / "am2k", out / "truth", out / "photos"
    fw, fh = fg_size
    categories: dict[str, str] = {}
    for i in range(n_train + n_val):
        rng = generator(seed, "foreground", i)
        split = "train" if i < n_train else "validation"
        sid = _sample_id(rng, "m")
        alpha = animal_alpha(rng, fh, fw)
        fg = fur_colour(rng, fh, fw, _FUR[i % len(_FUR)])
        bg = landscape(rng, fh, fw) if i % 2 == 0 else skimage_photo(("coffee", "hubble_deep_field", "rocket")[i % 3], fh, fw)
        a = alpha[..., None]
        img = a * fg.astype(np.float32) + (1 - a) * bg.astype(np.float32)
        img += rng.normal(0, 1.5, img.shape).astype(np.float32)  # one camera noise for the whole photo
        img = np.clip(np.round(img), 0, 255).astype(np.uint8)
        alpha8 = np.round(alpha * 255).astype(np.uint8)
        write_image(am2k / split / "original" / f"{sid}.jpg", img, quality=95)
        write_image(am2k / split / "mask" / f"{sid}.png", alpha8)
        if split == "validation":
            write_image(am2k / split / "trimap" / f"{sid}.png", trimap_from_alpha(alpha8, 15))
        write_image(truth / "fg" / f"{sid}.png", fg)
        write_image(truth / "bg" / f"{sid}.png", bg)
        categories[sid] = AM2K_CATEGORIES[i % len(AM2K_CATEGORIES)]
    cat_path = am2k / "categories.json"
    write_text_atomic(cat_path, json.dumps(categories, indent=2, sort_keys=True) + "\n")

    bw, bh = bg_size
    kinds = ("astronaut", "coffee", "immunohistochemistry")
    names: list[str] = []
    for j in range(n_photos):
        rng = generator(seed, "photo", j)
        portrait = j % 3 == 2
        w, h = (bh, bw) if portrait else (bw, bh)
        if j == 0:  # larger than the rest, so its near duplicate below is smaller and still HD
            w, h = round(w * 1.3), round(h * 1.3)
        if j % 3 == 1 and j // 3 < len(kinds):
            img = skimage_photo(kinds[j // 3], h, w)
        elif j % 2 == 0:
            img = landscape(rng, h, w)
        else:
            img = interior(rng, h, w)
        name = f"photo_{j:02d}.jpg"
        write_image(photos / name, img, quality=92)
        names.append(name)
    # Inputs that build-bg must catch: below HD, a byte copy and a near duplicate.
    rng = generator(seed, "photo", "small")
    write_image(photos / "small_below_hd.jpg", landscape(rng, bh // 2, bw // 2), quality=92)
    if names:
        shutil.copyfile(photos / names[0], photos / "copy_of_photo_00.jpg")
        from .io import read_rgb

        src = read_rgb(photos / names[0])
        # Downscaled to 85 %, cropped by 3 % a side, re-encoded at low quality: still HD.
        big = cv2.resize(src, (int(src.shape[1] * 0.85), int(src.shape[0] * 0.85)), interpolation=cv2.INTER_AREA)
        dy, dx = int(big.shape[0] * 0.03), int(big.shape[1] * 0.03)
        near = np.ascontiguousarray(big[dy:-dy, dx:-dx])
        write_image(photos / "near_dup_photo_00.jpg", near, quality=60)
    write_text_atomic(
        out / "README.txt",
        "rssn sample data (procedural, deterministic).\n"
        "am2k/    matting set in the AM-2k layout; categories.json maps ids to categories\n"
        "truth/   true foreground (fg/) and background (bg/) of every matting image\n"
        "photos/  background candidates for rssn build-bg (with a small one and duplicates)\n",
    )
    return SampleData(root=out, am2k=am2k, photos=photos, truth=truth, categories=cat_path)
