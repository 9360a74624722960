"""Training data for GFM: composite shards (COMP-RSSN track) or real photos (ORI track).

Both sources go through the same transforms (SPEC section 4): a random square crop
whose side is drawn from ``crop_sizes`` (640/960/1280, clamped to the image), half
the time centred on a transition pixel of the trimap, resized to ``size`` (320),
flipped horizontally with p = 0.5; then the RoSTa target maps are computed at the
output size (kernels scaled from their 320-pixel values).

Order and randomness are deterministic: the shard/sample order of an epoch comes
from (seed, epoch), the shuffle buffer of each reader from (seed, epoch, slot), and
every crop/flip from (seed, epoch, sample key), so results do not depend on worker
scheduling, and a resumed run skips exactly the samples already used.

Splitting: each of ``world_size x num_workers`` readers ("slots") takes whole shards
when there are enough of them, otherwise every n-th sample of the shards it reads,
so small datasets still spread over all ranks and workers.
"""
from __future__ import annotations

import itertools
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import torch
import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info

from rssn.io import ImageError, decode_image, read_alpha, read_rgb
from rssn.seeding import derived_seed, generator
from rssn.trimap import UNKNOWN, trimap_from_alpha

from .model.rosta import FTBT_KERNEL, TT_KERNEL, rosta_maps, scaled_kernel

log = logging.getLogger(__name__)

CROP_SIZES = (640, 960, 1280)
OUTPUT_SIZE = 320


# -- transforms (pure functions on arrays) ---------------------------------------
def estimate_background(image: np.ndarray, alpha: np.ndarray, fg: np.ndarray) -> np.ndarray:
    """B from I = aF + (1-a)B where a < 0.99; the image itself where the foreground is (nearly) opaque.

    Used on real photos, which come with an estimated F but no B, so that the
    composition loss still compares like with like.
    """
    a = alpha.astype(np.float32)[..., None] / 255.0
    with np.errstate(divide="ignore", invalid="ignore"):
        b = (image.astype(np.float32) - a * fg.astype(np.float32)) / (1.0 - a)
    b = np.where(a < 0.99, b, image.astype(np.float32))
    return np.clip(b, 0, 255).astype(np.uint8)


