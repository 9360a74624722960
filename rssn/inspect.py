"""``rssn inspect``: what a shard folder holds, how often each RSSN step fired,
and a contact sheet of a few samples (composite / alpha / foreground / background).

Only the small JSON member of each sample is read for the statistics (tar headers
let the image members be skipped), so inspecting many gigabytes of shards is quick.
"""
from __future__ import annotations

import json
import math
import tarfile
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from .compose.job import HD_SHORT_SIDE, step_counts
from .compose.shards import iter_tar_samples, read_index, read_sample, verify_shards
from .io import PathLike, write_image
from .records import count_fates, read_run, safe_join

COLUMNS = ("composite", "alpha", "fg", "bg")
_GREY = 236
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def read_records(shards_dir: PathLike, index: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """The JSON record of every sample listed in the index, in shard order.

    Returns
    -------
    (records, problems)
        A shard that is missing or cannot be read (truncated, damaged, a record
        that is not JSON) adds a problem naming it, and none of its records; the
        other shards are still read.
    """
    index = read_index(shards_dir) if index is None else index
    out, problems = [], []
    for s in index["shards"]:
        path = safe_join(shards_dir, s["name"])
        try:
            recs = []
            for sample in iter_tar_samples(path, suffixes=("json",)):
                rec = json.loads(sample["json"].decode("utf-8"))
                rec["shard"] = s["name"]
                recs.append(rec)
        except (OSError, tarfile.TarError, KeyError, ValueError) as e:
            problems.append(f"{path}: cannot be read ({type(e).__name__}: {e})")
            continue
        out.extend(recs)
    return out, problems


def _interval(k: int, n: int) -> tuple[float, float]:
    """Wilson 95 % interval of a proportion k/n (to judge observed frequencies)."""
    if n == 0:
        return (0.0, 1.0)
    z, p = 1.96, k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def inspect_shards(shards_dir: PathLike, *, grid: PathLike | None = None, samples: int = 8,
                   verify: bool = False, thumb: int = 160) -> dict[str, Any]:
    """Statistics of a shard folder, optionally a contact sheet.

    Parameters
    ----------
    shards_dir:
        An ``rssn compose`` output folder.
    grid:
        Where to write the contact sheet (PNG or JPEG); ``None`` for none.
    samples:
        Rows of the contact sheet (spread evenly over all samples).
    verify:
        Also check every shard's sha256 against the index.
    thumb:
        Height of one cell of the contact sheet, in pixels.

    Returns
    -------
    dict
        ``shards``, ``samples``, ``failed``, ``splits``, ``routes``, ``steps``
        (counts, observed and configured frequency, 95 % interval), ``foregrounds``,
        ``backgrounds``, ``sizes``, ``problems`` and ``grid``.
    """
    shards_dir = Path(shards_dir)
    if grid is not None and Path(grid).suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise ValueError(f"{grid}: the contact sheet is written as PNG or JPEG; name it .png or .jpg")
    index = read_index(shards_dir)
    records, unreadable = read_records(shards_dir, index)
    steps = step_counts(records)
    n = len(records)
    configured = (index.get("route") or {}).get("effective", {})
    freq = {}
    for name in ("denoise", "blur", "noise"):
        k = steps[name]
        lo, hi = _interval(k, n)
        freq[name] = {"fired": k, "of": n, "observed": k / n if n else 0.0,
                      "configured": configured.get(name), "interval95": [lo, hi]}
    widths = [r["width"] for r in records] or [0]
    heights = [r["height"] for r in records] or [0]
    report: dict[str, Any] = {
        "folder": str(shards_dir), "complete": index.get("complete"), "shards": len(index["shards"]),
        "samples": n, "samples_in_index": index.get("samples"), "failed": index.get("failed", 0),
        "splits": count_fates(records, "split"), "routes": count_fates(records, "route"),
        "steps": freq, "blur_kernels": steps["blur_kernels"],
        "foregrounds": len({r["fg_id"] for r in records}), "backgrounds": steps["backgrounds_used"],
        "backgrounds_below_hd": len({r["bg_id"] for r in records if min(r["bg_size"]) < HD_SHORT_SIDE}),
        "sizes": {"min": [min(widths), min(heights)], "max": [max(widths), max(heights)]},
        "problems": unreadable, "grid": None,
    }
    if n != index.get("samples"):
        report["problems"].append(f"the index says {index.get('samples')} samples, the shards hold {n}")
    if verify:
        report["problems"].extend(verify_shards(shards_dir))
        report["verified"] = not report["problems"]
    try:
        report["run"] = {k: read_run(shards_dir).get(k) for k in ("status", "seed", "started", "finished")}
    except FileNotFoundError:
        report["run"] = None
    if grid is not None and n:
        picks = [records[i] for i in _spread(n, samples)]
        rows = [read_sample(safe_join(shards_dir, r["shard"]), r["key"]) for r in picks]
        sheet = contact_sheet(rows, thumb=thumb)
        write_image(grid, sheet)
        report["grid"] = str(grid)
    return report


def _spread(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)``."""
    k = max(1, min(n, k))
    return sorted({round(i * (n - 1) / max(1, k - 1)) for i in range(k)}) if k > 1 else [0]


def _label(record: dict[str, Any]) -> str:
    blur = f"blur {record['blur_kernel']}" if record.get("blur_kernel") else "no blur"
    return (f"{record['key']}  bg {record['bg_id']}  "
            f"{'denoised' if record.get('denoise') else 'raw'}  {blur}  "
            f"{'noise' if record.get('noise') else 'no noise'}")


def contact_sheet(samples: Sequence[dict[str, Any]], *, thumb: int = 160) -> np.ndarray:
    """Rows of composite | alpha | foreground | background, each labelled with the
    sample's key and decisions, as one RGB image.

    Parameters
    ----------
    samples:
        Decoded samples (:func:`rssn.compose.shards.decode_sample`).
    thumb:
        Height of each cell.
    """
    label_h, pad = 22, 6
    rows = []
    for s in samples:
        h, w = s["alpha"].shape
        cw = max(1, round(w * thumb / h))
        cells = []
        for name in COLUMNS:
            img = s[name] if s[name].ndim == 3 else np.repeat(s[name][:, :, None], 3, axis=2)
            cells.append(cv2.resize(img, (cw, thumb), interpolation=cv2.INTER_AREA))
            cells.append(np.full((thumb, pad, 3), _GREY, np.uint8))
        body = np.concatenate(cells[:-1], axis=1)
        strip = np.full((label_h, body.shape[1], 3), _GREY, np.uint8)
        cv2.putText(strip, _label(s["record"]), (4, 15), _FONT, 0.42, (20, 20, 20), 1, cv2.LINE_AA)
        rows.append(np.concatenate([strip, body], axis=0))
    width = max(r.shape[1] for r in rows)
    head = np.full((label_h, width, 3), _GREY, np.uint8)
    x = 0
    cw0 = (rows[0].shape[1] - 3 * pad) // 4
    for name in COLUMNS:
        cv2.putText(head, name, (x + 4, 16), _FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        x += cw0 + pad
    padded = [np.pad(r, ((0, pad), (0, width - r.shape[1]), (0, 0)), constant_values=_GREY) for r in rows]
    return np.ascontiguousarray(np.concatenate([head, *padded], axis=0))


def format_report(report: dict[str, Any]) -> str:
    """The report as the lines ``rssn inspect`` prints."""
    lines = [
        f"shards:      {report['shards']} in {report['folder']}"
        + ("" if report.get("complete", True) else "  (run incomplete: rerun compose to finish)"),
        f"samples:     {report['samples']}  (failed inputs: {report['failed']})",
        "splits:      " + ", ".join(f"{k} {v}" for k, v in report["splits"].items()),
        "routes:      " + ", ".join(f"{k} {v}" for k, v in report["routes"].items()),
        f"foregrounds: {report['foregrounds']}   backgrounds used: {report['backgrounds']}"
        + (f" ({report['backgrounds_below_hd']} below {HD_SHORT_SIDE} px)" if report["backgrounds_below_hd"] else ""),
        f"sizes:       {report['sizes']['min'][0]}x{report['sizes']['min'][1]} .. "
        f"{report['sizes']['max'][0]}x{report['sizes']['max'][1]}",
        "steps (fired / samples, observed vs configured probability, 95% interval):",
    ]
    for name, s in report["steps"].items():
        conf = "-" if s["configured"] is None else f"{s['configured']:.2f}"
        lo, hi = s["interval95"]
        lines.append(f"  {name:<8} {s['fired']:>6} / {s['of']:<6} {s['observed']:.2f} vs {conf}   [{lo:.2f}, {hi:.2f}]")
    if report["blur_kernels"]:
        lines.append("  blur kernels: " + ", ".join(f"{k}: {v}" for k, v in report["blur_kernels"].items()))
    if "verified" in report:
        lines.append(f"verified:    {'all shards match the index' if report['verified'] else 'PROBLEMS'}")
    lines.extend(f"problem:     {p}" for p in report["problems"])
    if report["grid"]:
        lines.append(f"contact sheet: {report['grid']}")
    return "\n".join(lines)
