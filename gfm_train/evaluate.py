"""``rssn eval``: score predictions against a matting set and write a report.

Two sources of predictions:

- ``checkpoint``: run the network (:mod:`gfm_train.infer`, hybrid or resize) on
  every image; the float prediction is scored (as the GFM reference code does)
  and saved as an 8-bit PNG under ``predictions/``;
- ``pred_dir``: score existing alpha PNGs (found by sample id, see
  :func:`find_prediction`), for example the ``alpha/`` folder ``rssn predict`` wrote.

The dataset is any layout :func:`rssn.layouts.read_layout` reads, or a folder
written by ``rssn prepare`` (``samples.jsonl``). Trimaps come from the dataset
where it has them; otherwise they are generated from the true alpha:
unknown = dilate(alpha > 0) minus erode(alpha == 255), elliptical kernel of side
``trimap_kernel`` (default 25 px, the rule of the TT Glance target).

Output folder::

    OUT/run.json, manifest.jsonl     parameters, versions; one row per sample (fate)
    OUT/per_image/<name>.json        one scored sample (also the resume cache)
    OUT/metrics.json, metrics.csv    the per-image table (+ averages in the JSON)
    OUT/summary.md                   averages per split in the paper's table layout
    OUT/worst/NN_<id>.png            error maps of the worst images
    OUT/predictions/<name>.png       (checkpoint mode) the predicted alphas
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from rssn.io import (
    PathLike,
    SizeMismatchError,
    file_digest,
    list_images,
    read_alpha,
    read_rgb,
    write_bytes_atomic,
    write_image,
    write_text_atomic,
)
from rssn.records import RunRecord, count_fates, dumps, relative_to, write_manifest

from .metrics import METRICS, PROTOCOLS, compute_metrics

#: Default side of the elliptical kernel for generated trimaps.
TRIMAP_KERNEL = 25
#: Column titles and decimals of the paper's tables.
TITLES = {"sad": "SAD", "mse": "MSE", "mad": "MAD", "grad": "Grad", "conn": "Conn",
          "sad_trans": "SAD-Trans", "sad_fg": "SAD-FG", "sad_bg": "SAD-BG"}
DECIMALS = {"sad": 2, "mse": 4, "mad": 4, "grad": 2, "conn": 2, "sad_trans": 2, "sad_fg": 2, "sad_bg": 2}
PROTOCOL_NOTES = {
    "gfm": "GFM protocol (the paper's reference code): whole image; SAD, SAD-Trans/FG/BG and Conn / 1000, "
           "Grad / 10; MSE and MAD are means over all pixels; SAD-Trans forces the prediction to the trimap's "
           "known values first.",
    "dim": "DIM protocol (Deep Image Matting's MATLAB code): the trimap's unknown region only (value 128); "
           "SAD, Grad and Conn / 1000; MSE and MAD are means over the unknown pixels; alphas as 8-bit values; "
           "SAD-FG/BG apply the same SAD to the trimap's known regions.",
}


@dataclasses.dataclass
class EvalSample:
    id: str
    alpha: Path
    image: Path | None = None
    trimap: Path | None = None
    split: str | None = None
    category: str | None = None

    @property
    def name(self) -> str:
        """Output name: ``<split>/<id>`` (ids may repeat across splits)."""
        return f"{self.split}/{self.id}" if self.split else self.id


# --------------------------------------------------------------------------- inputs


def load_samples(dataset: PathLike, layout: str = "auto") -> tuple[list[EvalSample], list[dict]]:
    """Samples of a matting set (any layout) or a prepared folder, and the problems found."""
    root = Path(dataset)
    if (root / "samples.jsonl").is_file():
        from rssn.prepare import read_prepared

        rows = read_prepared(root, check_files=False)
        samples = [EvalSample(r["id"], Path(r["alpha"]), r["image"], r["trimap"], r["split"], r.get("category"))
                   for r in rows]
        return samples, []
    from rssn.layouts import read_layout

    scan = read_layout(root, layout)
    cats: dict[str, str] = {}
    if (root / "categories.json").is_file():
        from rssn.prepare import read_categories

        cats = read_categories(root / "categories.json")
    samples = [
        EvalSample(s.id, Path(s.alpha), Path(s.image) if s.image else None,
                   Path(s.trimap) if s.trimap else None, s.split, s.category or cats.get(s.id))
        for s in scan.samples
    ]
    problems = [{"input": p.path, "fate": "skipped", "reason": p.reason} for p in scan.problems]
    return samples, problems


def select_splits(samples: Sequence[EvalSample], splits: Sequence[str] | None = None) -> list[EvalSample]:
    """The samples to score: ``splits`` if given, else every split but ``train``
    (when the set has any other), else all."""
    if splits:
        have = {s.split for s in samples}
        missing = [s for s in splits if s not in have]
        if missing:
            raise ValueError(f"split(s) {missing} not in the dataset (it has {sorted(map(str, have))})")
        return [s for s in samples if s.split in splits]
    held_out = [s for s in samples if s.split not in ("train", None)]
    return held_out or list(samples)


def normalise_trimap(trimap: np.ndarray) -> tuple[np.ndarray, bool]:
    """Map a trimap to exactly 0 / 128 / 255 (below 85, 85..170, above 170); say whether anything changed."""
    if np.isin(trimap, (0, 128, 255)).all():
        return trimap, False
    out = np.full(trimap.shape, 128, np.uint8)
    out[trimap < 85] = 0
    out[trimap > 170] = 255
    return out, True


def generate_trimap(alpha8: np.ndarray, kernel: int = TRIMAP_KERNEL) -> np.ndarray:
    """0 / 128 / 255 trimap from an 8-bit alpha: unknown = dilate(alpha > 0) - erode(alpha == 255),
    elliptical structuring element of side ``kernel``."""
    from rssn.trimap import trimap_from_alpha

    return trimap_from_alpha(alpha8, kernel)


def load_trimap(sample: EvalSample, truth8: np.ndarray, kernel: int) -> tuple[np.ndarray, str]:
    """The sample's trimap and where it came from (``dataset``, ``dataset, normalised``, ``generated``)."""
    if sample.trimap is not None:
        tri = read_alpha(sample.trimap)
        if tri.shape != truth8.shape:
            raise SizeMismatchError(sample.trimap, f"trimap is {tri.shape[1]}x{tri.shape[0]}, alpha "
                                                   f"{truth8.shape[1]}x{truth8.shape[0]}")
        tri, changed = normalise_trimap(tri)
        return tri, "dataset, normalised" if changed else "dataset"
    return generate_trimap(truth8, kernel), "generated"


