"""The RSSN decisions for one composite, drawn from a numpy Generator.

Routes (SPEC section 2):

- ``rssn``: background fitted to the foreground; with probability ``p_denoise``
  denoised F and B (one coin for the pair); with probability ``p_blur`` a box blur
  of B, kernel drawn from ``blur_kernels``; blend; with probability ``p_noise``
  Gaussian noise of standard deviation ``noise_sigma``, clipped to [0, 255].
- ``bg20k``: plain alpha blending on BG-20k backgrounds (COMP-BG20K).
- ``plain``: plain alpha blending on whatever backgrounds are given (COMP-COCO).

Every composite draws the same eight uniform numbers in the same order whatever
the route or switches, and each decision uses its own number. So two runs that
differ only in the route or in an ablation switch (``--no-blur`` ...) pair every
foreground with the same background and crop: the comparison isolates the step.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

ROUTES = ("rssn", "bg20k", "plain")

#: SPEC section 2 defaults.
DEFAULT_BLUR_KERNELS = (20, 30, 40, 50, 60)
DEFAULT_PROBABILITY = 0.5
DEFAULT_NOISE_SIGMA = 10.0

#: How many uniform numbers one composite consumes (fixed, see the module docstring).
DRAWS = 8


@dataclass(frozen=True)
class RouteConfig:
    """The route and its parameters (what ``rssn compose`` records in run.json)."""

    route: str = "rssn"
    p_denoise: float = DEFAULT_PROBABILITY
    p_blur: float = DEFAULT_PROBABILITY
    p_noise: float = DEFAULT_PROBABILITY
    blur_kernels: tuple[int, ...] = DEFAULT_BLUR_KERNELS
    noise_sigma: float = DEFAULT_NOISE_SIGMA
    denoise: bool = True
    blur: bool = True
    noise: bool = True

    def __post_init__(self) -> None:
        if self.route not in ROUTES:
            raise ValueError(f"unknown route {self.route!r} (choose one of {', '.join(ROUTES)})")
        for name in ("p_denoise", "p_blur", "p_noise"):
            p = getattr(self, name)
            if not 0.0 <= float(p) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
        kernels = tuple(int(k) for k in self.blur_kernels)
        if not kernels or min(kernels) < 1:
            raise ValueError(f"blur kernels must be positive integers, got {self.blur_kernels!r}")
        object.__setattr__(self, "blur_kernels", kernels)
        if not float(self.noise_sigma) >= 0.0:
            raise ValueError(f"noise sigma must be at least 0, got {self.noise_sigma}")

    def probabilities(self) -> dict[str, float]:
        """The probability of each step actually in force (0 when a switch or the
        route turns it off)."""
        on = self.route == "rssn"
        return {
            "denoise": float(self.p_denoise) if on and self.denoise else 0.0,
            "blur": float(self.p_blur) if on and self.blur else 0.0,
            "noise": float(self.p_noise) if on and self.noise else 0.0,
        }

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["blur_kernels"] = list(self.blur_kernels)
        d["effective"] = self.probabilities()
        return d


@dataclass(frozen=True)
class Decisions:
    """Every random choice for one composite."""

    bg_index: int
    crop_u: tuple[float, float] = field(default=(0.0, 0.0))
    denoise: bool = False
    blur_kernel: int | None = None
    noise: bool = False
    noise_seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["crop_u"] = list(self.crop_u)
        return d


def draw(rng: np.random.Generator, config: RouteConfig, n_backgrounds: int) -> Decisions:
    """Draw one composite's decisions.

    Parameters
    ----------
    rng:
        The composite's own generator (``rssn.seeding.generator(seed, fg_id, k)``).
    config:
        The route.
    n_backgrounds:
        How many backgrounds there are to choose from (uniformly).

    Returns
    -------
    Decisions

    Example:
        >>> from rssn.seeding import generator
        >>> d = draw(generator(0, "m_01", 0), RouteConfig(), 10)
        >>> 0 <= d.bg_index < 10
        True
    """
    if n_backgrounds < 1:
        raise ValueError("there are no backgrounds to choose from")
    u = rng.random(DRAWS)
    p = config.probabilities()
    kernels = config.blur_kernels
    return Decisions(
        bg_index=min(n_backgrounds - 1, int(u[0] * n_backgrounds)),
        crop_u=(float(u[1]), float(u[2])),
        denoise=bool(u[3] < p["denoise"]),
        blur_kernel=kernels[min(len(kernels) - 1, int(u[5] * len(kernels)))] if u[4] < p["blur"] else None,
        noise=bool(u[6] < p["noise"]),
        noise_seed=int(u[7] * 2**31),
    )
