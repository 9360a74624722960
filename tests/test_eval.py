"""rssn eval: end to end on the sample set, both prediction sources, resume, trimaps, errors."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli.main import main
from gfm_train.evaluate import evaluate, generate_trimap, normalise_trimap
from gfm_train.infer import predict_alpha
from gfm_train.metrics import dim_metrics, gfm_metrics
from gfm_train.model import build_gfm, load_checkpoint, save_checkpoint
from rssn.io import read_alpha, read_rgb, write_bytes_atomic, write_image

REPORT_FILES = ("run.json", "manifest.jsonl", "metrics.json", "metrics.csv", "summary.md")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_gfm("tiny", "FT")
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint-last.pt"
    save_checkpoint(path, model, input_convention="imagenet")
    return path


@pytest.fixture(scope="module")
def checkpoint_eval(sample_data, checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "eval"
    result = evaluate(sample_data.am2k, out, checkpoint=checkpoint, protocol="both", worst=2)
    return out, result


def _validation(sample_data):
    v = Path(sample_data.am2k) / "validation"
    return sorted((v / "original").glob("*.jpg"))


def test_checkpoint_eval_writes_every_report_file(checkpoint_eval, sample_data):
    out, result = checkpoint_eval
    for name in REPORT_FILES:
        assert (out / name).is_file(), name
    ids = [p.stem for p in _validation(sample_data)]
    assert len(ids) == 2
    for sid in ids:
        assert (out / "per_image" / "validation" / f"{sid}.json").is_file()
        assert read_alpha(out / "predictions" / "validation" / f"{sid}.png").shape == (120, 160)
    maps = sorted((out / "worst").glob("*.png"))
    assert len(maps) == 2 and all(read_rgb(m).shape[2] == 3 for m in maps)
    summary = (out / "summary.md").read_text()
    assert "## GFM protocol" in summary and "## DIM protocol" in summary
    assert "| split | images | SAD | MSE | MAD | Grad | Conn | SAD-Trans | SAD-FG | SAD-BG |" in summary
    assert "worst/01_" in summary
    assert result["counts"] == {"scored": 2}
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["params"]["protocols"] == ["gfm", "dim"]
    assert run["params"]["input_convention"] == "imagenet"


def test_checkpoint_eval_numbers_are_the_metrics_of_the_predictions(checkpoint_eval, checkpoint, sample_data):
    out, result = checkpoint_eval
    table = json.loads((out / "metrics.json").read_text())
    model, meta = load_checkpoint(checkpoint)
    rows = {r["id"]: r for r in table["images"]}
    for img_path in _validation(sample_data):
        sid = img_path.stem
        root = img_path.parent.parent
        truth = read_alpha(root / "mask" / f"{sid}.png")
        tri = read_alpha(root / "trimap" / f"{sid}.png")
        pred = predict_alpha(model, read_rgb(img_path), meta["input_convention"], mode="hybrid")
        assert rows[sid]["metrics"]["gfm"] == pytest.approx(gfm_metrics(pred, truth, tri), rel=1e-9)
        # DIM scores the 8-bit prediction: exactly the PNG that was written
        png = read_alpha(out / rows[sid]["prediction"])
        assert rows[sid]["metrics"]["dim"] == pytest.approx(dim_metrics(png, truth, tri), rel=1e-12)
        assert rows[sid]["trimap_source"] == "dataset"
    avg = table["averages"]["validation"]
    for p in ("gfm", "dim"):
        for m, v in avg[p].items():
            assert v == pytest.approx(np.mean([r["metrics"][p][m] for r in rows.values()]))
    with open(out / "metrics.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert {r["id"] for r in csv_rows} == set(rows)
    for r in csv_rows:
        assert float(r["gfm_conn"]) == rows[r["id"]]["metrics"]["gfm"]["conn"]
        assert float(r["dim_grad"]) == rows[r["id"]]["metrics"]["dim"]["grad"]


def test_scoring_saved_predictions_matches_under_dim(checkpoint_eval, sample_data, tmp_path):
    out, _ = checkpoint_eval
    res = evaluate(sample_data.am2k, tmp_path / "rescore", pred_dir=out / "predictions", protocol="both", worst=1)
    first = {r["id"]: r for r in json.loads((out / "metrics.json").read_text())["images"]}
    again = {r["id"]: r for r in json.loads((tmp_path / "rescore" / "metrics.json").read_text())["images"]}
    assert res["counts"] == {"scored": 2}
    for sid, r in again.items():
        assert r["metrics"]["dim"] == first[sid]["metrics"]["dim"]
        # GFM scores the float output in checkpoint mode, the 8-bit file here: close, not equal
        assert r["metrics"]["gfm"]["sad"] == pytest.approx(first[sid]["metrics"]["gfm"]["sad"], rel=0.02)
    assert "predictions from" in (tmp_path / "rescore" / "summary.md").read_text()


def test_rerun_resumes_and_parameter_change_recomputes(sample_data, checkpoint, tmp_path):
    out = tmp_path / "ev"
    evaluate(sample_data.am2k, out, checkpoint=checkpoint, protocol="gfm", worst=0)
    per_image = sorted((out / "per_image").rglob("*.json"))
    stamps = [p.stat().st_mtime_ns for p in per_image]
    evaluate(sample_data.am2k, out, checkpoint=checkpoint, protocol="gfm", worst=0)
    assert [p.stat().st_mtime_ns for p in per_image] == stamps  # reused, not rewritten
    evaluate(sample_data.am2k, out, checkpoint=checkpoint, protocol="dim", worst=0)
    assert [p.stat().st_mtime_ns for p in per_image] != stamps
    table = json.loads((out / "metrics.json").read_text())
    assert all(set(r["metrics"]) == {"dim"} for r in table["images"])
    assert "# Evaluation (DIM protocol)" in (out / "summary.md").read_text()


def test_generated_trimaps_follow_the_documented_kernel(sample_data, tmp_path):
    # The sample set's trimaps were made with the same rule and kernel 15: dropping
    # them and generating with --trimap-kernel 15 must give identical scores.
    data = tmp_path / "am2k"
    shutil.copytree(Path(sample_data.am2k) / "validation", data / "validation")
    preds = tmp_path / "preds"
    for m in (data / "validation" / "mask").glob("*.png"):
        a = read_alpha(m).astype(np.int16)
        write_bytes_atomic(preds / m.name, _png(np.clip(a + 40, 0, 255).astype(np.uint8)))
    with_tri = evaluate(data, tmp_path / "a", pred_dir=preds, protocol="both", worst=0)
    for t in (data / "validation" / "trimap").glob("*.png"):
        assert np.array_equal(generate_trimap(read_alpha(data / "validation" / "mask" / t.name), 15), read_alpha(t))
    shutil.rmtree(data / "validation" / "trimap")
    generated = evaluate(data, tmp_path / "b", pred_dir=preds, protocol="both", trimap_kernel=15, worst=0)
    assert generated["averages"] == with_tri["averages"]
    rows = json.loads((tmp_path / "b" / "metrics.json").read_text())["images"]
    assert {r["trimap_source"] for r in rows} == {"generated"}
    assert "elliptical kernel 15 px" in (tmp_path / "b" / "summary.md").read_text()
    wider = evaluate(data, tmp_path / "c", pred_dir=preds, protocol="dim", trimap_kernel=35, worst=0)
    assert wider["averages"]["validation"]["dim"]["sad"] > generated["averages"]["validation"]["dim"]["sad"]


def _png(arr):
    from rssn.io import encode_image

    return encode_image(arr, "png")


def test_missing_and_broken_predictions_are_recorded(sample_data, tmp_path):
    masks = sorted((Path(sample_data.am2k) / "validation" / "mask").glob("*.png"))
    preds = tmp_path / "preds"
    preds.mkdir()
    shutil.copy(masks[0], preds / masks[0].name)  # a perfect prediction
    res = evaluate(sample_data.am2k, tmp_path / "ev", pred_dir=preds, worst=1)
    assert res["counts"] == {"missing": 1, "scored": 1}
    perfect = res["averages"]["validation"]["gfm"]
    assert perfect["sad"] == 0 and perfect["conn"] == 0 and perfect["grad"] == 0
    (preds / masks[1].name).write_bytes(b"\x89PNG\r\n\x1a\n broken")
    res = evaluate(sample_data.am2k, tmp_path / "ev2", pred_dir=preds, worst=0)
    assert res["counts"] == {"failed": 1, "scored": 1}
    manifest = [json.loads(x) for x in (tmp_path / "ev2" / "manifest.jsonl").read_text().splitlines()]
    failed = [r for r in manifest if r["fate"] == "failed"]
    assert masks[1].name in failed[0]["reason"] or "PNG" in failed[0]["reason"] or "decode" in failed[0]["reason"]
    assert "## Not scored" in (tmp_path / "ev2" / "summary.md").read_text()


def test_prepared_folder_and_split_choice(sample_data, tmp_path):
    # a prepared-style samples.jsonl pointing at the sample set's files
    root = tmp_path / "prepared"
    rows = []
    for split in ("train", "validation"):
        src = Path(sample_data.am2k) / split
        for m in sorted((src / "mask").glob("*.png")):
            dst = root / split
            (dst / "alpha").mkdir(parents=True, exist_ok=True)
            (dst / "image").mkdir(parents=True, exist_ok=True)
            shutil.copy(m, dst / "alpha" / m.name)
            shutil.copy(src / "original" / f"{m.stem}.jpg", dst / "image" / f"{m.stem}.jpg")
            rows.append({"id": m.stem, "split": split, "category": "cat", "image": f"{split}/image/{m.stem}.jpg",
                         "alpha": f"{split}/alpha/{m.name}", "fg": f"{split}/image/{m.stem}.jpg", "trimap": None,
                         "width": 160, "height": 120, "fg_method": "given"})
    (root / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    preds = root / "train" / "alpha"  # perfect predictions for the train split
    res = evaluate(root, tmp_path / "ev", pred_dir=preds, splits=["train"], worst=0)
    assert res["counts"] == {"scored": len(list(preds.glob("*.png")))}
    assert res["averages"]["train"]["gfm"]["sad"] == 0
    with pytest.raises(ValueError, match="not in the dataset"):
        evaluate(root, tmp_path / "ev3", pred_dir=preds, splits=["test"])


def test_normalise_trimap():
    t = np.array([[0, 10, 127, 129, 200, 255]], np.uint8)
    n, changed = normalise_trimap(t)
    assert changed and n.tolist() == [[0, 0, 128, 128, 255, 255]]
    same, changed = normalise_trimap(np.array([[0, 128, 255]], np.uint8))
    assert not changed


def test_cli_eval_and_misuse(sample_data, checkpoint, tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["eval", "--checkpoint", str(checkpoint), "--dataset", str(sample_data.am2k),
                               "--out", str(tmp_path / "ev"), "--protocol", "dim", "--mode", "resize", "--worst", "1"])
    assert res.exit_code == 0, res.output
    assert "validation [dim]: SAD" in res.output and "summary.md" in res.output
    assert json.loads((tmp_path / "ev" / "run.json").read_text())["params"]["mode"] == "resize"
    res = runner.invoke(main, ["eval", "--dataset", str(sample_data.am2k), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "exactly one of --checkpoint or --pred" in res.output
    res = runner.invoke(main, ["eval", "--dataset", str(sample_data.am2k), "--out", str(tmp_path / "x"),
                               "--pred", str(tmp_path / "ev"), "--split", "nope"])
    assert res.exit_code == 1 and "not in the dataset" in res.output
    assert "Score a model" in runner.invoke(main, ["eval", "--help"]).output
    # predictions that match no sample: reported, and a failing exit status
    empty = tmp_path / "nothing"
    empty.mkdir()
    write_image(empty / "unrelated.png", np.zeros((4, 4), np.uint8))
    res = runner.invoke(main, ["eval", "--dataset", str(sample_data.am2k), "--out", str(tmp_path / "ev4"),
                               "--pred", str(empty)])
    assert res.exit_code == 1 and "no image could be scored" in res.output
    assert "all [gfm]" not in res.output
    res = runner.invoke(main, ["eval", "--checkpoint", str(checkpoint), "--dataset", str(sample_data.am2k),
                               "--out", str(tmp_path / "ev5"), "--device", "gpu"])
    assert res.exit_code == 1 and "unknown device 'gpu'" in res.output