def index_predictions(pred_dir: PathLike) -> dict[str, Path]:
    """Images below ``pred_dir`` by relative path without extension (POSIX)."""
    root = Path(pred_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: prediction folder does not exist")
    return {p.relative_to(root).with_suffix("").as_posix(): p for p in list_images(root)}


def find_prediction(index: Mapping[str, Path], sample: EvalSample) -> Path | None:
    """The prediction of ``sample``: ``[alpha/|predictions/][<split>/]<id>.<ext>``."""
    for prefix in ("", "alpha/", "predictions/"):
        for name in ((f"{sample.split}/{sample.id}" if sample.split else None), sample.id):
            if name and prefix + name in index:
                return index[prefix + name]
    return None


# --------------------------------------------------------------------------- scoring


def score(pred: np.ndarray, truth8: np.ndarray, trimap: np.ndarray, protocols: Sequence[str]) -> dict[str, dict]:
    """{protocol: {metric: value}} for one prediction."""
    return {p: compute_metrics(pred, truth8, trimap, protocol=p) for p in protocols}


def _cache_key(params: Mapping[str, Any], sample: EvalSample, pred_path: Path | None) -> str:
    h = hashlib.sha256(dumps(params).encode())
    for p in (sample.alpha, sample.trimap, sample.image if pred_path is None else pred_path):
        h.update(b"\0" + (file_digest(p).encode() if p is not None else b"-"))
    return h.hexdigest()


def _cached(path: Path, key: str) -> dict | None:
    try:
        row = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return row if isinstance(row, dict) and row.get("key") == key and row.get("fate") == "scored" else None


def score_unit(unit: Mapping[str, Any]) -> dict:
    """Score one existing prediction file (a work unit for :func:`rssn.executor.run_units`)."""
    sample = EvalSample(**{k: (Path(v) if k in ("alpha", "image", "trimap") and v else v)
                           for k, v in unit["sample"].items()})
    truth8 = read_alpha(sample.alpha)
    pred = read_alpha(unit["pred"])
    if pred.shape != truth8.shape:
        raise SizeMismatchError(unit["pred"], f"prediction is {pred.shape[1]}x{pred.shape[0]}, truth "
                                              f"{truth8.shape[1]}x{truth8.shape[0]}")
    trimap, source = load_trimap(sample, truth8, unit["trimap_kernel"])
    return {"trimap_source": source, "metrics": score(pred, truth8, trimap, unit["protocols"])}


# --------------------------------------------------------------------------- report


def _mean(values: Iterable[float]) -> tuple[float, int]:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return (sum(vals) / len(vals) if vals else math.nan), len(vals)


def averages(rows: Sequence[Mapping[str, Any]], protocols: Sequence[str]) -> dict[str, dict[str, dict]]:
    """{group: {protocol: {metric: mean}}} over scored rows; groups = splits plus ``all``."""
    scored = [r for r in rows if r["fate"] == "scored"]
    groups: dict[str, list] = {}
    for r in scored:
        groups.setdefault(str(r["split"]), []).append(r)
    if len(groups) > 1:
        groups["all"] = scored
    out: dict[str, dict[str, dict]] = {}
    for g, members in groups.items():
        out[g] = {"images": len(members)}
        for p in protocols:
            means = {}
            for m in METRICS:
                mean, n = _mean(r["metrics"][p].get(m, math.nan) for r in members)
                means[m] = mean
                if n != len(members) and m in ("mse", "mad"):
                    means[f"{m}_images"] = n
            out[g][p] = means
    return out


def _fmt(v: float, m: str) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{DECIMALS[m]}f}"


