"""Run records and manifests: what every command writes next to its output.

Convention for an output folder ``OUT``:

- ``OUT/run.json``: the command, its parameters, the seed, package versions,
  start and end times, status and a summary of counts.
- ``OUT/manifest.jsonl``: one JSON object per input with at least ``input`` and
  ``fate`` (and ``reason`` where the fate needs one).

Both are plain JSON, never pickles, and paths stored in them are relative to
``OUT`` where they point inside it. :func:`safe_join` refuses any stored path that
would leave the folder.
"""
from __future__ import annotations

import collections
import datetime as _dt
import importlib.metadata
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping

from .io import PathLike, write_text_atomic

RUN_FILE = "run.json"
MANIFEST_FILE = "manifest.jsonl"

#: Packages whose versions are recorded in every run.json.
RECORDED_PACKAGES = (
    "rssn", "numpy", "opencv-python", "pillow", "scikit-image", "bm3d", "pymatting",
    "imagehash", "ultralytics", "torch", "torchvision", "webdataset", "dask",
    "distributed", "joblib",
)


class UnsafePathError(ValueError):
    """A path read from a manifest or index would escape its folder."""


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def versions(packages: Iterable[str] = RECORDED_PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    return value


def dumps(obj: Any, **kw: Any) -> str:
    return json.dumps(_jsonable(obj), sort_keys=True, **kw)


class RunRecord:
    """Writes ``run.json`` at the start of a run and updates it at the end.

    Example:
        >>> rec = RunRecord.start(out, "compose", {"seed": 0})  # doctest: +SKIP
        >>> rec.finish(summary={"written": 10})                 # doctest: +SKIP
    """

    def __init__(self, out_dir: PathLike, data: dict[str, Any]):
        self.out_dir = Path(out_dir)
        self.data = data

    @property
    def path(self) -> Path:
        return self.out_dir / RUN_FILE

    @classmethod
    def start(cls, out_dir: PathLike, command: str, params: Mapping[str, Any], seed: int | None = None) -> "RunRecord":
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        data = {
            "command": command,
            "argv": sys.argv,
            "params": _jsonable(dict(params)),
            "seed": seed,
            "versions": versions(),
            "platform": platform.platform(),
            "started": now(),
            "finished": None,
            "status": "running",
            "summary": {},
        }
        rec = cls(out_dir, data)
        rec.save()
        return rec

    def save(self) -> None:
        write_text_atomic(self.path, dumps(self.data, indent=2) + "\n")

    def finish(self, summary: Mapping[str, Any] | None = None, status: str = "complete") -> None:
        self.data["summary"] = _jsonable(dict(summary or {}))
        self.data["finished"] = now()
        self.data["status"] = status
        self.save()


def read_run(out_dir: PathLike) -> dict[str, Any]:
    with open(Path(out_dir) / RUN_FILE, encoding="utf-8") as f:
        return json.load(f)


def write_manifest(path: PathLike, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write rows as JSON Lines, atomically."""
    text = "".join(dumps(r) + "\n" for r in rows)
    return write_text_atomic(path, text)


def read_manifest(path: PathLike) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not a JSON line ({e.msg})") from None
    return rows


def count_fates(rows: Iterable[Mapping[str, Any]], key: str = "fate") -> dict[str, int]:
    return dict(sorted(collections.Counter(str(r.get(key)) for r in rows).items()))


def safe_join(root: PathLike, relpath: str) -> Path:
    """``root / relpath``, refusing absolute paths and any path that escapes ``root``."""
    if not isinstance(relpath, str) or not relpath:
        raise UnsafePathError(f"empty or non-text path {relpath!r}")
    if os.path.isabs(relpath) or relpath.startswith(("/", "\\")) or (len(relpath) > 1 and relpath[1] == ":"):
        raise UnsafePathError(f"absolute path {relpath!r} is not allowed here")
    root = Path(root).resolve()
    target = (root / relpath).resolve()
    if target != root and root not in target.parents:
        raise UnsafePathError(f"path {relpath!r} escapes {root}")
    return target


def relative_to(root: PathLike, path: PathLike) -> str:
    """``path`` relative to ``root`` as a POSIX string (for storing in manifests)."""
    return Path(os.path.relpath(Path(path).resolve(), Path(root).resolve())).as_posix()
