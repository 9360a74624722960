"""Inference (hybrid / resize) and rssn predict."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli.main import main
from gfm_train.infer import collect_inputs, network_size, predict_alpha, predict_images, resolve_device
from gfm_train.model import build_gfm, save_checkpoint
from rssn.io import read_alpha, write_image


@pytest.fixture(scope="module")
def tt_checkpoint(tmp_path_factory):
    torch.manual_seed(1)
    model = build_gfm("tiny", "TT")
    # a Glance bias towards "transition" so the merged alpha is not all zero
    with torch.no_grad():
        last = [m for m in model.glance.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        if last.bias is not None:
            last.bias.copy_(torch.tensor([0.0, 5.0, 0.0]))
    path = tmp_path_factory.mktemp("ckpt") / "tt.pt"
    save_checkpoint(path, model, input_convention="raw255")
    return path


def test_network_sizes_follow_the_rules():
    # 1080 x 1920: glance int(360)->352, int(640)->640; focus 540->512, 960->960
    assert network_size(1080, 1920, 1 / 3) == (352, 640)
    assert network_size(1080, 1920, 1 / 2) == (512, 960)
    # capped at 1600 per side, and never below 32
    assert network_size(6000, 4000, 1 / 2) == (1600, 1600)
    assert network_size(40, 50, 1 / 3) == (32, 32)
    assert all(s % 32 == 0 for s in network_size(1471, 1195, 1 / 3))


def _spread_glance(model, x):
    """Sharpen and centre every Glance head's scores on ``x`` so that all classes occur
    (a randomly initialised network says "background" everywhere)."""
    with torch.no_grad():
        scores = model.forward_glance(x)
        scores = scores if isinstance(scores, dict) else {"": scores}
        for name, head in model.glance.named_children():
            if name.startswith("decoder0_g"):
                last = [m for m in head.modules() if isinstance(m, torch.nn.Conv2d)][-1]
                last.weight.mul_(200)
                last.bias.sub_(scores[name[len("decoder0_g_"):].upper()].mean((0, 2, 3))).mul_(200)


@pytest.mark.parametrize("rosta", ["TT", "FT", "BT", "RIM"])
def test_hybrid_decoder_only_passes_equal_full_forward(rosta):
    from gfm_train.infer import image_tensor

    torch.manual_seed(0)
    model = build_gfm("tiny", rosta).eval()
    img = (np.random.default_rng(0).random((150, 210, 3)) * 255).astype(np.uint8)
    _spread_glance(model, image_tensor(img, network_size(150, 210, 1 / 3), "imagenet", torch.device("cpu")))
    if rosta == "RIM":  # weights that keep the fusion off its clamps
        for p in model.rim.parameters():
            torch.nn.init.normal_(p, 0.0, 0.5)
    fast = predict_alpha(model, img, "imagenet", mode="hybrid")
    full = predict_alpha(model, img, "imagenet", mode="hybrid", full_forward=True)
    assert fast.shape == (150, 210) and fast.dtype == np.float32
    assert np.array_equal(fast, full)
    assert 0.0 <= fast.min() and fast.max() <= 1.0
    assert fast.std() > 0.05  # Glance's classes vary: not a constant matte


def test_hybrid_uses_two_resolutions_and_resize_one():
    torch.manual_seed(0)
    model = build_gfm("tiny", "TT").eval()
    seen = []
    hook = model.encoder.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape[-2:])))
    img = np.zeros((300, 480, 3), np.uint8)
    predict_alpha(model, img, "raw255", mode="hybrid")
    assert seen == [(96, 160), (128, 224)]  # 1/3: 100->96, 160; 1/2: 150->128, 240->224
    seen.clear()
    out = predict_alpha(model, img, "raw255", mode="resize")
    hook.remove()
    assert seen == [(128, 224)] and out.shape == (300, 480)


def test_merge_matches_collaborative_matting_rule():
    # TT: alpha is Focus where Glance says transition (class 1), 1 on fg, 0 on bg.
    torch.manual_seed(0)
    model = build_gfm("tiny", "TT").eval()
    img = (np.random.default_rng(1).random((96, 96, 3)) * 255).astype(np.uint8)
    from gfm_train.infer import _upsample, image_tensor, network_size as ns

    dev = torch.device("cpu")
    xg = image_tensor(img, ns(96, 96, 1 / 3), "raw255", dev)
    # a random network says "background" everywhere: sharpen and centre its Glance scores
    # so that all three classes occur
    last = [m for m in model.glance.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.weight.mul_(200)
        last.bias.sub_(model.forward_glance(xg).mean((0, 2, 3)))
    with torch.inference_mode():
        g = _upsample(model.forward_glance(xg), (96, 96))
        f = _upsample(model.forward_focus(image_tensor(img, ns(96, 96, 1 / 2), "raw255", dev)), (96, 96))
    cls = g.argmax(1)[0].numpy()
    assert set(np.unique(cls)) == {0, 1, 2}
    expect = np.where(cls == 2, 1.0, np.where(cls == 1, f[0, 0].numpy(), 0.0))
    assert np.allclose(predict_alpha(model, img, "raw255"), expect, atol=1e-7)


def test_predict_folder_and_file(sample_data, tt_checkpoint, tmp_path):
    folder = Path(sample_data.am2k) / "validation" / "original"
    single = next((Path(sample_data.am2k) / "train" / "original").glob("*.jpg"))
    out = tmp_path / "mattes"
    res = predict_images(tt_checkpoint, [folder, single], out, device="cpu")
    names = sorted(p.stem for p in folder.glob("*.jpg")) + [single.stem]
    assert res["counts"] == {"written": len(names)}
    for name in names:
        alpha = read_alpha(out / "alpha" / f"{name}.png")
        from PIL import Image

        with Image.open(out / "cutout" / f"{name}.png") as im:
            assert im.mode == "RGBA" and im.size == (160, 120)
            rgba = np.asarray(im)
        assert alpha.shape == (120, 160)
        assert np.array_equal(rgba[..., 3], alpha)
    assert any(read_alpha(out / "alpha" / f"{n}.png").max() > 0 for n in names)
    manifest = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert {r["fate"] for r in manifest} == {"written"}
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    # a rerun keeps what exists; --overwrite predicts again
    again = predict_images(tt_checkpoint, [folder, single], out, device="cpu")
    assert again["counts"] == {"kept": len(names)}
    again = predict_images(tt_checkpoint, [folder], out, device="cpu", overwrite=True)
    assert again["counts"] == {"written": 2}


def test_predict_records_bad_inputs_and_goes_on(sample_data, tt_checkpoint, tmp_path):
    src = tmp_path / "in"
    shutil.copytree(Path(sample_data.am2k) / "validation" / "original", src)
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (src / "sub").mkdir()
    write_image(src / "sub" / "grey.png", np.full((40, 70), 128, np.uint8))
    res = predict_images(tt_checkpoint, [src, tmp_path / "nope.jpg"], tmp_path / "out", device="cpu")
    assert res["counts"] == {"failed": 1, "skipped": 1, "written": 3}
    rows = [json.loads(x) for x in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    failed = next(r for r in rows if r["fate"] == "failed")
    assert "broken.jpg" in failed["input"] and failed["reason"]
    assert read_alpha(tmp_path / "out" / "alpha" / "sub" / "grey.png").shape == (40, 70)


def test_output_names_do_not_clash(tmp_path):
    for d in ("a", "b"):
        write_image(tmp_path / d / "x.png", np.zeros((8, 8, 3), np.uint8))
    items, problems = collect_inputs([tmp_path / "a" / "x.png", tmp_path / "b" / "x.png", tmp_path / "b"])
    assert [i.name for i in items] == ["x"]
    assert len(problems) == 2 and all("already taken" in p["reason"] for p in problems)


def test_large_image_runs_within_the_caps(tt_checkpoint, tmp_path):
    # 2100 x 3900: the network sees at most 672 x 1280 (glance) / 1024 x 1600 (focus, capped)
    img = np.zeros((2100, 3900, 3), np.uint8)
    img[600:1500, 1000:2900] = 200
    write_image(tmp_path / "big.png", img)
    res = predict_images(tt_checkpoint, [tmp_path / "big.png"], tmp_path / "out", device="cpu")
    assert res["counts"] == {"written": 1}
    assert read_alpha(tmp_path / "out" / "alpha" / "big.png").shape == (2100, 3900)


def test_devices():
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda")
        assert resolve_device("auto").type == "cpu"
    else:
        with pytest.raises(ValueError, match="CUDA device"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_cli_predict(sample_data, tt_checkpoint, tmp_path):
    runner = CliRunner()
    folder = Path(sample_data.am2k) / "validation" / "original"
    res = runner.invoke(main, ["predict", "--checkpoint", str(tt_checkpoint), str(folder), "--out",
                               str(tmp_path / "m"), "--mode", "resize", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "2 written" in res.output
    assert len(list((tmp_path / "m" / "cutout").glob("*.png"))) == 2
    res = runner.invoke(main, ["predict", str(folder), "--out", str(tmp_path / "m")])
    assert res.exit_code == 2 and "--checkpoint" in res.output
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    res = runner.invoke(main, ["predict", "--checkpoint", str(bad), str(folder), "--out", str(tmp_path / "m2")])
    assert res.exit_code == 1 and "bad.pt" in res.output
    # nothing usable among the inputs, or a device that does not exist: a message and exit 1
    res = runner.invoke(main, ["predict", "--checkpoint", str(tt_checkpoint), str(tmp_path / "nope.jpg"),
                               "--out", str(tmp_path / "m3")])
    assert res.exit_code == 1 and "no image was predicted" in res.output
    res = runner.invoke(main, ["predict", "--checkpoint", str(tt_checkpoint), str(folder), "--out",
                               str(tmp_path / "m4"), "--device", "gpu"])
    assert res.exit_code == 1 and "unknown device 'gpu'" in res.output


@pytest.mark.parametrize("rosta", ["TT", "FT", "BT", "RIM"])
def test_full_size_merge_in_row_chunks_equals_the_whole_merge(rosta):
    from gfm_train.infer import merge_full_size

    torch.manual_seed(0)
    model = build_gfm("tiny", rosta).eval()
    if rosta == "RIM":  # weights that keep the fusion off its clamps
        for p in model.rim.parameters():
            torch.nn.init.normal_(p, 0.0, 0.5)
    heads = ["TT", "FT", "BT"] if rosta == "RIM" else [rosta]
    glance = {r: torch.randn(1, 3 if r == "TT" else 2, 50, 70) * 3 for r in heads}
    focus = {r: torch.rand(1, 1, 75, 105) for r in heads}
    if rosta != "RIM":
        glance, focus = glance[rosta], focus[rosta]
    size = (150, 211)

    def up(t):  # the plain route: torch's upsampling of all channels at once, then model.merge
        if isinstance(t, dict):
            return {k: up(v) for k, v in t.items()}
        return torch.nn.functional.interpolate(t, size=size, mode="bilinear", align_corners=False)

    with torch.inference_mode():
        whole = model.merge(up(glance), up(focus))
        assert 0.05 < ((whole > 0) & (whole < 1)).float().mean() and whole.std() > 0.05
        for chunk_pixels in (1, 7 * 211 + 5, 10**9):  # one row, uneven chunks, one chunk
            assert torch.equal(merge_full_size(model, glance, focus, size, chunk_pixels=chunk_pixels), whole)
