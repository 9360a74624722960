"""Training data and the training loop: shards through a real DataLoader, ORI track,
overfitting, exact resume, validation hook, the command line."""
from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from click.testing import CliRunner
from torch.utils.data import DataLoader

from gfm_train.data import MattingStream, PhotoSource, ShardSource, augment, crop_box, read_photo_records
from gfm_train.model import load_checkpoint
from gfm_train.train import make_validator, train
from rssn.io import encode_image, write_image
from rssn.seeding import generator

torch.set_num_threads(1)


def write_shards(folder: Path, n: int = 8, size: tuple[int, int] = (96, 80), per_shard: int = 4, seed: int = 0,
                 broken: set[int] = frozenset()) -> list[str]:
    """Composite shards in the docs/formats.md layout: soft discs over noise, keys ``fgNNN-c000``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    keys = []
    for start in range(0, n, per_shard):
        with wds.TarWriter(str(folder / f"shard-{start // per_shard:06d}.tar")) as tw:
            for i in range(start, min(n, start + per_shard)):
                cx, cy = rng.uniform(0.35, 0.65) * w, rng.uniform(0.35, 0.65) * h
                r = rng.uniform(0.2, 0.3) * min(w, h)
                alpha = np.clip((r - np.hypot(xx - cx, yy - cy)) / 5 + 0.5, 0, 1)
                fg = np.broadcast_to(rng.integers(0, 256, 3).astype(np.uint8), (h, w, 3)).copy()
                bg = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
                comp = (alpha[..., None] * fg + (1 - alpha[..., None]) * bg).round().astype(np.uint8)
                key = f"fg{i:03d}-c000"
                keys.append(key)
                a8 = (alpha * 255).round().astype(np.uint8)
                tw.write({
                    "__key__": key,
                    "composite.jpg": encode_image(comp, "jpg"),
                    "alpha.png": b"not a png" if i in broken else encode_image(a8, "png"),
                    "fg.png": encode_image(fg, "png"),
                    "bg.jpg": encode_image(bg, "jpg"),
                    "json": json.dumps({"key": key, "fg_id": f"fg{i:03d}", "index": 0, "width": w,
                                        "height": h}).encode(),
                })
    return keys


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    return folder, write_shards(folder)


def _keys(stream, workers=0, batch_size=1):
    out = []
    for batch in DataLoader(stream, batch_size=batch_size, num_workers=workers):
        out += list(batch["key"])
    return out


def test_loader_reads_every_sample_once_per_epoch(shards):
    folder, keys = shards
    stream = MattingStream(ShardSource(folder, shuffle_buffer=4), seed=3, crop_sizes=(64, 96), size=64)
    batch = next(iter(DataLoader(stream, batch_size=3, num_workers=0)))
    assert batch["image"].shape == (3, 3, 64, 64) and batch["image"].dtype == torch.uint8
    assert batch["alpha"].shape == (3, 1, 64, 64) and 0 <= batch["alpha"].min() <= batch["alpha"].max() <= 1
    assert set(batch["maps"]) == {"trimap", "eroded", "dilated"}
    for workers in (0, 2):
        got = _keys(stream, workers)
        assert sorted(got) == sorted(keys)
    # the order changes from epoch to epoch but not from run to run
    stream.set_position(0)
    first = _keys(stream)
    stream.set_position(1)
    assert _keys(stream) != first
    stream.set_position(0)
    assert _keys(stream) == first
    # two ranks share the data without overlap
    parts = [_keys(MattingStream(ShardSource(folder), seed=3, size=64, crop_sizes=(64,), rank=r, world_size=2))
             for r in (0, 1)]
    assert not set(parts[0]) & set(parts[1]) and sorted(parts[0] + parts[1]) == sorted(keys)
    # more readers than shards: samples are split instead of shards
    parts = [_keys(MattingStream(ShardSource(folder), seed=3, size=64, crop_sizes=(64,), rank=r, world_size=3))
             for r in (0, 1, 2)]
    assert sorted(sum(parts, [])) == sorted(keys) and all(parts)


def test_loader_workers_start_after_opencv_ran_threads_here(shards):
    # validation (and anything else) runs OpenCV in the training process; loader processes
    # forked after that must not wait forever for OpenCV's thread pool
    import cv2

    folder, keys = shards
    img = np.random.default_rng(0).random((1500, 1500), dtype=np.float32)
    for _ in range(3):
        cv2.GaussianBlur(img, (31, 31), 5)
    stream = MattingStream(ShardSource(folder, shuffle_buffer=1), crop_sizes=(64,), size=64)
    got = [k for b in DataLoader(stream, batch_size=2, num_workers=2, timeout=60) for k in b["key"]]
    assert sorted(got) == sorted(keys)


def test_resume_position_skips_exactly_the_used_batches(shards):
    folder, _ = shards
    stream = MattingStream(ShardSource(folder, shuffle_buffer=3), seed=1, crop_sizes=(64,), size=64)
    for workers in (0, 2):
        stream.set_position(2)
        full = [b["key"] for b in DataLoader(stream, batch_size=2, num_workers=workers)]
        stream.set_position(2, skip_batches=3, batch_size=2)
        rest = [b["key"] for b in DataLoader(stream, batch_size=2, num_workers=workers)]
        assert rest == full[3:]
    # crops depend on (seed, epoch, key) only, not on where a sample lands
    stream.set_position(0)
    a = {b["key"][0]: b["image"] for b in DataLoader(stream, batch_size=1)}
    b = {x["key"][0]: x["image"] for x in DataLoader(stream, batch_size=1, num_workers=2)}
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_samples_are_skipped_with_a_message(tmp_path, caplog):
    keys = write_shards(tmp_path / "s", n=4, broken={1})
    stream = MattingStream(ShardSource(tmp_path / "s"), size=64, crop_sizes=(64,))
    with caplog.at_level(logging.WARNING):
        got = _keys(stream)
    assert sorted(got) == sorted(k for k in keys if k != "fg001-c000")
    assert "fg001-c000" in caplog.text


def test_crop_and_augment():
    alpha = np.zeros((120, 200), np.uint8)
    alpha[40:80, 150:190] = 255
    alpha[38:40, 150:190] = 128
    for seed in range(20):
        x, y, side = crop_box(alpha, (640, 960, 1280), generator(0, seed), centre_prob=1.0)
        assert side == 120 and 0 <= x <= 80 and y == 0  # clamped to the image
        x, y, side = crop_box(alpha, (50,), generator(0, seed), centre_prob=1.0)
        crop = alpha[y:y + side, x:x + side]
        assert ((crop > 0) & (crop < 255)).any() or (crop == 255).any()  # centred near the edge
        assert x + side > 150 - 13 and y + side > 38 - 13  # within a kernel of the transition
    img = np.dstack([np.tile(np.arange(200, dtype=np.uint8), (120, 1))] * 3)
    arrays = {"image": img, "fg": img, "bg": img, "alpha": alpha}
    flips = 0
    for seed in range(40):
        out = augment(arrays, generator(0, seed), crop_sizes=(120,), size=64)
        assert out["image"].shape == (64, 64, 3) and out["trimap"].shape == (64, 64)
        flips += int(out["image"][0, 0, 0] > out["image"][0, -1, 0])
    assert 8 <= flips <= 32  # p = 0.5
    a = augment(arrays, generator(5, "k"), crop_sizes=(100,), size=64)
    b = augment(arrays, generator(5, "k"), crop_sizes=(100,), size=64)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_overfit_tiny_model(tmp_path):
    # four 96x96 composites, whole-image crops: 60 Adam steps must cut the loss 5-fold
    folder = tmp_path / "four"
    write_shards(folder, n=4, size=(96, 96), seed=5)
    result = train(tmp_path / "run", shards=folder, backbone="tiny", rosta="TT", steps=60, batch_size=4, lr=1e-3,
                   size=64, crop_sizes=(96,), workers=0, log_every=10, progress=False)
    first, last = np.mean(result.losses[:3]), np.mean(result.losses[-3:])
    assert last < first / 5, (first, last)
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert [int(r["step"]) for r in rows] == [10, 20, 30, 40, 50, 60]
    assert (tmp_path / "run" / "loss.png").stat().st_size > 1000
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["status"] == "complete" and run["summary"]["steps"] == 60


def test_resume_gives_identical_weights(shards, tmp_path):
    folder, _ = shards
    kw = dict(shards=folder, backbone="tiny", rosta="FT", batch_size=2, lr=1e-3, size=64, crop_sizes=(64, 96),
              workers=2, shuffle_buffer=3, seed=7, progress=False, log_every=1, checkpoint_every=100)
    straight = train(tmp_path / "a", steps=6, **kw)  # 4 batches an epoch: crosses into epoch 1
    train(tmp_path / "b", steps=3, **kw)
    resumed = train(tmp_path / "b", steps=6, resume=True, **kw)
    assert resumed.steps == 6 and resumed.epoch == straight.epoch == 1
    for k, v in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[k], v), k
    assert resumed.losses == straight.losses[3:]
    rows = list(csv.DictReader(open(tmp_path / "b" / "log.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    net, meta = load_checkpoint(tmp_path / "b" / "last.pth")
    assert meta["step"] == 6 and meta["position"] == {"epoch": 1, "batch": 2}
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(tmp_path / "c", steps=2, resume=True, **kw)


def test_ori_track_on_real_photos(sample_data, tmp_path):
    # a raw AM-2k layout: real photos, no foreground estimate
    result = train(tmp_path / "ori", dataset=sample_data.am2k, backbone="tiny", rosta="BT", steps=2, batch_size=2,
                   size=64, crop_sizes=(96,), workers=0, progress=False)
    assert result.steps == 2 and (tmp_path / "ori" / "model.pth").is_file()
    # a prepared folder (docs/formats.md) with estimated foregrounds
    prep = tmp_path / "prepared"
    rows = []
    for s in read_photo_records(sample_data.am2k)[:2]:
        from rssn.io import read_alpha, read_rgb

        img, a = read_rgb(s.image), read_alpha(s.alpha)
        write_image(prep / "train" / "image" / f"{s.id}.png", img)
        write_image(prep / "train" / "alpha" / f"{s.id}.png", a)
        write_image(prep / "train" / "fg" / f"{s.id}.png", img)
        rows.append({"id": s.id, "split": "train", "image": f"train/image/{s.id}.png", "alpha": f"train/alpha/{s.id}.png",
                     "fg": f"train/fg/{s.id}.png", "trimap": None, "width": img.shape[1], "height": img.shape[0],
                     "category": None, "fg_method": "given"})
    (prep / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    src = PhotoSource(prep)
    assert [r.id for r in src.records] == sorted(r["id"] for r in rows) and all(r.fg for r in src.records)
    batch = next(iter(DataLoader(MattingStream(src, size=64, crop_sizes=(96,)), batch_size=2)))
    assert batch["bg"].shape == (2, 3, 64, 64)
    rows[0]["alpha"] = "../../etc/passwd"
    (prep / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError):
        PhotoSource(prep)
    with pytest.raises(ValueError, match="no 'validation' samples|real photo"):
        PhotoSource(sample_data.am2k, split="nosuchsplit")


def test_cli_train_with_validation(shards, tmp_path):
    from cli.main import main

    folder, _ = shards
    out = tmp_path / "run"
    runner = CliRunner()
    res = runner.invoke(main, ["train", "--shards", str(folder), "--backbone", "tiny", "--rosta", "RIM", "--steps", "2",
                               "--batch-size", "2", "--size", "64", "--crop-sizes", "64,96", "--workers", "0",
                               "--out", str(out), "--val", str(folder), "--val-every", "1", "--log-every", "1"])
    assert res.exit_code == 0, res.output
    assert "trained 2 steps" in res.output
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert all(float(r["val_loss"]) > 0 and 0 <= float(r["val_mae"]) <= 1 for r in rows)
    net, meta = load_checkpoint(out / "model.pth")
    assert net.rosta == "RIM" and meta["input_convention"] == "imagenet" and "optimizer" not in meta
    for args, message in [
        ([], "--shards"),
        (["--shards", str(folder), "--dataset", str(tmp_path)], "only one"),
        (["--shards", str(folder), "--size", "70"], "multiple of 32"),
        (["--shards", str(folder), "--crop-sizes", "a,b"], "comma-separated"),
        (["--shards", str(folder), "--backbone", "r34", "--pretrained", "/nonexistent.pth"], "not found"),
        (["--shards", str(folder), "--backbone", "tiny", "--device", "gpu"], "unknown device 'gpu'"),
    ]:
        res = runner.invoke(main, ["train", "--steps", "1", "--out", str(tmp_path / "bad"), *args])
        assert res.exit_code != 0 and message in res.output, (args, res.output)
    # more per-process batch than data: a clear error, and run.json says the run failed
    res = runner.invoke(main, ["train", "--shards", str(folder), "--backbone", "tiny", "--steps", "1", "--size", "64",
                               "--batch-size", "64", "--workers", "0", "--out", str(tmp_path / "big")])
    assert res.exit_code == 1 and "no batch" in res.output
    assert json.loads((tmp_path / "big" / "run.json").read_text())["status"] == "failed"


def test_validator_reports_loss_and_alpha_errors(shards):
    folder, _ = shards
    from gfm_train.model import build_gfm

    validate = make_validator(ShardSource(folder, shuffle_buffer=1), "TT", "imagenet", 64, max_batches=1)
    scores = validate(build_gfm("tiny", "TT").eval(), 0)
    assert set(scores) == {"val_loss", "val_mae", "val_mse"} and scores["val_mae"] > 0.05
