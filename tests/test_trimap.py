"""rssn.trimap agrees with its definition and with the RoSTa TT target."""
from __future__ import annotations

import numpy as np
import pytest

from rssn.sample_data import animal_alpha
from rssn.seeding import generator
from rssn.trimap import trimap_from_alpha


def test_definition_on_a_square():
    a = np.zeros((40, 40), np.uint8)
    a[10:30, 10:30] = 255
    a[10, 10:30] = 100  # soft top edge
    tri = trimap_from_alpha(a, 5)
    assert set(np.unique(tri)) == {0, 128, 255}
    assert tri[20, 20] == 255 and tri[0, 0] == 0
    assert tri[10, 20] == 128 and tri[8, 20] == 128  # soft pixel and the dilated band above it
    assert tri[5, 20] == 0
    # Every soft pixel (0 < alpha < 255) is unknown.
    assert np.all(tri[(a > 0) & (a < 255)] == 128)


def test_matches_the_rosta_tt_target():
    from gfm_train.model.rosta import rosta_maps

    alpha = np.round(animal_alpha(generator(0, "t"), 96, 128) * 255).astype(np.uint8)
    ours = trimap_from_alpha(alpha, 25)
    classes = rosta_maps(alpha, tt_kernel=25)["trimap"]
    assert np.array_equal(np.select([ours == 0, ours == 128], [0, 1], 2), classes)


def test_bad_input():
    with pytest.raises(ValueError, match="H x W"):
        trimap_from_alpha(np.zeros((4, 4, 3), np.uint8))
