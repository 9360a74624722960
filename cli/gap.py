"""``rssn gap``: measure how far composites are from real photos."""
from __future__ import annotations

import click

from .common import executor_options, friendly_errors

_KINDS = click.Choice(["auto", "shards", "prepared", "layout"])
_LAYOUTS = click.Choice(["auto", "am2k", "p3m", "generic", "fg_alpha", "rgba"])


@click.command("gap")
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True))
@click.option("--reference", "-r", type=click.Path(exists=True), default=None, metavar="REAL",
              help="Real photos with alpha to compare against (dataset folder, prepared set or shards).")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), metavar="REPORT",
              help="Report folder: gap.json, report.md, plots/, manifest.jsonl, run.json.")
@click.option("--kind", type=_KINDS, default="auto", show_default=True, help="What INPUT is.")
@click.option("--layout", type=_LAYOUTS, default="auto", show_default=True,
              help="Dataset layout of INPUT when it is a matting dataset folder.")
@click.option("--reference-kind", type=_KINDS, default="auto", show_default=True, help="What REAL is.")
@click.option("--reference-layout", type=_LAYOUTS, default="auto", show_default=True,
              help="Dataset layout of REAL when it is a matting dataset folder.")
@click.option("--margin", type=click.IntRange(0), default=None, metavar="PX",
              help="Pixels eroded from each region away from the soft edge [default: 1% of the shorter side, >= 4].")
@click.option("--min-pixels", type=click.IntRange(1), default=400, show_default=True,
              help="Smallest foreground/background region measured; smaller ones are recorded as missing.")
@click.option("--limit", type=click.IntRange(1), default=None, metavar="N",
              help="Measure about N samples per set: evenly spread over a folder's images; from shards, "
                   "the first samples of each shard in proportion to its size.")
@click.option("--chunk", type=click.IntRange(1), default=16, show_default=True,
              help="Images per work unit for dataset folders (a shard is always one unit).")
@click.option("--bins", type=click.IntRange(2), default=30, show_default=True, help="Histogram bins in the plots.")
@click.option("--plots/--no-plots", default=True, show_default=True,
              help="Draw the PNG histograms (--no-plots: JSON, Markdown and manifest only).")
@executor_options
@friendly_errors
def gap(input_path, reference, out, kind, layout, reference_kind, reference_layout, margin, min_pixels, limit,
        chunk, bins, plots, workers, scheduler):
    """Measure the composite-vs-real gap of INPUT and write a report to REPORT.

    For every sample, the alpha splits the image into foreground (alpha near 1)
    and background (alpha near 0), both kept away from the soft edge. Six
    statistics are measured on each region: noise level, sharpness, fine-detail
    fraction (a resolution cue), luminance, contrast and saturation. The
    discrepancy of each compares the foreground with its own background (0 = they
    agree). In a real photo both regions come from one camera; in a composite
    they often do not, and a matting model can learn that cue instead of the
    matte.

    With --reference, the distribution of each discrepancy over INPUT is compared
    with REAL's (Wasserstein distance) and given a plain-words verdict: close,
    different or far. See docs/gap.md.

    \b
    INPUT and REAL may be:
      composite shards from `rssn compose` (index.json + shard-*.tar)
      a prepared set from `rssn prepare` (samples.jsonl)
      a matting dataset: AM-2k, P3M-10k, images/+alphas/ (real photo + alpha)

    \b
    Example:
      rssn gap OUT/shards --reference OUT/sample/am2k --out OUT/gap
    """
    from rssn.gap import measure_gap

    result = measure_gap(input_path, out, reference=reference, kind=kind, layout=layout,
                         reference_kind=reference_kind, reference_layout=reference_layout, margin=margin,
                         min_pixels=min_pixels, chunk=chunk, limit=limit, bins=bins, plots=plots, workers=workers,
                         scheduler=scheduler)
    rep = result.report
    for name, info in (("INPUT", rep["input"]), ("REAL", rep["reference"])):
        if info:
            click.echo(f"{name}: {info['path']} ({info['kind']}): {info['measured']} measured, "
                       f"{info['incomplete']} incomplete, {info['failed']} failed, {info['skipped']} skipped")
    click.echo("")
    for stat in rep["statistics"].values():
        med = stat["input"]["median"]
        line = f"  {stat['label']:<22} INPUT median {'-' if med is None else f'{med:+.3g}':>8}"
        if stat["verdict"] is not None:
            rmed = stat["reference"]["median"]
            dist = "-" if stat["normalised"] is None else f"{stat['normalised']:.2f}"
            line += f"   REAL median {'-' if rmed is None else f'{rmed:+.3g}':>8}   distance/spread {dist:>5}" \
                    f"   {stat['verdict']}"
        click.echo(line)
    click.echo("")
    click.echo(f"report: {result.files['markdown']}")
    if plots:
        click.echo(f"plots:  {result.out / 'plots'}")
    measured = rep["input"]["measured"] + rep["input"]["incomplete"]
    if measured == 0:
        raise click.ClickException(f"no sample of {input_path} could be measured; see {result.files['manifest']}")


COMMANDS = [gap]
