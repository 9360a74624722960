"""What ``rssn gap`` can read, cut into work units, and the unit that measures.

Three kinds of input, detected from the folder:

``shards``
    Composite shards written by ``rssn compose`` (``index.json`` and
    ``shard-*.tar``; a folder of ``.tar`` files or a single ``.tar`` also works).
    One unit = one shard. The image measured is ``<key>.composite.jpg`` with
    ``<key>.alpha.png``.
``prepared``
    A prepared matting set (``samples.jsonl``); the real photo and its alpha.
``layout``
    Any matting dataset layout :func:`rssn.layouts.read_layout` reads; the real
    photo and its alpha. One unit = a chunk of samples.

Units are plain dicts (picklable, JSON-able) that carry the file paths and the
measuring parameters; :func:`measure_unit` runs on a worker and returns one row
per sample. A sample that cannot be read becomes a ``failed`` row with the
reason; the others go on.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..compose.shards import INDEX_FILE, read_index
from ..io import ImageError, PathLike, decode_image, read_pair
from ..layouts import read_layout
from ..records import UnsafePathError, dumps, read_manifest, safe_join
from .statistics import measure_sample

PREPARED_FILE = "samples.jsonl"
KINDS = ("auto", "shards", "prepared", "layout")


@dataclass
class Source:
    """One set to measure: its kind, the work units and what was skipped up front."""

    path: str
    kind: str
    layout: str | None = None
    units: list[dict[str, Any]] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)  # {"input", "reason"}


def detect_kind(path: PathLike) -> str:
    """``shards``, ``prepared`` or ``layout`` for an input path."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder")
    if p.is_file():
        if p.suffix == ".tar":
            return "shards"
        raise ValueError(f"{p}: a file that is not a .tar shard (give a shard, a shard folder or a dataset folder)")
    if (p / INDEX_FILE).is_file() or any(q.suffix == ".tar" for q in p.iterdir() if q.is_file()):
        return "shards"
    if (p / PREPARED_FILE).is_file():
        return "prepared"
    return "layout"


def _fingerprint(paths: list[str]) -> str:
    """A digest of the files' names, sizes and modification times (for resuming)."""
    h = hashlib.sha256()
    for p in paths:
        st = os.stat(p)
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def unit_key(unit: dict[str, Any]) -> str:
    """A name for a unit's cached result: changes when its inputs or parameters change."""
    return hashlib.sha256(dumps(unit).encode()).hexdigest()[:20]


def _spread(items: list[Any], limit: int | None) -> list[Any]:
    """At most ``limit`` items, evenly spread over the list (deterministic)."""
    if limit is None or limit >= len(items):
        return items
    idx = np.linspace(0, len(items) - 1, limit).round().astype(int)
    return [items[i] for i in sorted(set(idx.tolist()))]


