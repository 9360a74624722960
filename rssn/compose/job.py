"""``rssn compose``: plan the composites, fill the denoise cache, write the shards.

The job in four steps:

1. **Inputs.** Foregrounds from a prepared matting set (``samples.jsonl``, see
   docs/formats.md), backgrounds from any folder of photos (searched recursively;
   a background's id is its relative path without the extension).
2. **Plan.** For every foreground ``f`` and composite index ``k`` the decisions
   are drawn from ``rssn.seeding.generator(seed, f, k)`` (:func:`route.draw`):
   the background, the crop, the denoise coin, the blur kernel, the noise coin
   and seed. The plan is a pure function of the arguments and the inputs.
3. **Denoise cache.** Where the coin said "denoised", the BM3D copies of F and B
   come from the content-addressed cache (``rssn.denoise``); missing entries are
   computed first (one image per work unit) or reported as an error.
4. **Shards.** Consecutive composites are cut into shards of ``shard_size``; one
   shard is one work unit (:func:`compose_shard`), run locally or on Dask. A
   shard that is already complete and verified (same planned work, same input
   files by size and modification time, bytes matching the recorded sha256) is
   skipped, so a killed run is resumed by running the same command again.
"""
from __future__ import annotations

import collections
import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..executor import run_units
from ..io import ImageError, PathLike, is_partial_file, list_images
from ..records import RunRecord, count_fates, dumps, read_run, write_manifest
from ..seeding import generator
from . import route as route_mod
from .composite import InputCache, make_composite
from .shards import (
    FORMAT,
    FORMAT_VERSION,
    INDEX_FILE,
    MEMBERS,
    ShardWriter,
    existing_shard_files,
    sample_key,
    shard_is_complete,
    shard_name,
    write_index,
    write_shard_record,
)

SAMPLES_FILE = "samples.jsonl"
DENOISE_MISSING = ("compute", "error")

#: Parameters that decide the bytes of the shards. A rerun into the same folder
#: with other values would mix two compositions, so it is refused (or --overwrite).
CONTENT_PARAMS = ("matting", "backgrounds", "splits", "route", "per_fg", "seed", "shard_size",
                  "jpeg_quality", "denoise_profile", "denoise_sigma", "denoise_max_side",
                  "bg_denoise_max_side")

#: Shorter side of a BG-20k background (SPEC section 1).
HD_SHORT_SIDE = 1080


class DenoiseCacheMissing(FileNotFoundError):
    """Denoised copies the plan needs are not in the cache (``--denoise-missing error``)."""


@dataclass
class ComposeResult:
    """What a compose run did."""

    out: Path
    shards: int = 0
    shards_written: int = 0
    shards_skipped: int = 0
    shard_errors: list[str] = field(default_factory=list)
    composites: int = 0
    failed: int = 0
    steps: dict[str, Any] = field(default_factory=dict)
    denoise: dict[str, int] = field(default_factory=dict)
    backgrounds_below_hd: int = 0
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return not self.shard_errors

    def summary(self) -> dict[str, Any]:
        return {
            "shards": self.shards, "shards_written": self.shards_written, "shards_skipped": self.shards_skipped,
            "shards_failed": len(self.shard_errors), "composites": self.composites, "failed": self.failed,
            "steps": self.steps, "denoise": self.denoise, "backgrounds_below_hd": self.backgrounds_below_hd,
            "seconds": round(self.seconds, 3),
        }


# --------------------------------------------------------------------------- inputs


