"""``rssn compose`` and ``rssn inspect``: RSSN composites as webdataset shards."""
from __future__ import annotations

import click

from .common import executor_options, friendly_errors, seed_option


def _kernels(ctx, param, value):
    try:
        kernels = tuple(int(v) for v in str(value).replace(" ", "").split(",") if v)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers") from None
    if not kernels or min(kernels) < 1:
        raise click.BadParameter("give at least one positive kernel size, e.g. 20,30,40,50,60")
    return kernels


@click.command("compose")
@click.option("--matting", required=True, type=click.Path(exists=True, file_okay=False),
              help="Prepared matting set (output of `rssn prepare`).")
@click.option("--backgrounds", required=True, type=click.Path(exists=True, file_okay=False),
              help="Folder of background photos, searched recursively (e.g. build-bg's train/).")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Output folder: shard-NNNNNN.tar, index.json, manifest.jsonl, run.json.")
@click.option("--route", type=click.Choice(["rssn", "bg20k", "plain"]), default="rssn", show_default=True,
              help="rssn: denoise/blur/noise steps; bg20k: plain blending on BG-20k (COMP-BG20K); "
                   "plain: plain blending on the given backgrounds (COMP-COCO).")
@click.option("--per-fg", type=click.IntRange(1), default=10, show_default=True, help="Composites per foreground.")
@click.option("--split", "splits", multiple=True, default=("train",), show_default=True,
              help="Split(s) of the prepared set to compose; repeat for several, 'all' for every split.")
