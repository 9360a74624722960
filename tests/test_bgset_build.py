"""build_background_set end to end on small generated photos (min side 96)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from rssn.bgset import build_background_set
from rssn.io import image_size, read_rgb, write_image
from rssn.records import read_manifest, read_run

MIN = 96


def photo(seed: int, w: int, h: int) -> np.ndarray:
    """A distinct smooth picture with fine texture (far apart in perceptual hash)."""
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.random((6, 8, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    img = base * 220 + rng.normal(0, 6, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Photos around the threshold, both orientations, duplicates and broken files."""
    d = tmp_path_factory.mktemp("photos")
    write_image(d / "land_above.jpg", photo(1, 200, 120))    # landscape, above
    write_image(d / "port_above.png", photo(2, 110, 170))    # portrait, above (PNG)
    write_image(d / "at_threshold.jpg", photo(3, 150, 96))   # exactly at the threshold
    write_image(d / "sub" / "square.jpg", photo(4, 130, 130))  # found recursively
    write_image(d / "below.jpg", photo(5, 160, 95))          # one pixel short
    write_image(d / "below_port.jpg", photo(6, 80, 200))
    for k in range(7, 15):                                   # more distinct photos for the split
        write_image(d / f"extra_{k:02d}.jpg", photo(k, 140 + k, 100 + k))
    src = photo(20, 180, 130)
    write_image(d / "orig.png", src)
    shutil.copyfile(d / "orig.png", d / "orig_bytecopy.png")
    write_image(d / "orig_lowq.jpg", src, quality=30)
    write_image(d / "orig_resized.jpg", cv2.resize(src, (144, 104), interpolation=cv2.INTER_AREA))
    dy, dx = int(130 * 0.04), int(180 * 0.04)
    write_image(d / "orig_cropped.jpg", np.ascontiguousarray(src[dy:-dy, dx:-dx]))
    (d / "not_an_image.jpg").write_bytes(b"this is text, not a JPEG\n")
    good = (d / "land_above.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (d / "empty.png").write_bytes(b"")
    return d


def by_name(rows):
    return {Path(r["input"]).name: r for r in rows}


@pytest.fixture(scope="module")
def built(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("bg") / "out"
    res = build_background_set([photos], out, detector="none", min_side=MIN, seed=0)
    return out, res


def test_every_input_has_one_fate(built, photos):
    out, res = built
    rows = read_manifest(out / "manifest.jsonl")
    inputs = sorted(str(p) for p in photos.rglob("*") if p.is_file())
    assert sorted(r["input"] for r in rows) == inputs
    m = by_name(rows)
    for name in ("land_above.jpg", "port_above.png", "at_threshold.jpg", "square.jpg", "orig.png"):
        assert m[name]["fate"] == "kept", m[name]
    assert m["below.jpg"]["fate"] == "too_small" and "95 px is below 96 px" in m["below.jpg"]["reason"]
    assert m["below_port.jpg"]["fate"] == "too_small"
    for name in ("not_an_image.jpg", "truncated.jpg", "empty.png"):
        assert m[name]["fate"] == "unreadable" and m[name]["reason"], m[name]
    assert "truncated" in m["truncated.jpg"]["reason"]
    run = read_run(out)
    assert run["status"] == "complete"
    assert run["summary"]["fates"] == res.fates
    assert sum(res.fates.values()) == len(inputs)


def test_duplicates_found_and_keep_rule(built):
    out, _ = built
    m = by_name(read_manifest(out / "manifest.jsonl"))
    # orig.png is the highest resolution of its group; the byte copy ties on size and loses on name
    for name in ("orig_bytecopy.png", "orig_lowq.jpg", "orig_resized.jpg", "orig_cropped.jpg"):
        assert m[name]["fate"] == "duplicate", m[name]
        assert m[name]["duplicate_of"] == m["orig.png"]["input"]
    assert m["orig_bytecopy.png"]["reason"].startswith("exact duplicate of")
    assert m["orig_bytecopy.png"]["distance"] == 0
    for name in ("orig_lowq.jpg", "orig_resized.jpg", "orig_cropped.jpg"):
        assert m[name]["distance"] <= 4, m[name]
    assert m["orig_cropped.jpg"]["reason"].startswith("near duplicate of")
    # distinct photos are not merged
    assert sum(1 for r in m.values() if r["fate"] == "duplicate") == 4


def test_kept_images_have_min_side_and_aspect(built):
    out, _ = built
    rows = [r for r in read_manifest(out / "manifest.jsonl") if r["fate"] == "kept"]
    assert rows
    for r in rows:
        path = out / r["output"]
        w, h = image_size(path)
        assert min(w, h) == MIN
        assert (w, h) == (r["out_width"], r["out_height"])
        exact_long = max(r["width"], r["height"]) * MIN / min(r["width"], r["height"])
        assert abs(max(w, h) - exact_long) <= 1.0
        assert (w > h) == (r["width"] > r["height"])          # orientation kept
        assert path.name.startswith("h_") and path.name == f"h_{r['digest'][:8]}.jpg"
        assert read_rgb(path).shape == (h, w, 3)


def test_split_disjoint_and_complete(built):
    out, res = built
    train = {p.name for p in (out / "train").iterdir()}
    testval = {p.name for p in (out / "testval").iterdir()}
    assert not train & testval
    kept = [r for r in read_manifest(out / "manifest.jsonl") if r["fate"] == "kept"]
    assert len(train) + len(testval) == len(kept) == res.fates["kept"]
    assert len(testval) == round(0.25 * len(kept))
    # nothing of the work cache looks like an image to a folder scan
    from rssn.layouts import read_bg20k

    assert sorted(p.name for p in read_bg20k(out)) == sorted(train | testval)


def test_exif_orientation_applied(tmp_path):
    from PIL import Image

    src = tmp_path / "src"
    src.mkdir()
    img = Image.fromarray(photo(30, 160, 100))      # stored landscape ...
    exif = Image.Exif()
    exif[0x0112] = 6                                # ... shown rotated by 90 degrees: portrait
    img.save(src / "rotated.jpg", exif=exif.tobytes(), quality=95)
    out = tmp_path / "out"
    build_background_set([src], out, detector="none", min_side=MIN)
    row = read_manifest(out / "manifest.jsonl")[0]
    assert (row["width"], row["height"]) == (100, 160) and row["fate"] == "kept"
    assert image_size(out / row["output"]) == (96, 154)   # 160 * 96 / 100 = 153.6


def test_near_duplicate_groups_do_not_straddle(photos, tmp_path):
    # with the dedup distance at 0 the near copies are kept, but the group
    # distance still ties them to one side of the split, whatever the seed
    out = tmp_path / "out"
    family = ["orig.png", "orig_lowq.jpg", "orig_resized.jpg", "orig_cropped.jpg"]

    def sides(seed, group_distance):
        build_background_set([photos], out, detector="none", min_side=MIN, max_distance=0,
                             group_distance=group_distance, test_fraction=0.5, seed=seed)
        m = by_name(read_manifest(out / "manifest.jsonl"))
        assert m["orig_bytecopy.png"]["fate"] == "duplicate"       # exact copies always go
        kept = [n for n in family if m[n]["fate"] == "kept"]
        assert {"orig.png", "orig_cropped.jpg"} <= set(kept)
        others = [r for r in m.values() if r["fate"] == "kept" and Path(r["input"]).name not in family]
        assert len({r["group"] for r in others}) == len(others)   # unrelated photos: groups of one
        return {m[n]["split"] for n in kept}, {m[n]["group"] for n in kept}

    for seed in range(8):
        split_sides, groups = sides(seed, 10)
        assert len(split_sides) == 1 and len(groups) == 1
    # the control: without grouping the copies do land on both sides for some seed
    assert any(len(sides(seed, 0)[0]) == 2 for seed in range(8))


def _mtimes(out):
    return {p: p.stat().st_mtime_ns for side in ("train", "testval") for p in (out / side).iterdir()}


def test_rerun_does_no_rework(photos, tmp_path):
    out = tmp_path / "out"
    first = build_background_set([photos], out, detector="none", min_side=MIN, workers=1)
    before = _mtimes(out)
    manifest = (out / "manifest.jsonl").read_text()
    assert first.summary["examined"] == len(list(p for p in photos.rglob("*") if p.is_file()))
    second = build_background_set([photos], out, detector="none", min_side=MIN, workers=1)
    assert second.summary["examined"] == 0 and second.summary["written"] == 0
    assert _mtimes(out) == before
    assert (out / "manifest.jsonl").read_text() == manifest
    # a killed run: a cached record lost, a half-written output left behind
    rows = read_manifest(out / "manifest.jsonl")
    kept = next(r for r in rows if r["fate"] == "kept")
    (out / kept["output"]).unlink()
    partial = out / "train" / ".h_0000abcd.jpg.x1y2.tmp"
    partial.write_bytes(b"half")
    records = sorted((out / ".work" / "inputs").rglob("*.json"))
    records[0].unlink()
    third = build_background_set([photos], out, detector="none", min_side=MIN, workers=1)
    assert third.summary["examined"] == 1 and third.summary["written"] == 1
    assert not partial.exists()
    assert (out / "manifest.jsonl").read_text() == manifest


def test_changed_parameters_redo_work(photos, tmp_path):
    out = tmp_path / "out"
    build_background_set([photos], out, detector="none", min_side=MIN)
    res = build_background_set([photos], out, detector="none", min_side=100)
    assert res.summary["examined"] > 0
    m = by_name(read_manifest(out / "manifest.jsonl"))
    assert m["at_threshold.jpg"]["fate"] == "too_small"     # 96 < 100 now
    for side in ("train", "testval"):
        for p in (out / side).iterdir():
            assert min(image_size(p)) == 100                # stale outputs removed
    # the cache holds only what this build uses: the min-side 96 images are gone
    hd_rows = [r for r in m.values() if r.get("out_width")]
    blobs = sorted(p.name for p in (out / ".work" / "resized").rglob("*") if p.is_file())
    assert blobs == sorted({f"{r['digest']}-s100-q95" for r in hd_rows})
    thumbs = {p.name for p in (out / ".work" / "thumbs").rglob("*") if p.is_file()}
    assert thumbs == {r["digest"] for r in hd_rows}
    assert res.summary["pruned"] > 0
    again = build_background_set([photos], out, detector="none", min_side=100)
    assert again.summary["examined"] == 0 and again.summary["pruned"] == 0


def test_unexpected_worker_errors_fail_one_input_and_are_retried(photos, tmp_path, monkeypatch):
    """An error that is not a bad image (here: raised inside the resize of one photo,
    then inside one detector batch) gives that input the fate ``failed`` with the
    error; the run completes, and the next run retries exactly those inputs."""
    from rssn.bgset import detect, hd

    out = tmp_path / "out"
    real_resize = hd.resize_to_min_side

    def resize_failing_on_square(rgb, min_side):
        if rgb.shape[:2] == (130, 130):                      # sub/square.jpg
            raise RuntimeError("simulated failure")
        return real_resize(rgb, min_side)

    monkeypatch.setattr(hd, "resize_to_min_side", resize_failing_on_square)
    res = build_background_set([photos], out, detector="none", min_side=MIN)
    m = by_name(read_manifest(out / "manifest.jsonl"))
    assert m["square.jpg"]["fate"] == "failed" and "RuntimeError: simulated failure" in m["square.jpg"]["reason"]
    assert m["land_above.jpg"]["fate"] == "kept" and res.fates["failed"] == 1
    assert read_run(out)["status"] == "complete"
    monkeypatch.setattr(hd, "resize_to_min_side", real_resize)
    res = build_background_set([photos], out, detector="none", min_side=MIN)
    assert res.summary["examined"] == 1 and "failed" not in res.fates
    assert by_name(read_manifest(out / "manifest.jsonl"))["square.jpg"]["fate"] == "kept"

    # The detector stage: a batch whose unit raises fails its images only. The
    # detector here is a stand-in for the model (the real one: test_bgset_detect.py).
    def detector(fail: bool):
        def detect_batch(unit):
            if fail and any(image_size(p) == (160, 96) for p in unit["paths"]):   # land_above.jpg
                raise RuntimeError("detector crashed")
            return [[] for _ in unit["paths"]]
        return detect_batch

    kept = res.fates["kept"]
    monkeypatch.setattr(detect, "detect_batch", detector(fail=True))
    res = build_background_set([photos], out, detector="yolov8n.yaml", min_side=MIN, batch=1)
    row = by_name(read_manifest(out / "manifest.jsonl"))["land_above.jpg"]
    assert row["fate"] == "failed" and "detector failed: RuntimeError: detector crashed" in row["reason"]
    assert (res.fates["kept"], res.fates["failed"]) == (kept - 1, 1)
    monkeypatch.setattr(detect, "detect_batch", detector(fail=False))
    res = build_background_set([photos], out, detector="yolov8n.yaml", min_side=MIN, batch=1)
    assert res.summary["detected"] == 1 and res.summary["detected_from_cache"] == kept - 1
    assert res.fates["kept"] == kept and "failed" not in res.fates


def test_apply_review(photos, tmp_path):
    out = tmp_path / "out"
    build_background_set([photos], out, detector="none", min_side=MIN, seed=0)
    doc = json.loads((out / "review.json").read_text())
    kept = [e for e in doc["images"] if e["decision"] == "kept"]
    assert len(kept) == read_run(out)["summary"]["fates"]["kept"]
    target = next(e for e in kept if Path(e["input"]).name == "land_above.jpg")
    target["verdict"], target["note"] = "reject", "a face in the clouds"
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(doc))
    res = build_background_set([], out, apply_review=edited)
    assert res.summary["examined"] == 0
    m = by_name(read_manifest(out / "manifest.jsonl"))
    row = m["land_above.jpg"]
    assert row["fate"] == "rejected_review" and "a face in the clouds" in row["reason"]
    assert not any((out / s / target["name"]).exists() for s in ("train", "testval"))
    assert res.fates["kept"] == len(kept) - 1
    # a plain rerun keeps the verdict, and review.json shows it
    again = build_background_set([photos], out, detector="none", min_side=MIN, seed=0)
    assert again.summary["examined"] == 0 and again.fates == res.fates
    assert by_name(read_manifest(out / "manifest.jsonl"))["land_above.jpg"]["fate"] == "rejected_review"
    shown = {e["id"]: e for e in json.loads((out / "review.json").read_text())["images"]}
    assert shown[target["id"]]["verdict"] == "reject"
    # verdicts naming images outside the build are refused, nothing changes
    doc["images"][0]["id"] = "f" * 64
    doc["images"][0]["verdict"] = "keep"
    edited.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="not kept or rejected as salient in this build"):
        build_background_set([], out, apply_review=edited)


