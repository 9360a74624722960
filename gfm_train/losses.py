"""GFM losses (SPEC section 4), each a small function on N x C x H x W tensors.

- Glance (GD): cross-entropy against the RoSTa class map.
- Focus (FD): alpha loss (L1 in Charbonnier form) and Laplacian-pyramid loss
  (5 levels, 5x5 Gaussian), both only inside the transition area.
- Collaborative Matting (CM): alpha + Laplacian loss over the whole image, and the
  composition loss between ``alpha*F + (1-alpha)*B`` and the image (0-255 scale, /255).

:func:`gfm_loss` sums them and scales the sum by 0.25, as the reference code does.
Losses are computed in float32 even under mixed precision.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from gfm_train.model.rosta import ROSTAS, focus_target, glance_target, transition_mask

EPS = 1e-12
LAPLACIAN_LEVELS = 5


def charbonnier(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of sqrt((pred - target)^2 + 1e-12), over the pixels where ``weight`` > 0 (weighted) or all pixels.

    A perfect prediction scores 1e-6 (the square root of the epsilon), not exactly 0.
    """
    d = torch.sqrt((pred.float() - target.float()) ** 2 + EPS)
    if weight is None:
        return d.mean()
    w = weight.float().expand_as(d)
    return (d * w).sum() / (w.sum() + 1e-6)


def _gauss_kernel(channels: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    k1 = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=device, dtype=dtype)
    k2 = torch.outer(k1, k1) / 256.0
    return k2.expand(channels, 1, 5, 5).contiguous()


def _blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    # reflection needs at least 3 pixels a side; replicate works on any size
    mode = "reflect" if min(x.shape[-2:]) > 2 else "replicate"
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode=mode), kernel, groups=x.shape[1])


def laplacian_pyramid(x: torch.Tensor, levels: int = LAPLACIAN_LEVELS) -> list[torch.Tensor]:
    """Band-pass levels of ``x`` (5x5 Gaussian, factor 2) plus the final low-pass residual.

    Returns ``levels + 1`` tensors; summing the upsampled levels rebuilds ``x``.
    """
    kernel = _gauss_kernel(x.shape[1], x.device, x.dtype)
    pyramid = []
    current = x
    for _ in range(levels):
        h, w = current.shape[-2:]
        down = _blur(current, kernel)[..., ::2, ::2]
        up = torch.zeros(*down.shape[:2], down.shape[2] * 2, down.shape[3] * 2, device=x.device, dtype=x.dtype)
        up[..., ::2, ::2] = down * 4.0  # zero insertion; x4 restores the mean after blurring
        up = _blur(up, kernel)[..., :h, :w]
        pyramid.append(current - up)
        current = down
    pyramid.append(current)
    return pyramid


def laplacian_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Sum over pyramid levels of the mean L1 between Laplacian pyramids (masked by ``weight`` first)."""
    pred, target = pred.float(), target.float()
    if weight is not None:
        pred, target = pred * weight.float(), target * weight.float()
    return sum(F.l1_loss(a, b) for a, b in zip(laplacian_pyramid(pred), laplacian_pyramid(target)))


def glance_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy between Glance logits (N x C x H x W) and the class map (N x H x W)."""
    return F.cross_entropy(logits.float(), target.long())


def focus_loss(focus: torch.Tensor, target: torch.Tensor, transition: torch.Tensor) -> torch.Tensor:
    """Alpha (Charbonnier) + Laplacian loss of the Focus output, inside the transition area only."""
    return charbonnier(focus, target, transition) + laplacian_loss(focus, target, transition)


def composition_loss(alpha: torch.Tensor, fg: torch.Tensor, bg: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Charbonnier distance between ``alpha*F + (1-alpha)*B`` and the image, all 0-255, divided by 255."""
    alpha = alpha.float()
    comp = alpha * fg.float() + (1.0 - alpha) * bg.float()
    return charbonnier(comp / 255.0, image.float() / 255.0)


def matting_loss(alpha: torch.Tensor, alpha_true: torch.Tensor, fg: torch.Tensor, bg: torch.Tensor,
                 image: torch.Tensor) -> torch.Tensor:
    """The CM loss: alpha + Laplacian over the whole image, plus composition."""
    return (charbonnier(alpha, alpha_true) + laplacian_loss(alpha, alpha_true)
            + composition_loss(alpha, fg, bg, image))


def _one_rosta(rosta: str, glance, focus, alpha, batch) -> dict[str, torch.Tensor]:
    maps = batch["maps"]
    gd = glance_loss(glance, glance_target(rosta, maps))
    fd = focus_loss(focus, focus_target(rosta, batch["alpha"], maps), transition_mask(rosta, maps))
    cm = matting_loss(alpha, batch["alpha"], batch["fg"], batch["bg"], batch["image"])
    return {"glance": gd, "focus": fd, "cm": cm}


def gfm_loss(rosta: str, outputs: dict, batch: dict) -> dict[str, torch.Tensor]:
    """All GFM losses for one batch.

    Parameters
    ----------
    rosta : ``TT``, ``FT``, ``BT`` or ``RIM``.
    outputs : the model's forward output.
    batch : ``image``, ``fg``, ``bg`` (N x 3 x H x W, 0-255), ``alpha`` (N x 1 x H x W,
        0-1) and ``maps`` (the batched :func:`gfm_train.model.rosta.rosta_maps`).

    Returns
    -------
    dict with ``glance``, ``focus``, ``cm`` and ``total`` = 0.25 x their sum. For RIM
    the three heads' losses are summed and the fused alpha adds ``rim`` (its CM loss).
    """
    if rosta in ROSTAS:
        parts = _one_rosta(rosta, outputs["glance"], outputs["focus"], outputs["alpha"], batch)
    elif rosta == "RIM":
        per = [_one_rosta(r, outputs["glance"][r], outputs["focus"][r], outputs["heads_alpha"][r], batch) for r in ROSTAS]
        parts = {k: sum(p[k] for p in per) for k in ("glance", "focus", "cm")}
        parts["rim"] = matting_loss(outputs["alpha"], batch["alpha"], batch["fg"], batch["bg"], batch["image"])
    else:
        raise ValueError(f"unknown RoSTa {rosta!r}")
    parts["total"] = 0.25 * sum(parts.values())
    return parts