@click.option("--no-denoise", is_flag=True, help="Ablation: never use denoised F and B.")
@click.option("--no-blur", is_flag=True, help="Ablation: never blur B.")
@click.option("--no-noise", is_flag=True, help="Ablation: never add noise.")
@click.option("--p-denoise", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Probability of denoised F and B (one coin for both).")
@click.option("--p-blur", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Probability of a box blur of B.")
@click.option("--p-noise", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Probability of Gaussian noise on the composite.")
@click.option("--blur-kernels", default="20,30,40,50,60", show_default=True, callback=_kernels, metavar="LIST",
              help="Box-blur kernel sizes to draw from (comma separated).")
@click.option("--noise-sigma", type=click.FloatRange(0), default=10.0, show_default=True,
              help="Standard deviation of the noise on the 0-255 scale (clipped, never wraps).")
@click.option("--shard-size", type=click.IntRange(1), default=100, show_default=True,
              help="Composites per shard (one shard = one work unit = one retry).")
@click.option("--jpeg-quality", type=click.IntRange(1, 100), default=95, show_default=True,
              help="JPEG quality of the composite and background members.")
@click.option("--denoise-cache", type=click.Path(file_okay=False), default=None,
              help="BM3D cache folder  [default: MATTING/denoise]")
@click.option("--denoise-missing", type=click.Choice(["compute", "error"]), default="compute", show_default=True,
              help="Denoised copies missing from the cache: compute them first (BM3D, slow) or stop with a list.")
@click.option("--denoise-profile", type=click.Choice(["default", "fast"]), default=None,
              help="BM3D profile of the cache entries (as given to `rssn denoise`).  "
                   "[default: what `rssn prepare --denoise` used for MATTING, else 'default']")
@click.option("--denoise-sigma", type=click.FloatRange(0), default=None,
              help="BM3D noise sigma of the cache entries  [default: as `rssn prepare --denoise` used, "
                   "else estimated per image]")
@click.option("--denoise-max-side", type=click.IntRange(16), default=None, metavar="PX",
              help="Foregrounds are denoised at this longer side at most (as given to `rssn denoise`)  "
                   "[default: as `rssn prepare --denoise` used, else full size]")
@click.option("--bg-denoise-max-side", type=click.IntRange(16), default=None, metavar="PX",
              help="Backgrounds are denoised at this longer side at most (they are shrunk to the "
                   "foreground's size anyway; much faster)  [default: as --denoise-max-side]")
@click.option("--overwrite", is_flag=True, help="Replace shards of a different earlier composition in OUT.")
@seed_option
@executor_options
@friendly_errors
def compose(matting, backgrounds, out, route, per_fg, splits, no_denoise, no_blur, no_noise, p_denoise, p_blur,
            p_noise, blur_kernels, noise_sigma, shard_size, jpeg_quality, denoise_cache, denoise_missing,
            denoise_profile, denoise_sigma, denoise_max_side, bg_denoise_max_side, overwrite, seed, workers, scheduler):
    """Write composites of the foregrounds in MATTING on the photos in BACKGROUNDS
    as webdataset shards in OUT.

    \b
    Per composite (foreground f, index k), every choice drawn from (seed, f, k):
      background   one photo, uniformly; scaled to cover f, random crop (no distortion)
      denoise      with --p-denoise: BM3D copies of F and B (from the cache)
      blur         with --p-blur: box blur of B, kernel from --blur-kernels
      blend        C = alpha*F + (1-alpha)*B  (float32, rounded once)
      noise        with --p-noise: Gaussian, sigma --noise-sigma, clipped to [0, 255]

    The same arguments give byte-identical shards on any number of workers or a
    Dask cluster. Rerunning a killed run finishes only the missing shards.
    Inspect the result with `rssn inspect OUT --grid sheet.png`.
    """
    from rssn.compose import compose as run_compose

    chosen = None if "all" in splits else tuple(splits)
    res = run_compose(
        matting, backgrounds, out, route=route, per_fg=per_fg, splits=chosen, p_denoise=p_denoise,
        p_blur=p_blur, p_noise=p_noise, blur_kernels=blur_kernels, noise_sigma=noise_sigma,
        denoise=not no_denoise, blur=not no_blur, noise=not no_noise, seed=seed, shard_size=shard_size,
        jpeg_quality=jpeg_quality, denoise_cache=denoise_cache, denoise_missing=denoise_missing,
        denoise_profile=denoise_profile, denoise_sigma=denoise_sigma, denoise_max_side=denoise_max_side,
        bg_denoise_max_side=bg_denoise_max_side,
        workers=workers, scheduler=scheduler, overwrite=overwrite,
    )
    s = res.steps
    click.echo(f"composites: {res.composites} in {res.shards} shards ({res.shards_written} written, "
               f"{res.shards_skipped} already complete) -> {res.out}")
    if s.get("total"):
        click.echo(f"steps:      denoise {s['denoise']}, blur {s['blur']}, noise {s['noise']} of {s['total']}; "
                   f"{s['backgrounds_used']} backgrounds used")
    if res.denoise.get("needed"):
        d = res.denoise
        click.echo(f"denoise:    {d['needed']} copies needed, {d['cached']} cached, {d['computed']} computed"
                   + (f", {d['failed']} failed" if d["failed"] else ""))
    if res.failed:
        click.echo(f"skipped:    {res.failed} composites with unusable inputs (reasons in {res.out}/manifest.jsonl)")
    if route == "bg20k" and res.backgrounds_below_hd:
        click.echo(f"warning:    {res.backgrounds_below_hd} backgrounds have a shorter side below 1080 px; "
                   "BG-20k backgrounds are HD (see `rssn build-bg`)", err=True)
    if res.shard_errors:
        for e in res.shard_errors[:5]:
            click.echo(f"error:      {e}", err=True)
        raise click.ClickException(f"{len(res.shard_errors)} shard(s) failed; run the same command again to retry them")


@click.command("inspect")
@click.argument("shards", type=click.Path(exists=True, file_okay=False))
@click.option("--grid", type=click.Path(dir_okay=False), default=None, metavar="PNG",
              help="Write a contact sheet (composite / alpha / foreground / background) to this file.")
@click.option("--samples", "-n", type=click.IntRange(1), default=8, show_default=True,
              help="Rows of the contact sheet, spread evenly over the set.")
@click.option("--thumb", type=click.IntRange(32), default=160, show_default=True, help="Cell height in pixels.")
@click.option("--verify", is_flag=True, help="Check every shard's sha256 against index.json.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@friendly_errors
def inspect(shards, grid, samples, thumb, verify, as_json):
    """Counts, how often each RSSN step fired, and a contact sheet of a shard folder."""
    from rssn.inspect import format_report, inspect_shards
    from rssn.records import dumps

    report = inspect_shards(shards, grid=grid, samples=samples, verify=verify, thumb=thumb)
    click.echo(dumps(report, indent=2) if as_json else format_report(report))
    if verify and report["problems"]:
        raise click.ClickException(f"{len(report['problems'])} problem(s) found")


COMMANDS = [compose, inspect]
