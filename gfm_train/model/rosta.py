"""RoSTa: the representations of semantic and transition areas, their targets and the CM merge.

Three representations (SPEC section 4):

- ``TT``: Glance predicts a trimap (0 background, 1 transition, 2 foreground);
  Focus predicts alpha inside the transition.
- ``FT``: Glance predicts an eroded foreground (1 = surely foreground); Focus
  predicts what lies outside it.
- ``BT``: Glance predicts a dilated foreground (1 = not surely background); Focus
  predicts what to take away from it.

Targets come from the ground-truth alpha with elliptical kernels: 25 for the TT
trimap, 50 for the FT/BT masks, both meant for 320-pixel training crops. The FT
target is the *eroded* mask and the BT target the *dilated* one; the public
reference training code swaps them, which contradicts its own merge rule (FT adds
Focus to the Glance mask, so that mask must lie inside the foreground).

The target maps are computed with OpenCV on numpy arrays (in the data loader);
the rest are torch functions usable on any device.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

ROSTAS = ("TT", "FT", "BT")
GLANCE_CLASSES = {"TT": 3, "FT": 2, "BT": 2}
TT_KERNEL = 25
FTBT_KERNEL = 50
REFERENCE_SIZE = 320  # the crop side the kernels were chosen for


def scaled_kernel(kernel: int, size: int, reference: int = REFERENCE_SIZE) -> int:
    """The kernel for crops of side ``size`` that covers what ``kernel`` covers at ``reference``."""
    return max(3, int(round(kernel * size / reference)))


def _ellipse(k: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))


def rosta_maps(alpha: np.ndarray, tt_kernel: int = TT_KERNEL, ftbt_kernel: int = FTBT_KERNEL) -> dict[str, np.ndarray]:
    """The target maps of all three RoSTa from one alpha matte.

    Parameters
    ----------
    alpha : H x W array, uint8 (0..255) or float (0..1).
    tt_kernel, ftbt_kernel : elliptical kernel sides for TT and for FT/BT.

    Returns
    -------
    dict of uint8 H x W arrays: ``trimap`` (0 bg, 1 transition, 2 fg, kernel
    ``tt_kernel``: transition = dilate(alpha > 0) minus erode(alpha == 1)),
    ``eroded`` (erode(alpha == 1), kernel ``ftbt_kernel``) and ``dilated``
    (dilate(alpha > 0), kernel ``ftbt_kernel``), the latter two 0/1.
    """
    a = np.asarray(alpha)
    if a.ndim != 2:
        raise ValueError(f"alpha must be H x W, got shape {a.shape}")
    full = a >= (255 if a.dtype == np.uint8 else 1.0)
    some = a > 0
    full_u8 = full.astype(np.uint8)
    some_u8 = some.astype(np.uint8)
    fg_tt = cv2.erode(full_u8, _ellipse(tt_kernel))
    band_tt = cv2.dilate(some_u8, _ellipse(tt_kernel))
    trimap = np.where(fg_tt > 0, 2, np.where(band_tt > 0, 1, 0)).astype(np.uint8)
    eroded = cv2.erode(full_u8, _ellipse(ftbt_kernel))
    dilated = cv2.dilate(some_u8, _ellipse(ftbt_kernel))
    return {"trimap": trimap, "eroded": eroded, "dilated": dilated}


def glance_target(rosta: str, maps: dict[str, torch.Tensor]) -> torch.Tensor:
    """The Glance class map (N x H x W, int64) of ``rosta`` from batched :func:`rosta_maps`."""
    key = {"TT": "trimap", "FT": "eroded", "BT": "dilated"}[_check(rosta)]
    return _squeeze(maps[key]).long()


def transition_mask(rosta: str, maps: dict[str, torch.Tensor]) -> torch.Tensor:
    """Where the Focus losses apply (N x 1 x H x W float): the TT transition, or dilated minus eroded for FT/BT."""
    if _check(rosta) == "TT":
        return (_unsqueeze(maps["trimap"]) == 1).float()
    return ((_unsqueeze(maps["dilated"]) > 0) & ~(_unsqueeze(maps["eroded"]) > 0)).float()


def focus_target(rosta: str, alpha: torch.Tensor, maps: dict[str, torch.Tensor]) -> torch.Tensor:
    """What Focus should output (N x 1 x H x W) so that CM with a perfect Glance gives ``alpha``.

    TT: alpha. FT: alpha outside the eroded foreground. BT: dilated mask minus alpha.
    """
    rosta = _check(rosta)
    if rosta == "TT":
        return alpha
    if rosta == "FT":
        return alpha * (1.0 - _unsqueeze(maps["eroded"]).float())
    return (_unsqueeze(maps["dilated"]).float() - alpha).clamp(min=0.0)


def collaborative_matting(rosta: str, glance_logits: torch.Tensor, focus: torch.Tensor) -> torch.Tensor:
    """Merge Glance and Focus into alpha (CM), on whatever device the inputs are on.

    Parameters
    ----------
    rosta : ``TT``, ``FT`` or ``BT``.
    glance_logits : N x C x H x W class scores (C = 3 for TT, 2 otherwise); only
        their argmax is used, so logits, probabilities or sigmoids all work.
    focus : N x 1 x H x W Focus output in [0, 1].

    Returns
    -------
    N x 1 x H x W alpha in [0, 1]. TT: Focus where Glance says transition, 1 where
    foreground, 0 where background. FT: min(Glance + Focus, 1). BT: max(Glance - Focus, 0).
    """
    rosta = _check(rosta)
    if glance_logits.shape[-2:] != focus.shape[-2:]:
        raise ValueError(f"glance {tuple(glance_logits.shape)} and focus {tuple(focus.shape)} differ in size")
    index = glance_logits.argmax(dim=1, keepdim=True)
    focus = focus.to(glance_logits.device) if focus.device != glance_logits.device else focus
    if rosta == "TT":
        return focus * (index == 1).to(focus.dtype) + (index == 2).to(focus.dtype)
    mask = index.to(focus.dtype)
    if rosta == "FT":
        return (mask + focus).clamp(max=1.0)
    return (mask - focus).clamp(min=0.0)


def _check(rosta: str) -> str:
    if rosta not in ROSTAS:
        raise ValueError(f"unknown RoSTa {rosta!r} (choose from {', '.join(ROSTAS)})")
    return rosta


def _squeeze(t: torch.Tensor) -> torch.Tensor:
    return t[:, 0] if t.dim() == 4 else t


def _unsqueeze(t: torch.Tensor) -> torch.Tensor:
    return t[:, None] if t.dim() == 3 else t
