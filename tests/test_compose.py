"""``rssn compose`` end to end: shards, index, reading back, determinism, resume,
the denoise cache, bad inputs and the command line."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from rssn.compose import compose, decode_sample, read_index, shard_paths, verify_shards
from rssn.compose.ops import box_blur
from rssn.compose.shards import iter_tar_samples
from rssn.io import decode_image, read_bytes, read_rgb, write_image

REPO = Path(__file__).resolve().parents[1]


def make_prepared(sample_data, out: Path) -> Path:
    """A prepared matting set written directly in the documented layout
    (docs/formats.md), with the sample set's true foregrounds as F."""
    rows = []
    for split in ("train", "validation"):
        for mask in sorted((sample_data.am2k / split / "mask").glob("*.png")):
            sid = mask.stem
            (out / split / "alpha").mkdir(parents=True, exist_ok=True)
            (out / split / "fg").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(mask, out / split / "alpha" / f"{sid}.png")
            shutil.copyfile(sample_data.truth / "fg" / f"{sid}.png", out / split / "fg" / f"{sid}.png")
            rows.append({"id": sid, "split": split, "category": "cat", "image": None,
                         "alpha": f"{split}/alpha/{sid}.png", "fg": f"{split}/fg/{sid}.png", "trimap": None,
                         "width": 160, "height": 120, "fg_method": "given"})
    (out / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


@pytest.fixture(scope="module")
def prepared(sample_data, tmp_path_factory):
    return make_prepared(sample_data, tmp_path_factory.mktemp("prepared"))


@pytest.fixture(scope="module")
def backgrounds(sample_data, tmp_path_factory):
    """The sample photos (HD and one below HD) in a nested folder."""
    root = tmp_path_factory.mktemp("backgrounds")
    for i, p in enumerate(sorted(sample_data.photos.glob("photo_*.jpg"))):
        sub = root / ("a" if i % 2 else "b")
        sub.mkdir(exist_ok=True)
        shutil.copyfile(p, sub / p.name)
    return root


def digests(folder: Path) -> dict[str, str]:
    """sha256 of every file of a shard folder except run.json (which has times)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.is_file() and p.name != "run.json"}


def test_shards_index_and_records(prepared, backgrounds, tmp_path):
    out = tmp_path / "shards"
    res = compose(prepared, backgrounds, out, per_fg=3, shard_size=5, seed=3, denoise=False)
    assert res.complete and res.composites == 12 and res.shards == 3 and res.failed == 0
    index = read_index(out)
    assert [s["count"] for s in index["shards"]] == [5, 5, 2] and index["samples"] == 12
    assert verify_shards(out) == []
    for s in index["shards"]:
        assert hashlib.sha256((out / s["name"]).read_bytes()).hexdigest() == s["sha256"]
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(manifest) == 12 and {m["fate"] for m in manifest} == {"written"}
    samples = [s for p in shard_paths(out) for s in iter_tar_samples(p)]
    keys = [s["__key__"] for s in samples]
    assert len(set(keys)) == 12 and all("." not in k for k in keys)
    for s in samples:
        assert sorted(k for k in s if k != "__key__") == ["alpha.png", "bg.jpg", "composite.jpg", "fg.png", "json"]
        d = decode_sample(s)
        rec = d["record"]
        assert rec["key"] == s["__key__"] == f"{rec['fg_id']}-c{rec['index']:03d}"
        assert d["composite"].shape == (120, 160, 3) == d["fg"].shape == d["bg"].shape
        assert d["alpha"].shape == (120, 160)
        assert rec["blur_kernel"] in (None, 20, 30, 40, 50, 60) and rec["denoise"] is False
        # The foreground and alpha members are the prepared files, bytes unchanged.
        split = rec["split"]
        assert s["fg.png"] == read_bytes(prepared / split / "fg" / f"{rec['fg_id']}.png")
        assert s["alpha.png"] == read_bytes(prepared / split / "alpha" / f"{rec['fg_id']}.png")
        # The background member is the recorded crop of the recorded photo, blurred as recorded.
        src = read_rgb(next(backgrounds.rglob(rec["bg_id"].split("/")[-1] + ".jpg")))
        x, y, w, h = rec["crop"]
        ref = cv2.resize(src[y:y + h, x:x + w], (160, 120), interpolation=cv2.INTER_AREA)
        if rec["blur_kernel"]:
            ref = box_blur(ref, rec["blur_kernel"])
        assert np.abs(d["bg"].astype(int) - ref).mean() < 4.0  # JPEG error only
        if not rec["noise"]:
            # Blend equation on the decoded members (JPEG adds a little error,
            # a wrong matte a lot more).
            a = d["alpha"][..., None] / 255.0
            err = np.abs(d["composite"] - (a * d["fg"] + (1 - a) * d["bg"])).mean()
            wrong = np.abs(d["composite"] - ((1 - a) * d["fg"] + a * d["bg"])).mean()
            assert err < 3.0 and wrong > 5 * err


def test_dataloader_with_two_workers_reads_every_sample(prepared, backgrounds, tmp_path):
    torch = pytest.importorskip("torch")
    wds = pytest.importorskip("webdataset")
    out = tmp_path / "shards"
    compose(prepared, backgrounds, out, per_fg=2, shard_size=3, denoise=False)
    urls = [str(p) for p in shard_paths(out)]
    assert len(urls) == 3

    ds = wds.WebDataset(urls, shardshuffle=False).map(decode_sample).map(
        lambda s: (s["key"], torch.from_numpy(s["composite"]).permute(2, 0, 1),
                   torch.from_numpy(s["alpha"]), torch.from_numpy(s["fg"]), torch.from_numpy(s["bg"])))
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2)
    keys = []
    for key, comp, alpha, fg, bg in loader:
        keys.extend(key)
        assert comp.shape[1:] == (3, 120, 160) and comp.dtype == torch.uint8
        assert alpha.shape[1:] == (120, 160) and fg.shape[1:] == bg.shape[1:] == (120, 160, 3)
    manifest = [json.loads(line)["key"] for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted(keys) == sorted(manifest) and len(keys) == 8


def test_identical_shards_on_one_two_workers_and_a_dask_cluster(prepared, backgrounds, tmp_path):
    from distributed import LocalCluster

    kw = dict(per_fg=3, shard_size=4, seed=5, denoise=False)
    compose(prepared, backgrounds, tmp_path / "one", workers=1, **kw)
    compose(prepared, backgrounds, tmp_path / "two", workers=2, **kw)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        compose(prepared, backgrounds, tmp_path / "dask", scheduler=cluster.scheduler_address, **kw)
    one = digests(tmp_path / "one")
    assert len([n for n in one if n.endswith(".tar")]) == 3
    assert digests(tmp_path / "two") == one
    assert digests(tmp_path / "dask") == one
    # A different seed gives different shards.
    compose(prepared, backgrounds, tmp_path / "seed6", **{**kw, "seed": 6})
    assert digests(tmp_path / "seed6")["shard-000000.tar"] != one["shard-000000.tar"]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", *args]


def test_killed_run_resumes_to_identical_shards(prepared, backgrounds, tmp_path):
    args = ["compose", "--matting", str(prepared), "--backgrounds", str(backgrounds), "--per-fg", "40",
            "--shard-size", "2", "--no-denoise", "--seed", "9"]
    env = {**os.environ, "RSSN_PROGRESS": "0"}
    full = tmp_path / "full"
    subprocess.run(_cli(*args, "--out", str(full)), check=True, cwd=REPO, env=env, capture_output=True)

    out = tmp_path / "killed"
    proc = subprocess.Popen(_cli(*args, "--out", str(out)), cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if out.is_dir() and len(list(out.glob("shard-*.json"))) >= 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    done_before = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.tar")}
    assert 3 <= len(done_before) < 80 and not (out / "index.json").exists()

    rerun = subprocess.run(_cli(*args, "--out", str(out)), cwd=REPO, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert "already complete" in rerun.stdout
    assert digests(out) == digests(full)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    # Shards finished before the kill were verified and kept, not rewritten.
    records = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.tar")}
    kept = [n for n in done_before if (out / n.replace(".tar", ".json")).exists() and records[n] == done_before[n]]
    assert len(kept) >= 3


def test_damaged_shard_is_redone(prepared, backgrounds, tmp_path):
    out = tmp_path / "s"
    compose(prepared, backgrounds, out, per_fg=2, shard_size=4, denoise=False)
    before = digests(out)
    with open(out / "shard-000001.tar", "r+b") as f:
        f.seek(700)
        f.write(b"damage")
    assert verify_shards(out)
    res = compose(prepared, backgrounds, out, per_fg=2, shard_size=4, denoise=False)
    assert (res.shards_written, res.shards_skipped) == (1, 1)
    assert digests(out) == before


def test_other_settings_are_refused_unless_overwrite(prepared, backgrounds, tmp_path):
    out = tmp_path / "s"
    compose(prepared, backgrounds, out, per_fg=2, shard_size=4, denoise=False)
    with pytest.raises(ValueError, match="per_fg: 2 -> 3"):
        compose(prepared, backgrounds, out, per_fg=3, shard_size=4, denoise=False)
    res = compose(prepared, backgrounds, out, per_fg=1, shard_size=4, denoise=False, overwrite=True)
    assert res.composites == 4 and len(list(out.glob("shard-*.tar"))) == 1


def test_bad_inputs_are_recorded_and_skipped(prepared, backgrounds, tmp_path):
    bgs = tmp_path / "bgs"
    shutil.copytree(backgrounds, bgs)
    victim = sorted(bgs.rglob("*.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[:2000])  # truncated photo
    prep = tmp_path / "prep"
    shutil.copytree(prepared, prep)
    fg = sorted((prep / "train" / "fg").glob("*.png"))[0]
    write_image(fg, np.zeros((50, 50, 3), np.uint8))  # foreground of the wrong size
    res = compose(prep, bgs, tmp_path / "s", per_fg=6, shard_size=50, denoise=False, seed=1)
    rows = [json.loads(line) for line in (tmp_path / "s" / "manifest.jsonl").read_text().splitlines()]
    failed = [r for r in rows if r["fate"] == "failed"]
    assert res.complete and res.failed == len(failed) > 6 and res.composites == 24 - len(failed)
    reasons = " ".join(r["reason"] for r in failed)
    assert str(victim) in reasons and "truncated" in reasons
    assert fg.stem in reasons and "50x50" in reasons
    assert read_index(tmp_path / "s")["samples"] == res.composites


@pytest.fixture(scope="module")
def small_backgrounds(sample_data, tmp_path_factory):
    """Two small backgrounds, so that real BM3D runs in seconds."""
    root = tmp_path_factory.mktemp("small")
    for i, p in enumerate(sorted(sample_data.photos.glob("photo_0[01].jpg"))):
        write_image(root / f"bg{i}.jpg", cv2.resize(read_rgb(p), (120, 108), interpolation=cv2.INTER_AREA))
    return root


def test_cli_compose_and_inspect(prepared, backgrounds, tmp_path):
    from cli.main import main

    runner = CliRunner()
    out = tmp_path / "shards"
    r = runner.invoke(main, ["compose", "--matting", str(prepared), "--backgrounds", str(backgrounds),
                             "--out", str(out), "--per-fg", "4", "--no-denoise", "--shard-size", "6",
                             "--blur-kernels", "21,41", "--p-noise", "1"])
    assert r.exit_code == 0, r.output
    assert "composites: 16 in 3 shards" in r.output
    grid = tmp_path / "sheet.png"
    r = runner.invoke(main, ["inspect", str(out), "--grid", str(grid), "--samples", "3", "--verify"])
    assert r.exit_code == 0, r.output
    assert "samples:     16" in r.output and "all shards match the index" in r.output
    assert "noise        16 / 16" in r.output
    sheet = read_rgb(grid)
    assert sheet.shape[0] > 3 * 160 and sheet.shape[1] >= 4 * 160 * 160 // 120
    r = runner.invoke(main, ["inspect", str(out), "--json"])
    report = json.loads(r.output)
    assert report["steps"]["denoise"]["fired"] == 0 and set(report["blur_kernels"]) <= {"21", "41"}

    # Misuse: clear message, non-zero exit.
    r = runner.invoke(main, ["compose", "--matting", str(prepared), "--backgrounds", str(backgrounds),
                             "--out", str(tmp_path / "x"), "--split", "nope"])
    assert r.exit_code != 0 and "no split named nope" in r.output
    r = runner.invoke(main, ["compose", "--matting", str(prepared), "--backgrounds", str(backgrounds),
                             "--out", str(tmp_path / "x"), "--blur-kernels", "a,b"])
    assert r.exit_code != 0 and "comma-separated" in r.output
    r = runner.invoke(main, ["inspect", str(tmp_path)])
    assert r.exit_code != 0 and "no shard index" in r.output


def test_end_to_end_with_real_prepare_and_the_denoise_cache(sample_data, small_backgrounds, tmp_path):
    """`rssn prepare --denoise` then `rssn compose`: compose reads the prepared set,
    finds prepare's BM3D entries of the foregrounds (same profile, taken from
    prepare's run.json), stops with a list when background entries are missing
    (``error``) or computes them (``compute``) with real BM3D."""
    from cli.main import main

    from rssn.denoise import cached_path

    bgs = small_backgrounds
    prep = tmp_path / "prepared"
    runner = CliRunner()
    r = runner.invoke(main, ["prepare", str(sample_data.am2k), "--out", str(prep), "--categories",
                             str(sample_data.categories), "--denoise", "--denoise-profile", "fast"])
    assert r.exit_code == 0, r.output
    rows = {json.loads(line)["id"]: json.loads(line) for line in (prep / "samples.jsonl").read_text().splitlines()}
    n_fg = sum(row["split"] == "train" for row in rows.values())
    args = ["compose", "--matting", str(prep), "--backgrounds", str(bgs), "--per-fg", "3", "--seed", "4"]

    r = runner.invoke(main, [*args, "--out", str(tmp_path / "err"), "--denoise-missing", "error"])
    assert r.exit_code == 1 and "missing from the cache" in r.output and "rssn denoise" in r.output
    assert str(bgs) in r.output and "/fg/" not in r.output  # only the backgrounds are missing
    assert not (tmp_path / "err").exists()

    out = tmp_path / "shards"
    r = runner.invoke(main, [*args, "--out", str(out)])
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "run.json").read_text())["summary"]
    assert summary["composites"] == 3 * n_fg and 0 < summary["steps"]["denoise"] < 3 * n_fg
    den = summary["denoise"]
    assert den["computed"] == den["needed"] - den["cached"] > 0 and den["failed"] == 0
    for p in shard_paths(out):
        for s in iter_tar_samples(p):
            rec = json.loads(s["json"])
            row = rows[rec["fg_id"]]
            assert s["alpha.png"] == read_bytes(prep / row["alpha"])
            if rec["denoise"]:
                assert s["fg.png"] == read_bytes(prep / row["denoised"]) != read_bytes(prep / row["fg"])
                bg_used = read_rgb(cached_path(bgs / f"{rec['bg_id']}.jpg", prep / "denoise", "fast"))
            else:
                assert s["fg.png"] == read_bytes(prep / row["fg"])
                bg_used = read_rgb(bgs / f"{rec['bg_id']}.jpg")
            x, y, w, h = rec["crop"]
            ref = cv2.resize(bg_used[y:y + h, x:x + w], (rec["width"], rec["height"]), interpolation=cv2.INTER_LINEAR)
            if rec["blur_kernel"]:
                ref = box_blur(ref, rec["blur_kernel"])
            assert np.abs(decode_image(s["bg.jpg"]).astype(int) - ref).mean() < 4.0

    # Warm cache: "error" mode now runs, and gives the same bytes.
    r = runner.invoke(main, [*args, "--out", str(tmp_path / "warm"), "--denoise-missing", "error"])
    assert r.exit_code == 0, r.output
    assert digests(tmp_path / "warm") == digests(out)


def test_shard_bytes_equal_webdataset_tarwriter(tmp_path):
    """Shards are written without importing webdataset (it imports torch), in
    exactly the layout of its TarWriter: same bytes for the same samples."""
    import io as _io

    import webdataset as wds

    from rssn.compose.shards import ShardWriter

    samples = [("m_a-c000", {"json": b'{"a": 1}', "composite.jpg": b"\xff\xd8" * 300, "alpha.png": b"p" * 17,
                             "fg.png": b"f" * 600, "bg.jpg": b"b" * 5}),
               ("m_b-c001", {"json": b"{}", "composite.jpg": b"c", "alpha.png": b"", "fg.png": b"x" * 513,
                             "bg.jpg": b"y" * 1024})]
    with ShardWriter(tmp_path / "ours.tar") as w:
        for key, members in samples:
            w.write(key, members)
    buf = _io.BytesIO()
    ref = wds.TarWriter(buf, encoder=False, mtime=0, user="rssn", group="rssn", mode=0o444)
    for key, members in samples:
        ref.write({"__key__": key, **members})
    ref.close()
    ours = (tmp_path / "ours.tar").read_bytes()
    assert ours == buf.getvalue()
    assert w.sha256 == hashlib.sha256(ours).hexdigest() and w.bytes == len(ours) and w.count == 2
    with pytest.raises(ValueError, match="dot"):
        with ShardWriter(tmp_path / "bad.tar") as w:
            w.write("m.a-c000", {"json": b"{}"})
    assert not (tmp_path / "bad.tar").exists() and not list(tmp_path.glob(".bad.tar*"))


def test_a_changed_input_file_redoes_the_shards_that_use_it(prepared, backgrounds, tmp_path):
    prep = tmp_path / "prep"
    shutil.copytree(prepared, prep)
    out = tmp_path / "s"
    compose(prep, backgrounds, out, per_fg=2, shard_size=4, denoise=False)
    # Re-estimated foreground: the same file name, other pixels.
    fg = sorted((prep / "train" / "fg").glob("*.png"))[0]
    write_image(fg, 255 - read_rgb(fg))
    res = compose(prep, backgrounds, out, per_fg=2, shard_size=4, denoise=False)
    assert (res.shards_written, res.shards_skipped) == (1, 1)
    used = [s for p in shard_paths(out) for s in iter_tar_samples(p) if json.loads(s["json"])["fg_id"] == fg.stem]
    assert len(used) == 2 and all(s["fg.png"] == read_bytes(fg) for s in used)
    assert verify_shards(out) == []


def test_background_ids_are_relative_paths_without_extension(tmp_path):
    from rssn.compose import list_backgrounds

    for rel in ("a.jpg", "a.png", "sub/b.jpg", "c.jpeg"):
        write_image(tmp_path / rel, np.zeros((8, 8, 3), np.uint8))
    ids = [i for i, _ in list_backgrounds(tmp_path)]
    # Names that differ only by extension keep it, so that no two ids meet.
    assert ids == ["a.jpg", "a.png", "c", "sub/b"]
    # A whole build-bg output would mix its held-out testval/ into training.
    (tmp_path / "run.json").write_text(json.dumps({"command": "build-bg"}))
    with pytest.raises(ValueError, match="testval/ stays held out"):
        list_backgrounds(tmp_path)


def test_a_foregrounds_colours_are_decoded_once_per_shard(prepared, backgrounds, tmp_path, monkeypatch):
    """The composites of one foreground switch between its F and its denoised copy
    (one coin each); a shard decodes each of the two once."""
    from rssn.compose import composite
    from rssn.compose.route import RouteConfig

    fg = sorted((prepared / "train" / "fg").glob("*.png"))[0]
    twin = tmp_path / "denoised.png"  # stands in for the denoised copy
    shutil.copyfile(fg, twin)
    alpha = prepared / "train" / "alpha" / fg.name
    bg = sorted(backgrounds.rglob("*.jpg"))[0]
    loads: list[str] = []
    real = composite._load_rgb
    monkeypatch.setattr(composite, "_load_rgb", lambda p: loads.append(p) or real(p))
    cache = composite.InputCache()
    settings = {"route": RouteConfig().to_dict(), "seed": 0, "jpeg_quality": 90}
    for k in range(6):
        d = {"crop_u": [0.5, 0.5], "denoise": bool(k % 2), "blur_kernel": None, "noise": False, "noise_seed": 0}
        item = {"key": f"x-c{k:03d}", "fg_id": "x", "index": k, "split": "train", "fg": str(twin if k % 2 else fg),
                "alpha": str(alpha), "bg": str(bg), "bg_id": "b", "decisions": d}
        composite.make_composite(item, settings, cache)
    assert sorted(loads) == sorted([str(fg), str(twin)])


def test_inspect_reports_an_unreadable_shard_and_reads_the_rest(prepared, backgrounds, tmp_path):
    from cli.main import main
    from rssn.inspect import inspect_shards

    out = tmp_path / "s"
    compose(prepared, backgrounds, out, per_fg=2, shard_size=4, denoise=False)
    tar = out / "shard-000001.tar"
    tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 3])
    report = inspect_shards(out)
    assert report["samples"] == 4 and report["shards"] == 2
    assert any(p.startswith(f"{tar}: cannot be read") for p in report["problems"])
    grid = tmp_path / "sheet.png"
    r = CliRunner().invoke(main, ["inspect", str(out), "--verify", "--grid", str(grid)])
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.output
    assert "cannot be read" in r.output and "problem(s) found" in r.output
    assert read_rgb(grid).shape[1] > 0  # drawn from the readable shard
    r = CliRunner().invoke(main, ["inspect", str(out), "--grid", str(tmp_path / "sheet.gif")])
    assert r.exit_code == 1 and "name it .png" in r.output and not (tmp_path / "sheet.gif").exists()
