"""Stage 1: find the input photos, decode and validate them.

Each input is one work unit. :func:`examine` decodes it, runs the HD filter,
writes the resized JPEG and a review thumbnail into the work cache and computes
the hashes the dedup stage needs. Its result is written as a small JSON record
beside the cache, so a rerun skips every input whose file (size and modification
time) and parameters are unchanged.

The cache under ``OUT/.work/`` is content addressed (the sha256 of the decoded
pixels). Its image blobs carry no image extension, so tools that list the images
of ``OUT`` (for example :func:`rssn.layouts.read_bg20k`) see only ``train/`` and
``testval/``.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable, Sequence

from ..io import ImageError, PathLike, array_digest, encode_image, list_images, read_rgb, write_bytes_atomic
from ..records import dumps
from . import hd
from .dedup import perceptual_hashes

#: Version of the per-input record; bump when its meaning changes.
RECORD_VERSION = 2
THUMB_SIDE = 256
THUMB_QUALITY = 85


def find_inputs(sources: Sequence[PathLike], exclude: PathLike | None = None) -> list[Path]:
    """Image files named by ``sources`` (files, or folders searched recursively).

    A file reached twice (overlapping folders) is listed once; files below
    ``exclude`` (the output folder, when it sits inside a source) are skipped.

    Raises
    ------
    FileNotFoundError
        When a source does not exist.
    """
    ex = Path(exclude).resolve() if exclude is not None else None
    seen: set[Path] = set()
    out: list[Path] = []
    for src in sources:
        src = Path(src)
        if not src.exists():
            raise FileNotFoundError(f"{src}: source does not exist")
        paths: Iterable[Path] = list_images(src) if src.is_dir() else [src]
        for p in paths:
            r = p.resolve()
            if r in seen or (ex is not None and (r == ex or ex in r.parents)):
                continue
            seen.add(r)
            out.append(p)
    return out


def input_key(path: PathLike) -> str:
    """Cache key of an input: the sha256 of its resolved path."""
    return hashlib.sha256(str(Path(path).resolve()).encode("utf-8")).hexdigest()[:32]


def params_key(min_side: int, quality: int) -> str:
    return f"s{int(min_side)}-q{int(quality)}"


def record_path(work: PathLike, key: str) -> Path:
    return Path(work) / "inputs" / key[:2] / f"{key}.json"


def blob_path(work: PathLike, digest: str, pkey: str) -> Path:
    """The resized JPEG of the picture ``digest`` (no extension on purpose)."""
    return Path(work) / "resized" / digest[:2] / f"{digest}-{pkey}"


def thumb_path(work: PathLike, digest: str) -> Path:
    return Path(work) / "thumbs" / digest[:2] / digest


def _stat(path: PathLike) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def cached_record(work: PathLike, path: PathLike, min_side: int, quality: int) -> dict | None:
    """The stored result for ``path`` if it is still valid, else None.

    Valid means: same file size and modification time, same parameters, and the
    resized image it points to still exists.
    """
    key = input_key(path)
    rp = record_path(work, key)
    try:
        rec = json.loads(rp.read_text(encoding="utf-8"))
        size, mtime = _stat(path)
    except (OSError, ValueError):
        return None
    if (
        rec.get("v") != RECORD_VERSION
        or rec.get("size") != size
        or rec.get("mtime_ns") != mtime
        or rec.get("params") != params_key(min_side, quality)
    ):
        return None
    if rec["status"] == "ok" and not (
        blob_path(work, rec["digest"], rec["params"]).exists() and thumb_path(work, rec["digest"]).exists()
    ):
        return None
    return rec


def examine(unit: dict) -> dict:
    """Work unit of stages 1-3 for one input (runs in a worker).

    Parameters
    ----------
    unit:
        ``path`` (the input), ``work`` (cache folder), ``min_side``, ``quality``.

    Returns
    -------
    The record (also written to the cache): ``status`` is ``ok``,
    ``unreadable`` or ``too_small`` with a ``reason``; for decodable images
    ``width``, ``height`` and ``digest``; for HD images also ``phashes`` (hex),
    ``out_width`` and ``out_height``.
    """
    path, work = Path(unit["path"]), Path(unit["work"])
    min_side, quality = int(unit["min_side"]), int(unit["quality"])
    pkey = params_key(min_side, quality)
    rec: dict = {"v": RECORD_VERSION, "path": str(path), "params": pkey}
    try:
        rec["size"], rec["mtime_ns"] = _stat(path)
    except OSError as e:
        return dict(rec, status="unreadable", reason=f"cannot stat: {e.strerror or e}")
    try:
        rgb = read_rgb(path)
    except ImageError as e:
        rec.update(status="unreadable", reason=f"{e.kind}: {e.reason}")
    else:
        h, w = rgb.shape[:2]
        rec.update(width=w, height=h, digest=array_digest(rgb))
        if not hd.is_hd(w, h, min_side):
            rec.update(status="too_small", reason=f"shorter side {min(w, h)} px is below {min_side} px")
        else:
            small = hd.resize_to_min_side(rgb, min_side)
            thumb = hd.thumbnail(small, THUMB_SIDE)
            write_bytes_atomic(blob_path(work, rec["digest"], pkey), encode_image(small, "jpg", quality=quality))
            write_bytes_atomic(thumb_path(work, rec["digest"]), encode_image(thumb, "jpg", quality=THUMB_QUALITY))
            rec.update(
                status="ok",
                reason="",
                out_width=int(small.shape[1]),
                out_height=int(small.shape[0]),
                phashes=[f"{h:016x}" for h in perceptual_hashes(thumb)],
            )
    write_bytes_atomic(record_path(work, input_key(path)), (dumps(rec) + "\n").encode("utf-8"))
    return rec
