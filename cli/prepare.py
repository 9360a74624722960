"""``rssn prepare`` and ``rssn denoise``: a matting set ready for composition."""
from __future__ import annotations

import click

from .common import executor_options, friendly_errors, seed_option

_LAYOUTS = ("auto", "am2k", "p3m", "generic", "fg_alpha", "rgba")
_PROFILES = ("default", "fast")


def _denoise_help(prefix: str) -> list:
    return [
        click.option(f"--{prefix}profile", "profile", type=click.Choice(_PROFILES), default="default",
                     show_default=True,
                     help="BM3D profile: 'default' (hard thresholding + Wiener) or 'fast' (hard thresholding "
                          "only, lighter block matching: ~3-5x faster, ~0.5 dB lower PSNR)."),
        click.option(f"--{prefix}sigma", "sigma", type=click.FloatRange(min=0), default=None,
                     help="Noise standard deviation on the 0-255 scale [default: estimated per image].",
                     metavar="SIGMA"),
        click.option(f"--{prefix}max-side", "max_side", type=click.IntRange(min=16), default=None, metavar="PX",
                     help="Run BM3D on the image shrunk to PX on its longer side and subtract the noise found "
                          "there at full size: cost falls with the pixel count, nothing is blurred, grain finer "
                          "than that scale stays (suits backgrounds, which compose shrinks) [default: full size]."),
    ]


def _apply(options):
    def deco(f):
        for opt in reversed(options):
            f = opt(f)
        return f
    return deco


@click.command("prepare")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Prepared folder to write (a rerun resumes: finished samples are reused).")
@click.option("--layout", type=click.Choice(_LAYOUTS), default="auto", show_default=True,
              help="Dataset layout; 'auto' recognises it from the folder names.")
@click.option("--fg-method", type=click.Choice(("ml", "cf")), default="ml", show_default=True,
              help="Foreground estimation: 'ml' multilevel (fast) or 'cf' closed-form (the paper's; "
                   "~6-7 s and ~0.7 GB per megapixel, solved in tiles above --cf-max-pixels).")
@click.option("--cf-max-pixels", type=click.IntRange(min=10_000), default=1_000_000, show_default=True,
              help="Largest closed-form system (pixels); bigger images are solved in overlapping tiles.")
@click.option("--split-scheme", type=click.Choice(("auto", "am2k", "pm10k", "ratio")), default="auto",
              show_default=True,
              help="Split for samples without one: am2k = 10% validation stratified by category (1,800/200), "
                   "pm10k = 5% (9,500/500), ratio = --val-fraction. 'auto' follows the layout.")
@click.option("--val-fraction", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Validation fraction (overrides the scheme's).")
@click.option("--val-count", type=click.IntRange(min=0), default=None,
              help="Exact number of validation samples (overrides the fraction).")
@click.option("--categories", type=click.Path(exists=True, dir_okay=False), default=None,
              help="JSON file {sample id: category}; the split is stratified by it.")
@click.option("--denoise/--no-denoise", default=False, show_default=True,
              help="Also fill the BM3D cache OUT/denoise with denoised foregrounds (slow: tens of seconds "
                   "per megapixel).")
@_apply(_denoise_help("denoise-"))
@seed_option
@executor_options
@friendly_errors
def prepare(dataset, out, layout, fg_method, cf_max_pixels, split_scheme, val_fraction, val_count, categories,
            denoise, profile, sigma, max_side, seed, workers, scheduler):
    """Prepare the matting set DATASET for composition into OUT.

    \b
    Validates every image/alpha pair (bad pairs are reported in OUT/manifest.jsonl and
    skipped), keeps the dataset's own splits and splits the rest deterministically from
    --seed, copies the photos, writes 8-bit alpha PNGs and an estimated foreground colour
    per sample (OUT/<split>/fg). Sets whose foreground is given (fg/ + alpha/ folders,
    RGBA cut-outs) skip estimation. OUT/samples.jsonl lists the kept samples.

    \b
    Example:
      rssn prepare sample/am2k --out prepared --categories sample/am2k/categories.json
    """
    from rssn.prepare import prepare_dataset

    report = prepare_dataset(
        dataset, out, layout=layout, fg_method=fg_method, cf_max_pixels=cf_max_pixels, split_scheme=split_scheme,
        val_fraction=val_fraction, val_count=val_count, categories=categories, seed=seed, workers=workers,
        scheduler=scheduler, denoise=denoise, denoise_profile=profile, denoise_sigma=sigma, denoise_max_side=max_side,
    )
    s = report.summary
    splits = ", ".join(f"{k} {v}" for k, v in s["splits"].items()) or "none"
    click.echo(f"kept {s.get('kept', 0)} (reused {s['reused']}), skipped {s.get('skipped', 0)}, "
               f"failed {s.get('failed', 0)}; splits: {splits}")
    if s.get("denoise"):
        click.echo("denoise: " + ", ".join(f"{k} {v}" for k, v in s["denoise"].items()))
    click.echo(f"written to {out} (samples.jsonl, manifest.jsonl, run.json)")
    if not s.get("kept"):
        raise click.ClickException(f"no usable sample in {dataset}; see {out}/manifest.jsonl")


@click.command("denoise")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--cache", required=True, type=click.Path(file_okay=False),
              help="Cache folder: entries are keyed by the image bytes and the parameters, so reruns and "
                   "other datasets holding the same files reuse them.")
@_apply(_denoise_help(""))
@executor_options
@friendly_errors
def denoise(images, cache, profile, sigma, max_side, workers, scheduler):
    """BM3D-denoise IMAGES (files or folders, searched recursively) into the cache CACHE.

    \b
    One image per work unit (--workers local processes or a Dask --scheduler). BM3D is
    slow: ~100-150 s per megapixel on one core with the default profile, ~3-5x less
    with --profile fast (~0.5 dB lower PSNR); --max-side bounds the work for large backgrounds.
    CACHE/manifest.jsonl lists each input's entry (CACHE/<key[:2]>/<key>.png).
    """
    from rssn.denoise import denoise_images

    report = denoise_images(images, cache, profile=profile, sigma=sigma, max_side=max_side, workers=workers,
                            scheduler=scheduler)
    counts = report.counts
    click.echo(", ".join(f"{k} {v}" for k, v in counts.items()) or "no images")
    click.echo(f"cache: {cache}")
    if not report.rows:
        raise click.ClickException("no image files found in " + ", ".join(images))
    for r in report.rows:
        if r["fate"] == "failed":
            click.echo(f"failed: {r['input']}: {r['reason']}", err=True)
    if counts.get("failed") == len(report.rows):
        raise click.ClickException("no image could be denoised")


COMMANDS = [prepare, denoise]
