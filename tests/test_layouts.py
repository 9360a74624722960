"""rssn.layouts: every layout yields validated pairs; orphans and mismatches are
reported, never dropped silently."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rssn import layouts


def img(path: Path, w=16, h=12, mode="RGB", fill=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (h, w, 3) if mode == "RGB" else (h, w) if mode == "L" else (h, w, 4)
    Image.fromarray(np.full(shape, fill, np.uint8)).save(path)
    return path


def test_am2k_layout_with_problems(tmp_path):
    root = tmp_path / "am2k"
    for s in ("a", "b", "c"):
        img(root / "train" / "original" / f"m_{s}.jpg")
    img(root / "train" / "mask" / "m_a.png", mode="L")
    img(root / "train" / "mask" / "m_b.png", w=17, mode="L")  # size mismatch
    img(root / "train" / "mask" / "m_z.png", mode="L")  # orphan alpha
    (root / "train" / "original" / "m_c.jpg").unlink()
    img(root / "train" / "original" / "m_c.jpg")  # c has no mask -> orphan image
    img(root / "validation" / "original" / "m_v.jpg")
    img(root / "validation" / "mask" / "m_v.png", mode="L")
    img(root / "validation" / "trimap" / "m_v.png", mode="L")
    scan = layouts.read_layout(root)
    assert scan.layout == "am2k"
    ids = {(s.id, s.split) for s in scan.samples}
    assert ids == {("m_a", "train"), ("m_v", "validation")}
    v = next(s for s in scan.samples if s.id == "m_v")
    assert v.trimap and v.trimap.endswith("m_v.png") and (v.width, v.height) == (16, 12)
    reasons = {Path(p.path).name: p.reason for p in scan.problems}
    assert "size mismatch" in reasons["m_b.png"]
    assert "has no image" in reasons["m_z.png"]
    assert "has no alpha" in reasons["m_c.jpg"]
    # Every input file is accounted for: a sample or a problem.
    assert len(scan.samples) * 2 + 1 + len(scan.problems) == 8


def test_p3m_layout(tmp_path):
    root = tmp_path / "P3M-10k"
    img(root / "train" / "blurred_image" / "p_1.jpg")
    img(root / "train" / "mask" / "p_1.png", mode="L")
    for name, imdir in (("P3M-500-P", "blurred_image"), ("P3M-500-NP", "original_image")):
        img(root / "validation" / name / imdir / "p_2.jpg")
        img(root / "validation" / name / "mask" / "p_2.png", mode="L")
        img(root / "validation" / name / "trimap" / "p_2.png", mode="L")
    scan = layouts.read_layout(root)
    assert scan.layout == "p3m" and not scan.problems
    assert sorted(s.split for s in scan.samples) == ["P3M-500-NP", "P3M-500-P", "train"]


def test_generic_fg_alpha_and_rgba(tmp_path):
    g = tmp_path / "g"
    img(g / "images" / "x.png")
    img(g / "alphas" / "x.png", mode="L")
    assert [s.id for s in layouts.read_layout(g).samples] == ["x"]
    f = tmp_path / "f"
    img(f / "fg" / "y.png")
    img(f / "alpha" / "y.png", mode="L")
    scan = layouts.read_layout(f)
    assert scan.layout == "fg_alpha" and scan.samples[0].fg.endswith("y.png") and scan.samples[0].image is None
    r = tmp_path / "r"
    img(r / "cut.png", mode="RGBA")
    img(r / "flat.png")
    scan = layouts.read_layout(r)
    assert scan.layout == "rgba" and [s.id for s in scan.samples] == ["cut"]
    assert "no alpha channel" in scan.problems[0].reason


def test_unreadable_header_reported(tmp_path):
    root = tmp_path / "g"
    img(root / "images" / "ok.png")
    img(root / "alphas" / "ok.png", mode="L")
    (root / "images" / "bad.png").write_bytes(b"garbage")
    img(root / "alphas" / "bad.png", mode="L")
    scan = layouts.read_layout(root, "generic")
    assert [s.id for s in scan.samples] == ["ok"]
    assert scan.problems[0].path.endswith("bad.png") and "not a recognised image format" in scan.problems[0].reason


def test_unknown_layout_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(layouts.LayoutError, match="no known dataset layout"):
        layouts.read_layout(tmp_path / "empty")
    with pytest.raises(layouts.LayoutError, match="unknown layout"):
        layouts.read_layout(tmp_path, "coco")


def test_sample_data_reads_as_am2k(sample_data):
    scan = layouts.read_layout(sample_data.am2k)
    assert scan.layout == "am2k" and not scan.problems
    assert sum(s.split == "train" for s in scan.samples) == 4
    assert all(s.trimap for s in scan.samples if s.split == "validation")
    assert len(layouts.read_bg20k(sample_data.photos)) == 4 + 3
