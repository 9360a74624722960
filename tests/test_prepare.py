"""The prepare job: layout, files, bad pairs, resume, given foregrounds, executors, CLI."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rssn.io import list_images, read_alpha, read_bytes, read_rgb, write_image
from rssn.prepare import SAMPLE_FIELDS, prepare_dataset, read_prepared
from rssn.records import UnsafePathError, read_manifest, read_run


@pytest.fixture(scope="module")
def prepared(sample_data, tmp_path_factory):
    """The sample set prepared once, in this process (workers=1)."""
    out = tmp_path_factory.mktemp("prepared")
    report = prepare_dataset(sample_data.am2k, out, categories=sample_data.categories, seed=0)
    return out, report


def _soft_errors(sample_data, rows):
    """Mean |F - F_true| and |I - F_true| over the soft edge of every row."""
    est, raw = [], []
    for r in rows:
        alpha = read_alpha(r["alpha"])
        soft = (alpha > 0) & (alpha < 255)
        truth = read_rgb(sample_data.truth / "fg" / f"{r['id']}.png").astype(float)
        est.append(np.abs(read_rgb(r["fg"]) - truth)[soft].mean())
        raw.append(np.abs(read_rgb(r["image"]) - truth)[soft].mean())
    return np.array(est), np.array(raw)


def test_prepare_writes_the_documented_layout(sample_data, prepared):
    out, report = prepared
    rows = read_prepared(out)
    assert len(rows) == 6 and report.summary["kept"] == 6
    assert [tuple(r) for r in rows] == [SAMPLE_FIELDS] * 6
    assert {r["split"] for r in rows} == {"train", "validation"}  # the set's own split is kept
    assert sum(r["split"] == "train" for r in rows) == 4
    cats = json.loads(sample_data.categories.read_text())
    raw_rows = read_manifest(out / "samples.jsonl")
    for r, raw in zip(rows, raw_rows):
        src = sample_data.am2k / r["split"] / "original" / f"{r['id']}.jpg"
        assert raw["image"] == f"{r['split']}/image/{r['id']}.jpg"  # relative in the file
        assert r["image"] == (out / raw["image"]).resolve()  # resolved by read_prepared
        assert read_bytes(r["image"]) == read_bytes(src)  # copied, not re-encoded
        assert np.array_equal(read_alpha(r["alpha"]), read_alpha(src.parent.parent / "mask" / f"{r['id']}.png"))
        assert read_rgb(r["fg"]).shape == (r["height"], r["width"], 3) == (120, 160, 3)
        assert r["category"] == cats[r["id"]] and r["fg_method"] == "ml" and r["denoised"] is None
        assert (r["trimap"] is not None) == (r["split"] == "validation")
    est, raw = _soft_errors(sample_data, rows)
    assert (est < 0.7 * raw).all()  # the stored 8-bit foregrounds, not just the float estimate
    run = read_run(out)
    assert run["status"] == "complete" and run["command"] == "prepare"
    assert run["params"]["fg_method"] == "ml" and run["params"]["split_scheme"] == "am2k"
    assert run["summary"]["without_category"] == 0 and run["summary"]["splits"] == {"train": 4, "validation": 2}
    assert run["versions"]["pymatting"]
    assert [m["fate"] for m in read_manifest(out / "manifest.jsonl")] == ["kept"] * 6


def test_rerun_reuses_finished_samples_and_redoes_damaged_ones(sample_data, tmp_path):
    out = tmp_path / "p"
    prepare_dataset(sample_data.am2k, out, seed=0)
    fgs = sorted((out).glob("*/fg/*.png"))
    stamps = {p: p.stat().st_mtime_ns for p in fgs}
    again = prepare_dataset(sample_data.am2k, out, seed=0)
    assert again.summary["reused"] == 6
    assert all(p.stat().st_mtime_ns == stamps[p] for p in fgs)

    fgs[0].unlink()  # a sample whose output went missing
    meta = next(out.glob("*/meta/*.json"))
    meta.write_text("{ half a record")  # a record cut short
    third = prepare_dataset(sample_data.am2k, out, seed=0)
    assert third.summary["reused"] == 4 and third.summary["kept"] == 6
    assert fgs[0].is_file()
    # A different method invalidates every estimate.
    fourth = prepare_dataset(sample_data.am2k, out, seed=0, fg_method="cf")
    assert fourth.summary["reused"] == 0
    assert {r["fg_method"] for r in read_prepared(out)} == {"cf"}


def test_unsplit_sets_are_split_here_deterministically_and_the_split_is_kept(sample_data, tmp_path):
    flat = tmp_path / "flat"
    for split in ("train", "validation"):
        for kind in ("original", "mask"):
            for f in (sample_data.am2k / split / kind).iterdir():
                (flat / kind).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, flat / kind / f.name)
    out_a, out_b, out_c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    a = prepare_dataset(flat, out_a, categories=sample_data.categories, seed=1, val_count=2)
    b = prepare_dataset(flat, out_b, categories=sample_data.categories, seed=1, val_count=2)
    split_a = {r["id"]: r["split"] for r in a.samples}
    assert split_a == {r["id"]: r["split"] for r in b.samples}
    assert sorted(split_a.values()) == ["train"] * 4 + ["validation"] * 2
    # The AM-2k fraction (10 %) on 6 samples: one validation sample.
    c = prepare_dataset(flat, out_c, seed=1)
    assert sorted(r["split"] for r in c.samples) == ["train"] * 5 + ["validation"]
    # A rerun with another seed keeps the split the samples already have.
    again = prepare_dataset(flat, out_a, categories=sample_data.categories, seed=99, val_count=2)
    assert {r["id"]: r["split"] for r in again.samples} == split_a
    assert again.summary["reused"] == 6


def test_bad_pairs_are_reported_and_skipped(sample_data, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(sample_data.am2k, ds)
    train = ds / "train"
    images = sorted((train / "original").glob("*.jpg"))
    # size mismatch, truncated photo, all-zero alpha, photo without alpha
    write_image(train / "mask" / f"{images[0].stem}.png", np.zeros((60, 80), np.uint8) + 200)
    images[1].write_bytes(read_bytes(images[1])[:2000])
    write_image(train / "mask" / f"{images[2].stem}.png", np.zeros((120, 160), np.uint8))
    write_image(train / "original" / "m_orphan.jpg", np.zeros((120, 160, 3), np.uint8))
    out = tmp_path / "out"
    report = prepare_dataset(ds, out, seed=0)
    man = read_manifest(out / "manifest.jsonl")
    by_input = {m["input"]: m for m in man}
    reason = {name: by_input[str(p)]["reason"] for name, p in [
        ("mismatch", train / "mask" / f"{images[0].stem}.png"), ("truncated", images[1]), ("zero", images[2]),
        ("orphan", train / "original" / "m_orphan.jpg")]}
    assert "size mismatch" in reason["mismatch"]
    assert "truncated" in reason["truncated"]
    assert "all zero" in reason["zero"]
    assert "no alpha" in reason["orphan"]
    assert all(by_input[k]["fate"] == "skipped" for k in by_input if by_input[k].get("reason"))
    assert report.summary["kept"] == 3 and report.summary["skipped"] == 4
    assert {r["id"] for r in read_prepared(out)} == {p.stem for p in images[3:]} | {
        p.stem for p in (ds / "validation" / "original").glob("*.jpg")}
    assert not list(out.glob(f"*/fg/{images[2].stem}.png"))


def test_p3m_and_generic_layouts(sample_data, tmp_path):
    """P3M keeps its test-set names; a generic set without splits is split by ratio."""
    p3m, generic = tmp_path / "p3m", tmp_path / "generic"
    for split in ("train", "validation"):
        dst = p3m / "train" if split == "train" else p3m / "validation" / "P3M-500-P"
        for f in (sample_data.am2k / split / "original").iterdir():
            for folder, name in ((dst / "blurred_image", f.name), (generic / "images", f.name)):
                folder.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, folder / name)
            for folder in (dst / "mask", generic / "alphas"):
                folder.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f.parent.parent / "mask" / f"{f.stem}.png", folder / f"{f.stem}.png")
    rep = prepare_dataset(p3m, tmp_path / "out-p3m", seed=0)
    assert rep.summary["splits"] == {"P3M-500-P": 2, "train": 4}
    assert read_run(tmp_path / "out-p3m")["params"]["layout"] == "p3m"
    rep = prepare_dataset(generic, tmp_path / "out-generic", seed=0, val_fraction=0.34)
    assert rep.summary["splits"] == {"train": 4, "validation": 2}
    assert read_run(tmp_path / "out-generic")["params"]["split_scheme"] == "ratio"


def test_given_foregrounds_skip_estimation(sample_data, tmp_path):
    """fg/ + alpha/ folders (Adobe style) and RGBA cut-outs."""
    fga, rgba = tmp_path / "fga", tmp_path / "rgba"
    truths = sorted((sample_data.truth / "fg").glob("*.png"))[:3]
    for f in truths:
        alpha = read_alpha(next(sample_data.am2k.glob(f"*/mask/{f.stem}.png")))
        (fga / "fg").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, fga / "fg" / f.name)
        write_image(fga / "alpha" / f.name, alpha)
        write_image(rgba / f.name, np.dstack([read_rgb(f), alpha]))
    for src, layout in ((fga, "fg_alpha"), (rgba, "rgba")):
        out = tmp_path / f"out-{layout}"
        report = prepare_dataset(src, out, seed=0)
        assert read_run(out)["params"]["layout"] == layout
        rows = read_prepared(out)
        assert len(rows) == 3 and report.summary["kept"] == 3
        for r in rows:
            assert r["image"] is None and r["fg_method"] == "given"
            assert np.array_equal(read_rgb(r["fg"]), read_rgb(sample_data.truth / "fg" / f"{r['id']}.png"))
        assert {r["split"] for r in rows} == {"train", "validation"}


def test_local_workers_and_a_dask_cluster_give_the_same_output(sample_data, prepared, tmp_path):
    """Two loky processes (with BM3D) and a real Dask LocalCluster match the one-process run."""
    from distributed import Client, LocalCluster

    ref_out, _ = prepared
    ref = {r["id"]: read_bytes(r["fg"]) for r in read_prepared(ref_out)}
    out = tmp_path / "w2"
    report = prepare_dataset(sample_data.am2k, out, categories=sample_data.categories, seed=0, workers=2,
                             denoise=True, denoise_profile="fast")
    rows = read_prepared(out)
    assert {r["id"]: read_bytes(r["fg"]) for r in rows} == ref
    assert report.summary["denoise"] == {"denoised": 6}
    for r in rows:
        den = read_rgb(r["denoised"])
        assert den.shape == (r["height"], r["width"], 3)
        assert r["denoised"].parent.parent == (out / "denoise").resolve()
        assert (r["denoised"].with_suffix(".json")).is_file()

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        dask_out = tmp_path / "dask"
        prepare_dataset(sample_data.am2k, dask_out, categories=sample_data.categories, seed=0, scheduler=client)
    assert {r["id"]: read_bytes(r["fg"]) for r in read_prepared(dask_out)} == ref


def test_read_prepared_refuses_bad_rows(prepared, tmp_path):
    out, _ = prepared
    rows = read_manifest(out / "samples.jsonl")
    bad = tmp_path / "bad"
    for change, error in [
        ({"fg": "../../etc/passwd"}, UnsafePathError),
        ({"alpha": "/abs/alpha.png"}, UnsafePathError),
        ({"fg": None}, ValueError),
        ({"id": "a/b"}, ValueError),
        ({"width": "160"}, ValueError),
        ({"fg": "train/fg/missing.png"}, FileNotFoundError),
    ]:
        shutil.rmtree(bad, ignore_errors=True)
        shutil.copytree(out, bad)
        (bad / "samples.jsonl").write_text(json.dumps({**rows[0], **change}) + "\n")
        with pytest.raises(error):
            read_prepared(bad)
    with pytest.raises(FileNotFoundError, match="samples.jsonl"):
        read_prepared(tmp_path / "nothing")


def test_cli_prepare(sample_data, tmp_path):
    from cli.main import main

    runner = CliRunner()
    out = tmp_path / "cli"
    res = runner.invoke(main, ["prepare", str(sample_data.am2k), "--out", str(out),
                               "--categories", str(sample_data.categories)])
    assert res.exit_code == 0, res.output
    assert "kept 6" in res.output and "train 4, validation 2" in res.output
    assert len(read_prepared(out)) == 6

    bad_json = tmp_path / "cats.json"
    bad_json.write_text("[1, 2]")
    res = runner.invoke(main, ["prepare", str(sample_data.am2k), "--out", str(out), "--categories", str(bad_json)])
    assert res.exit_code == 1 and "cats.json" in res.output and "JSON object" in res.output
    res = runner.invoke(main, ["prepare", str(sample_data.am2k), "--out", str(out), "--fg-method", "magic"])
    assert res.exit_code == 2
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    res = runner.invoke(main, ["prepare", str(empty), "--out", str(tmp_path / "o2")])
    assert res.exit_code == 1 and "no usable sample" in res.output
    res = runner.invoke(main, ["prepare", str(empty), "--out", str(empty / "inside")])
    assert res.exit_code == 1 and "outside the dataset" in res.output
    res = runner.invoke(main, ["prepare", "--help"])
    assert res.exit_code == 0 and "--denoise / --no-denoise" in res.output
    assert not [p for p in list_images(out) if os.path.basename(p).startswith(".")]  # no temp files left


def test_nothing_is_written_for_a_wrong_layout_and_stored_paths_are_checked(sample_data, tmp_path):
    from rssn.layouts import LayoutError

    out = tmp_path / "o"
    with pytest.raises(LayoutError, match="generic layout"):
        prepare_dataset(sample_data.am2k, out, layout="generic")
    assert not out.exists()  # no folder, no run.json left "running"

    generic = tmp_path / "generic"
    for f in sorted((sample_data.am2k / "train" / "original").glob("*.jpg"))[:3]:
        for sub, src in (("images", f), ("alphas", f.parent.parent / "mask" / f"{f.stem}.png")):
            (generic / sub).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, generic / sub / src.name)
    first = prepare_dataset(generic, out, seed=0)
    ids = sorted(r["id"] for r in first.samples)
    # samples.jsonl and the per-sample records are data: a split that would name
    # a folder outside OUT, or a file path leaving it, is not taken from them.
    rows = read_manifest(out / "samples.jsonl")
    rows[0]["split"] = "../escape"
    (out / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    meta_path = out / rows[1]["split"] / "meta" / f"{rows[1]['id']}.json"
    meta = json.loads(meta_path.read_text())
    meta["row"]["fg"] = str((out / meta["row"]["fg"]).resolve())  # an absolute path to a valid file
    meta_path.write_text(json.dumps(meta))
    again = prepare_dataset(generic, out, seed=0)
    assert not (tmp_path / "escape").exists()
    assert sorted(r["id"] for r in again.samples) == ids and {r["split"] for r in again.samples} <= {"train", "validation"}
    assert again.summary["reused"] == 2  # the sample with the absolute path is made again
    assert all(not Path(r["fg"]).is_absolute() for r in read_manifest(out / "samples.jsonl"))
    read_prepared(out)
