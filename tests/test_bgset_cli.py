"""``rssn build-bg`` on the bundled sample photos, through the command line."""
from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from cli.main import main
from rssn.io import image_size
from rssn.records import read_manifest, read_run


def test_build_bg_on_sample_photos(sample_data, tmp_path):
    out = tmp_path / "backgrounds"
    runner = CliRunner()
    args = ["build-bg", str(sample_data.photos), "--out", str(out), "--detector", "none", "--workers", "2"]
    res = runner.invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "kept" in res.output and "manifest" in res.output
    rows = {Path(r["input"]).name: r for r in read_manifest(out / "manifest.jsonl")}
    assert set(rows) == {p.name for p in sample_data.photos.iterdir()}
    photos = sorted(n for n in rows if n.startswith("photo_"))
    assert rows["small_below_hd.jpg"]["fate"] == "too_small"
    # photo_00, its byte copy and its near duplicate are one group: one kept, two duplicates
    family = ["photo_00.jpg", "copy_of_photo_00.jpg", "near_dup_photo_00.jpg"]
    assert sorted(rows[n]["fate"] for n in family) == ["duplicate", "duplicate", "kept"]
    keeper = next(n for n in family if rows[n]["fate"] == "kept")
    assert all(rows[n]["duplicate_of"] == rows[keeper]["input"] for n in family if n != keeper)
    assert all(rows[n]["fate"] == "kept" for n in photos if n != "photo_00.jpg")
    kept = [r for r in rows.values() if r["fate"] == "kept"]
    assert len(kept) == len(photos)
    for r in kept:
        assert min(image_size(out / r["output"])) == 1080
    train = {p.name for p in (out / "train").iterdir()}
    testval = {p.name for p in (out / "testval").iterdir()}
    assert not train & testval and len(train) + len(testval) == len(kept)
    run = read_run(out)
    assert run["command"] == "build-bg" and run["status"] == "complete"
    assert run["summary"]["fates"] == {"duplicate": 2, "kept": len(photos), "too_small": 1}
    assert json.loads((out / "review.json").read_text())["format"] == "rssn-bg-review"
    # the same command again: nothing to do
    again = runner.invoke(main, args)
    assert again.exit_code == 0, again.output
    assert read_run(out)["summary"]["examined"] == 0 and "written now: 0" in again.output


def test_build_bg_usage_errors(tmp_path):
    runner = CliRunner()
    src = tmp_path / "src"
    src.mkdir()
    res = runner.invoke(main, ["build-bg", str(src), "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "--detector" in res.output
    res = runner.invoke(main, ["build-bg", str(src), "--out", str(tmp_path / "o"), "--detector", str(tmp_path / "w.pt")])
    assert res.exit_code == 1 and "w.pt: detector weights not found" in res.output
    assert not (tmp_path / "o").exists()
    res = runner.invoke(main, ["build-bg", "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "SOURCE" in res.output
    res = runner.invoke(main, ["build-bg", str(src), "--detector", "none"])
    assert res.exit_code != 0 and "--out" in res.output
    res = runner.invoke(main, ["build-bg", str(src), "--out", str(tmp_path / "o"), "--detector", "none",
                               "--max-distance", "12", "--group-distance", "8"])
    assert res.exit_code == 1 and "group_distance" in res.output
    res = runner.invoke(main, ["build-bg", "--help"])
    assert res.exit_code == 0 and "--apply-review" in res.output and "--min-side" in res.output
