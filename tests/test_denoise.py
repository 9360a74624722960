"""BM3D denoising and its content-addressed cache, on small images (BM3D is slow)."""
from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from skimage import data
from skimage.metrics import peak_signal_noise_ratio as psnr

import rssn.denoise as dn
from rssn.io import file_digest, read_rgb, write_bytes_atomic, write_image
from rssn.records import read_manifest, read_run

SIGMA = 20.0


@pytest.fixture(scope="module")
def clean_noisy():
    """A 64 x 64 photo crop and a copy with Gaussian noise of std 20 (0-255)."""
    clean = cv2.resize(data.astronaut(), (128, 128), interpolation=cv2.INTER_AREA)[32:96, 32:96]
    clean = np.ascontiguousarray(clean)
    rng = np.random.default_rng(0)
    noisy = np.clip(np.round(clean + rng.normal(0, SIGMA, clean.shape)), 0, 255).astype(np.uint8)
    return clean, noisy


@pytest.fixture
def noisy_png(tmp_path, clean_noisy):
    path = tmp_path / "in" / "noisy.png"
    write_image(path, clean_noisy[1])
    return path


@pytest.fixture
def bm3d_calls(monkeypatch):
    """Count the BM3D runs (the real BM3D still runs)."""
    calls = []
    real = dn._run_bm3d

    def counting(z, sigma, profile):
        calls.append((z.shape, sigma, profile))
        return real(z, sigma, profile)

    monkeypatch.setattr(dn, "_run_bm3d", counting)
    return calls


# Measured on this image: default 22.6 -> 28.5 dB, fast 22.6 -> 27.5 dB.
@pytest.mark.parametrize("profile,gain", [("default", 4.5), ("fast", 3.5)])
def test_bm3d_raises_psnr_with_the_estimated_sigma(clean_noisy, profile, gain):
    clean, noisy = clean_noisy
    out, sigma = dn.denoise_array(noisy, profile=profile)
    assert out.shape == noisy.shape and out.dtype == np.uint8
    assert abs(sigma - SIGMA) < 0.2 * SIGMA  # estimate_sigma finds the noise it was given
    assert psnr(clean, out) >= psnr(clean, noisy) + gain


def test_default_profile_is_the_packages_colour_bm3d(clean_noisy):
    import bm3d

    noisy = clean_noisy[1][:40, :40]
    z = noisy / 255.0
    ours = dn._bm3d_opp(z, SIGMA / 255, "default")
    ref = bm3d.bm3d_rgb(z, SIGMA / 255, dn.bm3d_profile("default"))
    np.testing.assert_allclose(ours, ref, atol=1e-9)


def test_grey_and_flat_images_do_not_break_bm3d(clean_noisy):
    grey = np.repeat(clean_noisy[1][:40, :40, :1], 3, axis=2)
    out, _ = dn.denoise_array(grey, sigma=SIGMA, profile="fast")
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert np.abs(out.astype(int) - grey).mean() > 1  # it did denoise
    flat = np.full((24, 24, 3), 77, np.uint8)
    assert np.array_equal(dn.denoise_array(flat)[0], flat)


def test_max_side_keeps_the_size_and_removes_the_coarse_noise(clean_noisy):
    clean, noisy = clean_noisy
    out, sigma = dn.denoise_array(noisy, sigma=SIGMA, profile="fast", max_side=32)
    assert out.shape == noisy.shape
    assert sigma == pytest.approx(SIGMA * 0.5)  # area averaging by 2 halves independent noise

    def half(x):
        return cv2.resize(x, (32, 32), interpolation=cv2.INTER_AREA)

    # Measured: +0.4 dB at full size (the fine grain stays), +1.7 dB at half size.
    assert psnr(clean, out) > psnr(clean, noisy)
    assert psnr(half(clean), half(out)) >= psnr(half(clean), half(noisy)) + 1.0
    with pytest.raises(ValueError, match="max_side"):
        dn.denoise_array(noisy, max_side=4)


def test_cache_key_is_the_bytes_plus_the_parameters(noisy_png, tmp_path):
    key = dn.cache_key(noisy_png)
    assert key == file_digest(noisy_png, extra=dn.param_string("default", None, None))
    keys = {key, dn.cache_key(noisy_png, "fast"), dn.cache_key(noisy_png, sigma=5),
            dn.cache_key(noisy_png, sigma=5.5), dn.cache_key(noisy_png, max_side=32)}
    assert len(keys) == 5
    moved = tmp_path / "elsewhere.png"
    shutil.copyfile(noisy_png, moved)
    assert dn.cache_key(moved) == key  # the name does not matter, the bytes do
    assert dn.cached_path(noisy_png, tmp_path / "c") == tmp_path / "c" / key[:2] / f"{key}.png"
    with pytest.raises(ValueError, match="unknown BM3D profile"):
        dn.cache_key(noisy_png, "slow")