def _shard_units(path: Path, params: dict[str, Any], limit: int | None) -> Source:
    src = Source(str(path), "shards")
    shards: list[tuple[str, Path, int | None]] = []
    if path.is_file():
        shards.append((path.name, path, None))
    elif (path / INDEX_FILE).is_file():
        try:
            entries = read_index(path)["shards"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{path / INDEX_FILE}: not a shard index ({type(e).__name__}: {e})") from None
        for entry in entries:
            name = entry.get("name") if isinstance(entry, dict) else None
            try:
                shard = safe_join(path, name)
            except UnsafePathError as e:
                src.problems.append({"input": str(path / INDEX_FILE), "reason": f"shard refused: {e}"})
                continue
            if not shard.is_file():
                src.problems.append({"input": str(shard), "reason": "shard listed in index.json is missing"})
                continue
            shards.append((name, shard, entry.get("count")))
    else:
        shards = [(q.name, q, None) for q in sorted(path.glob("*.tar")) if q.is_file()]
    if not shards and not src.problems:
        raise ValueError(f"{path}: no shards found (expected index.json or *.tar files)")
    # With a limit, each shard gives a share proportional to its count.
    counts = [c if isinstance(c, int) and c >= 0 else None for _, _, c in shards]
    known = sum(c for c in counts if c is not None)
    for (name, shard, _), count in zip(shards, counts):
        take = None
        if limit is not None:
            take = limit if count is None or known == 0 else max(1, -(-limit * count // known))
        src.units.append({"kind": "shard", "name": name, "path": str(shard), "count": count, "take": take,
                          "fingerprint": _fingerprint([str(shard)]), **params})
    return src


def _file_units(rows: list[dict[str, Any]], params: dict[str, Any], chunk: int) -> list[dict[str, Any]]:
    units = []
    for i in range(0, len(rows), chunk):
        part = rows[i:i + chunk]
        paths = [p for r in part for p in (r["image"], r["alpha"])]
        units.append({"kind": "files", "samples": part, "fingerprint": _fingerprint(paths), **params})
    return units


def _layout_units(path: Path, layout: str, params: dict[str, Any], chunk: int, limit: int | None) -> Source:
    scan = read_layout(path, layout)
    src = Source(str(path), "layout", layout=scan.layout)
    src.problems += [{"input": p.path, "reason": p.reason} for p in scan.problems]
    rows = []
    for s in scan.samples:
        if s.image is None:
            src.problems.append({"input": s.alpha, "reason": f"{scan.layout} layout has no real photo (only a "
                                 "foreground): nothing to measure against a background"})
            continue
        rows.append({"id": s.id, "image": s.image, "alpha": s.alpha, "split": s.split})
    src.units = _file_units(_spread(rows, limit), params, chunk)
    return src


def _prepared_units(path: Path, params: dict[str, Any], chunk: int, limit: int | None) -> Source:
    src = Source(str(path), "prepared")
    rows = []
    for r in read_manifest(path / PREPARED_FILE):
        sid = r.get("id")
        if not r.get("image"):
            src.problems.append({"input": f"{path / PREPARED_FILE}#{sid}",
                                 "reason": "no real photo in this prepared set (foreground-only source)"})
            continue
        try:
            image, alpha = safe_join(path, r["image"]), safe_join(path, r["alpha"])
        except (UnsafePathError, KeyError) as e:
            src.problems.append({"input": f"{path / PREPARED_FILE}#{sid}", "reason": f"refused: {e}"})
            continue
        missing = [str(p) for p in (image, alpha) if not p.is_file()]
        if missing:
            src.problems.append({"input": missing[0], "reason": "file listed in samples.jsonl is missing"})
            continue
        rows.append({"id": sid, "image": str(image), "alpha": str(alpha), "split": r.get("split")})
    src.units = _file_units(_spread(rows, limit), params, chunk)
    return src


def open_source(
    path: PathLike,
    *,
    kind: str = "auto",
    layout: str = "auto",
    params: dict[str, Any] | None = None,
    chunk: int = 16,
    limit: int | None = None,
) -> Source:
    """Plan the work units for one set.

    Parameters
    ----------
    path:
        Shard folder (or one ``.tar``), prepared folder, or dataset folder.
    kind:
        ``auto`` (detect) or one of ``shards``, ``prepared``, ``layout``.
    layout:
        Dataset layout for ``layout`` inputs (see :mod:`rssn.layouts`).
    params:
        Measuring parameters copied into every unit (``margin``, ``min_pixels``).
    chunk:
        Samples per unit for image folders.
    limit:
        Measure about this many samples: evenly spread over a folder's images;
        from shards, the first samples of each shard in proportion to its size
        (reading a shard is sequential, so skipping inside it would save nothing).
    """
    path = Path(path)
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if kind not in KINDS:
        raise ValueError(f"unknown input kind {kind!r}; choose from {', '.join(KINDS)}")
    if kind == "auto":
        kind = detect_kind(path)
    elif not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    params = dict(params or {})
    if kind == "shards":
        return _shard_units(path, params, limit)
    if kind == "prepared":
        return _prepared_units(path, params, chunk, limit)
    return _layout_units(path, layout, params, chunk, limit)


# --------------------------------------------------------------------------- measuring (on a worker)


def _measure(image: np.ndarray, alpha: np.ndarray, unit: dict[str, Any]) -> dict[str, Any]:
    m = measure_sample(image, alpha, margin=unit.get("margin"), min_pixels=unit.get("min_pixels", 400))
    m["fate"] = "measured" if not m["missing"] else "incomplete"
    m["reason"] = None if not m["missing"] else sorted(set(m["missing"].values()))[0]
    m["width"], m["height"] = int(image.shape[1]), int(image.shape[0])
    return m


def _failed(row: dict[str, Any], reason: str) -> dict[str, Any]:
    return {**row, "fate": "failed", "reason": reason}


def _measure_files(unit: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for s in unit["samples"]:
        row = {"id": s["id"], "input": s["image"], "split": s.get("split")}
        try:
            image, alpha = read_pair(s["image"], s["alpha"])
        except ImageError as e:
            out.append(_failed(row, f"{e.path}: {e.reason}"))
            continue
        out.append({**row, **_measure(image, alpha, unit)})
    return out


_SHARD_MEMBERS = (".composite.jpg", ".alpha.png", ".json")


def _shard_samples(path: str):
    """Samples of one tar shard, grouped by key (webdataset's own grouping).

    Only the members measured are kept in memory (not ``fg.png`` / ``bg.jpg``).
    """
    from webdataset.tariterators import tarfile_samples

    # Tar-level damage (a truncated shard) raises and fails the whole unit,
    # which the executor records; sample-level damage is handled per sample.
    yield from tarfile_samples(iter([{"url": path}]), select_files=lambda name: name.endswith(_SHARD_MEMBERS))


def _measure_shard(unit: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    name, take = unit["name"], unit.get("take")
    for sample in _shard_samples(unit["path"]):
        if take is not None and len(out) >= take:
            break
        key = sample["__key__"]
        row: dict[str, Any] = {"id": key, "input": f"{name}:{key}"}
        meta = sample.get("json")
        if meta is not None:
            try:
                record = json.loads(meta)
                row.update({k: record.get(k) for k in ("fg_id", "route", "split")})
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                row["meta_problem"] = f"{key}.json is not JSON"
        if "composite.jpg" not in sample or "alpha.png" not in sample:
            have = sorted(k for k in sample if not k.startswith("__"))
            out.append(_failed(row, f"sample lacks composite.jpg or alpha.png (has: {', '.join(have)})"))
            continue
        try:
            image = decode_image(sample["composite.jpg"], name=f"{name}:{key}.composite.jpg")
            alpha = decode_image(sample["alpha.png"], grey=True, name=f"{name}:{key}.alpha.png")
        except ImageError as e:
            out.append(_failed(row, f"{e.path}: {e.reason}"))
            continue
        if image.shape[:2] != alpha.shape:
            out.append(_failed(row, f"alpha is {alpha.shape[1]}x{alpha.shape[0]}, composite "
                                    f"{image.shape[1]}x{image.shape[0]}"))
            continue
        out.append({**row, **_measure(image, alpha, unit)})
    return out


def measure_unit(unit: dict[str, Any]) -> list[dict[str, Any]]:
    """Measure every sample of one unit (a shard, or a chunk of image files).

    Returns
    -------
    One row per sample: ``id``, ``input``, ``fate`` (``measured``, ``incomplete``
    when some discrepancy is missing, ``failed`` when the sample could not be
    read), ``reason``, and the fields of :func:`rssn.gap.statistics.measure_sample`.
    """
    if unit["kind"] == "shard":
        return _measure_shard(unit)
    if unit["kind"] == "files":
        return _measure_files(unit)
    raise ValueError(f"unknown unit kind {unit['kind']!r}")
