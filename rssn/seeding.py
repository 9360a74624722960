"""Seeded random generators derived from (run seed, sample identity).

Every random choice in the toolkit comes from a generator made here, keyed by the
run's seed and the identity of the thing being made (a foreground id, a composite
index, ...). The same key gives the same stream in any process, on any worker, in
any order: results cannot depend on the number of workers or on scheduling.
"""
from __future__ import annotations

import hashlib

import numpy as np


def _key_int(key: object) -> int:
    """A stable 64-bit integer for any key (Python's hash() is salted per process)."""
    if isinstance(key, (int, np.integer)) and int(key) >= 0:
        return int(key)
    digest = hashlib.sha256(repr(key).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little")


def seed_sequence(seed: int, *keys: object) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, *(_key_int(k) for k in keys)])


def generator(seed: int, *keys: object) -> np.random.Generator:
    """A PCG64 generator for (seed, *keys).

    Example:
        >>> a = generator(0, "m_0001", 3).random()
        >>> b = generator(0, "m_0001", 3).random()
        >>> a == b
        True
    """
    return np.random.Generator(np.random.PCG64(seed_sequence(seed, *keys)))


def derived_seed(seed: int, *keys: object) -> int:
    """A 32-bit integer seed for libraries that take an int (OpenCV's RNG)."""
    return int(seed_sequence(seed, *keys).generate_state(1, np.uint32)[0])