def summary_markdown(avg: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], protocols: Sequence[str],
                     params: Mapping[str, Any], worst: Sequence[Mapping[str, Any]]) -> str:
    """The Markdown summary: one table per protocol in the paper's column order."""
    names = " and ".join(f"{p.upper()} protocol" for p in protocols)
    lines = [f"# Evaluation ({names})", ""]
    src = f"checkpoint `{params['checkpoint']}`, {params['mode']} inference" if params.get("checkpoint") \
        else f"predictions from `{params['pred_dir']}`"
    fates = count_fates(rows)
    lines += [f"Dataset `{params['dataset']}`; {src}.", "",
              "Images: " + ", ".join(f"{n} {f}" for f, n in sorted(fates.items())) + ".", ""]
    trimaps: dict[str, int] = {}
    for r in rows:
        if r["fate"] == "scored":
            trimaps[r["trimap_source"]] = trimaps.get(r["trimap_source"], 0) + 1
    wording = {"dataset": "from the dataset", "dataset, normalised": "from the dataset, mapped to 0/128/255",
               "generated": "generated"}
    if trimaps:
        lines += ["Trimaps: " + ", ".join(f"{n} {wording.get(s, s)}" for s, n in sorted(trimaps.items()))
                  + (f" (generated: unknown = dilate(alpha > 0) minus erode(alpha = 255), elliptical kernel "
                     f"{params['trimap_kernel']} px)" if "generated" in trimaps else "") + ".", ""]
    for p in protocols:
        lines += [f"## {p.upper()} protocol", "", PROTOCOL_NOTES[p], ""]
        lines += ["| split | images | " + " | ".join(TITLES[m] for m in METRICS) + " |",
                  "| --- | ---: | " + " | ".join("---:" for _ in METRICS) + " |"]
        for g, a in avg.items():
            lines.append(f"| {g} | {a['images']} | " + " | ".join(_fmt(a[p][m], m) for m in METRICS) + " |")
        notes = [f"{g}: {TITLES[m]} over {a[p][m + '_images']} images (the others have no unknown pixel)"
                 for g, a in avg.items() for m in ("mse", "mad") if f"{m}_images" in a[p]]
        lines += [""] + ([f"- {n}" for n in notes] + [""] if notes else [])
    if worst:
        key = protocols[0]
        lines += [f"## Worst images (by {key.upper()} SAD)", "", "| rank | id | split | SAD | error map |",
                  "| ---: | --- | --- | ---: | --- |"]
        for i, r in enumerate(worst, 1):
            lines.append(f"| {i} | {r['id']} | {r['split']} | {_fmt(r['metrics'][key]['sad'], 'sad')} | "
                         f"![{r['id']}]({r['error_map']}) |")
        lines.append("")
    failed = [r for r in rows if r["fate"] not in ("scored",)]
    if failed:
        lines += ["## Not scored", ""] + [f"- `{r['input']}`: {r['fate']}: {r.get('reason')}" for r in failed] + [""]
    return "\n".join(lines)