def test_second_call_hits_the_cache_without_running_bm3d(noisy_png, tmp_path, bm3d_calls):
    cache = tmp_path / "cache"
    first = dn.denoise_cached(noisy_png, cache, profile="fast")
    assert len(bm3d_calls) == 1
    entry = dn.cached_path(noisy_png, cache, profile="fast")
    assert entry.is_file()
    meta = json.loads(entry.with_suffix(".json").read_text())
    assert meta["profile"] == "fast" and meta["source"] == str(noisy_png) and meta["seconds"] >= 0
    assert abs(meta["sigma"] - SIGMA) < 0.2 * SIGMA and meta["sigma_given"] is False
    stamp = entry.stat().st_mtime_ns

    second = dn.denoise_cached(noisy_png, cache, profile="fast")
    assert len(bm3d_calls) == 1, "BM3D ran again on a cached image"
    assert np.array_equal(first, second)
    assert entry.stat().st_mtime_ns == stamp
    assert np.array_equal(read_rgb(entry), first)  # lossless entry

    copy = tmp_path / "other-dataset" / "same.png"
    copy.parent.mkdir()
    shutil.copyfile(noisy_png, copy)
    assert np.array_equal(dn.denoise_cached(copy, cache, profile="fast"), first)
    assert len(bm3d_calls) == 1

    # Other parameters are another entry; a damaged entry is recomputed.
    dn.denoise_cached(noisy_png, cache, profile="fast", sigma=10)
    assert len(bm3d_calls) == 2
    write_bytes_atomic(entry, b"not a png")
    assert np.array_equal(dn.denoise_cached(noisy_png, cache, profile="fast"), first)
    assert len(bm3d_calls) == 3


def test_denoise_paths_dedups_equal_bytes_and_reports_bad_files(noisy_png, tmp_path, bm3d_calls):
    twin = noisy_png.with_name("twin.png")
    shutil.copyfile(noisy_png, twin)
    broken = noisy_png.with_name("broken.png")
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    cache = tmp_path / "cache"
    report = dn.denoise_paths([noisy_png, twin, broken], cache, profile="fast", sigma=SIGMA)
    fates = [r["fate"] for r in report.rows]
    assert fates == ["denoised", "duplicate", "failed"]
    assert len(bm3d_calls) == 1
    assert "broken.png" in report.rows[2]["reason"]
    assert report.rows[0]["entry"] == report.rows[1]["entry"]
    assert report.entry_for(twin) == dn.cached_path(noisy_png, cache, "fast", SIGMA)
    again = dn.denoise_paths([noisy_png, twin], cache, profile="fast", sigma=SIGMA)
    assert [r["fate"] for r in again.rows] == ["cached", "cached"]
    assert len(bm3d_calls) == 1


def test_cli_denoise_fills_the_cache_and_reuses_it(tmp_path, clean_noisy):
    from cli.main import main

    folder = tmp_path / "bgs"
    for i in range(2):
        write_image(folder / f"bg_{i}.png", np.ascontiguousarray(clean_noisy[1][i * 8:i * 8 + 32, :32]))
    cache = tmp_path / "cache"
    runner = CliRunner()
    res = runner.invoke(main, ["denoise", str(folder), "--cache", str(cache), "--profile", "fast"])
    assert res.exit_code == 0, res.output
    assert "denoised 2" in res.output
    rows = read_manifest(cache / "manifest.jsonl")
    assert [r["fate"] for r in rows] == ["denoised", "denoised"]
    assert all((cache / r["entry"]).is_file() for r in rows)
    run = read_run(cache)
    assert run["status"] == "complete" and run["params"]["profile"] == "fast"
    res = runner.invoke(main, ["denoise", str(folder), "--cache", str(cache), "--profile", "fast"])
    assert res.exit_code == 0 and "cached 2" in res.output
    res = runner.invoke(main, ["denoise", str(folder), "--cache", str(cache), "--profile", "slow"])
    assert res.exit_code == 2 and "slow" in res.output
    empty = tmp_path / "empty"
    empty.mkdir()
    res = runner.invoke(main, ["denoise", str(empty), "--cache", str(cache)])
    assert res.exit_code == 1 and "no image files" in res.output


def test_a_cache_inside_the_input_folder_is_not_taken_as_input(tmp_path, clean_noisy):
    from cli.main import main

    folder = tmp_path / "fgs"
    write_image(folder / "a.png", np.ascontiguousarray(clean_noisy[1][:32, :32]))
    cache = folder / "denoise"
    runner = CliRunner()
    for expected in ("denoised 1", "cached 1"):
        res = runner.invoke(main, ["denoise", str(folder), "--cache", str(cache), "--profile", "fast"])
        assert res.exit_code == 0 and res.output.splitlines()[0] == expected, res.output
    assert len(list(cache.rglob("*.png"))) == 1
