"""Splits: sizes, stratification, disjointness, determinism."""
from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rssn.prepare import SPLIT_SCHEMES, assign_splits, stratified_counts, validation_count
from rssn.sample_data import AM2K_CATEGORIES


def _am2k_like(n_per_cat=100):
    cats = {f"m_{k:02d}{i:04d}": c for k, c in enumerate(AM2K_CATEGORIES) for i in range(n_per_cat)}
    return list(cats), cats


def _val(split):
    return {i for i, s in split.items() if s == "validation"}


def test_am2k_scheme_gives_1800_200_with_10_per_category():
    ids, cats = _am2k_like()
    assert len(ids) == 2000 and len(set(cats.values())) == 20
    frac, stratify = SPLIT_SCHEMES["am2k"]
    split = assign_splits(ids, val_fraction=frac, categories=cats, stratify=stratify, seed=0)
    assert set(split) == set(ids)
    val = _val(split)
    assert len(val) == 200 and len(set(ids) - val) == 1800
    per_cat = {c: sum(1 for i in val if cats[i] == c) for c in AM2K_CATEGORIES}
    assert set(per_cat.values()) == {10}


def test_pm10k_scheme_gives_9500_500():
    ids = [f"p_{i:05d}" for i in range(10_000)]
    frac, stratify = SPLIT_SCHEMES["pm10k"]
    split = assign_splits(ids, val_fraction=frac, stratify=stratify, seed=3)
    assert len(_val(split)) == 500
    assert sum(1 for s in split.values() if s == "train") == 9500


def test_fractions_scale_to_small_sets():
    frac = SPLIT_SCHEMES["am2k"][0]
    ids = [f"s{i:02d}" for i in range(30)]
    cats = {i: "abc"[k % 3] for k, i in enumerate(ids)}
    val = _val(assign_splits(ids, val_fraction=frac, categories=cats, seed=0))
    assert len(val) == 3 and {cats[i] for i in val} == {"a", "b", "c"}
    assert validation_count(6, fraction=frac) == 1  # the sample data: 5 / 1
    assert validation_count(2, fraction=frac) == 1
    assert validation_count(1, fraction=frac) == 0
    assert validation_count(0, fraction=frac) == 0
    assert validation_count(10, fraction=0.99) == 9  # never an empty training split
    assert validation_count(10, count=4) == 4
    with pytest.raises(ValueError, match="between 0 and 9"):
        validation_count(10, count=10)
    with pytest.raises(ValueError, match="fraction"):
        validation_count(10, fraction=1.0)


def test_uneven_categories_get_proportional_shares_summing_exactly():
    sizes = {"a": 57, "b": 3, "c": 140, "d": 1}
    shares = stratified_counts(sizes, 20)
    assert sum(shares.values()) == 20
    total = sum(sizes.values())
    for g, n in sizes.items():
        q = 20 * n / total
        assert math.floor(q) <= shares[g] <= math.ceil(q)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text("abcdef", min_size=1, max_size=3), st.integers(0, 50), min_size=1, max_size=8),
       st.floats(0, 0.95))
def test_shares_property(sizes, frac):
    total = sum(sizes.values())
    n_val = min(math.floor(total * frac), total)
    shares = stratified_counts(sizes, n_val)
    assert sum(shares.values()) == n_val
    for g, n in sizes.items():
        assert 0 <= shares[g] <= n
        assert abs(shares[g] - n_val * n / max(total, 1)) < 1


def test_splits_are_deterministic_disjoint_and_independent_of_order():
    ids, cats = _am2k_like(12)
    a = assign_splits(ids, val_fraction=0.25, categories=cats, seed=7)
    shuffled = ids[:]
    random.Random(1).shuffle(shuffled)
    b = assign_splits(shuffled, val_fraction=0.25, categories=cats, seed=7)
    assert a == b
    assert set(a.values()) == {"train", "validation"}  # each id in exactly one split
    c = assign_splits(ids, val_fraction=0.25, categories=cats, seed=8)
    assert _val(a) != _val(c) and len(_val(a)) == len(_val(c)) == 60


def test_unknown_categories_form_their_own_group():
    ids = [f"x{i}" for i in range(20)]
    cats = {i: "cat" for i in ids[:10]}  # the rest have none
    val = _val(assign_splits(ids, val_fraction=0.2, categories=cats, seed=0))
    assert len(val) == 4
    assert sum(1 for i in val if i in cats) == 2
