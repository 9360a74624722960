"""GFM network: forward passes for every backbone x RoSTa, sizes, RoSTa targets and CM, inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gfm_train.model import GFM, PretrainedWeightsError, build_gfm, collaborative_matting, prepare_input
from gfm_train.model.rosta import focus_target, glance_target, rosta_maps, transition_mask

torch.set_num_threads(1)

BACKBONES = ["tiny", "r34", "d121", "r34_2b", "r101"]
ROSTAS = ["TT", "FT", "BT", "RIM"]


def _sibling(base: GFM, rosta: str) -> GFM:
    """A GFM of another RoSTa sharing ``base``'s encoder and decoder bodies; fresh heads.

    Built on the meta device and given ``base``'s tensors, so the big backbones are
    constructed once per backbone instead of four times.
    """
    with torch.device("meta"):
        net = build_gfm(base.backbone, rosta)
    shapes = {k: v.shape for k, v in net.state_dict().items()}
    shared = {k: v for k, v in base.state_dict().items() if shapes.get(k) == v.shape}
    net.load_state_dict(shared, strict=False, assign=True)
    for mod in net.modules():
        own = list(mod.parameters(recurse=False)) + list(mod.buffers(recurse=False))
        if any(t.is_meta for t in own):
            mod.to_empty(device="cpu", recurse=False)
            mod.reset_parameters()
    assert not any(t.is_meta for t in net.state_dict().values())
    return net


def _check_outputs(out: dict, rosta: str, n: int, size: int) -> None:
    classes = {"TT": 3, "FT": 2, "BT": 2}
    heads = ["TT", "FT", "BT"] if rosta == "RIM" else [rosta]
    glance = out["glance"] if rosta == "RIM" else {rosta: out["glance"]}
    focus = out["focus"] if rosta == "RIM" else {rosta: out["focus"]}
    for r in heads:
        assert glance[r].shape == (n, classes[r], size, size)
        assert torch.isfinite(glance[r]).all()
        assert focus[r].shape == (n, 1, size, size)
        assert focus[r].min() >= 0 and focus[r].max() <= 1
    assert out["alpha"].shape == (n, 1, size, size)
    assert out["alpha"].min() >= 0 and out["alpha"].max() <= 1


@pytest.mark.parametrize("backbone", BACKBONES)
def test_forward_every_backbone_and_rosta(backbone):
    torch.manual_seed(0)
    base = build_gfm(backbone, "TT").eval()
    x = torch.rand(2, 3, 64, 64) * 255
    for rosta in ROSTAS:
        net = base if rosta == "TT" else _sibling(base, rosta).eval()
        with torch.no_grad():
            out = net(x)
        _check_outputs(out, rosta, 2, 64)
        # the split entry points give the same result as the full pass
        if backbone == "tiny":
            with torch.no_grad():
                alpha = net.merge(net.forward_glance(x), net.forward_focus(x))
            assert torch.allclose(alpha, out["alpha"], atol=1e-6)


def test_parameter_counts_match_the_paper():
    # SPEC: GFM-TT with r34 about 55.3 M parameters, with d121 about 47.0 M. The published
    # network also keeps torchvision's unused classifier (r34: 512*1000+1000, d121:
    # 1024*1000+1000); without it the counts must still be within 3 %.
    with torch.device("meta"):
        r34 = sum(p.numel() for p in build_gfm("r34", "TT").parameters())
        d121 = sum(p.numel() for p in build_gfm("d121", "TT").parameters())
    assert abs(r34 - 55.3e6) / 55.3e6 < 0.03
    assert abs(d121 - 47.0e6) / 47.0e6 < 0.03
    assert abs(r34 + 513_000 - 55.3e6) < 0.05e6
    assert abs(d121 + 1_025_000 - 47.0e6) < 0.05e6


def test_forward_rejects_bad_input():
    net = build_gfm("tiny", "TT")
    with pytest.raises(ValueError, match="multiples of 32"):
        net(torch.zeros(1, 3, 50, 64))
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        net(torch.zeros(1, 1, 64, 64))
    with pytest.raises(ValueError, match="unknown backbone"):
        build_gfm("vgg", "TT")
    with pytest.raises(ValueError, match="unknown RoSTa"):
        build_gfm("tiny", "XX")


def _soft_disc(h: int = 96, w: int = 96) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    d = np.hypot(xx - w / 2, yy - h / 2)
    return (np.clip((30 - d) / 8 + 0.5, 0, 1) * 255).round().astype(np.uint8)


def test_rosta_maps_follow_the_definitions():
    alpha = _soft_disc()
    maps = rosta_maps(alpha, tt_kernel=5, ftbt_kernel=9)
    full, some = alpha == 255, alpha > 0
    # TT: every fractional pixel is transition; foreground lies inside alpha == 1
    assert set(np.unique(maps["trimap"])) == {0, 1, 2}
    assert np.all(maps["trimap"][(alpha > 0) & (alpha < 255)] == 1)
    assert np.all(full[maps["trimap"] == 2])
    assert not np.any(some[maps["trimap"] == 0])
    # FT is the eroded foreground (inside alpha == 1), BT the dilated one (covers alpha > 0):
    # not swapped
    assert np.all(full[maps["eroded"] == 1]) and maps["eroded"].sum() < full.sum()
    assert np.all(maps["dilated"][some] == 1) and maps["dilated"].sum() > some.sum()
    # larger kernels grow the transition
    big = rosta_maps(alpha, tt_kernel=11, ftbt_kernel=9)
    assert (big["trimap"] == 1).sum() > (maps["trimap"] == 1).sum()


@pytest.mark.parametrize("rosta", ["TT", "FT", "BT"])
def test_perfect_glance_and_focus_give_the_true_alpha(rosta):
    alpha_u8 = _soft_disc()
    maps = {k: torch.from_numpy(v)[None, None] for k, v in rosta_maps(alpha_u8, 5, 9).items()}
    alpha = torch.from_numpy(alpha_u8.astype(np.float32) / 255)[None, None]
    classes = glance_target(rosta, maps)
    logits = torch.nn.functional.one_hot(classes, 3 if rosta == "TT" else 2).permute(0, 3, 1, 2).float() * 10
    focus = focus_target(rosta, alpha, maps)
    merged = collaborative_matting(rosta, logits, focus)
    assert torch.allclose(merged, alpha, atol=1e-6)
    assert transition_mask(rosta, maps).sum() > 0
    # and a wrong Glance gives a wrong alpha
    assert not torch.allclose(collaborative_matting(rosta, -logits, focus), alpha, atol=0.1)


def test_cm_rules_on_hand_made_values():
    focus = torch.tensor([0.3, 0.3, 0.3, 0.8]).view(1, 1, 1, 4)
    tt = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 1]), 3).T.float().view(1, 3, 1, 4)
    assert collaborative_matting("TT", tt, focus).flatten().tolist() == pytest.approx([0, 0.3, 1, 0.8])
    two = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 0]), 2).T.float().view(1, 2, 1, 4)
    assert collaborative_matting("FT", two, focus).flatten().tolist() == pytest.approx([0.3, 1, 1, 0.8])
    assert collaborative_matting("BT", two, focus).flatten().tolist() == pytest.approx([0, 0.7, 0.7, 0])


def test_prepare_input_conventions():
    img = torch.tensor([0, 128, 255], dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 4, 4)
    raw = prepare_input(img, "raw255")
    assert raw.dtype == torch.float32 and raw[0, :, 0, 0].tolist() == [0, 128, 255]
    net = prepare_input(img, "imagenet")
    expected = [(0 / 255 - 0.485) / 0.229, (128 / 255 - 0.456) / 0.224, (255 / 255 - 0.406) / 0.225]
    assert net[1, :, 2, 3].tolist() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="convention"):
        prepare_input(img, "bgr")


def test_torchvision_weights_offline_fail_fast(tmp_path, monkeypatch):
    import time

    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        t = time.monotonic()
        with pytest.raises(PretrainedWeightsError, match="not in the torch cache"):
            build_gfm("r34", "TT", pretrained="torchvision")
        assert time.monotonic() - t < 30
    finally:
        torch.hub.set_dir(old)
    with pytest.raises(PretrainedWeightsError, match="tiny"):
        build_gfm("tiny", "TT", pretrained="torchvision")


def test_pretrained_weights_from_a_file(tmp_path):
    from torchvision.models import resnet34

    torch.manual_seed(1)
    tv = resnet34(weights=None)
    path = tmp_path / "resnet34.pth"
    torch.save(tv.state_dict(), path)
    net = build_gfm("r34", "TT", pretrained=path)
    assert torch.equal(net.encoder.encoder0[0].weight, tv.conv1.weight)
    assert torch.equal(net.encoder.encoder4[2].conv2.weight, tv.layer4[2].conv2.weight)
    torch.save({"nothing": torch.zeros(1)}, tmp_path / "junk.pth")
    with pytest.raises(PretrainedWeightsError, match="not resnet34"):
        build_gfm("r34", "TT", pretrained=tmp_path / "junk.pth")
    with pytest.raises(FileNotFoundError):
        build_gfm("r34", "TT", pretrained=tmp_path / "missing.pth")
    # not a weights file at all, or not a state dict: a clear error, not a traceback from torch
    (tmp_path / "notes.txt").write_text("not weights")
    with pytest.raises(PretrainedWeightsError, match="notes.txt: not a readable"):
        build_gfm("r34", "TT", pretrained=tmp_path / "notes.txt")
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    with pytest.raises(PretrainedWeightsError, match="got Tensor"):
        build_gfm("r34", "TT", pretrained=tmp_path / "tensor.pth")


def test_rim_fusion_equals_the_published_layers():
    # forward folds conv1x1 -> squeeze-excitation -> conv1x1 into one affine map per image
    # (the SE gate depends only on the global average); same numbers and gradients as the layers
    from gfm_train.model.rim import RIM

    torch.manual_seed(0)
    rim = RIM()
    for p in rim.parameters():
        torch.nn.init.normal_(p, 0.0, 0.5)
    x = torch.rand(2, 3, 37, 53)
    x[1] = x[1] ** 3  # a second image with other averages, so another gate
    plain = rim.rim(x).clamp(0.0, 1.0)
    assert 0.05 < ((plain > 0) & (plain < 1)).float().mean()  # not everything clamped
    fused = rim(x)
    assert torch.allclose(fused, plain, atol=1e-6)
    grads = torch.autograd.grad(fused.square().sum(), list(rim.parameters()))
    plain_grads = torch.autograd.grad(rim.rim(x).clamp(0.0, 1.0).square().sum(), list(rim.parameters()))
    for g, p in zip(grads, plain_grads):
        assert torch.allclose(g, p, rtol=1e-4, atol=1e-6)
