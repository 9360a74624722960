"""``rssn prepare``: a matting set -> validated pairs, splits, foreground estimates.

The prepared folder (``docs/formats.md``, "Prepared matting set") is what
``rssn compose`` and ``rssn train`` read: one row per kept sample in
``samples.jsonl``, the real photo copied byte for byte, the alpha matte as an
8-bit PNG, and the foreground colour ``F`` estimated once per sample
(:mod:`rssn.foreground`), or taken as given for sets that ship foregrounds.

Splits
------
A dataset's own split (its folders) is kept. Samples without one are split here,
deterministically from the seed and independent of file order:

``am2k``
    10 % validation (AM-2k: 1,800 / 200), stratified by category: every
    category gives its share, apportioned by largest remainder so the total is
    exact. Categories come from a ``{id: category}`` JSON file.
``pm10k``
    5 % validation (PM-10k: 9,500 / 500), not stratified.
``ratio``
    ``val_fraction`` (default 10 %) of the samples, stratified when categories
    are known.

A rerun into the same folder keeps the split every id already had.

Work
----
One sample per work unit (:func:`rssn.executor.run_units`), so a cluster or
local processes share the estimation. Each unit writes its files atomically and
its record ``<split>/meta/<id>.json`` last; a rerun reuses a sample whose record
matches the source bytes and the parameters and whose files are all present at
the right size, so a killed run resumes where it stopped. Bad pairs (size
mismatch, unreadable, truncated, all-zero alpha) are recorded in
``manifest.jsonl`` with the reason and skipped.
"""
from __future__ import annotations

import json
import math
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .io import (
    ImageError,
    PathLike,
    SizeMismatchError,
    file_digest,
    image_size,
    read_alpha,
    read_bytes,
    read_pair,
    read_rgb,
    write_bytes_atomic,
    write_image,
    write_text_atomic,
)
from .seeding import generator

SAMPLES_FILE = "samples.jsonl"
DENOISE_DIR = "denoise"
TRAIN, VALIDATION = "train", "validation"

#: Split schemes: validation fraction and whether to stratify by category.
SPLIT_SCHEMES: dict[str, tuple[float, bool]] = {
    "am2k": (200 / 2000, True),
    "pm10k": (500 / 10000, False),
    "ratio": (0.1, True),
}

#: The fields of a ``samples.jsonl`` row, in order.
SAMPLE_FIELDS = (
    "id", "split", "category", "image", "alpha", "fg", "trimap", "width", "height", "fg_method", "denoised",
)



def _plain_name(value: Any) -> bool:
    """One path component: text without separators, not '.' or '..'."""
    return isinstance(value, str) and value not in ("", ".", "..") and not re.search(r"[/\\\x00]", value)


# --------------------------------------------------------------------------- splits


