"""``rssn build-bg``: build a BG-20k-style background set from folders of photos."""
from __future__ import annotations

import click

from .common import executor_options, friendly_errors, seed_option


@click.command("build-bg")
@click.argument("sources", nargs=-1, type=click.Path(exists=True))
@click.option("--out", "-o", type=click.Path(file_okay=False), default=None,
              help="Output folder (train/, testval/, manifest.jsonl, run.json, review.html, review.json). "
                   "With --apply-review it defaults to the review file's folder.")
@click.option("--detector", metavar="PATH|none", default=None,
              help="YOLO weights (.pt) or model yaml for salient-object rejection, or 'none' to skip that "
                   "stage. Required for a build; nothing is downloaded.")
@click.option("--min-side", type=click.IntRange(1), default=1080, show_default=True,
              help="HD threshold: photos with a shorter side below this are dropped; the rest are resized "
                   "so that the shorter side is exactly this.")
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG quality of the output.")
@click.option("--max-distance", type=click.IntRange(0, 64), default=8, show_default=True,
              help="Near duplicates: largest perceptual-hash Hamming distance (of 64 bits).")
@click.option("--group-distance", type=click.IntRange(0, 64), default=10, show_default=True,
              help="Kept images within this hash distance go to the same side of the split (>= --max-distance).")
@click.option("--classes", default=None, metavar="LIST",
              help="Detector classes that reject a photo: names or ids, comma separated, or 'all'. "
                   "Default: people, animals and vehicles of COCO.")
@click.option("--min-confidence", "min_score", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="A detection rejects from this confidence up ...")
@click.option("--min-area", type=click.FloatRange(0, 1), default=0.05, show_default=True,
              help="... and from this box area (fraction of the image) up.")
@click.option("--review-confidence", "review_score", type=click.FloatRange(0, 1), default=0.7, show_default=True,
              help="Rejections whose detection scores below this are borderline: shown in review.html.")
@click.option("--review-area", type=click.FloatRange(0, 1), default=0.15, show_default=True,
              help="Rejections whose box covers less than this fraction are borderline too.")
@click.option("--record-confidence", "record_score", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="Lowest detection confidence recorded in the manifest (never above --min-confidence).")
@click.option("--imgsz", type=click.IntRange(32), default=640, show_default=True, help="Detector input size.")
@click.option("--batch", type=click.IntRange(1), default=16, show_default=True, help="Images per detector batch.")
@click.option("--device", default=None, help="Torch device for the detector (cpu, cuda:0, ...); default automatic.")
@click.option("--test-fraction", type=click.FloatRange(0, 1), default=0.25, show_default=True,
              help="Share of kept images in testval/ (BG-20k: 5k of 20k).")
@click.option("--apply-review", type=click.Path(exists=True, dir_okay=False), default=None, metavar="REVIEW_JSON",
              help="Apply the verdicts of an edited review.json; without SOURCES only the split and the "
                   "output folders are redone.")
@seed_option
@executor_options
@friendly_errors
def build_bg(sources, out, detector, min_side, quality, max_distance, group_distance, classes, min_score,
             min_area, review_score, review_area, record_score, imgsz, batch, device, test_fraction,
             apply_review, seed, workers, scheduler):
    """Build a BG-20k-style background set from the photos in SOURCES.

    \b
    Stages, each recorded per input in OUT/manifest.jsonl with a fate and reason:
      1 scan       find images (recursively), decode, validate   -> unreadable
      2 HD filter  shorter side below --min-side                 -> too_small
      3 resize     shorter side = --min-side, aspect kept, JPEG named h_<8 hex>.jpg
      4 dedup      same pixels or close perceptual hash          -> duplicate
      5 detect     YOLO finds a salient object                   -> salient
      6 review     review.html / review.json, then --apply-review -> rejected_review
      7 split      OUT/train and OUT/testval, disjoint           -> kept
    A rerun with the same arguments skips finished work.

    \b
    Examples:
      rssn build-bg photos/ --out bg --detector yolov8x.pt --workers 8
      rssn build-bg photos/ --out bg --detector none
      rssn build-bg --apply-review bg/review.json
    """
    from rssn.bgset import build_background_set

    if not sources and apply_review is None:
        raise click.UsageError("give at least one SOURCE folder or file (or --apply-review REVIEW_JSON)")
    if sources and detector is None:
        raise click.UsageError("choose a detector: --detector PATH (YOLO weights or model yaml) or --detector none")
    if sources and out is None:
        raise click.UsageError("give the output folder: --out DIR")
    result = build_background_set(
        list(sources), out, detector=detector, min_side=min_side, quality=quality, max_distance=max_distance,
        group_distance=group_distance, classes=classes, min_score=min_score, min_area=min_area,
        review_score=review_score, review_area=review_area, record_score=record_score, imgsz=imgsz,
        batch=batch, device=device, test_fraction=test_fraction, seed=seed, workers=workers,
        scheduler=scheduler, apply_review=apply_review,
    )
    s = result.summary
    click.echo(f"{s['inputs']} inputs: " + ", ".join(f"{n} {fate}" for fate, n in result.fates.items()))
    click.echo(f"train: {s['train']}  testval: {s['testval']}  (written now: {s['written']})")
    click.echo(f"manifest: {result.manifest}")
    click.echo(f"review:   {result.out / 'review.html'}  (verdicts: {result.out / 'review.json'})")


COMMANDS = [build_bg]
