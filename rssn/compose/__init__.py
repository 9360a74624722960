"""RSSN composition: composites of a prepared matting set on background photos,
written as webdataset shards.

- :mod:`rssn.compose.ops`: fit, blur, blend, noise (pure functions on arrays);
- :mod:`rssn.compose.route`: the RSSN decisions drawn from a generator;
- :mod:`rssn.compose.composite`: one composite from files to shard members;
- :mod:`rssn.compose.shards`: shard writing, index, verification, reading back;
- :mod:`rssn.compose.job`: the ``rssn compose`` job (plan, denoise cache, shards).

Example:
    >>> from rssn.compose import compose                       # doctest: +SKIP
    >>> compose("prepared", "bg20k/train", "shards", per_fg=4)  # doctest: +SKIP
"""
from .job import ComposeResult, DenoiseCacheMissing, compose, compose_shard, list_backgrounds, read_foregrounds
from .ops import add_noise, alpha_weights, blend, box_blur, cover_box, fit_background, gaussian_noise
from .route import ROUTES, Decisions, RouteConfig, draw
from .shards import decode_sample, read_index, read_sample, sample_key, shard_paths, verify_shards

__all__ = [
    "ComposeResult", "DenoiseCacheMissing", "Decisions", "ROUTES", "RouteConfig", "add_noise",
    "alpha_weights", "blend", "box_blur", "compose", "compose_shard", "cover_box", "decode_sample", "draw",
    "fit_background", "gaussian_noise", "list_backgrounds", "read_foregrounds", "read_index", "read_sample",
    "sample_key", "shard_paths", "verify_shards",
]