def error_map_png(image: np.ndarray | None, truth8: np.ndarray, pred8: np.ndarray, trimap: np.ndarray,
                  title: str) -> bytes:
    """A PNG: image, truth, prediction and |prediction - truth| (with the trimap's unknown outline)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    h, w = truth8.shape
    panels = 4 if image is not None else 3
    fig = Figure(figsize=(3.2 * panels, 3.2 * h / w + 0.6), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, panels)
    err = np.abs(pred8.astype(np.int16) - truth8.astype(np.int16)) / 255.0
    items = ([("image", image, None)] if image is not None else []) + [
        ("truth", truth8, "gray"), ("prediction", pred8, "gray"), (f"|error|, SAD {err.sum() / 1000:.2f}", err, "inferno")]
    for ax, (name, arr, cmap) in zip(axes, items):
        im = ax.imshow(arr, cmap=cmap, vmin=0, vmax=1 if arr is err else 255, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    axes[-1].contour(trimap == 128, levels=[0.5], colors="cyan", linewidths=0.5)
    fig.colorbar(im, ax=axes[-1], fraction=0.046, pad=0.02)
    fig.suptitle(title, fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]], protocols: Sequence[str]) -> None:
    buf = io.StringIO()
    cols = ["id", "split", "category", "fate", "trimap_source"] + [f"{p}_{m}" for p in protocols for m in METRICS]
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        vals = [r.get("id"), r.get("split"), r.get("category"), r["fate"], r.get("trimap_source")]
        for p in protocols:
            for m in METRICS:
                v = (r.get("metrics") or {}).get(p, {}).get(m)
                vals.append("" if v is None else repr(float(v)))
        w.writerow(vals)
    write_text_atomic(path, buf.getvalue())


# --------------------------------------------------------------------------- the command


def evaluate(
    dataset: PathLike,
    out: PathLike,
    *,
    checkpoint: PathLike | None = None,
    pred_dir: PathLike | None = None,
    mode: str = "hybrid",
    protocol: str = "gfm",
    splits: Sequence[str] | None = None,
    layout: str = "auto",
    trimap_kernel: int = TRIMAP_KERNEL,
    device: str = "auto",
    worst: int = 4,
    workers: int = 1,
    scheduler: Any = None,
    progress: bool | None = None,
) -> dict:
    """Score a matting set and write the report (see the module docstring).

    Parameters
    ----------
    dataset:
        Matting set folder (any layout) or a prepared folder.
    out:
        Report folder.
    checkpoint, pred_dir:
        Exactly one: a checkpoint to run, or a folder of alpha PNGs to score.
    mode:
        ``hybrid`` or ``resize`` (checkpoint only).
    protocol:
        ``gfm``, ``dim`` or ``both``.
    splits:
        Splits to score (default: all but ``train`` when there are others).
    trimap_kernel:
        Elliptical kernel side for trimaps generated where the dataset has none.
    worst:
        How many error maps to draw (worst SAD first).
    workers, scheduler:
        Where scoring of existing predictions runs (``rssn.executor``).

    Returns
    -------
    dict: averages per split and protocol, counts, report paths.
    """
    from tqdm.auto import tqdm

    from rssn.executor import progress_enabled, run_units

    if (checkpoint is None) == (pred_dir is None):
        raise ValueError("give exactly one of --checkpoint (run the model) or --pred (score existing predictions)")
    protocols = list(PROTOCOLS) if protocol == "both" else [protocol]
    if any(p not in PROTOCOLS for p in protocols):
        raise ValueError(f"unknown protocol {protocol!r}; choose from gfm, dim, both")
    if checkpoint is not None:
        from .infer import MODES

        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    if trimap_kernel < 1:
        raise ValueError(f"trimap kernel must be at least 1, got {trimap_kernel}")
    out = Path(out)
    samples, rows = load_samples(dataset, layout)
    chosen = select_splits(samples, splits)
    if not chosen:
        raise ValueError(f"{dataset}: no samples to evaluate")
    params = {"dataset": str(dataset), "checkpoint": str(checkpoint) if checkpoint else None,
              "pred_dir": str(pred_dir) if pred_dir else None, "mode": mode if checkpoint else None,
              "protocols": protocols, "splits": sorted({str(s.split) for s in chosen}), "layout": layout,
              "trimap_kernel": trimap_kernel}
    record = RunRecord.start(out, "eval", params)
    show = progress_enabled() if progress is None else progress
    t0 = time.perf_counter()
    cache_params = {k: params[k] for k in ("protocols", "trimap_kernel", "mode")}
    if checkpoint is not None:
        cache_params["checkpoint"] = file_digest(checkpoint)
        model, meta, dev = _load(checkpoint, device)
        params.update(model=meta.get("model"), input_convention=meta["input_convention"], device=str(dev))
        record.data["params"] = dict(params)
        record.save()
    scored: list[dict] = []

    def finish_row(sample: EvalSample, row: dict, fresh: bool = True) -> None:
        row.update(id=sample.id, split=sample.split, category=sample.category, input=str(sample.alpha))
        if row["fate"] == "scored" and fresh:
            write_text_atomic(out / "per_image" / f"{sample.name}.json", dumps(row, indent=2) + "\n")
        scored.append(row)

    if checkpoint is not None:
        from .infer import predict_alpha, to_alpha8

        for s in tqdm(chosen, desc="eval", unit="image", disable=not show, dynamic_ncols=True):
            key = _cache_key(cache_params, s, None) if s.image else ""
            cached = _cached(out / "per_image" / f"{s.name}.json", key)
            if cached:
                finish_row(s, cached, fresh=False)
                continue
            try:
                if s.image is None:
                    raise ValueError("the dataset has no real image for this sample (foreground-only layout)")
                img, truth8 = read_rgb(s.image), read_alpha(s.alpha)
                if img.shape[:2] != truth8.shape:
                    raise SizeMismatchError(s.alpha, f"alpha {truth8.shape[::-1]} and image {img.shape[1::-1]} differ")
                trimap, source = load_trimap(s, truth8, trimap_kernel)
                t = time.perf_counter()
                pred = predict_alpha(model, img, meta["input_convention"], mode=mode, device=dev)
                seconds = time.perf_counter() - t
                pred_path = out / "predictions" / f"{s.name}.png"
                write_image(pred_path, to_alpha8(pred))
                row = {"fate": "scored", "key": key, "trimap_source": source, "seconds": round(seconds, 4),
                       "prediction": relative_to(out, pred_path), "metrics": score(pred, truth8, trimap, protocols)}
            except Exception as e:  # noqa: BLE001 - recorded per sample
                row = {"fate": "failed", "reason": getattr(e, "reason", None) or f"{type(e).__name__}: {e}"}
            finish_row(s, row)
    else:
        index = index_predictions(pred_dir)
        units, todo = [], []
        for s in chosen:
            p = find_prediction(index, s)
            if p is None:
                finish_row(s, {"fate": "missing", "reason": f"no prediction named {s.id} in {pred_dir}"})
                continue
            key = _cache_key(cache_params, s, p)
            cached = _cached(out / "per_image" / f"{s.name}.json", key)
            if cached:
                finish_row(s, cached, fresh=False)
                continue
            todo.append((s, p, key))
            units.append({"sample": {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(s).items()},
                          "pred": str(p), "protocols": protocols, "trimap_kernel": trimap_kernel})
        results = run_units(score_unit, units, workers=workers, scheduler=scheduler, desc="eval", progress=show)
        for (s, p, key), res in zip(todo, results):
            if res.ok:
                row = {"fate": "scored", "key": key, "prediction": str(p), **res.value}
            else:
                row = {"fate": "failed", "reason": res.error}
            finish_row(s, row)

    order = {s.name: i for i, s in enumerate(chosen)}
    scored.sort(key=lambda r: order.get(f"{r['split']}/{r['id']}" if r["split"] else r["id"], 0))
    all_rows = rows + scored
    avg = averages(scored, protocols)
    worst_rows = _draw_worst(out, chosen, scored, protocols, worst, trimap_kernel, pred_dir)
    write_text_atomic(out / "metrics.json", dumps({"protocols": protocols, "params": params, "averages": avg,
                                                   "images": scored}, indent=2) + "\n")
    _write_csv(out / "metrics.csv", scored, protocols)
    write_text_atomic(out / "summary.md", summary_markdown(avg, all_rows, protocols, params, worst_rows))
    write_manifest(out / "manifest.jsonl", [{k: r.get(k) for k in ("input", "id", "split", "fate", "reason")}
                                            for r in all_rows])
    counts = count_fates(all_rows)
    summary = {"averages": avg, "counts": counts, "seconds": round(time.perf_counter() - t0, 3),
               "summary": str(out / "summary.md")}
    record.finish(summary)
    return summary


def _load(checkpoint: PathLike, device: str):
    from .infer import load_model

    return load_model(checkpoint, device)


def _draw_worst(out: Path, chosen: Sequence[EvalSample], rows: list[dict], protocols: Sequence[str], n: int,
                kernel: int, pred_dir: PathLike | None) -> list[dict]:
    """Error maps of the ``n`` scored images with the highest SAD (first protocol)."""
    scored = [r for r in rows if r["fate"] == "scored"]
    scored.sort(key=lambda r: -r["metrics"][protocols[0]]["sad"])
    by_name = {s.name: s for s in chosen}
    drawn = []
    for rank, r in enumerate(scored[:n], 1):
        s = by_name[f"{r['split']}/{r['id']}" if r["split"] else r["id"]]
        pred_path = Path(r["prediction"]) if pred_dir is not None else out / r["prediction"]
        truth8 = read_alpha(s.alpha)
        trimap, _ = load_trimap(s, truth8, kernel)
        image = read_rgb(s.image) if s.image is not None else None
        png = error_map_png(image, truth8, read_alpha(pred_path), trimap, f"{s.name} (rank {rank})")
        path = out / "worst" / f"{rank:02d}_{s.id}.png"
        write_bytes_atomic(path, png)
        r["error_map"] = relative_to(out, path)
        drawn.append(r)
    return drawn
