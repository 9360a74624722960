"""One composite, from files to shard members: read, fit, blur, blend, noise, encode.

The arithmetic is in :mod:`rssn.compose.ops`; the decisions come ready-made from
:mod:`rssn.compose.route`. This module only reads the inputs (through
:mod:`rssn.io`), applies the decisions in the paper's order and encodes the
members of the sample.
"""
from __future__ import annotations

import collections
import json
import struct
from typing import Any, Mapping

from ..io import SizeMismatchError, encode_image, read_alpha, read_bytes, read_rgb
from . import ops

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_GREY, _PNG_RGB = 0, 2


def png_is_plain(data: bytes, colour_type: int, width: int, height: int) -> bool:
    """True if ``data`` is an 8-bit PNG of the given colour type and size without
    an orientation (eXIf) chunk: such bytes decode to exactly the pixels we read,
    so they can go into a shard as they are instead of being encoded again."""
    if not data.startswith(_PNG_SIGNATURE) or len(data) < 33 or data[12:16] != b"IHDR":
        return False
    w, h, depth, ctype = struct.unpack(">IIBB", data[16:26])
    if (w, h, depth, ctype) != (width, height, 8, colour_type):
        return False
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"eXIf":
            return False
        if kind in (b"IDAT", b"IEND"):
            return True
        pos += 12 + length
    return False


class InputCache:
    """Decoded inputs kept while a shard is made: the K composites of a
    foreground are consecutive, so its colour, matte and weights are read once.

    Three entries: the matte, and both colours a foreground's composites switch
    between (the prepared F and its denoised copy, one coin per composite).
    """

    def __init__(self, size: int = 3):
        self.size = size
        self._items: collections.OrderedDict[tuple, Any] = collections.OrderedDict()

    def get(self, key: tuple, load):
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = load()
        self._items[key] = value
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return value


def _load_alpha(path: str):
    data = read_bytes(path)
    alpha = read_alpha(data, name=path)
    return data, alpha, ops.alpha_weights(alpha)


def _load_rgb(path: str):
    data = read_bytes(path)
    return data, read_rgb(data, name=path)


def make_composite(item: Mapping[str, Any], settings: Mapping[str, Any],
                   cache: InputCache | None = None) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Make one composite.

    Parameters
    ----------
    item:
        One composite of the plan (see :mod:`rssn.compose.job`): key, fg_id,
        index, split, the paths ``fg`` (denoised copy when drawn), ``alpha``,
        ``bg`` (denoised copy when drawn), ``bg_id`` and ``decisions``.
    settings:
        ``route`` (a RouteConfig dict), ``seed`` and ``jpeg_quality``.
    cache:
        Optional :class:`InputCache` shared by the composites of one shard.

    Returns
    -------
    (members, record)
        The shard members (name -> bytes) and the record of decisions.
    """
    cache = cache or InputCache()
    d = item["decisions"]
    fg_bytes, fg = cache.get(("rgb", item["fg"]), lambda: _load_rgb(item["fg"]))
    alpha_bytes, alpha, weights = cache.get(("alpha", item["alpha"]), lambda: _load_alpha(item["alpha"]))
    if fg.shape[:2] != alpha.shape:
        raise SizeMismatchError(item["fg"], f"foreground is {fg.shape[1]}x{fg.shape[0]} "
                                f"but its alpha {item['alpha']} is {alpha.shape[1]}x{alpha.shape[0]}")
    h, w = alpha.shape
    bg_src = read_rgb(item["bg"])
    # Paper order: (denoised inputs chosen by the plan) -> fit -> blur B -> blend -> noise.
    bg, fit = ops.fit_background(bg_src, (w, h), tuple(d["crop_u"]))
    if d["blur_kernel"]:
        bg = ops.box_blur(bg, d["blur_kernel"])
    comp = ops.blend(fg, bg, weights=weights)
    route = settings["route"]
    if d["noise"]:
        comp = ops.add_noise(comp, route["noise_sigma"], d["noise_seed"])

    q = int(settings["jpeg_quality"])
    record = {
        "key": item["key"], "fg_id": item["fg_id"], "index": item["index"], "split": item["split"],
        "category": item.get("category"), "route": route["route"], "seed": settings["seed"],
        "bg_id": item["bg_id"], "bg_size": [int(bg_src.shape[1]), int(bg_src.shape[0])],
        "scale": round(float(fit.scale), 6), "crop": list(fit.box),
        "denoise": bool(d["denoise"]), "blur_kernel": d["blur_kernel"], "noise": bool(d["noise"]),
        "noise_sigma": float(route["noise_sigma"]), "noise_seed": int(d["noise_seed"]),
        "width": int(w), "height": int(h),
    }
    members = {
        "composite.jpg": encode_image(comp, "jpg", quality=q),
        "alpha.png": alpha_bytes if png_is_plain(alpha_bytes, _PNG_GREY, w, h) else encode_image(alpha, "png"),
        "fg.png": fg_bytes if png_is_plain(fg_bytes, _PNG_RGB, w, h) else encode_image(fg, "png"),
        "bg.jpg": encode_image(bg, "jpg", quality=q),
        "json": json.dumps(record, sort_keys=True).encode("utf-8"),
    }
    return members, record
