"""``build_background_set``: the whole BG-20k construction, stage by stage.

::

    photos --scan--> decodable --hd--> HD, resized --dedup--> unique
           --detect--> no salient object --review--> checked --split--> train/ testval/

Every input ends with exactly one fate in ``manifest.jsonl``, decided by the first
stage that drops it:

==================  ===================================================
fate                meaning
==================  ===================================================
``unreadable``      not an image, truncated, damaged (reason says which)
``too_small``       shorter side below ``min_side``
``duplicate``       same pixels as, or a near duplicate of, a kept image
``salient``         the detector found a salient object (class, score, area)
``rejected_review`` a reviewer rejected it
``failed``          an unexpected error in a worker (reason has it)
``kept``            in ``train/`` or ``testval/``
==================  ===================================================

Work is cached under ``OUT/.work/``: per-input records and resized images
(stages 1-3), per-image detections (stage 5), the state after stage 5 and the
reviewer's verdicts. A rerun with the same arguments redoes nothing that is
cached; ``apply_review`` redoes only the split and the output folders. A build
removes the resized images and thumbnails it does not use (other ``min_side``
or ``quality``, inputs no longer given), so the cache does not grow with every
change of parameters.
"""
from __future__ import annotations

import filecmp
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..executor import run_units
from ..io import PathLike, atomic_path, is_partial_file, write_text_atomic
from ..records import MANIFEST_FILE, RunRecord, count_fates, dumps, safe_join, write_manifest
from . import detect, dedup, review, scan, split

WORK_DIR = ".work"
STATE_FILE = "state.json"
VERDICTS_FILE = "verdicts.json"
REVIEW_JSON = "review.json"
REVIEW_HTML = "review.html"
#: Detections stored per image in the manifest (the strongest first).
MAX_DETECTIONS = 10
_OUTPUT_NAME = re.compile(r"^h_[0-9a-f]{8}\.jpg$")


@dataclass
class BuildResult:
    """What a build produced: the output folder, fate counts and the run summary."""

    out: Path
    fates: dict[str, int]
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def manifest(self) -> Path:
        return self.out / MANIFEST_FILE


def _check_params(p: dict) -> None:
    if p["min_side"] < 1:
        raise ValueError(f"min_side must be at least 1, got {p['min_side']}")
    if not 1 <= p["quality"] <= 100:
        raise ValueError(f"JPEG quality must be within 1..100, got {p['quality']}")
    if not 0 <= p["max_distance"] <= dedup.HASH_BITS:
        raise ValueError(f"max_distance must be within 0..{dedup.HASH_BITS}, got {p['max_distance']}")
    if not p["max_distance"] <= p["group_distance"] <= dedup.HASH_BITS:
        raise ValueError(
            f"group_distance must be within max_distance ({p['max_distance']})..{dedup.HASH_BITS}, got {p['group_distance']}"
        )
    if not 0.0 <= p["record_score"] <= 1.0:
        raise ValueError(f"record_score must be within [0, 1], got {p['record_score']}")
    if p["imgsz"] < 32 or p["batch"] < 1:
        raise ValueError(f"imgsz must be >= 32 and batch >= 1, got {p['imgsz']} and {p['batch']}")


