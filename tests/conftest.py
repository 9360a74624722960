"""Test-wide settings: offline ultralytics, no progress bars, a shared sample set."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_yolo_dir = tempfile.mkdtemp(prefix="rssn-yolo-")
os.environ["YOLO_OFFLINE"] = "1"
os.environ["YOLO_CONFIG_DIR"] = _yolo_dir
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("RSSN_PROGRESS", "0")


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory):
    """A small sample set (see rssn.sample_data), made once per test session.

    Matting images are 160x120, photos 1200x1080 / 1080x1200 (HD), so every stage
    runs fast. Treat it as read-only: copy before changing anything.
    """
    from rssn.sample_data import make_sample_data

    root = tmp_path_factory.mktemp("sample-data")
    return make_sample_data(root, n_train=4, n_val=2, n_photos=4, fg_size=(160, 120), bg_size=(1200, 1080), seed=0)


@pytest.fixture
def data_dir() -> Path:
    return Path(__file__).parent / "data"