def validation_count(n: int, *, fraction: float | None = None, count: int | None = None) -> int:
    """How many of ``n`` samples go to validation.

    ``count`` wins when given (it must leave at least one training sample);
    otherwise ``round(n * fraction)``, at least 1 and at most ``n - 1`` when
    ``n >= 2`` so both splits exist even for tiny sets.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if count is not None:
        if count < 0 or (n and count >= n):
            raise ValueError(f"validation count {count} must be between 0 and {max(n - 1, 0)} for {n} samples")
        return int(count)
    if fraction is None or not 0 <= fraction < 1:
        raise ValueError(f"validation fraction must be in [0, 1), got {fraction}")
    if n < 2 or fraction == 0:
        return 0
    k = math.floor(n * fraction + 0.5)
    return min(max(k, 1), n - 1)


def stratified_counts(group_sizes: Mapping[str, int], n_val: int) -> dict[str, int]:
    """Share ``n_val`` among groups in proportion to their sizes (largest remainder).

    The shares sum to exactly ``n_val``; ties in the remainder go to the larger
    group, then to the group name in sorted order, so the result is stable.
    """
    total = sum(group_sizes.values())
    if n_val > total:
        raise ValueError(f"cannot take {n_val} of {total} samples")
    if total == 0:
        return {g: 0 for g in group_sizes}
    quotas = {g: n_val * s / total for g, s in group_sizes.items()}
    counts = {g: math.floor(q) for g, q in quotas.items()}
    left = n_val - sum(counts.values())
    order = sorted(group_sizes, key=lambda g: (-(quotas[g] - counts[g]), -group_sizes[g], g))
    for g in order[:left]:
        counts[g] += 1
    return counts


def assign_splits(
    ids: Iterable[str],
    *,
    val_fraction: float = 0.1,
    val_count: int | None = None,
    categories: Mapping[str, str | None] | None = None,
    stratify: bool = True,
    seed: int = 0,
) -> dict[str, str]:
    """Split sample ids into ``train`` and ``validation``.

    Parameters
    ----------
    ids:
        Unique sample ids (order does not matter).
    val_fraction, val_count:
        Size of the validation split (see :func:`validation_count`).
    categories:
        ``{id: category}``; ids missing from it form one group of their own.
    stratify:
        Apportion the validation split among categories by size.
    seed:
        Run seed; within a category the order comes from
        ``generator(seed, "split", category)``.

    Returns
    -------
    dict
        ``{id: "train" | "validation"}``.
    """
    ids = sorted(set(ids))
    n_val = validation_count(len(ids), fraction=val_fraction, count=val_count)
    groups: dict[str, list[str]] = defaultdict(list)
    for i in ids:
        cat = (categories or {}).get(i) if stratify else None
        groups["" if cat is None else str(cat)].append(i)
    shares = stratified_counts({g: len(m) for g, m in groups.items()}, n_val)
    out: dict[str, str] = {}
    for g in sorted(groups):
        members = groups[g]
        order = generator(seed, "split", g).permutation(len(members))
        for rank, j in enumerate(order):
            out[members[j]] = VALIDATION if rank < shares[g] else TRAIN
    return out


def read_categories(path: PathLike) -> dict[str, str]:
    """A ``{id: category}`` JSON mapping, checked."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: categories file does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: categories file is not JSON ({e})") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ValueError(f"{path}: categories file must be a JSON object of id -> category name (strings)")
    return data


# --------------------------------------------------------------------------- one sample


def _outputs(sid: str, split: str, image_src: str | None, has_trimap: bool) -> dict[str, str | None]:
    return {
        "image": f"{split}/image/{sid}{Path(image_src).suffix.lower()}" if image_src else None,
        "alpha": f"{split}/alpha/{sid}.png",
        "fg": f"{split}/fg/{sid}.png",
        "trimap": f"{split}/trimap/{sid}.png" if has_trimap else None,
    }


def _source_digests(unit: Mapping[str, Any]) -> dict[str, str | None]:
    src = unit["sample"]
    return {k: (file_digest(src[k]) if src.get(k) else None) for k in ("image", "alpha", "fg", "trimap")}