def build_background_set(
    sources: Sequence[PathLike],
    out: PathLike | None,
    *,
    detector: str | None = None,
    min_side: int = 1080,
    quality: int = 95,
    max_distance: int = 8,
    group_distance: int = 10,
    classes: str | Iterable[str] | None = None,
    min_score: float = 0.5,
    min_area: float = 0.05,
    review_score: float = 0.7,
    review_area: float = 0.15,
    record_score: float = 0.1,
    imgsz: int = 640,
    batch: int = 16,
    device: str | None = None,
    test_fraction: float = 0.25,
    seed: int = 0,
    workers: int = 1,
    scheduler: Any = None,
    apply_review: PathLike | None = None,
    progress: bool | None = None,
) -> BuildResult:
    """Build a BG-20k-style background set from folders of photos.

    Parameters
    ----------
    sources:
        Folders (searched recursively) and/or image files. May be empty together
        with ``apply_review``: then the stored state of ``out`` is used.
    out:
        Output folder (``train/``, ``testval/``, ``manifest.jsonl``, ``run.json``,
        ``review.html``, ``review.json``). With ``apply_review`` and no ``out``,
        the folder holding the review file.
    detector:
        YOLO weights (``.pt``) or model yaml for salient-object rejection, or
        ``"none"`` to skip it. Checked before any work.
    min_side:
        HD threshold and target shorter side, in pixels (BG-20k: 1080).
    quality:
        JPEG quality of the written images.
    max_distance:
        Perceptual-hash Hamming distance (of 64 bits) up to which two images are
        near duplicates.
    group_distance:
        Distance up to which kept images are put on the same side of the split
        (>= ``max_distance``).
    classes:
        Detector classes that reject (names or ids, comma separated, or ``"all"``);
        ``None``: people, animals and vehicles (:data:`detect.DEFAULT_CLASSES`).
    min_score, min_area:
        A detection rejects from this confidence and this box-area fraction up.
    review_score, review_area:
        Rejections below either are borderline and shown in ``review.html``.
    record_score:
        Lowest confidence recorded in the manifest (lowered to ``min_score``
        when that is smaller).
    imgsz, batch, device:
        Detector input size, images per batch, torch device (None: automatic).
    test_fraction:
        Share of kept images in ``testval/`` (0.25, as 5k of BG-20k's 20k).
    seed:
        Run seed (the split).
    workers, scheduler:
        Where the work units run (see :func:`rssn.executor.run_units`).
    apply_review:
        A ``review.json`` with verdicts to apply.

    Returns
    -------
    :class:`BuildResult`
    """
    params = dict(
        detector=detector, min_side=int(min_side), quality=int(quality), max_distance=int(max_distance),
        group_distance=int(group_distance), classes=None, min_score=float(min_score), min_area=float(min_area),
        review_score=float(review_score), review_area=float(review_area),
        # the rule must see every detection that could reject: record at least down to min_score
        record_score=min(float(record_score), float(min_score)),
        imgsz=int(imgsz), batch=int(batch), device=device, test_fraction=float(test_fraction), seed=int(seed),
    )
    cls_set = detect.parse_classes(classes)
    params["classes"] = sorted(cls_set) if cls_set is not None else "all"
    if not sources:
        if apply_review is None:
            raise ValueError("give at least one source folder or file (or --apply-review FILE)")
        out = Path(out) if out is not None else Path(apply_review).parent
        return _apply_only(out, apply_review, workers, scheduler, progress)
    if out is None:
        raise ValueError("give the output folder (--out DIR)")
    _check_params(params)
    rule = detect.RejectRule(cls_set, params["min_score"], params["min_area"], params["review_score"], params["review_area"])
    spec = detect.resolve_detector(detector)  # before any work: a missing file is an error now
    if spec is not None:
        params["detector"] = spec
    verdicts_in = review.read_verdicts(apply_review) if apply_review is not None else None

    out = Path(out)
    work = out / WORK_DIR
    inputs = scan.find_inputs(sources, exclude=out)
    record = RunRecord.start(out, "build-bg", dict(params, sources=[str(s) for s in sources],
                                                   apply_review=str(apply_review) if apply_review else None,
                                                   workers=workers, scheduler=str(scheduler) if scheduler else None), seed)
    stats: dict[str, int] = {}
    rows = _examine(inputs, work, params, workers, scheduler, progress, stats)
    stats["pruned"] = _prune(work, rows)
    _deduplicate(rows, params["max_distance"])
    if spec is not None:
        _detect(rows, work, spec, rule, params, workers, scheduler, progress, stats)
    for r in rows:
        if r["fate"] is None:
            r["fate"], r["reason"] = "kept", ""
    write_text_atomic(work / STATE_FILE, dumps({"params": params, "rows": rows}) + "\n")
    verdicts = _store_verdicts(work, rows, verdicts_in, apply_review)
    return _finish(out, rows, params, verdicts, record, stats)


