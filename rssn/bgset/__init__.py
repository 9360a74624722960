"""Build a BG-20k-style background set: HD photos without salient objects.

Stages (one module each): :mod:`scan` (find, decode, validate), :mod:`hd` (HD
filter, resize), :mod:`dedup` (exact and near duplicates), :mod:`detect`
(salient-object rejection), :mod:`review` (manual check), :mod:`split`
(train/testval), and :mod:`build` (the whole run: :func:`build_background_set`).
"""
from .build import BuildResult, build_background_set
from .dedup import group_duplicates, near_pairs, perceptual_hash
from .detect import DEFAULT_CLASSES, Detection, RejectRule, deciding_detection, is_borderline
from .hd import is_hd, resize_to_min_side, target_size
from .split import assign_names, split_groups

__all__ = [
    "BuildResult", "build_background_set", "group_duplicates", "near_pairs", "perceptual_hash",
    "DEFAULT_CLASSES", "Detection", "RejectRule", "deciding_detection", "is_borderline",
    "is_hd", "resize_to_min_side", "target_size", "assign_names", "split_groups",
]