def _reusable(out: Path, meta_rel: str, expect: Mapping[str, Any]) -> dict | None:
    """The stored row when the sample's record matches and its files are whole."""
    from .records import UnsafePathError, safe_join

    try:
        meta = json.loads((out / meta_rel).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or any(meta.get(k) != v for k, v in expect.items()):
        return None
    row = meta.get("row") or {}
    size = (row.get("width"), row.get("height"))
    for k in ("image", "alpha", "fg", "trimap"):
        rel = row.get(k)
        if rel is None:
            continue
        try:
            if image_size(safe_join(out, rel)) != size:
                return None
        except (ImageError, UnsafePathError):
            return None
    return row if row.get("alpha") and row.get("fg") else None


def prepare_unit(unit: Mapping[str, Any]) -> dict:
    """Work unit: validate one pair, write its files, estimate its foreground.

    Returns ``{"fate": "kept", "row": {...}, "reused": bool, "seconds": s}`` or
    ``{"fate": "skipped", "reason": ...}`` for a bad pair.
    """
    from .foreground import estimate_foreground

    t0 = time.perf_counter()
    out = Path(unit["out"])
    s = unit["sample"]
    sid, split = s["id"], unit["split"]
    given = s.get("image") is None
    method = "given" if given else unit["fg_method"]
    fg_params = {"fg_method": method, "cf_max_pixels": unit["cf_max_pixels"] if method == "cf" else None}
    meta_rel = f"{split}/meta/{sid}.json"
    try:
        digests = _source_digests(unit)
    except OSError as e:
        return {"fate": "skipped", "reason": f"cannot read: {e.strerror or e}"}
    expect = {"id": sid, "split": split, "source": digests, "params": fg_params}
    row = _reusable(out, meta_rel, expect)
    if row is not None:
        row["category"] = unit.get("category")  # a category file may change without touching pixels
        return {"fate": "kept", "row": row, "reused": True, "seconds": round(time.perf_counter() - t0, 3)}

    try:
        if given:
            colour = read_rgb(s["fg"])
            alpha = read_alpha(s["alpha"])
            if colour.shape[:2] != alpha.shape:
                raise SizeMismatchError(s["alpha"], f"alpha is {alpha.shape[1]}x{alpha.shape[0]} but foreground "
                                                    f"{s['fg']} is {colour.shape[1]}x{colour.shape[0]}")
        else:
            colour, alpha = read_pair(s["image"], s["alpha"])
    except ImageError as e:
        return {"fate": "skipped", "reason": f"{e.kind}: {e.reason}", "path": e.path}
    if not alpha.any():
        return {"fate": "skipped", "reason": "alpha is all zero (no foreground)", "path": s["alpha"]}

    warnings: list[str] = []
    trimap = None
    if s.get("trimap"):
        try:
            trimap = read_alpha(s["trimap"])
            if trimap.shape != alpha.shape:
                warnings.append(f"trimap {s['trimap']} size differs from the alpha; trimap dropped")
                trimap = None
        except ImageError as e:
            warnings.append(f"trimap {e.path}: {e.kind}: {e.reason}; trimap dropped")
    rel = _outputs(sid, split, s.get("image"), trimap is not None)
    if given:
        fg = colour
    else:
        fg = estimate_foreground(colour, alpha, method, cf_max_pixels=unit["cf_max_pixels"])
        write_bytes_atomic(out / rel["image"], read_bytes(s["image"]))
    write_image(out / rel["alpha"], alpha)
    write_image(out / rel["fg"], fg)
    if trimap is not None:
        write_image(out / rel["trimap"], trimap)
    h, w = alpha.shape
    row = {"id": sid, "split": split, "category": unit.get("category"), **rel, "width": w, "height": h,
           "fg_method": method}
    seconds = round(time.perf_counter() - t0, 3)
    sources = {k: s.get(k) for k in ("image", "alpha", "fg", "trimap")}
    meta = {**expect, "row": row, "seconds": seconds, "sources": sources}
    # Written last: its presence says every file above is complete.
    write_text_atomic(out / meta_rel, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    res = {"fate": "kept", "row": row, "reused": False, "seconds": seconds}
    if warnings:
        res["warnings"] = warnings
    return res


# --------------------------------------------------------------------------- the job


@dataclass
class PrepareReport:
    """What a prepare run did: kept rows (as in samples.jsonl) and manifest rows."""

    out: Path
    samples: list[dict] = field(default_factory=list)
    manifest: list[dict] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def _split_scheme(scheme: str, layout: str) -> str:
    if scheme == "auto":
        return {"am2k": "am2k", "p3m": "pm10k"}.get(layout, "ratio")
    if scheme not in SPLIT_SCHEMES:
        raise ValueError(f"unknown split scheme {scheme!r}; choose from auto, {', '.join(SPLIT_SCHEMES)}")
    return scheme


def _previous_splits(out: Path) -> dict[str, str]:
    path = out / SAMPLES_FILE
    if not path.is_file():
        return {}
    from .records import read_manifest

    try:
        rows = read_manifest(path)
    except ValueError:
        return {}
    # The split names a folder: only plain names are taken from the file.
    return {r["id"]: r["split"] for r in rows
            if isinstance(r, dict) and _plain_name(r.get("id")) and _plain_name(r.get("split"))}


def prepare_dataset(
    dataset: PathLike,
    out: PathLike,
    *,
    layout: str = "auto",
    fg_method: str = "ml",
    cf_max_pixels: int | None = None,
    split_scheme: str = "auto",
    val_fraction: float | None = None,
    val_count: int | None = None,
    categories: PathLike | Mapping[str, str] | None = None,
    seed: int = 0,
    workers: int = 1,
    scheduler: Any = None,
    denoise: bool = False,
    denoise_profile: str = "default",
    denoise_sigma: float | None = None,
    denoise_max_side: int | None = None,
) -> PrepareReport:
    """Prepare a matting set for composition (the ``rssn prepare`` command).

    Parameters
    ----------
    dataset:
        Folder in one of the layouts of :mod:`rssn.layouts`.
    out:
        The prepared folder (created; a rerun resumes and reuses finished samples).
    layout:
        ``auto`` or a layout name.
    fg_method:
        ``ml`` (default) or ``cf``; sets whose foreground is given (``fg_alpha``,
        ``rgba``) skip estimation and record ``given``.
    cf_max_pixels:
        Largest closed-form system (see :mod:`rssn.foreground`).
    split_scheme, val_fraction, val_count:
        How samples without a split are split (module docstring).
    categories:
        ``{id: category}`` mapping, or the path of a JSON file holding one.
    seed:
        Run seed (splits).
    workers, scheduler:
        Where the work units run (:func:`rssn.executor.run_units`).
    denoise:
        Also fill the BM3D cache ``out/denoise`` with the foregrounds
        (slow: see :mod:`rssn.denoise`).
    denoise_profile, denoise_sigma, denoise_max_side:
        BM3D parameters (:func:`rssn.denoise.denoise_array`).

    Returns
    -------
    PrepareReport
    """
    from .denoise import param_string
    from .executor import run_units
    from .foreground import CF_MAX_PIXELS, FG_METHODS
    from .layouts import detect_layout, read_layout
    from .records import MANIFEST_FILE, RunRecord, count_fates, write_manifest

    dataset, out = Path(dataset), Path(out)
    if not dataset.is_dir():
        raise FileNotFoundError(f"{dataset}: dataset folder does not exist")
    if out.resolve() == dataset.resolve() or dataset.resolve() in out.resolve().parents:
        # A rerun would read the prepared files back as part of the dataset.
        raise ValueError(f"{out}: the output folder must be outside the dataset folder {dataset}")
    if fg_method not in FG_METHODS:
        raise ValueError(f"unknown foreground method {fg_method!r}; choose from {', '.join(FG_METHODS)}")
    cf_max_pixels = int(cf_max_pixels or CF_MAX_PIXELS)
    if denoise:
        param_string(denoise_profile, denoise_sigma, denoise_max_side)
    layout_name = detect_layout(dataset) if layout == "auto" else layout
    scheme = _split_scheme(split_scheme, layout_name)
    frac_default, stratify = SPLIT_SCHEMES[scheme]
    fraction = frac_default if val_fraction is None else float(val_fraction)
    cat_map = dict(read_categories(categories) if isinstance(categories, (str, Path)) else (categories or {}))

    params = {
        "dataset": str(dataset), "out": str(out), "layout": layout_name, "fg_method": fg_method,
        "cf_max_pixels": cf_max_pixels, "split_scheme": scheme, "val_fraction": fraction, "val_count": val_count,
        "stratify": stratify, "categories": str(categories) if isinstance(categories, (str, Path)) else bool(cat_map),
        "workers": workers, "scheduler": str(scheduler) if scheduler else None, "denoise": denoise,
        "denoise_profile": denoise_profile if denoise else None, "denoise_sigma": denoise_sigma if denoise else None,
        "denoise_max_side": denoise_max_side if denoise else None,
    }
    # Read the layout first: a folder that is not the layout asked for is an
    # error before anything is written.
    scan = read_layout(dataset, layout_name)
    rec = RunRecord.start(out, "prepare", params, seed=seed)
    manifest: list[dict] = [
        {"input": p.path, "fate": "skipped", "reason": p.reason} for p in scan.problems
    ]

    # Unique ids: the id names every output file and every composite made from it.
    samples, seen = [], {}
    for smp in scan.samples:
        if smp.id in seen:
            manifest.append({"input": smp.image or smp.fg, "id": smp.id, "fate": "skipped",
                             "reason": f"duplicate id {smp.id!r} (also {seen[smp.id]})"})
            continue
        seen[smp.id] = smp.image or smp.fg
        samples.append(smp)

    # Splits: the dataset's own, then the previous run's, then drawn here.
    previous = _previous_splits(out)
    splits: dict[str, str] = {}
    unsplit = []
    for smp in samples:
        if smp.split:
            splits[smp.id] = smp.split
        elif smp.id in previous:
            splits[smp.id] = previous[smp.id]
        else:
            unsplit.append(smp.id)
    if unsplit:
        cats = {i: cat_map.get(i) for i in unsplit}
        splits.update(assign_splits(unsplit, val_fraction=fraction, val_count=val_count, categories=cats,
                                    stratify=stratify, seed=seed))

    units = [
        {"out": str(out), "sample": smp.to_dict(), "split": splits[smp.id],
         "category": cat_map.get(smp.id, smp.category), "fg_method": fg_method, "cf_max_pixels": cf_max_pixels}
        for smp in samples
    ]
    results = run_units(prepare_unit, units, workers=workers, scheduler=scheduler, desc="prepare")

    kept: list[dict] = []
    sample_rows: dict[str, dict] = {}
    for unit, res in zip(units, results):
        s = unit["sample"]
        mrow: dict[str, Any] = {"input": s.get("image") or s.get("fg"), "alpha": s["alpha"], "id": s["id"],
                                "split": unit["split"]}
        if not res.ok:
            mrow.update(fate="failed", reason=res.error)
        elif res.value["fate"] == "skipped":
            mrow.update(fate="skipped", reason=res.value["reason"], path=res.value.get("path"))
        else:
            row = res.value["row"]
            row.setdefault("denoised", None)
            kept.append(row)
            mrow.update(fate="kept", reused=res.value["reused"], seconds=res.value["seconds"],
                        fg_method=row["fg_method"])
            if res.value.get("warnings"):
                mrow["warnings"] = res.value["warnings"]
            sample_rows[s["id"]] = mrow
        manifest.append(mrow)

    denoise_counts: dict[str, int] = {}
    if denoise and kept:
        from .denoise import denoise_paths

        report = denoise_paths([out / r["fg"] for r in kept], out / DENOISE_DIR, profile=denoise_profile,
                               sigma=denoise_sigma, max_side=denoise_max_side, workers=workers,
                               scheduler=scheduler, desc="denoise")
        denoise_counts = report.counts
        for row, drow in zip(kept, report.rows):
            if drow["fate"] == "failed":
                sample_rows[row["id"]]["denoise_error"] = drow["reason"]
            else:
                row["denoised"] = f"{DENOISE_DIR}/{drow['entry']}"

    kept.sort(key=lambda r: (r["split"], r["id"]))
    rows = [{k: r.get(k) for k in SAMPLE_FIELDS} for r in kept]
    write_manifest(out / SAMPLES_FILE, rows)
    write_manifest(out / MANIFEST_FILE, manifest)
    per_split: dict[str, int] = defaultdict(int)
    for r in rows:
        per_split[r["split"]] += 1
    summary = {
        "inputs": len(manifest), **count_fates(manifest), "reused": sum(1 for m in manifest if m.get("reused")),
        "splits": dict(sorted(per_split.items())), "denoise": denoise_counts,
        "without_category": sum(1 for r in rows if r["category"] is None),
    }
    failed = summary.get("failed", 0) or any("denoise_error" in m for m in manifest)
    rec.finish(summary, status="complete_with_failures" if failed else "complete")
    return PrepareReport(out=out, samples=rows, manifest=manifest, summary=summary)


# --------------------------------------------------------------------------- reading back


def _check_rel(value: Any, name: str, where: str, required: bool) -> None:
    if value is None:
        if required:
            raise ValueError(f"{where}: field {name!r} is missing")
        return
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: field {name!r} must be a relative path, got {value!r}")


def read_prepared(prepared_dir: PathLike, *, check_files: bool = True) -> list[dict]:
    """The validated rows of ``PREPARED/samples.jsonl``.

    Each row has the fields of :data:`SAMPLE_FIELDS`; ``image``, ``alpha``,
    ``fg``, ``trimap`` and ``denoised`` are resolved with
    :func:`rssn.records.safe_join` to absolute :class:`pathlib.Path` objects (or
    ``None``), refusing any stored path that would leave the folder.

    Parameters
    ----------
    prepared_dir:
        A folder written by :func:`prepare_dataset`.
    check_files:
        Also check that ``alpha`` and ``fg`` (and ``image`` where present) exist.

    Raises
    ------
    FileNotFoundError, ValueError, rssn.records.UnsafePathError
        With the file, line and field at fault.
    """
    from .records import read_manifest, safe_join

    root = Path(prepared_dir)
    path = root / SAMPLES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no samples.jsonl (is {root} a folder written by `rssn prepare`?)")
    out, ids = [], set()
    for n, raw in enumerate(read_manifest(path), 1):
        where = f"{path}:{n}"
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: a row must be a JSON object")
        sid, split = raw.get("id"), raw.get("split")
        for name, value in (("id", sid), ("split", split)):
            if not _plain_name(value):
                raise ValueError(f"{where}: field {name!r} must be a plain name, got {value!r}")
        if sid in ids:
            raise ValueError(f"{where}: id {sid!r} appears twice")
        ids.add(sid)
        for name in ("width", "height"):
            v = raw.get(name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{where}: field {name!r} must be a positive integer, got {v!r}")
        if not isinstance(raw.get("fg_method"), str):
            raise ValueError(f"{where}: field 'fg_method' must be text, got {raw.get('fg_method')!r}")
        cat = raw.get("category")
        if cat is not None and not isinstance(cat, str):
            raise ValueError(f"{where}: field 'category' must be text or null, got {cat!r}")
        row = {k: raw.get(k) for k in SAMPLE_FIELDS}
        for name in ("image", "alpha", "fg", "trimap", "denoised"):
            _check_rel(raw.get(name), name, where, required=name in ("alpha", "fg"))
            if raw.get(name) is not None:
                row[name] = safe_join(root, raw[name])
        if check_files:
            for name in ("image", "alpha", "fg"):
                if row[name] is not None and not row[name].is_file():
                    raise FileNotFoundError(f"{where}: {name} file {row[name]} does not exist")
        out.append(row)
    return out


__all__ = [
    "PrepareReport", "SAMPLES_FILE", "SAMPLE_FIELDS", "SPLIT_SCHEMES", "assign_splits", "prepare_dataset",
    "prepare_unit", "read_categories", "read_prepared", "stratified_counts", "validation_count",
]
