"""GFM losses: zero on perfect predictions, positive otherwise, numbers against definitions."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gfm_train.losses import (charbonnier, composition_loss, focus_loss, gfm_loss, glance_loss, laplacian_loss,
                              laplacian_pyramid, matting_loss)
from gfm_train.model.rosta import focus_target, glance_target, rosta_maps, transition_mask

torch.set_num_threads(1)
TINY = 1e-5  # the Charbonnier epsilon makes a perfect score 1e-6 per term, not exactly 0


def _alpha(n=2, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    out = []
    for _ in range(n):
        c = torch.rand(2, generator=g) * size / 2 + size / 4
        d = torch.hypot(xx - c[0], yy - c[1])
        out.append(((size / 4 - d) / 4 + 0.5).clamp(0, 1))
    return torch.stack(out)[:, None]


def _batch(alpha, seed=0):
    g = torch.Generator().manual_seed(seed)
    n, _, h, w = alpha.shape
    fg = torch.rand(n, 3, h, w, generator=g) * 255
    bg = torch.rand(n, 3, h, w, generator=g) * 255
    image = alpha * fg + (1 - alpha) * bg
    a8 = (alpha * 255).round().to(torch.uint8)
    maps = [rosta_maps(a8[i, 0].numpy(), 5, 9) for i in range(n)]
    maps = {k: torch.from_numpy(np.stack([m[k] for m in maps]))[:, None] for k in maps[0]}
    return {"image": image, "fg": fg, "bg": bg, "alpha": a8.float() / 255, "maps": maps}


def _perfect(rosta, batch):
    classes = 3 if rosta == "TT" else 2
    logits = F.one_hot(glance_target(rosta, batch["maps"]), classes).permute(0, 3, 1, 2).float() * 40
    return {"glance": logits, "focus": focus_target(rosta, batch["alpha"], batch["maps"]), "alpha": batch["alpha"]}


def test_charbonnier_is_l1_with_an_epsilon():
    a, b = torch.tensor([0.0, 1.0, 0.5]), torch.tensor([0.5, 1.0, 0.0])
    assert float(charbonnier(a, b)) == pytest.approx((0.5 + 1e-6 + 0.5) / 3, abs=1e-7)
    w = torch.tensor([0.0, 1.0, 0.0])
    assert float(charbonnier(a, b, w)) < TINY  # only the equal pixel counts
    assert float(charbonnier(a, b, torch.zeros(3))) == 0.0  # empty mask: no loss


def test_laplacian_pyramid_rebuilds_the_image_and_loss_sees_edges():
    x = torch.rand(1, 1, 64, 64)
    pyr = laplacian_pyramid(x)
    assert len(pyr) == 6 and pyr[-1].shape[-1] == 2
    # rebuild: upsample each coarser level with the same filter and add the band
    from gfm_train.losses import _blur, _gauss_kernel

    k = _gauss_kernel(1, x.device, x.dtype)
    cur = pyr[-1]
    for band in reversed(pyr[:-1]):
        up = torch.zeros(1, 1, cur.shape[2] * 2, cur.shape[3] * 2)
        up[..., ::2, ::2] = cur * 4
        cur = _blur(up, k)[..., :band.shape[2], :band.shape[3]] + band
    assert torch.allclose(cur, x, atol=1e-5)
    assert float(laplacian_loss(x, x)) == 0.0
    # a constant offset lives only in the low-pass level; a sharp edge moves the fine bands
    assert float(laplacian_loss(x + 0.1, x)) == pytest.approx(0.1, rel=1e-3)
    edge = x.clone()
    edge[..., 30:34] += 0.5
    assert float(laplacian_loss(edge, x)) > float(laplacian_loss(x + 0.01, x))


def test_glance_loss_is_cross_entropy():
    target = torch.randint(0, 3, (2, 8, 8))
    perfect = F.one_hot(target, 3).permute(0, 3, 1, 2).float() * 40
    assert float(glance_loss(perfect, target)) < TINY
    uniform = torch.zeros(2, 3, 8, 8)
    assert float(glance_loss(uniform, target)) == pytest.approx(np.log(3), rel=1e-6)


def test_focus_loss_only_counts_the_transition():
    alpha = _alpha()
    batch = _batch(alpha)
    trans = transition_mask("TT", batch["maps"])
    assert float(focus_loss(batch["alpha"], batch["alpha"], trans)) < TINY
    wrong_outside = torch.where(trans > 0, batch["alpha"], 1 - batch["alpha"])
    assert float(focus_loss(wrong_outside, batch["alpha"], trans)) < TINY
    wrong_inside = torch.where(trans > 0, 1 - batch["alpha"], batch["alpha"])
    assert float(focus_loss(wrong_inside, batch["alpha"], trans)) > 0.05


def test_composition_loss_on_the_0_255_scale():
    alpha = _alpha()
    b = _batch(alpha)
    assert float(composition_loss(b["alpha"], b["fg"], b["bg"], b["image"])) < 1e-3  # alpha was rounded to 8 bits
    exact = composition_loss(alpha, b["fg"], b["bg"], b["image"])
    assert float(exact) < TINY
    # alpha off by 0.1 everywhere: the composite moves by 0.1 * |F - B| / 255 on average
    expected = float((0.1 * (b["fg"] - b["bg"]).abs() / 255).mean())
    assert float(composition_loss((alpha + 0.1), b["fg"], b["bg"], b["image"])) == pytest.approx(expected, rel=1e-3)


def test_matting_loss_whole_image():
    alpha = _alpha()
    b = _batch(alpha)
    b["image"] = alpha * b["fg"] + (1 - alpha) * b["bg"]
    assert float(matting_loss(alpha, alpha, b["fg"], b["bg"], b["image"])) < 3 * TINY
    assert float(matting_loss(alpha.flip(-1), alpha, b["fg"], b["bg"], b["image"])) > 0.01


@pytest.mark.parametrize("rosta", ["TT", "FT", "BT", "RIM"])
def test_gfm_loss_zero_when_perfect_positive_otherwise(rosta):
    b = _batch(_alpha())
    b["image"] = b["alpha"] * b["fg"] + (1 - b["alpha"]) * b["bg"]
    if rosta == "RIM":
        heads = {r: _perfect(r, b) for r in ("TT", "FT", "BT")}
        outputs = {"glance": {r: h["glance"] for r, h in heads.items()},
                   "focus": {r: h["focus"] for r, h in heads.items()},
                   "heads_alpha": {r: h["alpha"] for r, h in heads.items()}, "alpha": b["alpha"]}
    else:
        outputs = _perfect(rosta, b)
    parts = gfm_loss(rosta, outputs, b)
    assert set(parts) >= {"glance", "focus", "cm", "total"}
    assert float(parts["total"]) < 10 * TINY
    assert float(parts["total"]) == pytest.approx(0.25 * sum(float(v) for k, v in parts.items() if k != "total"))
    noisy = {k: v for k, v in outputs.items()}
    noisy["alpha"] = (b["alpha"] + 0.2 * torch.rand_like(b["alpha"])).clamp(0, 1)
    assert float(gfm_loss(rosta, noisy, b)["total"]) > 0.01
