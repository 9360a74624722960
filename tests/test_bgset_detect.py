"""The salient-object stage with real ultralytics YOLO models built from a yaml (random weights)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rssn.bgset import build_background_set, detect
from rssn.io import write_image
from rssn.records import read_manifest, read_run

MIN = 64


def _photo(seed, w, h):
    import cv2

    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.random((6, 8, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(base * 220 + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    d = tmp_path_factory.mktemp("det-photos")
    for k in range(5):
        w, h = (96, 64) if k % 2 else (64, 90)
        write_image(d / f"p{k}.jpg", _photo(k + 100, w, h))
    return d


@pytest.fixture(scope="module")
def person_everywhere(tmp_path_factory) -> Path:
    """A YOLO net from the bundled yaml whose class scores are fixed: 'person'
    (class 0) at sigmoid(2) = 0.881 everywhere, every other class near 0. Saved as
    .pt, it exercises the --detector PATH route."""
    import torch
    from ultralytics import YOLO

    torch.manual_seed(0)
    model = YOLO("yolov8n.yaml")
    head = model.model.model[-1]
    for branch in head.cv3:             # one classification branch per stride
        branch[-1].weight.data.zero_()  # logits = bias, whatever the image
        bias = branch[-1].bias.data
        bias[:] = -20.0
        bias[0] = 2.0
    model.model.names = {i: f"class{i}" for i in range(head.nc)} | {0: "person"}
    path = tmp_path_factory.mktemp("weights") / "person_everywhere.pt"
    model.save(str(path))
    return path


def test_random_yaml_model_runs_and_keeps(photos, tmp_path):
    out = tmp_path / "out"
    res = build_background_set([photos], out, detector="yolov8n.yaml", min_side=MIN, imgsz=64, batch=2)
    rows = read_manifest(out / "manifest.jsonl")
    assert res.summary["detected"] == 5
    # untrained nets score far below any threshold: nothing rejected, all recorded
    assert res.fates == {"kept": 5}
    assert all("detections" in r for r in rows)
    run = read_run(out)
    assert run["params"]["detector"] == "yolov8n.yaml"


def test_saved_detector_rejects_and_records(photos, person_everywhere, tmp_path):
    out = tmp_path / "out"
    res = build_background_set([photos], out, detector=str(person_everywhere), min_side=MIN, imgsz=64,
                               batch=4, min_area=0.0, review_score=0.5)
    assert res.fates == {"salient": 5}
    for r in read_manifest(out / "manifest.jsonl"):
        top = r["detections"][0]
        assert top["name"] == "person" and top["class"] == 0
        assert top["score"] == pytest.approx(1 / (1 + np.exp(-2.0)), abs=1e-4)
        x0, y0, x1, y1 = top["box"]
        assert 0 <= x0 <= x1 <= 1 and 0 <= y0 <= y1 <= 1
        assert top["area"] == pytest.approx((x1 - x0) * (y1 - y0), abs=2e-4)
        assert r["reason"].startswith("person (class 0) with score")
        assert r["borderline"] is (top["area"] < 0.15)   # score 0.881 >= review 0.5
    # a rerun reads detections from the cache
    again = build_background_set([photos], out, detector=str(person_everywhere), min_side=MIN, imgsz=64,
                                 batch=4, min_area=0.0, review_score=0.5)
    assert again.summary["detected"] == 0 and again.summary["detected_from_cache"] == 5
    assert again.fates == res.fates


def test_class_set_and_confidence_threshold(photos, person_everywhere, tmp_path):
    out = tmp_path / "out"
    spec = str(person_everywhere)
    only_dogs = build_background_set([photos], out, detector=spec, min_side=MIN, imgsz=64, classes="dog", min_area=0.0)
    assert only_dogs.fates == {"kept": 5}
    by_id = build_background_set([photos], out, detector=spec, min_side=MIN, imgsz=64, classes="0", min_area=0.0)
    assert by_id.fates == {"salient": 5} and by_id.summary["detected"] == 0   # thresholds need no new run
    # the confidence threshold either side of the fixed score 0.881
    above = build_background_set([photos], out, detector=spec, min_side=MIN, imgsz=64, min_area=0.0, min_score=0.9)
    assert above.fates == {"kept": 5}
    below = build_background_set([photos], out, detector=spec, min_side=MIN, imgsz=64, min_area=0.0, min_score=0.85)
    assert below.fates == {"salient": 5}
    # detections under the recording floor are not kept at all
    floor = build_background_set([photos], out, detector=spec, min_side=MIN, imgsz=64, record_score=0.89,
                                 min_score=0.9)
    assert floor.summary["detected"] == 5
    assert all(r["detections"] == [] for r in read_manifest(out / "manifest.jsonl"))


def test_borderline_rejections_reviewed_and_kept(photos, person_everywhere, tmp_path):
    out = tmp_path / "out"
    spec = str(person_everywhere)
    # score 0.881 is below the review threshold 0.9: every rejection is borderline
    build_background_set([photos], out, detector=spec, min_side=MIN, imgsz=64, min_area=0.0, review_score=0.9)
    doc = json.loads((out / "review.json").read_text())
    assert len(doc["images"]) == 5 and {e["decision"] for e in doc["images"]} == {"salient"}
    page = (out / "review.html").read_text()
    for e in doc["images"]:
        assert e["thumb"] in page and (out / e["thumb"]).is_file()
    doc["images"][0]["verdict"] = "keep"
    doc["images"][0]["note"] = "a statue, not a person"
    (out / "review.json").write_text(json.dumps(doc))
    res = build_background_set([], None, apply_review=out / "review.json")
    assert res.fates == {"kept": 1, "salient": 4}
    assert res.summary["train"] + res.summary["testval"] == 1
    row = next(r for r in read_manifest(out / "manifest.jsonl") if r["fate"] == "kept")
    assert row["verdict"] == "keep" and "statue" in row["reason"] and "person" in row["reason"]
    assert (out / row["output"]).is_file()


def test_missing_weights_error_before_work(photos, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError) as err:
        build_background_set([photos], out, detector=str(tmp_path / "yolov8x.pt"), min_side=MIN)
    assert "yolov8x.pt" in str(err.value) and "nothing is downloaded" in str(err.value)
    assert not out.exists()
    with pytest.raises(FileNotFoundError):
        detect.resolve_detector("no_such_model.yaml")


def test_detections_of_an_image_do_not_depend_on_its_batch(tmp_path):
    """An image alone, or batched with images of other shapes, gives the same
    detections: --batch and what a resumed run redoes change nothing."""
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    write_image(a, _photo(1, 200, 120))
    write_image(b, _photo(2, 120, 190))

    def run(paths):
        unit = {"detector": "yolov8n.yaml", "paths": [str(p) for p in paths], "imgsz": 128, "floor": 0.0,
                "device": "cpu"}
        return detect.detect_batch(unit)

    alone = run([a])[0]
    assert len(alone) > 10  # a random net with no floor: many weak boxes to compare
    assert run([a, b])[0] == alone
    assert run([b, a])[1] == alone
