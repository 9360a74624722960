"""Dataset layouts -> validated sample records.

Readers for the folder layouts the toolkit understands. Each returns a
:class:`LayoutScan`: the validated :class:`Sample` records (image and alpha of
equal size, checked from the file headers) and a list of :class:`Problem`
records for everything that could not be paired (orphans, size mismatches,
unreadable headers). Nothing is dropped silently.

Layouts
-------
``am2k``
    ``[split/]original/*.jpg``, ``[split/]mask/*.png``, optional ``trimap/``;
    splits ``train`` and ``validation`` as published.
``p3m``
    P3M-10k: ``train/blurred_image`` + ``train/mask``;
    ``validation/P3M-500-P/{blurred_image,mask,trimap}`` and
    ``validation/P3M-500-NP/{original_image,mask,trimap}``.
``generic``
    ``images/`` + ``alphas/`` (optional ``trimaps/``) with matching stems,
    optionally inside split folders.
``fg_alpha``
    Foregrounds already given (Deep Image Matting's Adobe set): ``fg/`` + ``alpha/``.
``rgba``
    A folder of RGBA cut-outs: colour and alpha in one file.
``bg20k``
    Background sets: flat folders of images (``train/``, ``testval/`` or none).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from .io import IMAGE_EXTENSIONS, ImageError, PathLike, image_size, is_image_file, list_images, open_image

LAYOUTS = ("am2k", "p3m", "generic", "fg_alpha", "rgba", "bg20k")


@dataclass
class Sample:
    """One validated matting sample.

    ``image`` is the real photo (None for ``fg_alpha``/``rgba`` sets, whose
    colour is the foreground itself, stored in ``fg``).
    """

    id: str
    alpha: str
    image: str | None = None
    trimap: str | None = None
    fg: str | None = None
    split: str | None = None
    category: str | None = None
    width: int = 0
    height: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Problem:
    """An input that could not be used, and why."""

    path: str
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LayoutScan:
    layout: str
    root: str
    samples: list[Sample] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def extend(self, other: "LayoutScan") -> None:
        self.samples.extend(other.samples)
        self.problems.extend(other.problems)


class LayoutError(ValueError):
    """A folder does not have the layout it was read as."""


def _by_stem(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            if p.is_file() and is_image_file(p) and not p.name.startswith("."):
                files.setdefault(p.stem, p)
    return files


def _pair_folders(
    scan: LayoutScan,
    colour_dir: Path,
    alpha_dir: Path,
    trimap_dir: Path | None,
    split: str | None,
    colour_field: str = "image",
    id_prefix: str = "",
) -> None:
    """Pair files of two folders by stem, validate sizes, record orphans."""
    colours, alphas = _by_stem(colour_dir), _by_stem(alpha_dir)
    trimaps = _by_stem(trimap_dir) if trimap_dir is not None else {}
    for stem in sorted(set(colours) | set(alphas)):
        c, a = colours.get(stem), alphas.get(stem)
        if c is None:
            scan.problems.append(Problem(str(a), f"alpha has no {colour_field} (no file {stem}.* in {colour_dir})"))
            continue
        if a is None:
            scan.problems.append(Problem(str(c), f"{colour_field} has no alpha (no file {stem}.* in {alpha_dir})"))
            continue
        try:
            cw, ch = image_size(c)
            aw, ah = image_size(a)
        except ImageError as e:
            scan.problems.append(Problem(e.path, e.reason))
            continue
        if (cw, ch) != (aw, ah):
            scan.problems.append(Problem(str(a), f"size mismatch: alpha is {aw}x{ah}, {colour_field} {c.name} is {cw}x{ch}"))
            continue
        t = trimaps.get(stem)
        if t is not None:
            try:
                if image_size(t) != (cw, ch):
                    scan.problems.append(Problem(str(t), f"trimap size differs from {c.name} ({cw}x{ch}); trimap ignored"))
                    t = None
            except ImageError as e:
                scan.problems.append(Problem(e.path, f"{e.reason}; trimap ignored"))
                t = None
        sample = Sample(id=id_prefix + stem, alpha=str(a), trimap=str(t) if t else None, split=split, width=cw, height=ch)
        setattr(sample, colour_field, str(c))
        scan.samples.append(sample)
    for stem in sorted(set(trimaps) - set(colours)):
        scan.problems.append(Problem(str(trimaps[stem]), "trimap has no image"))


def read_am2k(root: PathLike) -> LayoutScan:
    root = Path(root)
    scan = LayoutScan("am2k", str(root))
    split_dirs = [(d.name, d) for d in sorted(root.iterdir()) if d.is_dir() and (d / "original").is_dir()] if root.is_dir() else []
    if (root / "original").is_dir():
        split_dirs.insert(0, (None, root))
    if not split_dirs:
        raise LayoutError(f"{root}: no original/ folder (AM-2k layout: [train|validation]/original, mask, trimap)")
    for split, d in split_dirs:
        if not (d / "mask").is_dir():
            scan.problems.append(Problem(str(d), "original/ without mask/ beside it"))
            continue
        trimap = d / "trimap" if (d / "trimap").is_dir() else None
        _pair_folders(scan, d / "original", d / "mask", trimap, split)
    return scan


P3M_IMAGE_DIRS = ("blurred_image", "original_image")


def read_p3m(root: PathLike) -> LayoutScan:
    root = Path(root)
    scan = LayoutScan("p3m", str(root))
    found = False
    for d in sorted([root, *[p for p in root.rglob("*") if p.is_dir()]]):
        for img_name in P3M_IMAGE_DIRS:
            if (d / img_name).is_dir():
                found = True
                if not (d / "mask").is_dir():
                    scan.problems.append(Problem(str(d / img_name), "no mask/ folder beside it"))
                    continue
                trimap = d / "trimap" if (d / "trimap").is_dir() else None
                rel = d.relative_to(root).as_posix()
                split = "train" if rel.startswith("train") else (rel.split("/")[-1] if rel != "." else None)
                _pair_folders(scan, d / img_name, d / "mask", trimap, split)
    if not found:
        raise LayoutError(f"{root}: no blurred_image/ or original_image/ folder (P3M-10k layout)")
    return scan


def read_generic(root: PathLike) -> LayoutScan:
    root = Path(root)
    scan = LayoutScan("generic", str(root))
    dirs = [(None, root)] if (root / "images").is_dir() else []
    if root.is_dir():
        dirs += [(d.name, d) for d in sorted(root.iterdir()) if d.is_dir() and (d / "images").is_dir()]
    if not dirs:
        raise LayoutError(f"{root}: no images/ folder (generic layout: images/ + alphas/ with matching names)")
    for split, d in dirs:
        alpha = d / "alphas" if (d / "alphas").is_dir() else d / "alpha"
        trimap = d / "trimaps" if (d / "trimaps").is_dir() else None
        _pair_folders(scan, d / "images", alpha, trimap, split)
    return scan


def read_fg_alpha(root: PathLike) -> LayoutScan:
    root = Path(root)
    scan = LayoutScan("fg_alpha", str(root))
    dirs = [(None, root)] if (root / "fg").is_dir() else []
    if root.is_dir():
        dirs += [(d.name, d) for d in sorted(root.iterdir()) if d.is_dir() and (d / "fg").is_dir()]
    if not dirs:
        raise LayoutError(f"{root}: no fg/ folder (foreground layout: fg/ + alpha/)")
    for split, d in dirs:
        _pair_folders(scan, d / "fg", d / "alpha", None, split, colour_field="fg")
    return scan


def read_rgba(root: PathLike) -> LayoutScan:
    """Every image of the folder must carry an alpha channel."""
    root = Path(root)
    scan = LayoutScan("rgba", str(root))
    for p in list_images(root):
        try:
            with open_image(p) as img:
                mode, (w, h) = img.mode, img.size
                has_alpha = mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info)
        except Exception as e:  # noqa: BLE001 - recorded
            scan.problems.append(Problem(str(p), f"cannot read header: {e}"))
            continue
        if not has_alpha:
            scan.problems.append(Problem(str(p), f"mode {mode} has no alpha channel (an RGBA cut-out is expected)"))
            continue
        rel = p.relative_to(root)
        split = rel.parts[0] if len(rel.parts) > 1 else None
        scan.samples.append(Sample(id=p.stem, alpha=str(p), fg=str(p), split=split, width=w, height=h))
    return scan


def read_bg20k(root: PathLike) -> list[Path]:
    """All background images below ``root``, sorted."""
    return list_images(root)


def detect_layout(root: PathLike) -> str:
    """Guess the layout of a matting dataset folder."""
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"{root}: not a folder")

    def has(name: str) -> bool:
        return (root / name).is_dir() or any((d / name).is_dir() for d in root.iterdir() if d.is_dir())

    if has("original"):
        return "am2k"
    if any(p.is_dir() and p.name in P3M_IMAGE_DIRS for p in root.rglob("*")):
        return "p3m"
    if has("images"):
        return "generic"
    if has("fg"):
        return "fg_alpha"
    if list_images(root):
        return "rgba"
    raise LayoutError(f"{root}: no known dataset layout (am2k, p3m, generic, fg_alpha, rgba)")


READERS = {
    "am2k": read_am2k,
    "p3m": read_p3m,
    "generic": read_generic,
    "fg_alpha": read_fg_alpha,
    "rgba": read_rgba,
}


def read_layout(root: PathLike, layout: str = "auto") -> LayoutScan:
    """Read a matting dataset: ``layout`` is one of :data:`READERS` or ``auto``."""
    if layout == "auto":
        layout = detect_layout(root)
    if layout not in READERS:
        raise LayoutError(f"unknown layout {layout!r}; choose from auto, {', '.join(READERS)}")
    return READERS[layout](root)


def iter_problem_lines(scan: LayoutScan) -> Iterator[str]:
    for p in scan.problems:
        yield f"{p.path}: {p.reason}"


__all__ = [
    "IMAGE_EXTENSIONS", "LAYOUTS", "LayoutError", "LayoutScan", "Problem", "READERS", "Sample",
    "detect_layout", "read_am2k", "read_bg20k", "read_fg_alpha", "read_generic", "read_layout",
    "read_p3m", "read_rgba",
]

