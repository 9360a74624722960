"""The composite-vs-real gap: how far composites are from real photos.

The paper's argument: composites differ from real photos in resolution,
sharpness, noise (and semantics), and a matting model learns those cheap cues
instead of the matte. :func:`measure_gap` measures, per sample, how the
foreground differs from its own background (:mod:`rssn.gap.statistics`),
gathers the distributions per set, compares INPUT with a set of real photos
(:mod:`rssn.gap.compare`) and writes a report (:mod:`rssn.gap.report`).

Output folder::

    REPORT/
      run.json        parameters, versions, counts
      manifest.jsonl  one row per sample of both sets: fate, reason, fg/bg values, discrepancies
      gap.json        distributions, distances, verdicts
      report.md       the same as tables and sentences
      plots/          <statistic>.png histograms INPUT vs REAL, overview.png
      units/          each work unit's result, so a rerun only measures what changed
"""
from __future__ import annotations

import collections
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..executor import run_units
from ..io import PathLike, write_text_atomic
from ..records import MANIFEST_FILE, RunRecord, count_fates, dumps, write_manifest
from .compare import compare_sets, overall, values_of
from .report import REPORT_JSON, REPORT_MD, write_plots, write_report
from .sources import Source, measure_unit, open_source, unit_key
from .statistics import BG_THRESHOLD, FG_THRESHOLD, MIN_PIXELS, STATISTICS, measure_sample

UNITS = "units"
#: Part of every unit's cache key: change it when a statistic's definition
#: changes, so that a rerun does not reuse numbers measured the old way.
MEASURE_VERSION = 1


@dataclass
class GapResult:
    """What :func:`measure_gap` wrote and found."""

    out: Path
    report: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def statistics(self) -> dict[str, dict[str, Any]]:
        return self.report["statistics"]


def _failed_unit_rows(unit: dict[str, Any], error: str) -> list[dict[str, Any]]:
    if unit["kind"] == "files":
        return [{"id": s["id"], "input": s["image"], "fate": "failed", "reason": f"unit failed: {error}"}
                for s in unit["samples"]]
    return [{"id": None, "input": unit["path"], "fate": "failed", "reason": f"shard could not be read: {error}"}]


def _run_set(src: Source, out: Path, set_name: str, limit: int | None, workers: int, scheduler: Any,
             progress: bool | None) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Measure one set's units, reusing results a previous run left in ``units/``."""
    cache_dir = out / UNITS
    keys = [unit_key(u) for u in src.units]
    cached: dict[int, list[dict[str, Any]]] = {}
    for i, key in enumerate(keys):
        path = cache_dir / f"{set_name}-{key}.json"
        if path.is_file():
            try:
                cached[i] = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                pass  # a damaged cache entry is measured again
    todo = [i for i in range(len(src.units)) if i not in cached]
    results = run_units(measure_unit, [src.units[i] for i in todo], workers=workers, scheduler=scheduler,
                        desc=f"gap {set_name}", progress=progress)
    per_unit = dict(cached)
    failed_units = 0
    for i, res in zip(todo, results):
        if res.ok:
            per_unit[i] = res.value
            write_text_atomic(cache_dir / f"{set_name}-{keys[i]}.json", dumps(res.value) + "\n")
        else:
            failed_units += 1
            per_unit[i] = _failed_unit_rows(src.units[i], res.error or "unknown error")
    # Entries of older runs with other inputs or parameters are no longer wanted.
    wanted = {f"{set_name}-{k}.json" for k in keys}
    if cache_dir.is_dir():
        for p in cache_dir.glob(f"{set_name}-*.json"):
            if p.name not in wanted:
                p.unlink(missing_ok=True)
    rows = [r for i in range(len(src.units)) for r in per_unit[i]]
    if limit is not None and src.kind == "shards":
        rows = rows[:limit]
    stats = {"units": len(src.units), "units_reused": len(cached), "units_failed": failed_units}
    return rows, stats


def _set_info(src: Source, rows: list[dict[str, Any]], stats: dict[str, int]) -> dict[str, Any]:
    fates = count_fates(rows)
    return {"path": src.path, "kind": src.kind, "layout": src.layout, "samples": len(rows),
            "measured": fates.get("measured", 0), "incomplete": fates.get("incomplete", 0),
            "failed": fates.get("failed", 0), "skipped": len(src.problems), **stats}


