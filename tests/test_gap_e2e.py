"""End to end on the bundled sample data: prepare, compose (plain and RSSN routes from
the same foregrounds), then `rssn gap` of each against the sample's real photos."""
from __future__ import annotations

import json

from click.testing import CliRunner

from rssn.io import read_rgb
from rssn.records import read_manifest

STATS = ("noise", "sharpness", "detail", "luminance", "contrast", "saturation")


def _invoke(args: list[str]) -> str:
    from cli.main import main

    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, f"rssn {' '.join(args)}\n{res.output}"
    return res.output


def test_plain_and_rssn_composites_scored_against_real_photos(sample_data, tmp_path, record_property):
    prepared = tmp_path / "prepared"
    _invoke(["prepare", str(sample_data.am2k), "--out", str(prepared)])
    reports = {}
    for route in ("plain", "rssn"):
        shards = tmp_path / f"shards-{route}"
        # A small BM3D size keeps the RSSN route's denoising quick on the test machine.
        _invoke(["compose", "--matting", str(prepared), "--backgrounds", str(sample_data.photos), "--out", str(shards),
                 "--route", route, "--per-fg", "2", "--denoise-profile", "fast", "--denoise-max-side", "256"])
        out = tmp_path / f"gap-{route}"
        text = _invoke(["gap", str(shards), "--reference", str(sample_data.am2k), "--out", str(out)])
        assert "INPUT:" in text and "REAL:" in text
        for name in ("run.json", "manifest.jsonl", "gap.json", "report.md", "plots/overview.png",
                     *(f"plots/{s}.png" for s in STATS)):
            assert (out / name).is_file(), (route, name)
        assert read_rgb(out / "plots" / "overview.png").ndim == 3
        report = json.loads((out / "gap.json").read_text())
        # Every composite of the shards was read and scored against every real photo.
        index = json.loads((shards / "index.json").read_text())
        assert report["input"]["kind"] == "shards"
        assert report["input"]["measured"] + report["input"]["incomplete"] == index["samples"] == 8
        assert report["reference"]["measured"] == 6
        routes = {r.get("route") for r in read_manifest(out / "manifest.jsonl") if r["set"] == "input"}
        assert routes == {route}
        for stat in STATS:
            c = report["statistics"][stat]
            assert c["verdict"] in ("close", "different", "far") and c["wasserstein"] >= 0
        reports[route] = report
    # Which route is closer to the real photos is measured here, not asserted.
    means = {r: reports[r]["overall"]["mean_normalised"] for r in reports}
    closer = min(means, key=means.get)
    per_stat = {s: {r: round(reports[r]["statistics"][s]["normalised"], 2) for r in reports} for s in STATS}
    print(f"\nmean distance / real spread: {means}; closer: {closer}; per statistic: {per_stat}")
    record_property("gap_closer_route", closer)
    record_property("gap_mean_normalised", means)