def crop_box(alpha: np.ndarray, crop_sizes: tuple[int, ...], rng: np.random.Generator,
             centre_prob: float = 0.5) -> tuple[int, int, int]:
    """A square crop (x, y, side): side drawn from ``crop_sizes`` and clamped to the image;
    with probability ``centre_prob`` centred (as far as the border allows) on a random
    transition pixel of the TT trimap, else placed uniformly."""
    h, w = alpha.shape
    side = int(min(rng.choice(np.asarray(crop_sizes)), h, w))
    centred = rng.random() < centre_prob
    ys = xs = None
    if centred:
        ys, xs = np.nonzero(trimap_from_alpha(alpha, TT_KERNEL) == UNKNOWN)
    if centred and len(ys) > 0:
        i = int(rng.integers(len(ys)))
        x = int(np.clip(xs[i] - side // 2, 0, w - side))
        y = int(np.clip(ys[i] - side // 2, 0, h - side))
    else:
        x = int(rng.integers(w - side + 1))
        y = int(rng.integers(h - side + 1))
    return x, y, side


def augment(arrays: dict[str, np.ndarray], rng: np.random.Generator, crop_sizes: tuple[int, ...] = CROP_SIZES,
            size: int = OUTPUT_SIZE) -> dict[str, np.ndarray]:
    """Crop, resize and flip ``image``, ``alpha``, ``fg``, ``bg`` together; add the RoSTa maps.

    Parameters
    ----------
    arrays : ``image``, ``fg``, ``bg`` (H x W x 3 uint8) and ``alpha`` (H x W uint8).
    rng : the sample's generator.
    crop_sizes : crop sides to draw from (clamped to the image).
    size : output side.

    Returns
    -------
    the same keys at ``size`` x ``size`` plus ``trimap``, ``eroded``, ``dilated``.
    """
    alpha = arrays["alpha"]
    x, y, side = crop_box(alpha, crop_sizes, rng)
    flip = rng.random() < 0.5
    out = {}
    for name in ("image", "fg", "bg", "alpha"):
        a = arrays[name][y:y + side, x:x + side]
        interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
        a = cv2.resize(a, (size, size), interpolation=interp)
        if flip:
            a = a[:, ::-1]
        out[name] = np.ascontiguousarray(a)
    out.update(rosta_maps(out["alpha"], scaled_kernel(TT_KERNEL, size), scaled_kernel(FTBT_KERNEL, size)))
    return out


def to_tensors(arrays: dict[str, np.ndarray], key: str) -> dict[str, Any]:
    """Arrays -> the training sample: uint8 CHW images, float alpha in [0,1], uint8 maps."""
    chw = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))  # noqa: E731
    return {
        "key": key,
        "image": chw(arrays["image"]),
        "fg": chw(arrays["fg"]),
        "bg": chw(arrays["bg"]),
        "alpha": torch.from_numpy(arrays["alpha"].astype(np.float32) / 255.0)[None],
        "maps": {k: torch.from_numpy(arrays[k])[None] for k in ("trimap", "eroded", "dilated")},
    }


# -- sources -----------------------------------------------------------------------
def _slot_assignment(n_items: int, rank: int, world: int, worker: int, workers: int) -> tuple[slice, int, int]:
    """Which items (shards) this reader opens, and its (stride, offset) over their samples."""
    slots, slot = world * workers, rank * workers + worker
    if n_items >= slots:
        return slice(slot, None, slots), 1, 0
    if n_items >= world:
        return slice(rank, None, world), workers, worker
    return slice(None), slots, slot


def list_shards(shards: str | Path | list) -> list[str]:
    """Shard files from a folder (``*.tar``), a single file, or a list of either."""
    items = shards if isinstance(shards, (list, tuple)) else [shards]
    urls: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(str(f) for f in p.glob("*.tar"))
            if not found:
                raise FileNotFoundError(f"{p}: no .tar shards in this folder")
            urls += found
        elif p.is_file():
            urls.append(str(p))
        else:
            raise FileNotFoundError(f"{p}: no such shard file or folder")
    return urls


def _warn(exn: Exception) -> bool:
    log.warning("skipping unreadable shard data: %s", exn)
    return True


class ShardSource:
    """Composite shards (docs/formats.md, "Composite shards") read with webdataset."""

    def __init__(self, shards: str | Path | list, shuffle_buffer: int = 1000):
        self.urls = list_shards(shards)
        self.shuffle_buffer = shuffle_buffer

    def raw(self, seed: int, epoch: int, rank: int, world: int, worker: int, workers: int) -> Iterator[dict]:
        urls = list(self.urls)
        random.Random(derived_seed(seed, "shards", epoch)).shuffle(urls)
        sel, stride, offset = _slot_assignment(len(urls), rank, world, worker, workers)
        stream = wds.tarfile_to_samples(handler=_warn)({"url": u} for u in urls[sel])
        stream = itertools.islice(stream, offset, None, stride)
        if self.shuffle_buffer > 1:
            rng = random.Random(derived_seed(seed, "buffer", epoch, rank * workers + worker))
            stream = wds.shuffle(bufsize=self.shuffle_buffer, initial=min(100, self.shuffle_buffer), rng=rng)(stream)
        return stream

    @staticmethod
    def decode(raw: dict) -> tuple[str, dict[str, np.ndarray]]:
        key = raw["__key__"]
        missing = [m for m in ("composite.jpg", "alpha.png", "fg.png", "bg.jpg") if m not in raw]
        if missing:
            raise ImageError(f"{raw.get('__url__', '?')}:{key}", f"sample lacks {', '.join(missing)}")
        name = f"{raw.get('__url__', '?')}:{key}"
        arrays = {
            "image": decode_image(raw["composite.jpg"], name=name + ".composite.jpg"),
            "alpha": decode_image(raw["alpha.png"], grey=True, name=name + ".alpha.png"),
            "fg": decode_image(raw["fg.png"], name=name + ".fg.png"),
            "bg": decode_image(raw["bg.jpg"], name=name + ".bg.jpg"),
        }
        return key, arrays


@dataclass
class PhotoRecord:
    """One real training photo: the image, its alpha and (optionally) an estimated foreground."""

    id: str
    image: str
    alpha: str
    fg: str | None = None


def read_photo_records(root: str | Path, split: str = "train") -> list[PhotoRecord]:
    """Real-photo training samples of ``split`` from a prepared folder (``rssn.prepare.read_prepared``) or a raw layout.

    Samples without a real photo (``fg_alpha``/``rgba`` sets) cannot train the ORI
    track and raise a ValueError naming the folder.
    """
    root = Path(root)
    records: list[PhotoRecord] = []
    if (root / "samples.jsonl").is_file():
        from rssn.prepare import read_prepared

        for row in read_prepared(root):
            if row["split"] == split and row["image"] is not None:
                fg = str(row["fg"]) if row.get("fg") else None
                records.append(PhotoRecord(row["id"], str(row["image"]), str(row["alpha"]), fg))
    else:
        from rssn.layouts import read_layout

        scan = read_layout(root)
        for s in scan.samples:
            if (s.split or "train") == split and s.image is not None:
                records.append(PhotoRecord(s.id, s.image, s.alpha, s.fg))
    if not records:
        raise ValueError(f"{root}: no '{split}' samples with a real photo (the ORI track needs real images)")
    return sorted(records, key=lambda r: r.id)


class PhotoSource:
    """Real photos (ORI track): a prepared folder or a raw dataset layout."""

    def __init__(self, root: str | Path, split: str = "train"):
        self.records = read_photo_records(root, split)

    def raw(self, seed: int, epoch: int, rank: int, world: int, worker: int, workers: int) -> Iterator[PhotoRecord]:
        order = generator(seed, "order", epoch).permutation(len(self.records))
        slots, slot = world * workers, rank * workers + worker
        return (self.records[i] for i in order[slot::slots])

    @staticmethod
    def decode(rec: PhotoRecord) -> tuple[str, dict[str, np.ndarray]]:
        image, alpha = read_rgb(rec.image), read_alpha(rec.alpha)
        if image.shape[:2] != alpha.shape:
            raise ImageError(rec.alpha, f"alpha is {alpha.shape[::-1]} but the image is {image.shape[1::-1]}")
        if rec.fg is not None:
            fg = read_rgb(rec.fg)
            bg = estimate_background(image, alpha, fg)
        else:  # no colour estimate: F = B = I, so the composition term carries no signal
            fg = bg = image
        return rec.id, {"image": image, "alpha": alpha, "fg": fg, "bg": bg}


# -- the dataset ----------------------------------------------------------------------
class MattingStream(IterableDataset):
    """An iterable dataset of augmented training samples for one rank.

    Call :meth:`set_position` before iterating each epoch (a DataLoader copies the
    dataset into its workers when iteration starts). Unreadable samples are logged
    and skipped.
    """

    def __init__(self, source, *, seed: int = 0, crop_sizes: tuple[int, ...] = CROP_SIZES, size: int = OUTPUT_SIZE,
                 rank: int = 0, world_size: int = 1, augment_data: bool = True):
        if size % 32:
            raise ValueError(f"the output size must be a multiple of 32, got {size}")
        self.source = source
        self.seed, self.crop_sizes, self.size = seed, tuple(crop_sizes), size
        self.rank, self.world_size = rank, world_size
        self.augment_data = augment_data
        self.epoch, self.skip_batches, self.batch_size = 0, 0, 1

    def set_position(self, epoch: int, skip_batches: int = 0, batch_size: int = 1) -> None:
        """Iterate epoch ``epoch``, leaving out the first ``skip_batches`` batches of ``batch_size`` (resume)."""
        self.epoch, self.skip_batches, self.batch_size = epoch, skip_batches, batch_size

    def _transform(self, key: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        if self.augment_data:
            out = augment(arrays, generator(self.seed, "augment", self.epoch, key), self.crop_sizes, self.size)
        else:  # validation: the whole image, squashed to size x size
            out = {n: cv2.resize(arrays[n], (self.size, self.size), interpolation=cv2.INTER_AREA)
                   for n in ("image", "fg", "bg", "alpha")}
            out.update(rosta_maps(out["alpha"], scaled_kernel(TT_KERNEL, self.size),
                                  scaled_kernel(FTBT_KERNEL, self.size)))
        return to_tensors(out, key)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if info is not None:
            # loader processes already run in parallel. 0 (no threading), not 1: after a fork from
            # a parent that used OpenCV's thread pool, setNumThreads(1) waits forever for that pool
            cv2.setNumThreads(0)
        raw = self.source.raw(self.seed, self.epoch, self.rank, self.world_size, worker, workers)
        # a DataLoader takes batches from its workers in turn: worker w made the
        # batches w, w + workers, ... of the epoch
        done = max(0, -(-(self.skip_batches - worker) // workers)) if self.skip_batches else 0
        raw = itertools.islice(raw, done * self.batch_size, None)
        for item in raw:
            try:
                key, arrays = self.source.decode(item)
                yield self._transform(key, arrays)
            except (ImageError, OSError, ValueError, KeyError) as e:
                log.warning("skipping sample: %s", e)


def make_source(shards=None, dataset=None, *, split: str = "train", shuffle_buffer: int = 1000):
    """The data source for ``rssn train``: exactly one of ``shards`` or ``dataset``."""
    if (shards is None) == (dataset is None):
        raise ValueError("give exactly one of --shards (composites) or --dataset (real photos, ORI track)")
    if shards is not None:
        return ShardSource(shards, shuffle_buffer=shuffle_buffer)
    return PhotoSource(dataset, split=split)

