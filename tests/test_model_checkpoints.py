"""Checkpoints: our format round trip (weights_only), and the authors' released naming."""
from __future__ import annotations

import collections

import pytest
import torch

from gfm_train.model import build_gfm, load_checkpoint, save_checkpoint
from gfm_train.model.checkpoints import convert_authors_state_dict

torch.set_num_threads(1)


def authors_style(net) -> dict:
    """``net``'s weights under the authors' top-level names, with the duplicated
    torchvision model (``resnet.*``) and its classifier, as their files hold them."""
    out = collections.OrderedDict()
    for k, v in net.state_dict().items():
        for prefix in ("encoder.", "glance.", "focus."):
            if k.startswith(prefix):
                k = k[len(prefix):]
        if k.startswith("rim.rim."):
            k = k[len("rim."):]
        out[k] = v
    if net.backbone == "r34":
        pairs = {"encoder0.0.": "resnet.conv1.", "encoder0.1.": "resnet.bn1.", "encoder1.1.": "resnet.layer1.",
                 "encoder2.": "resnet.layer2.", "encoder3.": "resnet.layer3.", "encoder4.": "resnet.layer4."}
        for k, v in list(out.items()):
            for ours, theirs in pairs.items():
                if k.startswith(ours):
                    out[theirs + k[len(ours):]] = v
        out["resnet.fc.weight"] = torch.zeros(1000, 512, device=next(iter(out.values())).device)
        out["resnet.fc.bias"] = torch.zeros(1000, device=out["resnet.fc.weight"].device)
    return out


# names and shapes as they appear in the authors' network definition
AUTHORS_KEYS = {
    ("d121", "RIM"): {
        "encoder1.0.denselayer1.norm1.weight": (64,), "encoder1.1.conv.weight": (128, 256, 1, 1),
        "encoder4.1.weight": (512, 1024, 3, 3), "psp_module.stages.2.1.weight": (512, 512, 1, 1),
        "psp_module.bottleneck.weight": (512, 2048, 1, 1), "psp1.0.weight": (64, 512, 3, 3),
        "decoder3_f.0.weight": (256, 768, 3, 3), "decoder0_g_tt.6.weight": (3, 64, 3, 3),
        "decoder0_g_ft.6.weight": (2, 64, 3, 3), "decoder0_f_bt.6.weight": (1, 64, 3, 3),
        "rim.0.weight": (16, 3, 1, 1), "rim.1.fc.0.weight": (4, 16), "rim.1.fc.2.weight": (16, 4),
        "rim.2.weight": (1, 16, 1, 1),
    },
    ("r34_2b", "TT"): {
        "encoder0.0.weight": (64, 3, 3, 3), "encoder0.0.bias": (64,), "encoder1.0.conv1.weight": (64, 64, 3, 3),
        "encoder5.1.conv1.weight": (512, 512, 3, 3), "encoder6.3.bn2.weight": (512,),
        "psp6.0.weight": (512, 512, 3, 3), "decoder6_g.0.weight": (512, 1024, 3, 3),
        "decoder1_g.6.weight": (64, 64, 3, 3), "decoder0_g.0.weight": (3, 64, 3, 3),
        "decoder0_f.0.weight": (1, 64, 3, 3), "bridge_block.6.weight": (512, 512, 3, 3),
    },
    ("r34", "FT"): {
        "encoder1.1.0.conv1.weight": (64, 64, 3, 3), "encoder2.0.downsample.0.weight": (128, 64, 1, 1),
        "psp1.0.weight": (64, 512, 3, 3), "decoder0_g.6.weight": (2, 64, 3, 3),
        "decoder4_f.0.weight": (512, 1024, 3, 3), "decoder0_f.6.weight": (1, 64, 3, 3),
    },
    ("r101", "TT"): {
        "psp_module.bottleneck.weight": (2048, 8192, 1, 1), "decoder4_g.0.weight": (2048, 4096, 3, 3),
        "decoder1_g.3.weight": (128, 256, 3, 3), "decoder0_f.0.weight": (64, 128, 3, 3),
    },
}


@pytest.mark.parametrize("backbone,rosta", list(AUTHORS_KEYS))
def test_module_names_match_the_authors(backbone, rosta):
    with torch.device("meta"):
        net = build_gfm(backbone, rosta)
    theirs = authors_style(net)
    for key, shape in AUTHORS_KEYS[(backbone, rosta)].items():
        assert key in theirs, key
        assert tuple(theirs[key].shape) == shape, key
    # and the documented renaming maps their names back onto ours, one to one
    if backbone == "r34_2b":
        theirs["psp1.0.weight"] = torch.zeros(64, 512, 3, 3, device="meta")  # built but unused by them
    converted = convert_authors_state_dict(theirs, backbone)
    assert set(converted) == set(net.state_dict())


def test_authors_checkpoint_loads_with_raw255(tmp_path):
    torch.manual_seed(0)
    src = build_gfm("r34", "FT").eval()
    path = tmp_path / "gfm_r34_ft.pth"
    torch.save(authors_style(src), path)
    net, meta = load_checkpoint(path)
    assert (net.backbone, net.rosta) == ("r34", "FT")
    assert meta["input_convention"] == "raw255" and meta["source"] == "authors"
    for k, v in src.state_dict().items():
        assert torch.equal(net.state_dict()[k], v), k
    x = torch.rand(1, 3, 64, 64) * 255
    with torch.no_grad():
        assert torch.equal(net(x)["alpha"], src(x)["alpha"])
    # a two-class file whose name does not say FT or BT needs the rosta argument
    anon = tmp_path / "weights.pth"
    path.rename(anon)
    with pytest.raises(ValueError, match="FT or BT"):
        load_checkpoint(anon)
    assert load_checkpoint(anon, rosta="BT")[0].rosta == "BT"


def test_own_checkpoint_round_trip_weights_only(tmp_path):
    torch.manual_seed(0)
    net = build_gfm("tiny", "RIM")
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net(torch.rand(2, 3, 64, 64) * 255)["alpha"].mean().backward()
    opt.step()
    path = save_checkpoint(tmp_path / "ck.pth", net, input_convention="imagenet", optimizer=opt, step=7, epoch=2,
                           config={"lr": 1e-3, "crop_sizes": [64]}, rng={"torch": torch.get_rng_state()})
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "rssn-gfm" and raw["version"] == 1
    assert raw["model"] == {"backbone": "tiny", "rosta": "RIM"}
    assert raw["input_convention"] == "imagenet" and raw["step"] == 7 and raw["epoch"] == 2
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind
    loaded, meta = load_checkpoint(path)
    assert meta["config"]["crop_sizes"] == [64] and meta["source"] == "rssn"
    for k, v in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    opt2 = torch.optim.Adam(loaded.parameters(), lr=1e-3)
    opt2.load_state_dict(meta["optimizer"])
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


class _Payload:
    pass


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"format": "rssn-gfm", "thing": _Payload()}, path)
    with pytest.raises(ValueError, match="weights-only"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "none.pth")
    with pytest.raises(ValueError, match="input convention"):
        save_checkpoint(tmp_path / "x.pth", build_gfm("tiny", "TT"), input_convention="bgr")
