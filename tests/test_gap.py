"""rssn gap: inputs (shards, layouts, prepared sets), executor, resume, report files, CLI."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from rssn.gap import measure_gap
from rssn.gap.sources import detect_kind, open_source
from rssn.io import encode_image, read_alpha, read_rgb
from rssn.layouts import read_layout
from rssn.records import read_manifest, read_run

STATS = ("noise", "sharpness", "detail", "luminance", "contrast", "saturation")


def _blend(fg: np.ndarray, bg: np.ndarray, alpha8: np.ndarray) -> np.ndarray:
    a = alpha8.astype(np.float32)[..., None] / 255
    return np.clip(np.round(a * fg + (1 - a) * bg), 0, 255).astype(np.uint8)


def write_shards(sample_data, out: Path, *, damage: bool = True) -> list[str]:
    """Composite shards in the documented format (docs/formats.md): the truth
    foregrounds of the sample set over crops of its HD photos.

    With ``damage``: one composite that is not a JPEG, one sample without alpha,
    a shard listed in index.json but missing, and a shard name escaping the folder.
    Returns the keys of the good samples.
    """
    import webdataset as wds

    scan = read_layout(sample_data.am2k)
    photos = sorted(p for p in sample_data.photos.glob("photo_*.jpg"))
    out.mkdir(parents=True)
    good, entries = [], []
    per_shard = (len(scan.samples) + 1) // 2
    for s_idx in range(2):
        name = f"shard-{s_idx:06d}.tar"
        count = 0
        with wds.TarWriter(str(out / name)) as w:
            for i, s in enumerate(scan.samples[s_idx * per_shard:(s_idx + 1) * per_shard]):
                alpha = read_alpha(s.alpha)
                fg = read_rgb(sample_data.truth / "fg" / f"{s.id}.png")
                photo = read_rgb(photos[(i + s_idx) % len(photos)])
                bg = cv2.resize(photo[:600, :800], (s.width, s.height), interpolation=cv2.INTER_AREA)
                key = f"{s.id}-c000"
                record = {"key": key, "fg_id": s.id, "index": 0, "split": s.split, "route": "plain", "seed": 0}
                sample = {"__key__": key, "composite.jpg": encode_image(_blend(fg, bg, alpha), "jpg"),
                          "alpha.png": encode_image(alpha, "png"), "fg.png": encode_image(fg, "png"),
                          "bg.jpg": encode_image(bg, "jpg"), "json": json.dumps(record).encode()}
                if damage and s_idx == 0 and i == 0:
                    sample["composite.jpg"] = b"this is not a JPEG"
                elif damage and s_idx == 1 and i == 0:
                    del sample["alpha.png"]
                else:
                    good.append(key)
                w.write(sample)
                count += 1
        entries.append({"name": name, "count": count, "sha256": "", "bytes": (out / name).stat().st_size})
    if damage:
        entries += [{"name": "shard-000002.tar", "count": 3}, {"name": "../outside.tar", "count": 1}]
    (out / "index.json").write_text(json.dumps({"format": "rssn-shards", "shards": entries,
                                                "samples": sum(e["count"] for e in entries)}))
    return good


def write_prepared(sample_data, out: Path) -> int:
    """A prepared set (docs/formats.md): copies of the real photos, plus one foreground-only row."""
    scan = read_layout(sample_data.am2k)
    rows = []
    for s in scan.samples:
        split = s.split or "train"
        for kind, src in (("image", s.image), ("alpha", s.alpha)):
            dst = out / split / kind / Path(src).name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        rows.append({"id": s.id, "split": split, "image": f"{split}/image/{Path(s.image).name}",
                     "alpha": f"{split}/alpha/{Path(s.alpha).name}", "fg": None, "trimap": None,
                     "width": s.width, "height": s.height})
    rows.append({"id": "fg_only", "split": "train", "image": None, "alpha": "train/alpha/x.png", "fg": "x.png"})
    (out / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return len(scan.samples)


@pytest.fixture(scope="module")
def shards(sample_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("gap-shards") / "shards"
    return root, write_shards(sample_data, root)


def _rows(out: Path, set_name: str) -> list[dict]:
    return [r for r in read_manifest(out / "manifest.jsonl") if r["set"] == set_name]


# --------------------------------------------------------------------------- inputs


def test_detect_kind(sample_data, shards, tmp_path):
    assert detect_kind(shards[0]) == "shards"
    assert detect_kind(shards[0] / "shard-000000.tar") == "shards"
    assert detect_kind(sample_data.am2k) == "layout"
    (tmp_path / "samples.jsonl").write_text("")
    assert detect_kind(tmp_path) == "prepared"
    with pytest.raises(FileNotFoundError, match="no-such"):
        detect_kind(tmp_path / "no-such")
    with pytest.raises(ValueError, match="not a .tar shard"):
        detect_kind(sample_data.am2k / "categories.json")


def test_shards_are_measured_per_sample_and_damage_is_recorded(sample_data, shards, tmp_path):
    root, good = shards
    res = measure_gap(root, tmp_path / "gap", plots=False)
    rows = _rows(tmp_path / "gap", "input")
    by_fate: dict[str, list[dict]] = {}
    for r in rows:
        by_fate.setdefault(r["fate"], []).append(r)
    assert sorted(r["id"] for r in by_fate["measured"]) == sorted(good)
    assert all(r["route"] == "plain" and r["fg_id"] == r["id"].split("-c")[0] for r in by_fate["measured"])
    failed = {r["id"]: r["reason"] for r in by_fate["failed"]}
    assert len(failed) == 2
    assert any("composite.jpg: bytes could not be decoded" in why for why in failed.values())
    assert any("lacks composite.jpg or alpha.png" in why for why in failed.values())
    skipped = [r["reason"] for r in by_fate["skipped"]]
    assert any("missing" in why for why in skipped) and any("escapes" in why for why in skipped)
    info = res.report["input"]
    assert (info["kind"], info["measured"], info["failed"], info["skipped"]) == ("shards", len(good), 2, 2)
    assert res.report["statistics"]["noise"]["input"]["n"] == len(good)
    assert res.report["missing_reasons"] == {"input: could not be read (reasons in manifest.jsonl)": 2}


def test_shard_measurements_equal_measuring_the_same_arrays(sample_data, shards, tmp_path):
    # The shard reader must hand the statistics exactly the decoded composite and alpha.
    import webdataset as wds
    from rssn.gap.statistics import measure_sample
    from rssn.io import decode_image

    root, good = shards
    measure_gap(root, tmp_path / "gap", plots=False)
    rows = {r["id"]: r for r in _rows(tmp_path / "gap", "input") if r["fate"] == "measured"}
    ds = wds.WebDataset(str(root / "shard-000001.tar"), shardshuffle=False)
    for sample in ds:
        if sample["__key__"] not in rows:
            continue
        m = measure_sample(decode_image(sample["composite.jpg"]), decode_image(sample["alpha.png"], grey=True))
        assert m["discrepancy"] == pytest.approx(rows[sample["__key__"]]["discrepancy"])


def test_layout_and_prepared_inputs_give_the_same_numbers(sample_data, tmp_path):
    n = write_prepared(sample_data, tmp_path / "prepared")
    a = measure_gap(sample_data.am2k, tmp_path / "a", chunk=4, plots=False)
    b = measure_gap(tmp_path / "prepared", tmp_path / "b", chunk=4, plots=False)
    assert a.report["input"]["kind"] == "layout" and b.report["input"]["kind"] == "prepared"
    assert a.report["input"]["measured"] == n == b.report["input"]["measured"]
    assert b.report["input"]["skipped"] == 1  # the foreground-only row
    skipped = [r for r in _rows(tmp_path / "b", "input") if r["fate"] == "skipped"]
    assert "no real photo" in skipped[0]["reason"]
    ra = {r["id"]: r["discrepancy"] for r in _rows(tmp_path / "a", "input")}
    rb = {r["id"]: r["discrepancy"] for r in _rows(tmp_path / "b", "input") if r["fate"] == "measured"}
    assert ra == rb  # same bytes, same numbers


def test_prepared_paths_escaping_the_folder_are_refused(tmp_path):
    (tmp_path / "samples.jsonl").write_text(json.dumps({"id": "x", "image": "../../etc/passwd", "alpha": "a.png"}) + "\n")
    src = open_source(tmp_path)
    assert src.units == [] and "escapes" in src.problems[0]["reason"]


def test_foreground_only_layouts_are_skipped_with_a_reason(sample_data, tmp_path):
    scan = read_layout(sample_data.am2k)
    for s in scan.samples[:2]:
        for sub, src in (("fg", sample_data.truth / "fg" / f"{s.id}.png"), ("alpha", Path(s.alpha))):
            (tmp_path / sub).mkdir(exist_ok=True)
            shutil.copyfile(src, tmp_path / sub / f"{s.id}.png")
    src = open_source(tmp_path)
    assert src.layout == "fg_alpha" and src.units == [] and len(src.problems) == 2
    assert all("no real photo" in p["reason"] for p in src.problems)


def test_limit_spreads_evenly(sample_data, shards):
    src = open_source(sample_data.am2k, limit=3, chunk=2)
    ids = [s["id"] for u in src.units for s in u["samples"]]
    all_ids = [s.id for s in read_layout(sample_data.am2k).samples]
    assert len(all_ids) == 6 and ids == [all_ids[0], all_ids[2], all_ids[5]]  # first, middle, last
    assert [len(u["samples"]) for u in src.units] == [2, 1]
    assert all(u["take"] == 2 for u in open_source(shards[0], limit=3).units)  # ceil(3 * 3/6) per shard


# --------------------------------------------------------------------------- report


def test_identical_sets_give_zero_distance_and_every_report_file(sample_data, tmp_path):
    out = tmp_path / "gap"
    res = measure_gap(sample_data.am2k, out, reference=sample_data.am2k)
    for stat in STATS:
        c = res.statistics[stat]
        assert c["wasserstein"] == 0.0 and c["verdict"] == "close", stat
        assert c["input"]["n"] == 6
    for name in ("run.json", "manifest.jsonl", "gap.json", "report.md", "plots/overview.png",
                 *(f"plots/{s}.png" for s in STATS)):
        assert (out / name).is_file(), name
    assert read_rgb(out / "plots" / "noise.png").shape == (400, 600, 3)  # 6 x 4 in at 100 dpi
    assert read_rgb(out / "plots" / "overview.png").shape == (800, 1500, 3)
    report = json.loads((out / "gap.json").read_text())
    assert report["statistics"]["sharpness"]["definition"] == "log2((fg + 1) / (bg + 1))"
    md = (out / "report.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| ") and "**close**" in line]
    assert len(table) == 6
    run = read_run(out)
    assert run["status"] == "complete" and run["command"] == "gap"
    assert run["summary"]["input_measured"] == 6 and run["summary"]["reference_measured"] == 6
    assert not list(out.rglob(".*.tmp"))  # nothing half-written left behind


def test_composites_against_real_photos_are_scored(sample_data, shards, tmp_path):
    res = measure_gap(shards[0], tmp_path / "gap", reference=sample_data.am2k, plots=False)
    for stat in STATS:
        c = res.statistics[stat]
        assert c["verdict"] in ("close", "different", "far")
        assert c["wasserstein"] >= 0 and c["normalised"] == pytest.approx(c["wasserstein"] / c["scale"])
        assert c["words"].startswith(("Close", "Different", "Far"))
    # The truth foregrounds carry no camera noise; the real photos do, on both regions.
    ref_fg = res.report["regions"]["reference"]["noise"]["fg"]
    inp_fg = res.report["regions"]["input"]["noise"]["fg"]
    assert inp_fg < ref_fg


def test_without_reference_the_set_is_described(sample_data, tmp_path):
    res = measure_gap(sample_data.am2k, tmp_path / "gap", plots=False)
    assert res.report["reference"] is None
    assert all(c["verdict"] is None and c["input_words"].startswith("typically") for c in res.statistics.values())
    md = (tmp_path / "gap" / "report.md").read_text()
    assert "foreground > background" in md and "REAL" not in md.split("## In words")[0]


def test_small_regions_are_reported_as_incomplete(tmp_path):
    root = tmp_path / "data"
    for sub in ("images", "alphas"):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (100, 120, 3), dtype=np.uint8)
    cv2.imwrite(str(root / "images" / "a.png"), img)
    cv2.imwrite(str(root / "alphas" / "a.png"), np.full((100, 120), 255, np.uint8))  # no background at all
    res = measure_gap(root, tmp_path / "gap", plots=False)
    row = _rows(tmp_path / "gap", "input")[0]
    assert row["fate"] == "incomplete" and "background region too small" in row["reason"]
    assert res.report["input"]["incomplete"] == 1
    assert res.report["missing_reasons"] == {"input: background region too small": 1}
    assert res.statistics["noise"]["input"]["n"] == 0
    assert not (tmp_path / "gap" / "plots").exists() and "## Plots" not in (tmp_path / "gap" / "report.md").read_text()


# --------------------------------------------------------------------------- executor, resume


def test_rerun_reuses_measured_units(sample_data, tmp_path):
    out = tmp_path / "gap"
    first = measure_gap(sample_data.am2k, out, chunk=2, plots=False)
    units = first.report["input"]["units"]
    assert units == 3 and first.report["input"]["units_reused"] == 0
    again = measure_gap(sample_data.am2k, out, chunk=2, plots=False)
    assert again.report["input"]["units_reused"] == 3
    assert again.report["statistics"] == first.report["statistics"]
    # A lost unit file (a killed run) is measured again; the others are reused.
    victim = sorted((out / "units").glob("input-*.json"))[0]
    victim.unlink()
    third = measure_gap(sample_data.am2k, out, chunk=2, plots=False)
    assert third.report["input"]["units_reused"] == 2 and victim.is_file()
    # Other parameters: nothing is reused and old entries are cleared.
    other = measure_gap(sample_data.am2k, out, chunk=2, margin=6, plots=False)
    assert other.report["input"]["units_reused"] == 0
    assert len(list((out / "units").glob("input-*.json"))) == 3


def test_truncated_shard_fails_only_its_unit(sample_data, tmp_path):
    root = tmp_path / "shards"
    good = write_shards(sample_data, root, damage=False)
    tar = root / "shard-000001.tar"
    tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 3])
    res = measure_gap(root, tmp_path / "gap", plots=False)
    rows = _rows(tmp_path / "gap", "input")
    failed = [r for r in rows if r["fate"] == "failed"]
    assert len(failed) == 1 and "shard could not be read" in failed[0]["reason"]
    assert failed[0]["input"].endswith("shard-000001.tar")
    assert res.report["input"]["measured"] == len(good) // 2 and res.report["input"]["units_failed"] == 1


def test_local_workers_and_dask_give_the_same_rows(sample_data, tmp_path):
    from distributed import LocalCluster

    base = measure_gap(sample_data.am2k, tmp_path / "one", chunk=2, plots=False)
    two = measure_gap(sample_data.am2k, tmp_path / "two", chunk=2, workers=2, plots=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        dask = measure_gap(sample_data.am2k, tmp_path / "dask", chunk=2, scheduler=cluster.scheduler_address,
                           plots=False)
    assert _rows(tmp_path / "two", "input") == _rows(tmp_path / "one", "input") == _rows(tmp_path / "dask", "input")
    assert two.report["statistics"] == base.report["statistics"] == dask.report["statistics"]
    assert read_run(tmp_path / "dask")["params"]["scheduler"].startswith("tcp://")


# --------------------------------------------------------------------------- command line


def test_cli_help_and_misuse(sample_data, tmp_path):
    from cli.main import main

    runner = CliRunner()
    res = runner.invoke(main, ["gap", "--help"])
    assert res.exit_code == 0 and "--reference" in res.output and "noise level" in res.output
    res = runner.invoke(main, ["gap", str(sample_data.am2k)])
    assert res.exit_code == 2 and "--out" in res.output
    res = runner.invoke(main, ["gap", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "does not exist" in res.output
    res = runner.invoke(main, ["gap", str(sample_data.am2k / "categories.json"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "not a .tar shard" in res.output
    assert not (tmp_path / "o").exists()  # nothing written for a refused input


def test_cli_scores_shards_against_real(sample_data, shards, tmp_path):
    from cli.main import main

    out = tmp_path / "gap"
    res = CliRunner().invoke(main, ["gap", str(shards[0]), "--reference", str(sample_data.am2k), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "INPUT:" in res.output and "REAL:" in res.output and "report:" in res.output
    verdict_lines = [line for line in res.output.splitlines() if line.rstrip().endswith(("close", "different", "far"))]
    assert len(verdict_lines) == 6
    assert (out / "report.md").is_file()
