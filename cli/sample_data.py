"""``rssn sample-data``: write the bundled, procedural sample set."""
from __future__ import annotations

import click

from .common import seed_option


@click.command("sample-data")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--train", "n_train", type=click.IntRange(1), default=6, show_default=True, help="Training foregrounds.")
@click.option("--val", "n_val", type=click.IntRange(0), default=2, show_default=True, help="Validation foregrounds.")
@click.option("--photos", "n_photos", type=click.IntRange(0), default=6, show_default=True, help="HD background photos.")
@click.option("--fg-size", nargs=2, type=click.IntRange(32), default=(480, 360), show_default=True,
              metavar="W H", help="Size of the matting images.")
@click.option("--bg-size", nargs=2, type=click.IntRange(32), default=(1440, 1080), show_default=True,
              metavar="W H", help="Size of the background photos (landscape; some are written portrait).")
@seed_option
def sample_data(out, n_train, n_val, n_photos, fg_size, bg_size, seed):
    """Write a small deterministic sample set to OUT.

    \b
    OUT/am2k    matting set in the AM-2k layout (+ categories.json)
    OUT/truth   true foreground and background of each matting image
    OUT/photos  background candidates for build-bg (incl. a small one and duplicates)
    """
    from rssn.sample_data import make_sample_data

    data = make_sample_data(out, n_train=n_train, n_val=n_val, n_photos=n_photos,
                            fg_size=tuple(fg_size), bg_size=tuple(bg_size), seed=seed)
    click.echo(f"matting set:  {data.am2k}")
    click.echo(f"photos:       {data.photos}")
    click.echo(f"ground truth: {data.truth}")


COMMANDS = [sample_data]