# --------------------------------------------------------------------------- stages 1-3


def _examine(inputs, work, params, workers, scheduler, progress, stats) -> list[dict]:
    records: list[dict | None] = [scan.cached_record(work, p, params["min_side"], params["quality"]) for p in inputs]
    todo = [k for k, rec in enumerate(records) if rec is None]
    units = [{"path": str(inputs[k]), "work": str(work), "min_side": params["min_side"], "quality": params["quality"]}
             for k in todo]
    results = run_units(scan.examine, units, workers=workers, scheduler=scheduler, desc="examine", progress=progress)
    for k, res in zip(todo, results):
        records[k] = res.value if res.ok else {"status": "failed", "reason": res.error or "worker failed"}
    stats["examined"] = len(todo)
    stats["examined_from_cache"] = len(inputs) - len(todo)
    rows = []
    for path, rec in zip(inputs, records):
        row = {"input": str(path), "fate": None, "reason": ""}
        for key in ("width", "height", "digest", "phashes", "out_width", "out_height"):
            if key in rec:
                row[key] = rec[key]
        if rec["status"] != "ok":
            row["fate"], row["reason"] = rec["status"], rec["reason"]
        else:
            row["blob"] = Path(os.path.relpath(scan.blob_path(work, rec["digest"], rec["params"]), work)).as_posix()
        rows.append(row)
    return rows


def _prune(work: Path, rows: list[dict]) -> int:
    """Remove the resized images and thumbnails in the cache that this build does
    not use: those of another ``--min-side``/``--quality``, of inputs no longer
    given, and leftovers of a killed run. Returns how many files went.

    Detections are kept: they are small, keyed by detector settings, and the
    most expensive stage to redo.
    """
    blobs = {Path(r["blob"]).name for r in rows if r.get("blob")}
    thumbs = {r["digest"] for r in rows if r.get("blob")}
    removed = 0
    for folder, keep in (("resized", blobs), ("thumbs", thumbs)):
        root = work / folder
        if not root.is_dir():
            continue
        for sub in root.iterdir():
            for f in sub.iterdir() if sub.is_dir() else ():
                if f.name not in keep:
                    f.unlink(missing_ok=True)
                    removed += 1
    return removed


# --------------------------------------------------------------------------- stage 4


def _deduplicate(rows: list[dict], max_distance: int) -> None:
    hd_rows = [r for r in rows if r["fate"] is None]
    decisions = dedup.group_duplicates(hd_rows, max_distance)
    for r, d in zip(hd_rows, decisions):
        if d["duplicate_of"] is None:
            continue
        kept = hd_rows[d["duplicate_of"]]
        r["fate"] = "duplicate"
        r["duplicate_of"] = kept["input"]
        r["distance"] = d["distance"]
        r["reason"] = (f"exact duplicate of {kept['input']}" if d["exact"]
                       else f"near duplicate of {kept['input']} (perceptual hash distance {d['distance']})")


# --------------------------------------------------------------------------- stage 5


