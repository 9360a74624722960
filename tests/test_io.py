"""rssn.io: every kind of bad input gives its typed error naming the path; good
inputs of every accepted mode decode to the expected values; writes are atomic."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from rssn import io


def save(path, arr, mode=None, **kw):
    Image.fromarray(arr, mode=mode).save(path, **kw) if mode else Image.fromarray(arr).save(path, **kw)
    return path


@pytest.fixture
def rgb_arr():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- RGB modes


def test_rgb_png_round_trip(tmp_path, rgb_arr):
    p = save(tmp_path / "a.png", rgb_arr)
    assert np.array_equal(io.read_rgb(p), rgb_arr)


def test_grey_becomes_three_equal_channels(tmp_path):
    g = np.arange(600, dtype=np.uint8).reshape(20, 30)
    out = io.read_rgb(save(tmp_path / "g.png", g))
    assert out.shape == (20, 30, 3) and np.array_equal(out[..., 0], g) and np.array_equal(out[..., 2], g)


def test_palette_rgba_cmyk(tmp_path, rgb_arr):
    pal = Image.fromarray(rgb_arr).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.save(tmp_path / "p.png")
    assert np.array_equal(io.read_rgb(tmp_path / "p.png"), np.asarray(pal.convert("RGB")))
    rgba = np.dstack([rgb_arr, np.full(rgb_arr.shape[:2], 7, np.uint8)])
    assert np.array_equal(io.read_rgb(save(tmp_path / "a.png", rgba)), rgb_arr)
    cmyk = Image.fromarray(rgb_arr).convert("CMYK")
    cmyk.save(tmp_path / "c.jpg", quality=100)
    back = io.read_rgb(tmp_path / "c.jpg")
    assert back.shape == rgb_arr.shape
    assert np.abs(back.astype(int) - rgb_arr.astype(int)).mean() < 12


def test_sixteen_bit_scaled_to_eight(tmp_path):
    g16 = (np.arange(600, dtype=np.uint32).reshape(20, 30) * 100).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    out = io.read_rgb(tmp_path / "g16.png")
    assert out.dtype == np.uint8
    expect = np.round(g16 / 257.0).astype(np.uint8)
    assert np.array_equal(out[..., 0], expect)
    assert np.array_equal(io.read_alpha(tmp_path / "g16.png"), expect)


def test_exif_orientation_applied(tmp_path, rgb_arr):
    img = Image.fromarray(rgb_arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    img.save(tmp_path / "o.jpg", exif=exif, quality=100)
    out = io.read_rgb(tmp_path / "o.jpg")
    assert out.shape == (30, 20, 3)
    assert io.image_size(tmp_path / "o.jpg") == (20, 30)  # (w, h) after orientation


# --------------------------------------------------------------------------- alpha modes


def test_alpha_modes(tmp_path):
    a = np.arange(600, dtype=np.uint32).reshape(20, 30).astype(np.uint8)
    assert np.array_equal(io.read_alpha(save(tmp_path / "l.png", a)), a)
    rgba = np.dstack([np.zeros((20, 30, 3), np.uint8), a])
    assert np.array_equal(io.read_alpha(save(tmp_path / "rgba.png", rgba)), a)
    la = Image.fromarray(np.dstack([np.zeros_like(a), a]), mode="LA")
    la.save(tmp_path / "la.png")
    assert np.array_equal(io.read_alpha(tmp_path / "la.png"), a)
    assert np.array_equal(io.read_alpha(save(tmp_path / "rgb.png", np.dstack([a, a, a]))), a)


def test_colour_rgb_alpha_rejected_with_reason(tmp_path, rgb_arr):
    p = save(tmp_path / "colour.png", rgb_arr)
    with pytest.raises(io.UnsupportedModeError) as e:
        io.read_alpha(p)
    assert str(p) in str(e.value) and "channels differ" in e.value.reason


# --------------------------------------------------------------------------- bad inputs


def test_not_an_image(tmp_path):
    p = tmp_path / "x.jpg"
    p.write_bytes(b"this is text, not a picture")
    with pytest.raises(io.NotAnImageError) as e:
        io.read_rgb(p)
    assert e.value.path == str(p) and "not a recognised image format" in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(io.NotAnImageError, match="does not exist"):
        io.read_rgb(tmp_path / "nope.png")


@pytest.mark.parametrize("ext", ["jpg", "png"])
def test_truncated(tmp_path, rgb_arr, ext):
    big = np.random.default_rng(1).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    p = save(tmp_path / f"t.{ext}", big)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(io.TruncatedImageError) as e:
        io.read_rgb(p)
    assert e.value.path == str(p) and e.value.kind == "truncated"


def test_too_large_rejected_before_decoding(tmp_path, rgb_arr):
    p = save(tmp_path / "big.png", rgb_arr)
    with pytest.raises(io.ImageTooLargeError) as e:
        io.read_rgb(p, max_pixels=599)
    assert "600 pixels exceeds the limit of 599" in str(e.value)
    assert io.read_rgb(p, max_pixels=600).shape == (20, 30, 3)


def test_size_mismatch(tmp_path, rgb_arr):
    img = save(tmp_path / "i.png", rgb_arr)
    alpha = save(tmp_path / "a.png", np.zeros((21, 30), np.uint8))
    with pytest.raises(io.SizeMismatchError) as e:
        io.read_pair(img, alpha)
    assert "30x21" in str(e.value) and "30x20" in str(e.value) and e.value.path == str(alpha)


def test_all_errors_are_image_errors():
    for cls in (io.NotAnImageError, io.TruncatedImageError, io.UnsupportedModeError,
                io.ImageTooLargeError, io.SizeMismatchError):
        assert issubclass(cls, io.ImageError)


# --------------------------------------------------------------------------- writing


def test_write_image_atomic_and_round_trip(tmp_path, rgb_arr):
    p = io.write_image(tmp_path / "sub" / "w.png", rgb_arr)
    assert np.array_equal(io.read_rgb(p), rgb_arr)
    assert [f.name for f in p.parent.iterdir()] == ["w.png"]


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["out.bin"]


def test_encode_decode_and_digest(tmp_path, rgb_arr):
    data = io.encode_image(rgb_arr, "png")
    assert np.array_equal(io.decode_image(data), rgb_arr)
    a = save(tmp_path / "a.png", rgb_arr)
    b = save(tmp_path / "b.png", rgb_arr, compress_level=9)
    assert a.read_bytes() != b.read_bytes()
    assert io.pixel_digest(a) == io.pixel_digest(b)
    assert io.file_digest(a) != io.file_digest(b)
    assert io.file_digest(a, "x") != io.file_digest(a, "y")


def test_atomic_outputs_get_normal_permissions_and_hidden_folders_are_skipped(tmp_path, rgb_arr):
    umask = os.umask(0)
    os.umask(umask)
    p = io.write_image(tmp_path / "w.png", rgb_arr)
    assert (p.stat().st_mode & 0o777) == (0o666 & ~umask)
    io.write_image(tmp_path / ".cache" / "x.png", rgb_arr)
    io.write_image(tmp_path / "sub" / ".hidden.png", rgb_arr)
    io.write_image(tmp_path / "sub" / "seen.png", rgb_arr)
    assert [q.relative_to(tmp_path).as_posix() for q in io.list_images(tmp_path)] == ["sub/seen.png", "w.png"]


def test_corrupt_file_error_survives_ultralytics_import(tmp_path):
    """ultralytics replaces PIL.Image.open with a HEIF-plugin installer; our reads must
    still give the typed error, never ModuleNotFoundError or an install attempt."""
    import ultralytics.utils.patches  # noqa: F401 - the import applies the replacement
    from PIL import Image

    assert Image.open.__module__ != "PIL.Image"
    p = tmp_path / "x.png"
    p.write_bytes(b"garbage bytes")
    with pytest.raises(io.NotAnImageError, match="not a recognised image format"):
        io.read_rgb(p)
    with pytest.raises(io.NotAnImageError):
        io.image_size(p)
