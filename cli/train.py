"""``rssn train``: train GFM on composite shards or on real photos."""
from __future__ import annotations

import click

from .common import friendly_errors, seed_option


def _sizes(ctx, param, value):
    if value is None:
        return None
    try:
        sizes = tuple(int(v) for v in str(value).split(","))
    except ValueError:
        raise click.BadParameter("give comma-separated integers, e.g. 640,960,1280") from None
    if not sizes or min(sizes) < 1:
        raise click.BadParameter("crop sizes must be positive")
    return sizes


@click.command("train")
@click.option("--shards", multiple=True, type=click.Path(exists=True),
              help="Composite shards (a folder of .tar files or single files; repeatable): the COMP-RSSN track.")
@click.option("--dataset", type=click.Path(exists=True, file_okay=False),
              help="Real photos: a prepared folder (rssn prepare) or a raw layout (AM-2k, P3M-10k, ...): the ORI track.")
@click.option("--split", default="train", show_default=True, help="Split of --dataset to train on.")
@click.option("--backbone", type=click.Choice(["r34", "r34_2b", "d121", "r101", "tiny"]), default="r34",
              show_default=True, help="Encoder; 'tiny' is a small test/demo network, not from the paper.")
@click.option("--rosta", type=click.Choice(["TT", "FT", "BT", "RIM"]), default="TT", show_default=True,
              help="Representation of semantic and transition areas.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder (checkpoints, logs, loss curve).")
@click.option("--steps", type=click.IntRange(1), help="Optimizer steps to run (total, counting resumed ones).")
@click.option("--epochs", type=click.IntRange(1), help="Passes over the data (when --steps is not given).")
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True, help="Batch size per process.")
@click.option("--lr", type=float, default=1e-5, show_default=True, help="Adam learning rate.")
@click.option("--size", type=click.IntRange(32), default=320, show_default=True,
              help="Side of the training crops after resizing (multiple of 32).")
@click.option("--crop-sizes", callback=_sizes, default="640,960,1280", show_default=True,
              help="Square crop sides drawn before resizing (clamped to the image).")
@click.option("--workers", "-j", type=click.IntRange(0), default=2, show_default=True,
              help="Data-loading processes per training process.")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="CPU threads for the network (default: all cores; fewer is often faster on a shared machine).")
@click.option("--pretrained", default=None,
              help="Encoder init: 'torchvision' (ImageNet weights from the local torch cache) or a weights file.")
@click.option("--input-convention", type=click.Choice(["imagenet", "raw255"]), default="imagenet", show_default=True,
              help="How images are fed: ImageNet-normalised, or raw 0-255 like the authors' checkpoints.")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when available), cpu, cuda, cuda:N.")
@click.option("--amp/--no-amp", default=True, show_default=True, help="Mixed precision on CUDA.")
@click.option("--checkpoint-every", type=click.IntRange(1), default=1000, show_default=True,
              help="Steps between checkpoints (one is always written at the end).")
@click.option("--log-every", type=click.IntRange(1), default=10, show_default=True, help="Steps between log rows.")
@click.option("--shuffle-buffer", type=click.IntRange(1), default=1000, show_default=True,
              help="Samples in the shard shuffle buffer.")
@click.option("--val", "val_path", type=click.Path(exists=True),
              help="Held-out set for periodic validation: a shard folder, a prepared folder or a layout.")
@click.option("--val-split", default="validation", show_default=True, help="Split of a --val dataset folder.")
@click.option("--val-every", type=click.IntRange(0), default=0, show_default=True,
              help="Steps between validations (0: only at the end, when --val is given).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@seed_option
@friendly_errors
def train(shards, dataset, split, backbone, rosta, out, steps, epochs, batch_size, lr, size, crop_sizes, workers,
          threads, pretrained, input_convention, device, amp, checkpoint_every, log_every, shuffle_buffer, val_path, val_split,
          val_every, resume, seed):
    """Train GFM; write checkpoints, log.csv and loss.png to --out.

    \b
    COMP-RSSN track:  rssn train --shards SHARDS --backbone r34 --rosta TT --out RUN
    ORI track:        rssn train --dataset PREPARED --backbone r34 --rosta TT --out RUN
    Several GPUs:     torchrun --nproc-per-node 4 -m cli.main train ...
    """
    from pathlib import Path

    from gfm_train.data import make_source
    from gfm_train.model import PretrainedWeightsError
    from gfm_train.train import make_validator
    from gfm_train.train import train as run_train

    if not shards and not dataset:
        raise click.UsageError("give --shards (composites) or --dataset (real photos)")
    if shards and dataset:
        raise click.UsageError("give only one of --shards and --dataset")
    if size % 32:
        raise click.BadParameter("must be a multiple of 32", param_hint="--size")
    if steps is None and epochs is None:
        raise click.UsageError("give --steps or --epochs")
    validate = None
    if val_path:
        p = Path(val_path)
        is_shards = p.is_file() or any(p.glob("*.tar"))
        src = make_source(shards=p if is_shards else None, dataset=None if is_shards else p, split=val_split,
                          shuffle_buffer=1)
        validate = make_validator(src, rosta, input_convention, size)
    try:
        result = run_train(
            out, shards=list(shards) or None, dataset=dataset, backbone=backbone, rosta=rosta, steps=steps,
            epochs=epochs, batch_size=batch_size, lr=lr, size=size, crop_sizes=crop_sizes, workers=workers,
            seed=seed, pretrained=pretrained, input_convention=input_convention, device=device, amp=amp,
            checkpoint_every=checkpoint_every, log_every=log_every, shuffle_buffer=shuffle_buffer, split=split,
            resume=resume, validate=validate, val_every=val_every, threads=threads,
        )
    except PretrainedWeightsError as e:
        raise click.ClickException(str(e)) from None
    s = result.summary
    if s:
        click.echo(f"trained {s['steps']} steps on {s['device']} in {s['seconds']} s "
                   f"({s['samples_per_s']} images/s); loss {s['first_loss']:.4f} -> {s['final_loss']:.4f}"
                   if s.get("first_loss") is not None else f"trained {s['steps']} steps")
        click.echo(f"checkpoint: {Path(out) / 'last.pth'}   weights: {Path(out) / 'model.pth'}")


COMMANDS = [train]