def _detect(rows, work, spec, rule, params, workers, scheduler, progress, stats) -> None:
    dkey = detect.detector_key(spec, params["imgsz"], params["record_score"])
    pkey = scan.params_key(params["min_side"], params["quality"])
    cache = work / "detect" / f"{dkey}-{pkey}"
    todo = [r for r in rows if r["fate"] is None]
    found: dict[str, list[dict]] = {}
    missing = []
    for r in todo:
        cp = cache / r["digest"][:2] / f"{r['digest']}.json"
        try:
            found[r["digest"]] = json.loads(cp.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            missing.append(r)
    b = params["batch"]
    batches = [missing[i:i + b] for i in range(0, len(missing), b)]
    units = [{"detector": spec, "paths": [str(work / r["blob"]) for r in chunk], "imgsz": params["imgsz"],
              "floor": params["record_score"], "device": params["device"]} for chunk in batches]
    results = run_units(detect.detect_batch, units, workers=workers, scheduler=scheduler, desc="detect", progress=progress)
    failed: dict[str, str] = {}
    for chunk, res in zip(batches, results):
        for k, r in enumerate(chunk):
            if not res.ok:
                failed[r["digest"]] = f"detector failed: {res.error}"
                continue
            found[r["digest"]] = res.value[k]
            write_text_atomic(cache / r["digest"][:2] / f"{r['digest']}.json", dumps(res.value[k]) + "\n")
    stats["detected"] = len(missing)
    stats["detected_from_cache"] = len(todo) - len(missing)
    for r in todo:
        if r["digest"] in failed:
            r["fate"], r["reason"] = "failed", failed[r["digest"]]
            continue
        dets = [detect.Detection.from_dict(d) for d in found[r["digest"]]]
        r["detections"] = [d.to_dict() for d in dets[:MAX_DETECTIONS]]
        hit = detect.deciding_detection(dets, rule)
        if hit is not None:
            r["fate"] = "salient"
            r["borderline"] = detect.is_borderline(hit, rule)
            r["reason"] = (f"{hit.name} (class {hit.cls}) with score {hit.score:.2f} "
                           f"covering {hit.area:.1%} of the image")


# --------------------------------------------------------------------------- stage 6


def _store_verdicts(work: Path, rows: list[dict], verdicts: dict | None, source: PathLike | None) -> dict:
    """Check new verdicts against the build and store them; or load the stored ones."""
    path = work / VERDICTS_FILE
    reviewable = {r["digest"] for r in rows if r["fate"] in ("kept", "salient")}
    if verdicts is None:
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        # images no longer in the build (removed inputs) lose their verdicts
        return {k: v for k, v in stored.items() if k in reviewable}
    unknown = sorted(set(verdicts) - reviewable)
    if unknown:
        raise ValueError(f"{source}: {len(unknown)} verdict(s) name images that are not kept or rejected as "
                         f"salient in this build (first: {unknown[0]}); is it the review file of this output folder?")
    write_text_atomic(path, dumps(verdicts, indent=1) + "\n")
    return verdicts


def _apply_only(out: Path, review_file: PathLike, workers, scheduler, progress) -> BuildResult:
    state_path = out / WORK_DIR / STATE_FILE
    if not state_path.is_file():
        raise FileNotFoundError(f"{out}: no finished build to apply a review to ({state_path} is missing); "
                                "run build-bg SRC... --out OUT first")
    state = json.loads(state_path.read_text(encoding="utf-8"))
    params, rows = state["params"], state["rows"]
    verdicts = _store_verdicts(out / WORK_DIR, rows, review.read_verdicts(review_file), review_file)
    record = RunRecord.start(out, "build-bg", dict(params, apply_review=str(review_file)), params["seed"])
    return _finish(out, rows, params, verdicts, record, {"examined": 0, "detected": 0})


# --------------------------------------------------------------------------- stages 7-8


def _apply_verdicts(rows: list[dict], verdicts: dict) -> None:
    for r in rows:
        v = verdicts.get(r.get("digest")) if r["fate"] in ("kept", "salient") else None
        if not v:
            continue
        note = f": {v['note']}" if v.get("note") else ""
        r["verdict"], r["note"] = v["verdict"], v.get("note", "")
        if v["verdict"] == "keep" and r["fate"] == "salient":
            r["fate"], r["reason"] = "kept", f"kept by reviewer{note} (detector: {r['reason']})"
        elif v["verdict"] == "reject":
            was = f" (detector: {r['reason']})" if r["fate"] == "salient" else ""
            r["fate"], r["reason"] = "rejected_review", f"rejected by reviewer{note}{was}"


def _split(rows: list[dict], params: dict) -> None:
    """Assign kept rows to train/testval by similarity groups; name them."""
    hd_rows = [r for r in rows if r.get("phashes")]
    i, j, _ = dedup.near_pairs_sets([[int(h, 16) for h in r["phashes"]] for r in hd_rows], params["group_distance"])
    labels = dedup.components(len(hd_rows), i, j)
    members: dict[int, list[dict]] = {}
    for r, lab in zip(hd_rows, labels):
        if r["fate"] == "kept":
            members.setdefault(int(lab), []).append(r)
    sizes, key_of = {}, {}
    for group in members.values():
        key = min(r["digest"] for r in group)
        sizes[key] = len(group)
        for r in group:
            key_of[id(r)] = key
    sides = split.split_groups(sizes, params["test_fraction"], params["seed"])
    names = split.assign_names([r["digest"] for r in rows if r["fate"] == "kept"])
    for r in rows:
        if r["fate"] == "kept":
            r["group"] = key_of[id(r)][:16]
            r["split"] = sides[key_of[id(r)]]
            r["name"] = names[r["digest"]]
            r["output"] = f"{r['split']}/{r['name']}"
        else:
            for k in ("group", "split", "name", "output"):
                r.pop(k, None)


def _place(blob: Path, target: Path) -> bool:
    """Put the cached image at ``target`` (hard link, else copy), atomically. True if written."""
    if target.exists():
        try:
            if os.path.samefile(blob, target) or filecmp.cmp(blob, target, shallow=False):
                return False
        except OSError:
            pass
    with atomic_path(target) as tmp:
        tmp.unlink()
        try:
            os.link(blob, tmp)
        except OSError:  # another file system, or no hard links: copy
            shutil.copyfile(blob, tmp)
    return True


def _materialise(out: Path, rows: list[dict]) -> int:
    """Make train/ and testval/ hold exactly the kept images; returns files written."""
    work = out / WORK_DIR
    # blob paths may come from the stored state (--apply-review): data, checked
    wanted = {r["output"]: safe_join(work, r["blob"]) for r in rows if r["fate"] == "kept"}
    written = 0
    for side in split.SPLITS:
        folder = out / side
        folder.mkdir(parents=True, exist_ok=True)
        for f in folder.iterdir():
            rel = f"{side}/{f.name}"
            # our own images that are no longer wanted, and leftovers of a killed run
            if (rel not in wanted and _OUTPUT_NAME.match(f.name)) or is_partial_file(f):
                f.unlink()
    for rel, blob in sorted(wanted.items()):
        written += _place(blob, out / rel)
    return written


def _finish(out: Path, rows: list[dict], params: dict, verdicts: dict, record: RunRecord, stats: dict) -> BuildResult:
    rows = [dict(r) for r in rows]
    _apply_verdicts(rows, verdicts)
    _split(rows, params)
    stats["written"] = _materialise(out, rows)
    entries = [
        review.entry(r, f"{WORK_DIR}/thumbs/{r['digest'][:2]}/{r['digest']}")
        for r in rows
        if r["fate"] == "kept" or (r["fate"] == "salient" and r.get("borderline")) or r.get("verdict")
    ]
    review.write_review_json(out / REVIEW_JSON, entries)
    review.write_review_html(out / REVIEW_HTML, entries, title=f"build-bg review: {out.name}")
    manifest_rows = [{k: v for k, v in r.items() if k != "blob"} for r in rows]
    write_manifest(out / MANIFEST_FILE, manifest_rows)
    fates = count_fates(manifest_rows)
    summary = dict(stats, inputs=len(rows), fates=fates,
                   train=sum(1 for r in rows if r.get("split") == "train"),
                   testval=sum(1 for r in rows if r.get("split") == "testval"),
                   reviewed=sum(1 for r in rows if r.get("verdict")))
    record.finish(summary)
    return BuildResult(out=out, fates=fates, summary=summary)