def read_foregrounds(matting: PathLike, splits: Sequence[str] | None = ("train",)) -> list[dict[str, Any]]:
    """Foregrounds of a prepared matting set, sorted by id.

    Parameters
    ----------
    matting:
        A folder written by ``rssn prepare`` (``samples.jsonl``).
    splits:
        The splits to use; ``None`` for all.

    Returns
    -------
    list of dict
        ``id``, ``split``, ``category``, ``fg`` and ``alpha`` (absolute paths).
    """
    from ..prepare import read_prepared

    root = Path(matting)
    rows = read_prepared(root)
    available = sorted({str(r["split"]) for r in rows})
    if splits:
        unknown = [s for s in splits if s not in available]
        if unknown:
            raise ValueError(f"{root}: no split named {', '.join(unknown)} (the set has: {', '.join(available) or 'none'})")
    out = [{"id": str(r["id"]), "split": r["split"], "category": r.get("category"),
            "fg": str(r["fg"]), "alpha": str(r["alpha"])}
           for r in rows if not splits or r["split"] in splits]
    if not out:
        raise ValueError(f"{root / SAMPLES_FILE}: no samples in split(s) {', '.join(splits or available)}")
    return sorted(out, key=lambda s: s["id"])


def list_backgrounds(folder: PathLike) -> list[tuple[str, str]]:
    """(id, absolute path) of every image below ``folder``, sorted by id.

    The id is the path relative to ``folder`` without its extension; where two
    files differ only by extension, both keep it. The root of a ``build-bg``
    output is refused (its ``testval/`` would be mixed into training).
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: the backgrounds folder does not exist")
    try:
        made_by = read_run(root).get("command")
    except (FileNotFoundError, ValueError):
        made_by = None
    if made_by == "build-bg":
        # Its train/ and testval/ together: the held-out backgrounds would be used too.
        raise ValueError(f"{root} is a whole `rssn build-bg` output (train/ and testval/); "
                         f"give --backgrounds {root / 'train'} so that testval/ stays held out")
    paths = list_images(root)
    if not paths:
        raise ValueError(f"{root}: no background images found (searched recursively for .jpg, .png, ...)")
    rels = [p.relative_to(root).as_posix() for p in paths]
    stems = [r.rsplit(".", 1)[0] for r in rels]
    clash = {s for s, n in collections.Counter(stems).items() if n > 1}
    out = [(rel if stem in clash else stem, str(p.resolve())) for p, rel, stem in zip(paths, rels, stems)]
    return sorted(out)


# --------------------------------------------------------------------------- plan


def plan_composites(foregrounds: Sequence[dict], backgrounds: Sequence[tuple[str, str]],
                    config: route_mod.RouteConfig, per_fg: int, seed: int) -> list[dict[str, Any]]:
    """One item per composite, foreground-major (the K composites of a foreground
    are consecutive, so a shard reads each foreground once)."""
    items = []
    for fg in foregrounds:
        for k in range(per_fg):
            d = route_mod.draw(generator(seed, fg["id"], k), config, len(backgrounds))
            bg_id, bg_path = backgrounds[d.bg_index]
            items.append({
                "key": sample_key(fg["id"], k), "fg_id": fg["id"], "index": k, "split": fg["split"],
                "category": fg.get("category"), "fg": fg["fg"], "alpha": fg["alpha"], "bg": bg_path,
                "bg_id": bg_id, "decisions": d.to_dict(),
            })
    keys = [it["key"] for it in items]
    if len(set(keys)) != len(keys):  # pragma: no cover - sample_key hashes altered ids
        raise ValueError("two composites would share a shard key")
    return items


def prepare_denoise_params(matting: PathLike) -> tuple[str, float | None, int | None]:
    """(profile, sigma, max_side) that ``rssn prepare --denoise`` used for this
    prepared set, so its cache entries are found; the defaults otherwise."""
    try:
        params = read_run(matting).get("params", {})
    except (FileNotFoundError, ValueError):
        params = {}
    if not params.get("denoise"):
        return "default", None, None
    return params.get("denoise_profile") or "default", params.get("denoise_sigma"), params.get("denoise_max_side")


def resolve_denoised(items: list[dict], cache_dir: PathLike, *, missing: str, profile: str,
                     sigma: float | None, max_side: int | None, bg_max_side: int | None = None,
                     workers: int = 1, scheduler: Any = None) -> dict[str, int]:
    """Point every denoised composite at its cache entries, computing missing ones
    (``missing="compute"``) or raising :class:`DenoiseCacheMissing` (``"error"``).

    Foregrounds are keyed with ``max_side``, backgrounds with ``bg_max_side``
    (a background is shrunk to the foreground's size anyway, so denoising it at
    a reduced size loses little and costs a fraction).
    """
    wanted: dict[str, int | None] = {}  # source -> its max_side
    for it in items:
        if it["decisions"]["denoise"]:
            wanted[it["fg"]] = max_side
            wanted[it["bg"]] = bg_max_side
    counts = {"needed": len(wanted), "cached": 0, "computed": 0, "failed": 0}
    if not wanted:
        return counts
    from .. import denoise

    cache_dir = Path(cache_dir)
    entries: dict[str, Path] = {}
    failed: dict[str, str] = {}
    for src, side in wanted.items():
        try:
            entries[src] = denoise.cached_path(src, cache_dir, profile, sigma, side)
        except OSError as e:
            failed[src] = f"cannot read: {e.strerror or e}"
    absent = [s for s, e in entries.items() if not e.is_file()]
    counts["cached"] = len(entries) - len(absent)
    if absent and missing == "error":
        first = "\n".join(f"  {s} -> {entries[s]}" for s in absent[:5])
        more = f"\n  ... and {len(absent) - 5} more" if len(absent) > 5 else ""
        raise DenoiseCacheMissing(
            f"{len(absent)} of {len(wanted)} denoised copies are missing from the cache {cache_dir}:\n"
            f"{first}{more}\nfill it with `rssn denoise IMAGES --cache {cache_dir}` (same profile, sigma "
            f"and max side) or pass --denoise-missing compute")
    for side in sorted({wanted[s] for s in absent}, key=str):
        batch = [s for s in absent if wanted[s] == side]
        report = denoise.denoise_paths(batch, cache_dir, profile=profile, sigma=sigma, max_side=side,
                                       workers=workers, scheduler=scheduler, desc="denoise")
        for row in report.rows:
            if row["fate"] == "failed":
                failed[row["input"]] = row.get("reason") or "denoising failed"
    counts["computed"] = len([s for s in absent if s not in failed])
    counts["failed"] = len(failed)
    for it in items:
        if it["decisions"]["denoise"]:
            bad = [s for s in (it["fg"], it["bg"]) if s in failed]
            if bad:
                it["error"] = f"{bad[0]}: no denoised copy ({failed[bad[0]]})"
                continue
            it["fg"], it["bg"] = str(entries[it["fg"]]), str(entries[it["bg"]])
    return counts


def input_stamps(items: Sequence[dict]) -> dict[str, str]:
    """``size:mtime_ns`` of every input file of the plan (``missing`` when it cannot
    be read), so that a shard made from since-changed files is not taken as done."""
    stamps: dict[str, str] = {}
    for it in items:
        for path in (it["fg"], it["alpha"], it["bg"]):
            if path not in stamps:
                try:
                    st = os.stat(path)
                    stamps[path] = f"{st.st_size}:{st.st_mtime_ns}"
                except OSError:
                    stamps[path] = "missing"
    return stamps


def _digest(settings: dict, items: Sequence[dict], roots: tuple[str, str], stamps: dict[str, str]) -> str:
    """What makes a shard: the settings and, per composite, the decisions and the
    inputs (by their place in the input folders, denoised copies by cache key,
    each with its size and modification time: a changed file redoes its shards)."""
    def ident(path: str) -> list[str]:
        for root in roots:
            if path.startswith(root):
                return [path[len(root):], stamps[path]]
        return [Path(path).name, stamps[path]]  # a cache entry: its name is its content key

    rows = [{**{k: v for k, v in it.items() if k not in ("fg", "alpha", "bg")},
             "inputs": [ident(it["fg"]), ident(it["alpha"]), ident(it["bg"])]} for it in items]
    return hashlib.sha256(dumps({"settings": settings, "items": rows}).encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- one shard


def compose_shard(unit: dict[str, Any]) -> dict[str, Any]:
    """Work unit: write one shard (or find it complete and verified).

    Returns the shard record (``name``, ``count``, ``sha256``, ``bytes``,
    ``digest``, ``samples``: one row per composite) plus ``skipped``.
    """
    out, index = Path(unit["out"]), int(unit["index"])
    done = shard_is_complete(out, index, unit["digest"])
    if done is not None:
        return {**done, "skipped": True}
    rows = []
    cache = InputCache()
    with ShardWriter(out / shard_name(index)) as writer:
        for item in unit["items"]:
            base = {"key": item["key"], "fg_id": item["fg_id"], "index": item["index"],
                    "split": item["split"], "bg_id": item["bg_id"], "shard": shard_name(index)}
            if item.get("error"):
                rows.append({**base, "fate": "failed", "reason": item["error"]})
                continue
            try:
                members, record = make_composite(item, unit["settings"], cache)
            except (ImageError, OSError, ValueError) as e:
                # Bad input: named, recorded and skipped; the shard goes on.
                rows.append({**base, "fate": "failed", "reason": str(e)})
                continue
            writer.write(item["key"], members)
            rows.append({**record, "shard": shard_name(index), "fate": "written"})
    rec = {"name": shard_name(index), "count": writer.count, "sha256": writer.sha256,
           "bytes": writer.bytes, "digest": unit["digest"], "samples": rows}
    write_shard_record(out, index, rec)
    return {**rec, "skipped": False}


# --------------------------------------------------------------------------- the job


def _check_previous(out: Path, params: dict[str, Any], overwrite: bool) -> None:
    """Refuse to mix two compositions in one folder; clear it with ``overwrite``."""
    existing = existing_shard_files(out)
    if not existing and not (out / INDEX_FILE).exists():
        return
    if overwrite:
        for paths in existing.values():
            for p in paths:
                p.unlink(missing_ok=True)
        for name in (INDEX_FILE, "manifest.jsonl"):
            (out / name).unlink(missing_ok=True)
        return
    try:
        before = read_run(out)
    except (FileNotFoundError, ValueError):
        before = None
    if before is None or before.get("command") != "compose":
        raise ValueError(f"{out}: holds shard files but no compose run.json; choose another --out or pass --overwrite")
    old = before.get("params", {})
    now = dumps({k: params.get(k) for k in CONTENT_PARAMS})
    if dumps({k: old.get(k) for k in CONTENT_PARAMS}) != now:
        diff = [f"{k}: {dumps(old.get(k))} -> {dumps(params.get(k))}" for k in CONTENT_PARAMS
                if dumps(old.get(k)) != dumps(params.get(k))]
        raise ValueError(f"{out}: already holds shards composed with other settings ({'; '.join(diff)}); "
                         "choose another --out or pass --overwrite to replace them")


def _clean(out: Path, n_shards: int) -> None:
    """Remove temporary files of a killed run and shards beyond the plan."""
    for p in out.iterdir():
        if is_partial_file(p):
            p.unlink(missing_ok=True)
    for number, paths in existing_shard_files(out).items():
        if number >= n_shards:
            for p in paths:
                p.unlink(missing_ok=True)


def compose(
    matting: PathLike,
    backgrounds: PathLike,
    out: PathLike,
    *,
    route: str = "rssn",
    per_fg: int = 10,
    splits: Sequence[str] | None = ("train",),
    p_denoise: float = route_mod.DEFAULT_PROBABILITY,
    p_blur: float = route_mod.DEFAULT_PROBABILITY,
    p_noise: float = route_mod.DEFAULT_PROBABILITY,
    blur_kernels: Sequence[int] = route_mod.DEFAULT_BLUR_KERNELS,
    noise_sigma: float = route_mod.DEFAULT_NOISE_SIGMA,
    denoise: bool = True,
    blur: bool = True,
    noise: bool = True,
    seed: int = 0,
    shard_size: int = 100,
    jpeg_quality: int = 95,
    denoise_cache: PathLike | None = None,
    denoise_missing: str = "compute",
    denoise_profile: str | None = None,
    denoise_sigma: float | None = None,
    denoise_max_side: int | None = None,
    bg_denoise_max_side: int | None = None,
    workers: int = 1,
    scheduler: Any = None,
    overwrite: bool = False,
) -> ComposeResult:
    """Write RSSN composites of a prepared matting set as webdataset shards.

    Parameters
    ----------
    matting:
        Prepared matting set (``rssn prepare`` output).
    backgrounds:
        Folder of background photos (searched recursively).
    out:
        Output folder: shards, ``index.json``, ``manifest.jsonl``, ``run.json``.
    route:
        ``rssn``, ``bg20k`` (plain blending on BG-20k) or ``plain`` (plain blending).
    per_fg:
        Composites per foreground.
    splits:
        Splits of the prepared set to compose (``None``: all).
    p_denoise, p_blur, p_noise, blur_kernels, noise_sigma:
        The RSSN parameters (SPEC section 2 defaults).
    denoise, blur, noise:
        Ablation switches (False turns a step off, every other decision stays).
    seed:
        Run seed; composite (f, k) draws from ``generator(seed, f, k)``.
    shard_size:
        Composites per shard (= per work unit).
    jpeg_quality:
        JPEG quality of the composite and background members.
    denoise_cache:
        BM3D cache folder (default ``MATTING/denoise``).
    denoise_missing:
        ``compute`` missing denoised copies first, or ``error`` out listing them.
    denoise_profile, denoise_sigma, denoise_max_side:
        The BM3D parameters that key the cache (as given to ``rssn denoise``).
        Without a profile, the profile and any of sigma and max side not given
        are those ``rssn prepare --denoise`` used for MATTING (from its
        run.json), else the defaults.
    bg_denoise_max_side:
        Longer side at which backgrounds are denoised (default: as foregrounds).
    workers, scheduler:
        Where the work units run (:func:`rssn.executor.run_units`).
    overwrite:
        Replace shards of a different earlier composition in ``out``.

    Returns
    -------
    ComposeResult
    """
    t0 = time.perf_counter()
    if per_fg < 1:
        raise ValueError(f"--per-fg must be at least 1, got {per_fg}")
    if shard_size < 1:
        raise ValueError(f"--shard-size must be at least 1, got {shard_size}")
    if not 1 <= int(jpeg_quality) <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {jpeg_quality}")
    if denoise_missing not in DENOISE_MISSING:
        raise ValueError(f"--denoise-missing must be one of {', '.join(DENOISE_MISSING)}, got {denoise_missing!r}")
    config = route_mod.RouteConfig(route=route, p_denoise=p_denoise, p_blur=p_blur, p_noise=p_noise,
                                   blur_kernels=tuple(blur_kernels), noise_sigma=noise_sigma,
                                   denoise=denoise, blur=blur, noise=noise)
    matting, backgrounds, out = Path(matting).resolve(), Path(backgrounds).resolve(), Path(out)
    cache_dir = Path(denoise_cache) if denoise_cache is not None else matting / "denoise"
    foregrounds = read_foregrounds(matting, splits)
    bgs = list_backgrounds(backgrounds)
    if denoise_profile is None:
        denoise_profile, sigma, side = prepare_denoise_params(matting)
        denoise_sigma = sigma if denoise_sigma is None else denoise_sigma
        denoise_max_side = side if denoise_max_side is None else denoise_max_side
    if bg_denoise_max_side is None:
        bg_denoise_max_side = denoise_max_side

    params = {
        "matting": str(matting), "backgrounds": str(backgrounds), "out": str(out.resolve()),
        "splits": list(splits) if splits else None, "route": config.to_dict(), "per_fg": per_fg,
        "seed": seed, "shard_size": shard_size, "jpeg_quality": int(jpeg_quality),
        "denoise_cache": str(cache_dir), "denoise_missing": denoise_missing,
        "denoise_profile": denoise_profile, "denoise_sigma": denoise_sigma,
        "denoise_max_side": denoise_max_side, "bg_denoise_max_side": bg_denoise_max_side, "workers": workers,
        "scheduler": scheduler if isinstance(scheduler, (str, type(None))) else "client",
        "foregrounds": len(foregrounds), "backgrounds_found": len(bgs),
    }
    _check_previous(out, params, overwrite)

    items = plan_composites(foregrounds, bgs, config, per_fg, seed)
    result = ComposeResult(out=out)
    result.denoise = resolve_denoised(items, cache_dir, missing=denoise_missing, profile=denoise_profile,
                                      sigma=denoise_sigma, max_side=denoise_max_side,
                                      bg_max_side=bg_denoise_max_side, workers=workers, scheduler=scheduler)
    settings = {"route": config.to_dict(), "seed": seed, "jpeg_quality": int(jpeg_quality)}
    roots = (str(matting) + "/", str(backgrounds) + "/")
    stamps = input_stamps(items)
    units = []
    for i, start in enumerate(range(0, len(items), shard_size)):
        chunk = items[start : start + shard_size]
        units.append({"index": i, "out": str(out.resolve()), "items": chunk, "settings": settings,
                      "digest": _digest(settings, chunk, roots, stamps)})
    # Created only now: a refused run (settings, missing cache entries) leaves no folder.
    out.mkdir(parents=True, exist_ok=True)
    _clean(out, len(units))
    record = RunRecord.start(out, "compose", params, seed=seed)

    results = run_units(compose_shard, units, workers=workers, scheduler=scheduler, desc="shards")
    shard_rows, sample_rows = [], []
    for unit, res in zip(units, results):
        if not res.ok:
            result.shard_errors.append(f"{shard_name(unit['index'])}: {res.error}")
            continue
        rec = res.value
        result.shards_skipped += rec["skipped"]
        result.shards_written += not rec["skipped"]
        shard_rows.append({k: rec[k] for k in ("name", "count", "sha256", "bytes")})
        sample_rows.extend({"input": f"{r['fg_id']}#{r['index']}", **r} for r in rec["samples"])
    written = [r for r in sample_rows if r["fate"] == "written"]
    result.shards = len(shard_rows)
    result.composites = len(written)
    result.failed = len(sample_rows) - len(written)
    result.steps = step_counts(written)
    small = {r["bg_id"] for r in written if min(r["bg_size"]) < HD_SHORT_SIDE}
    result.backgrounds_below_hd = len(small)

    write_manifest(out / "manifest.jsonl", sample_rows)
    write_index(out, {
        "format": FORMAT, "version": FORMAT_VERSION, "complete": result.complete,
        "shards": [s for s in shard_rows if s["count"] > 0], "samples": result.composites,
        "failed": result.failed, "missing_shards": [e.split(":")[0] for e in result.shard_errors],
        "route": config.to_dict(), "seed": seed, "per_fg": per_fg, "members": list(MEMBERS),
        "fates": count_fates(sample_rows),
    })
    result.seconds = time.perf_counter() - t0
    record.finish(result.summary(), status="complete" if result.complete else "incomplete")
    return result


def step_counts(records: Sequence[dict]) -> dict[str, Any]:
    """How often each step fired among written composites (blur by kernel)."""
    kernels: dict[str, int] = {}
    for r in records:
        if r.get("blur_kernel"):
            kernels[str(r["blur_kernel"])] = kernels.get(str(r["blur_kernel"]), 0) + 1
    return {
        "total": len(records),
        "denoise": sum(bool(r.get("denoise")) for r in records),
        "blur": sum(bool(r.get("blur_kernel")) for r in records),
        "noise": sum(bool(r.get("noise")) for r in records),
        "blur_kernels": dict(sorted(kernels.items(), key=lambda kv: int(kv[0]))),
        "backgrounds_used": len({r.get("bg_id") for r in records}),
    }
