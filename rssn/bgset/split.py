"""Stage 7: the train / testval split and the output names.

BG-20k splits its 20,000 images into disjoint sets of 15,000 (train) and 5,000
(testval). The split here works on *groups* of similar images (connected by the
perceptual hash within ``--group-distance``): a group goes to one side whole, so
no near-duplicate pair straddles the split and testval stays unseen.

Each group draws a number from a generator keyed by (seed, group key); groups
are taken in that order into testval until it holds the requested fraction. The
draw of a group does not depend on which other groups exist, so adding or
removing an image moves at most one group across the boundary.
"""
from __future__ import annotations

from typing import Mapping

from ..seeding import generator

SPLITS = ("train", "testval")


def split_groups(sizes: Mapping[str, int], test_fraction: float, seed: int) -> dict[str, str]:
    """Assign each group to ``train`` or ``testval``.

    Parameters
    ----------
    sizes:
        Group key (a stable content id, e.g. a pixel digest) -> number of images.
    test_fraction:
        Share of *images* that should go to testval (0.25 gives BG-20k's 15k/5k).
    seed:
        Run seed.

    Returns
    -------
    Group key -> split name. testval receives ``round(test_fraction * total)``
    images exactly when all groups are single images, otherwise the nearest count
    reachable without cutting a group.
    """
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test fraction must be within [0, 1], got {test_fraction}")
    total = sum(sizes.values())
    target = int(round(test_fraction * total))
    order = sorted(sizes, key=lambda k: (generator(seed, "split", k).random(), k))
    out: dict[str, str] = {}
    taken = 0
    for key in order:
        n = sizes[key]
        # take the group while it brings testval closer to the target
        if taken < target and abs(target - (taken + n)) <= abs(target - taken):
            out[key] = "testval"
            taken += n
        else:
            out[key] = "train"
    return out


def assign_names(digests: list[str]) -> dict[str, str]:
    """BG-20k style names ``h_<8 hex>.jpg`` from pixel digests, unique.

    The 8 hex digits are the start of the digest. Two different pictures sharing
    them (about one chance in three at 50,000 images) are told apart by taking
    the next 8 digits of the later digest (in sorted order), and so on.
    """
    out: dict[str, str] = {}
    used: set[str] = set()
    for d in sorted(set(digests)):
        for start in range(0, len(d) - 7, 8):
            name = f"h_{d[start:start + 8]}.jpg"
            if name not in used:
                break
        else:  # pragma: no cover - needs eight 32-bit collisions of one digest
            raise ValueError(f"cannot find a free name for {d}")
        used.add(name)
        out[d] = name
    return out
