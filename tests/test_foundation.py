"""Executor (local and Dask give identical results), run records, seeding, sample
data determinism and the command-line entry point."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from rssn import executor, io, records, seeding
from rssn.sample_data import make_sample_data


@pytest.fixture(scope="module")
def image_batch(tmp_path_factory):
    """Twelve small images and three bad files."""
    root = tmp_path_factory.mktemp("batch")
    rng = np.random.default_rng(3)
    paths = []
    for i in range(12):
        paths.append(io.write_image(root / f"img_{i:02d}.png", rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)))
    (root / "broken.png").write_bytes(b"not an image")
    trunc = root / "trunc.png"
    trunc.write_bytes(paths[0].read_bytes()[:200])
    paths[5:5] = [root / "broken.png", trunc, root / "missing.png"]
    return paths


def digests(results):
    return [(r.ok, r.value if r.ok else r.error) for r in results]


def test_local_batch_reports_bad_files_and_keeps_the_rest(image_batch):
    res = executor.run_units(io.pixel_digest, image_batch, workers=1)
    assert [r.index for r in res] == list(range(len(image_batch)))
    bad = {image_batch[r.index].name: r.error for r in executor.failures(res)}
    assert set(bad) == {"broken.png", "trunc.png", "missing.png"}
    assert "NotAnImageError" in bad["broken.png"] and "broken.png" in bad["broken.png"]
    assert "TruncatedImageError" in bad["trunc.png"]
    assert all(r.traceback for r in executor.failures(res))
    assert sum(r.ok for r in res) == 12


def test_workers_and_dask_cluster_give_identical_results(image_batch):
    from distributed import Client, LocalCluster

    serial = digests(executor.run_units(io.pixel_digest, image_batch, workers=1))
    parallel = digests(executor.run_units(io.pixel_digest, image_batch, workers=2))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        by_address = digests(executor.run_units(io.pixel_digest, image_batch, scheduler=cluster.scheduler_address))
        with Client(cluster) as client:
            by_client = digests(executor.run_units(io.pixel_digest, image_batch, scheduler=client))
    assert serial == parallel == by_address == by_client
    assert sum(ok for ok, _ in serial) == 12


def test_workers_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        executor.run_units(str, [1], workers=0)


def test_generators_depend_on_keys_only():
    a = seeding.generator(7, "m_1", 0).random(4)
    assert np.array_equal(a, seeding.generator(7, "m_1", 0).random(4))
    assert not np.array_equal(a, seeding.generator(7, "m_1", 1).random(4))
    assert not np.array_equal(a, seeding.generator(8, "m_1", 0).random(4))
    assert seeding.derived_seed(7, "x") == seeding.derived_seed(7, "x") != seeding.derived_seed(7, "y")


def test_run_record_and_manifest(tmp_path):
    rec = records.RunRecord.start(tmp_path, "demo", {"seed": 3, "path": tmp_path}, seed=3)
    data = records.read_run(tmp_path)
    assert data["status"] == "running" and data["params"]["path"] == str(tmp_path)
    assert data["versions"]["numpy"] == np.__version__
    rows = [{"input": "a", "fate": "kept"}, {"input": "b", "fate": "dropped", "reason": "small"}, {"input": "c", "fate": "kept"}]
    records.write_manifest(tmp_path / records.MANIFEST_FILE, rows)
    assert records.read_manifest(tmp_path / records.MANIFEST_FILE) == rows
    rec.finish(summary=records.count_fates(rows))
    data = records.read_run(tmp_path)
    assert data["status"] == "complete" and data["summary"] == {"dropped": 1, "kept": 2} and data["finished"]


def test_safe_join_refuses_escapes(tmp_path):
    assert records.safe_join(tmp_path, "a/b.png") == (tmp_path / "a" / "b.png").resolve()
    for bad in ("../x", "a/../../x", "/etc/passwd", ""):
        with pytest.raises(records.UnsafePathError):
            records.safe_join(tmp_path, bad)


def test_sample_data_is_deterministic_and_consistent(tmp_path, sample_data):
    again = make_sample_data(tmp_path / "again", n_train=4, n_val=2, n_photos=4, fg_size=(160, 120), bg_size=(1200, 1080), seed=0)
    for rel in ("am2k/categories.json", "truth/fg", "photos"):
        a, b = sample_data.root / rel, again.root / rel
        files = sorted(p.relative_to(a) for p in a.rglob("*")) if a.is_dir() else [None]
        for f in files:
            pa, pb = (a / f, b / f) if f else (a, b)
            assert pa.read_bytes() == pb.read_bytes(), pa
    cats = json.loads(sample_data.categories.read_text())
    assert len(cats) == 6
    # image = alpha*F + (1-alpha)*B up to camera noise and JPEG.
    for sid in list(cats)[:2]:
        split = "train" if (sample_data.am2k / "train" / "original" / f"{sid}.jpg").exists() else "validation"
        im = io.read_rgb(sample_data.am2k / split / "original" / f"{sid}.jpg").astype(float)
        a = io.read_alpha(sample_data.am2k / split / "mask" / f"{sid}.png")[..., None] / 255.0
        fg = io.read_rgb(sample_data.truth / "fg" / f"{sid}.png").astype(float)
        bg = io.read_rgb(sample_data.truth / "bg" / f"{sid}.png").astype(float)
        assert np.abs(a * fg + (1 - a) * bg - im).mean() < 4.0
        soft = ((a > 0.05) & (a < 0.95))[..., 0]
        assert soft.mean() > 0.01  # hair-like soft edges exist
    w, h = io.image_size(sample_data.photos / "photo_00.jpg")
    assert min(w, h) >= 1080
    assert min(io.image_size(sample_data.photos / "small_below_hd.jpg")) < 1080


def test_cli_help_version_and_sample_data(tmp_path):
    from cli.main import main

    runner = CliRunner()
    res = runner.invoke(main, ["--version"])
    assert res.exit_code == 0 and "0.1.0" in res.output
    res = runner.invoke(main, ["--help"])
    assert res.exit_code == 0 and "sample-data" in res.output
    res = runner.invoke(main, ["sample-data", str(tmp_path / "s"), "--train", "1", "--val", "0", "--photos", "1",
                               "--fg-size", "64", "48", "--bg-size", "1100", "1080"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "s" / "am2k" / "train" / "original").is_dir()
    res = runner.invoke(main, ["sample-data", str(tmp_path / "t"), "--train", "0"])
    assert res.exit_code != 0 and "0 is not in the range" in res.output
    shutil.rmtree(tmp_path / "s")