def test_apply_review_needs_a_build(tmp_path):
    f = tmp_path / "review.json"
    f.write_text(json.dumps({"format": "rssn-bg-review", "version": 1, "images": []}))
    with pytest.raises(FileNotFoundError, match="no finished build"):
        build_background_set([], tmp_path / "nothing", apply_review=f)


def test_apply_review_refuses_stored_paths_leaving_the_cache(photos, tmp_path):
    from rssn.records import UnsafePathError

    out = tmp_path / "out"
    build_background_set([photos], out, detector="none", min_side=MIN)
    state_path = out / ".work" / "state.json"
    state = json.loads(state_path.read_text())
    row = next(r for r in state["rows"] if r["fate"] == "kept")
    row["blob"] = "../../../../etc/passwd"
    state_path.write_text(json.dumps(state))
    with pytest.raises(UnsafePathError, match="escapes"):
        build_background_set([], out, apply_review=out / "review.json")


def test_bad_options_fail_before_work(photos, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match="detector weights not found"):
        build_background_set([photos], out, detector=str(tmp_path / "yolo_missing.pt"), min_side=MIN)
    with pytest.raises(ValueError, match="group_distance"):
        build_background_set([photos], out, detector="none", max_distance=10, group_distance=5)
    with pytest.raises(FileNotFoundError, match="source does not exist"):
        build_background_set([tmp_path / "nope"], out, detector="none")
    assert not out.exists()


