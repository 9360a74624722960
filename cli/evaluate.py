"""``rssn eval`` and ``rssn predict``: score a GFM model, or run it on images."""
from __future__ import annotations

import click

from .common import executor_options, friendly_errors

_MODE = click.option(
    "--mode", type=click.Choice(["hybrid", "resize"]), default="hybrid", show_default=True,
    help="hybrid: Glance at 1/3, Focus at 1/2 of the image (sides multiples of 32, at most 1600), "
         "merged at full size; resize: one pass at 1/2.")
_DEVICE = click.option("--device", default="auto", show_default=True,
                       help="auto (CUDA when available), cpu, cuda, cuda:N.")


@click.command("eval")
@click.option("--dataset", required=True, type=click.Path(exists=True, file_okay=False),
              help="Matting set (AM-2k, P3M-10k, generic, ... layout) or a prepared folder.")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False),
              help="GFM checkpoint to run on every image (ours or the authors').")
@click.option("--pred", "pred_dir", type=click.Path(exists=True, file_okay=False),
              help="Instead of --checkpoint: a folder of predicted alpha PNGs named by sample id "
                   "(e.g. the output of rssn predict).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Report folder.")
@click.option("--protocol", type=click.Choice(["gfm", "dim", "both"]), default="gfm", show_default=True,
              help="gfm: whole image, the GFM paper's numbers; dim: trimap unknown region, Deep Image Matting's "
                   "MATLAB code. Their numbers are not comparable.")
@_MODE
@click.option("--split", "splits", multiple=True,
              help="Split(s) to score (repeatable; default: every split but train, when there are others).")
@click.option("--layout", default="auto", show_default=True,
              help="Dataset layout: auto, am2k, p3m, generic, fg_alpha, rgba.")
@click.option("--trimap-kernel", type=click.IntRange(1), default=25, show_default=True,
              help="Elliptical kernel side (px) for trimaps generated from the truth where the dataset has none.")
@click.option("--worst", type=click.IntRange(0), default=4, show_default=True,
              help="Error maps to draw for the worst images (by SAD).")
@_DEVICE
@executor_options
@friendly_errors
def eval_cmd(dataset, checkpoint, pred_dir, out, protocol, mode, splits, layout, trimap_kernel, worst, device,
             workers, scheduler):
    """Score a model (or existing predictions) on a matting set.

    \b
    rssn eval --checkpoint RUN/model.pth --dataset AM-2k --out EVAL
    rssn eval --pred PREDICTIONS --dataset AM-2k --out EVAL --protocol both

    Writes OUT/summary.md (averages per split, the paper's columns), metrics.json and
    metrics.csv (per image), per_image/*.json, worst/*.png (error maps), run.json.
    With --pred, --workers/--scheduler spread the scoring; a checkpoint runs in this
    process. See docs/eval.md for the two protocols.
    """
    if (checkpoint is None) == (pred_dir is None):
        raise click.UsageError("give exactly one of --checkpoint or --pred")
    from gfm_train.evaluate import evaluate

    result = evaluate(dataset, out, checkpoint=checkpoint, pred_dir=pred_dir, mode=mode, protocol=protocol,
                      splits=list(splits) or None, layout=layout, trimap_kernel=trimap_kernel, device=device,
                      worst=worst, workers=workers, scheduler=scheduler)
    counts = ", ".join(f"{n} {f}" for f, n in sorted(result["counts"].items()))
    click.echo(f"images: {counts}")
    for group, avg in result["averages"].items():
        for p in ("gfm", "dim"):
            if p in avg:
                vals = "  ".join(f"{k.upper()} {v:.4g}" for k, v in avg[p].items() if not k.endswith("_images"))
                click.echo(f"{group} [{p}]: {vals}")
    click.echo(f"report: {result['summary']}")
    if not result["counts"].get("scored"):
        raise click.ClickException(f"no image could be scored; the reasons are in {out}/manifest.jsonl")


@click.command("predict")
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--checkpoint", required=True, type=click.Path(exists=True, dir_okay=False), help="GFM checkpoint.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output folder: alpha/NAME.png and cutout/NAME.png (RGBA).")
@_MODE
@_DEVICE
@click.option("--overwrite", is_flag=True, help="Predict again images whose outputs already exist.")
@friendly_errors
def predict(images, checkpoint, out, mode, device, overwrite):
    """Predict alpha mattes of IMAGES (files or folders) with a GFM checkpoint.

    \b
    rssn predict --checkpoint RUN/model.pth photos/ extra.jpg --out MATTES

    Images are processed one at a time; a rerun skips those already done.
    """
    from gfm_train.infer import predict_images

    result = predict_images(checkpoint, images, out, mode=mode, device=device, overwrite=overwrite)
    counts = ", ".join(f"{n} {f}" for f, n in sorted(result["counts"].items()))
    click.echo(f"images: {counts} ({result['seconds']:.1f} s on {result['device']})")
    click.echo(f"mattes: {out}/alpha   cut-outs: {out}/cutout")
    if not (result["counts"].get("written") or result["counts"].get("kept")):
        raise click.ClickException(f"no image was predicted; the reasons are in {out}/manifest.jsonl")
    if result["counts"].get("failed"):
        click.echo(f"some images failed: see {out}/manifest.jsonl", err=True)


COMMANDS = [eval_cmd, predict]
