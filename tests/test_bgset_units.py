"""build-bg stage functions on data: sizes, hashing index, keep rule, rejection rule, split, names, review file."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rssn.bgset import dedup, detect, hd, review, split
from rssn.bgset.detect import Detection, RejectRule


# --------------------------------------------------------------------------- hd


@pytest.mark.parametrize("w,h,min_side,expected", [
    (1920, 1080, 1080, (1920, 1080)),   # at the threshold: unchanged
    (3000, 2000, 1080, (1620, 1080)),   # landscape
    (2000, 3000, 1080, (1080, 1620)),   # portrait
    (1081, 1081, 1080, (1080, 1080)),   # square
    (4001, 2000, 1080, (2161, 1080)),   # 2160.54 rounds up
])
def test_target_size(w, h, min_side, expected):
    assert hd.target_size(w, h, min_side) == expected


@given(st.integers(64, 5000), st.integers(64, 5000), st.integers(16, 2000))
@settings(max_examples=200, deadline=None)
def test_target_size_keeps_aspect_within_a_pixel(w, h, min_side):
    tw, th = hd.target_size(w, h, min_side)
    assert min(tw, th) == min_side
    # the long side is the exact scaled length, rounded
    exact_long = max(w, h) * min_side / min(w, h)
    assert abs(max(tw, th) - exact_long) <= 0.5
    assert (tw >= th) == (w >= h) or w == h


def test_is_hd_threshold():
    assert not hd.is_hd(1920, 1079, 1080)
    assert hd.is_hd(1080, 1080, 1080)
    assert hd.is_hd(1080, 4000, 1080)
    assert not hd.is_hd(1079, 4000, 1080)


def test_resize_to_min_side_shape_and_area_mean():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    out = hd.resize_to_min_side(img, 100)
    assert out.shape == (100, 150, 3)
    # area interpolation at an integer factor is the mean of each 2x2 block
    blocks = img.reshape(100, 2, 150, 2, 3).astype(np.float64).mean(axis=(1, 3))
    assert np.abs(out.astype(np.float64) - blocks).max() <= 1.0
    assert hd.resize_to_min_side(img, 200) is img


# --------------------------------------------------------------------------- dedup index


def _brute(hashes, r):
    return {(i, j) for i, j in itertools.combinations(range(len(hashes)), 2) if dedup.hamming(hashes[i], hashes[j]) <= r}


@pytest.mark.parametrize("radius", [0, 3, 4, 7, 10, 13])
def test_near_pairs_matches_all_pairs(radius):
    rng = np.random.default_rng(radius)
    base = [int(x) for x in rng.integers(0, 2**63, 40, dtype=np.int64)]
    # near copies of each base hash: flip a few random bits
    hashes = []
    for b in base:
        hashes.append(b)
        for flips in (1, radius // 2, radius, radius + 1):
            h = b
            for bit in rng.choice(64, size=flips, replace=False):
                h ^= 1 << int(bit)
            hashes.append(h)
    i, j, d = dedup.near_pairs(hashes, radius)
    got = set(zip(i.tolist(), j.tolist()))
    assert got == _brute(hashes, radius)
    assert all(dedup.hamming(hashes[a], hashes[b]) == dist for a, b, dist in zip(i, j, d))


@given(st.lists(st.integers(0, 2**64 - 1), min_size=0, max_size=30), st.integers(0, 16))
@settings(max_examples=60, deadline=None)
def test_near_pairs_property(hashes, radius):
    i, j, _ = dedup.near_pairs(hashes, radius)
    assert set(zip(i.tolist(), j.tolist())) == _brute(hashes, radius)


def test_keep_rule_highest_resolution_then_name():
    items = [
        {"input": "b.jpg", "digest": "1", "phashes": ["0000000000000000"], "width": 2000, "height": 1500},
        {"input": "a.jpg", "digest": "2", "phashes": ["0000000000000001"], "width": 1920, "height": 1080},
        {"input": "c.jpg", "digest": "1", "phashes": ["0000000000000000"], "width": 2000, "height": 1500},
        {"input": "z.jpg", "digest": "3", "phashes": ["ffffffffffffffff"], "width": 100, "height": 100},
    ]
    out = dedup.group_duplicates(items, max_distance=4)
    assert out[0]["duplicate_of"] is None            # largest, and "b" < "c"
    assert out[1] == {"duplicate_of": 0, "exact": False, "distance": 1}
    assert out[2] == {"duplicate_of": 0, "exact": True, "distance": 0}
    assert out[3]["duplicate_of"] is None            # far from everything


def test_groups_are_transitive():
    # 0~1 and 1~2 within 3 bits, 0 and 2 are 6 apart: one group
    items = [{"input": f"{k}.jpg", "digest": str(k), "phashes": [f"{h:016x}"], "width": 10, "height": 10}
             for k, h in enumerate([0b0, 0b111, 0b111111])]
    out = dedup.group_duplicates(items, max_distance=3)
    assert [o["duplicate_of"] for o in out] == [None, 0, 0]
    assert out[2]["distance"] == 6


def test_near_pairs_sets_uses_closest_hashes():
    sets = [[0b0, 0xFF00], [0xFF0F], [0xF0F0F0F0F0F0F0F0], [0b1, 0b11]]
    i, j, d = dedup.near_pairs_sets(sets, 4)
    got = {(a, b): dist for a, b, dist in zip(i.tolist(), j.tolist(), d.tolist())}
    # image 0 and 3 share hashes one bit apart; 0 and 1 through 0xFF00 ~ 0xFF0F (4 bits)
    assert got == {(0, 1): 4, (0, 3): 1}
    assert all(dedup.set_distance(sets[a], sets[b]) == dist for (a, b), dist in got.items())


def test_crop_hashes_catch_cropped_copies():
    import cv2

    rng = np.random.default_rng(7)
    base = cv2.resize(rng.random((6, 8, 3)).astype(np.float32), (400, 300), interpolation=cv2.INTER_CUBIC)
    img = np.clip(base * 220 + rng.normal(0, 6, (300, 400, 3)), 0, 255).astype(np.uint8)
    cropped = np.ascontiguousarray(img[15:-15, 20:-20])   # 5 % a side
    plain = dedup.hamming(dedup.perceptual_hash(img), dedup.perceptual_hash(cropped))
    multi = dedup.set_distance(dedup.perceptual_hashes(img), dedup.perceptual_hashes(cropped))
    assert multi <= 4 < plain


def test_perceptual_hash_tolerates_reencoding_not_different_content():
    import cv2

    rng = np.random.default_rng(1)
    a = cv2.resize(rng.random((6, 8, 3)).astype(np.float32), (256, 192), interpolation=cv2.INTER_CUBIC)
    a = np.clip(a * 255, 0, 255).astype(np.uint8)
    b = cv2.resize(rng.random((6, 8, 3)).astype(np.float32), (256, 192), interpolation=cv2.INTER_CUBIC)
    b = np.clip(b * 255, 0, 255).astype(np.uint8)
    noisy = np.clip(a.astype(int) + rng.integers(-6, 7, a.shape), 0, 255).astype(np.uint8)
    assert dedup.hamming(dedup.perceptual_hash(a), dedup.perceptual_hash(noisy)) <= 4
    assert dedup.hamming(dedup.perceptual_hash(a), dedup.perceptual_hash(b)) > 12


# --------------------------------------------------------------------------- rejection rule


def _det(name="person", cls=0, score=0.9, area=0.3):
    return Detection(cls, name, score, area)


def test_rule_rejects_on_class_score_and_area():
    rule = RejectRule(frozenset({"person", "dog"}), min_score=0.5, min_area=0.05)
    assert detect.deciding_detection([_det()], rule) == _det()
    assert detect.deciding_detection([_det(score=0.49)], rule) is None          # below confidence
    assert detect.deciding_detection([_det(score=0.5)], rule) is not None       # at the threshold
    assert detect.deciding_detection([_det(area=0.049)], rule) is None          # too small a box
    assert detect.deciding_detection([_det(area=0.05)], rule) is not None
    assert detect.deciding_detection([_det("chair", 56)], rule) is None         # class not in the set
    assert detect.deciding_detection([], rule) is None


def test_rule_picks_strongest_and_matches_ids():
    rule = RejectRule(frozenset({"16"}), min_score=0.3, min_area=0.0)
    dets = [_det("dog", 16, 0.4, 0.5), _det("dog", 16, 0.8, 0.1), _det("person", 0, 0.99, 0.9)]
    assert detect.deciding_detection(dets, rule) == dets[1]
    everything = RejectRule(None, min_score=0.3, min_area=0.0)
    assert detect.deciding_detection(dets, everything) == dets[2]


def test_borderline():
    rule = RejectRule(min_score=0.5, min_area=0.05, review_score=0.7, review_area=0.15)
    assert detect.is_borderline(_det(score=0.6, area=0.5), rule)
    assert detect.is_borderline(_det(score=0.9, area=0.1), rule)
    assert not detect.is_borderline(_det(score=0.9, area=0.5), rule)


def test_rule_validates_thresholds_and_classes():
    with pytest.raises(ValueError, match="min_score"):
        RejectRule(min_score=1.5)
    assert detect.parse_classes("all") is None
    assert detect.parse_classes(" person, 3 ,") == frozenset({"person", "3"})
    assert detect.parse_classes(None) == frozenset(detect.DEFAULT_CLASSES)
    with pytest.raises(ValueError, match="empty"):
        detect.parse_classes(" , ")


def test_detection_round_trip():
    d = Detection(3, "motorcycle", 0.87654, 0.123456, (0.1, 0.2, 0.5, 0.6))
    back = Detection.from_dict(json.loads(json.dumps(d.to_dict())))
    assert (back.cls, back.name) == (3, "motorcycle")
    assert back.score == pytest.approx(0.8765) and back.area == pytest.approx(0.1235)


def test_resolve_detector(tmp_path):
    assert detect.resolve_detector("none") is None
    assert detect.resolve_detector("None") is None
    with pytest.raises(FileNotFoundError, match="missing.pt: detector weights not found"):
        detect.resolve_detector(str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="choose a detector"):
        detect.resolve_detector(None)
    assert detect.resolve_detector("yolov8n.yaml") == "yolov8n.yaml"   # bundled with ultralytics
    w = tmp_path / "w.pt"
    w.write_bytes(b"x")
    assert detect.resolve_detector(str(w)) == str(w)


# --------------------------------------------------------------------------- split and names


def test_split_fraction_and_determinism():
    sizes = {f"g{k:04d}": 1 for k in range(400)}
    a = split.split_groups(sizes, 0.25, seed=0)
    assert sum(v == "testval" for v in a.values()) == 100
    assert a == split.split_groups(dict(reversed(list(sizes.items()))), 0.25, seed=0)  # order-free
    b = split.split_groups(sizes, 0.25, seed=1)
    assert a != b


def test_split_keeps_groups_whole_and_is_stable():
    rng = np.random.default_rng(0)
    sizes = {f"g{k}": int(rng.integers(1, 4)) for k in range(200)}
    sides = split.split_groups(sizes, 0.25, seed=3)
    total = sum(sizes.values())
    test = sum(sizes[k] for k, v in sides.items() if v == "testval")
    assert abs(test - round(0.25 * total)) <= 1
    # removing one group moves at most one other group across the boundary
    smaller = dict(sizes)
    gone = next(iter(smaller))
    del smaller[gone]
    again = split.split_groups(smaller, 0.25, seed=3)
    assert sum(again[k] != sides[k] for k in again) <= 1
    with pytest.raises(ValueError):
        split.split_groups(sizes, 1.5, seed=0)


def test_assign_names_unique_on_prefix_collision():
    d1 = "abcdef01" + "1" * 56
    d2 = "abcdef01" + "2" * 56
    d3 = "00000000" + "3" * 56
    names = split.assign_names([d2, d1, d3, d1])
    assert names[d3] == "h_00000000.jpg"
    assert names[d1] == "h_abcdef01.jpg"          # first in sorted order keeps the short form
    assert names[d2] == "h_22222222.jpg"
    assert len(set(names.values())) == 3


# --------------------------------------------------------------------------- review file


def test_review_round_trip_and_escaping(tmp_path):
    row = {"digest": "ab" * 32, "input": "<script>alert(1)</script>.jpg", "name": "h_abababab.jpg",
           "fate": "salient", "reason": "person & <b>", "detections": [{"name": "per<son", "score": 0.6, "area": 0.2}]}
    e = review.entry(row, ".work/thumbs/ab/" + "ab" * 32)
    review.write_review_html(tmp_path / "r.html", [e])
    page = (tmp_path / "r.html").read_text()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.jpg" in page
    assert "per&lt;son" in page
    review.write_review_json(tmp_path / "r.json", [e])
    assert review.read_verdicts(tmp_path / "r.json") == {}
    doc = json.loads((tmp_path / "r.json").read_text())
    doc["images"][0]["verdict"] = "keep"
    doc["images"][0]["note"] = "a statue"
    (tmp_path / "r.json").write_text(json.dumps(doc))
    assert review.read_verdicts(tmp_path / "r.json") == {"ab" * 32: {"verdict": "keep", "note": "a statue"}}
    doc["images"][0]["verdict"] = "maybe"
    (tmp_path / "r.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="'maybe' is not"):
        review.read_verdicts(tmp_path / "r.json")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="not a build-bg review file"):
        review.read_verdicts(tmp_path / "bad.json")