def test_output_inside_source_is_not_scanned(photos, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(photos, src)
    out = src / "bg"
    a = build_background_set([src], out, detector="none", min_side=MIN)
    b = build_background_set([src], out, detector="none", min_side=MIN)
    assert a.fates == b.fates and b.summary["examined"] == 0


def test_dask_scheduler_same_result(photos, tmp_path):
    from distributed import Client, LocalCluster

    local = build_background_set([photos], tmp_path / "a", detector="none", min_side=MIN)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        remote = build_background_set([photos], tmp_path / "b", detector="none", min_side=MIN, scheduler=client)
    strip = lambda p: [{k: v for k, v in r.items() if k != "input"} for r in read_manifest(p / "manifest.jsonl")]
    assert strip(tmp_path / "a") == strip(tmp_path / "b")
    assert remote.fates == local.fates


def test_killed_run_resumes(tmp_path):
    """SIGKILL the command mid-stage: no partial file is left where it counts, and the
    rerun examines only what the killed run did not finish."""
    import signal
    import subprocess
    import sys
    import time

    src = tmp_path / "src"
    n = 20
    for k in range(n):
        write_image(src / f"p{k:02d}.jpg", photo(200 + k, 960, 640))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "cli.main", "build-bg", str(src), "--out", str(out), "--detector", "none",
           "--min-side", "480"]
    env = dict(os.environ, RSSN_PROGRESS="0")
    proc = subprocess.Popen(cmd, env=env, cwd=Path(__file__).parents[1], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    records = out / ".work" / "inputs"
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if records.is_dir() and sum(1 for _ in records.rglob("*.json")) >= 2:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sum(1 for _ in records.rglob("*.json"))
    if done >= n:
        pytest.skip("the run finished before it could be killed")
    # every cached image that exists under its final name is complete
    for blob in (out / ".work" / "resized").rglob("*"):
        if blob.is_file() and not blob.name.endswith(".tmp"):
            assert read_rgb(blob).shape[:2] == (480, 720)
    assert read_run(out)["status"] == "running"
    res = build_background_set([src], out, detector="none", min_side=480)
    assert res.summary["examined"] == n - done
    assert res.fates == {"kept": n}
    assert read_run(out)["status"] == "complete"