def _region_medians(rows: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    out = {}
    for stat in STATISTICS:
        med = {}
        for region in ("fg", "bg"):
            v = [r[region][stat] for r in rows if r.get(region) and r[region].get(stat) is not None]
            med[region] = float(np.median(v)) if v else None
        out[stat] = med
    return out


def _missing_reasons(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Counts of why samples were not (fully) measured, per set."""
    c: collections.Counter[str] = collections.Counter()
    for r in rows:
        if r.get("fate") == "incomplete" and r.get("reason"):
            # The part before the first colon names the cause without the
            # per-sample numbers, so equal causes add up.
            c[f"{r['set']}: {r['reason'].split(':')[0]}"] += 1
        elif r.get("fate") == "failed":
            c[f"{r['set']}: could not be read (reasons in manifest.jsonl)"] += 1
    return dict(sorted(c.items()))


def _measure_and_report(sources: dict[str, Source], out: Path, limit: int | None, bins: int, plots: bool,
                        workers: int, scheduler: Any, progress: bool | None,
                        params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Path]]:
    rows: dict[str, list[dict[str, Any]]] = {}
    info: dict[str, dict[str, Any]] = {}
    manifest: list[dict[str, Any]] = []
    for set_name, src in sources.items():
        set_rows, stats = _run_set(src, out, set_name, limit, workers, scheduler, progress)
        for r in set_rows:
            r["set"] = set_name
        rows[set_name] = set_rows
        info[set_name] = _set_info(src, set_rows, stats)
        manifest += [{"set": set_name, "fate": "skipped", "id": None, **p} for p in src.problems]
        manifest += set_rows
    write_manifest(out / MANIFEST_FILE, manifest)

    comparison = compare_sets(rows["input"], rows.get("reference"))
    report = {
        "input": info["input"], "reference": info.get("reference"),
        "params": {**params, "fg_threshold": FG_THRESHOLD, "bg_threshold": BG_THRESHOLD},
        "statistics": comparison, "overall": overall(comparison),
        "regions": {s: _region_medians(rows[s]) for s in rows},
        "missing_reasons": _missing_reasons([r for s in rows.values() for r in s]),
    }
    json_path, md_path = write_report(out, report, plots)
    in_vals = {n: values_of(rows["input"], n) for n in STATISTICS}
    ref_vals = {n: values_of(rows["reference"], n) for n in STATISTICS} if "reference" in rows else None
    drawn = write_plots(out, comparison, in_vals, ref_vals, bins=bins) if plots else []
    files = {"manifest": out / MANIFEST_FILE, "json": json_path, "markdown": md_path, **{p.stem: p for p in drawn}}
    return report, files


def measure_gap(
    input: PathLike,
    out: PathLike,
    *,
    reference: PathLike | None = None,
    kind: str = "auto",
    layout: str = "auto",
    reference_kind: str = "auto",
    reference_layout: str = "auto",
    margin: int | None = None,
    min_pixels: int = MIN_PIXELS,
    chunk: int = 16,
    limit: int | None = None,
    bins: int = 30,
    plots: bool = True,
    workers: int = 1,
    scheduler: Any = None,
    progress: bool | None = None,
) -> GapResult:
    """Measure the composite-vs-real gap of INPUT (against REAL) and write the report.

    Parameters
    ----------
    input:
        Composite shards, a prepared set or a matting dataset folder.
    out:
        The report folder (created; a rerun reuses measured units).
    reference:
        Real photos with alpha (any of the same kinds) to compare against.
    kind, reference_kind:
        ``auto``, ``shards``, ``prepared`` or ``layout``.
    layout, reference_layout:
        Dataset layout when the kind is ``layout`` (see :mod:`rssn.layouts`).
    margin:
        Pixels eroded from each region (default: 1 % of the shorter side, >= 4).
    min_pixels:
        Smallest region that is measured.
    chunk:
        Samples per work unit for image folders (a shard is always one unit).
    limit:
        Measure about this many samples per set: evenly spread over a folder's
        images; from shards, the first samples of each shard in proportion to its size.
    bins:
        Histogram bins in the plots.
    plots:
        Draw the PNG histograms (False: JSON, Markdown and manifest only).
    workers, scheduler:
        Where the units run (see :func:`rssn.executor.run_units`).

    Returns
    -------
    :class:`GapResult` with the report dict (as in ``gap.json``) and the paths written.
    """
    out = Path(out)
    if margin is not None and margin < 0:
        raise ValueError(f"margin must be 0 or more, got {margin}")
    if min_pixels < 1:
        raise ValueError(f"min_pixels must be at least 1, got {min_pixels}")
    if bins < 2:
        raise ValueError(f"bins must be at least 2, got {bins}")
    unit_params = {"margin": margin, "min_pixels": min_pixels, "measure_version": MEASURE_VERSION}
    # Plan both sets before writing anything: a wrong path fails fast and clean.
    sources = {"input": open_source(input, kind=kind, layout=layout, params=unit_params, chunk=chunk, limit=limit)}
    if reference is not None:
        sources["reference"] = open_source(reference, kind=reference_kind, layout=reference_layout,
                                           params=unit_params, chunk=chunk, limit=limit)
    params = {"input": str(input), "reference": None if reference is None else str(reference), "kind": kind,
              "layout": layout, "reference_kind": reference_kind, "reference_layout": reference_layout,
              "margin": margin, "min_pixels": min_pixels, "chunk": chunk, "limit": limit, "bins": bins,
              "plots": plots, "workers": workers, "scheduler": None if scheduler is None else str(scheduler)}
    rec = RunRecord.start(out, "gap", params)
    try:
        report, files = _measure_and_report(sources, out, limit, bins, plots, workers, scheduler, progress,
                                            {"margin": margin, "min_pixels": min_pixels, "limit": limit})
    except BaseException as e:
        rec.finish({"error": f"{type(e).__name__}: {e}"}, status="failed")
        raise
    files["run"] = rec.path
    comparison = report["statistics"]
    rec.finish({
        **{f"{s}_{k}": v for s in ("input", "reference") if report[s] for k, v in report[s].items()
           if isinstance(v, int)},
        "verdicts": {n: c["verdict"] for n, c in comparison.items()},
        "mean_normalised": report["overall"]["mean_normalised"],
    })
    return GapResult(out=out, report=report, files=files)


__all__ = ["GapResult", "STATISTICS", "measure_gap", "measure_sample", "measure_unit", "open_source",
           "REPORT_JSON", "REPORT_MD"]
