"""Composite shards: webdataset tar files, their index, and reading them back.

A shard is the unit of work and of retry. It is written under a temporary name
and renamed when complete; beside it a small record (``shard-NNNNNN.json``) holds
its sample count, sha256 and the digest of the work that made it, so a rerun can
tell a complete, verified shard from one to redo. ``index.json`` lists all shards
at the end of a run. The format is described in docs/formats.md ("Composite
shards").

Tar files are written reproducibly (fixed modification time, owner and member
order), so the same composites give byte-identical shards on any machine. They
are written with the standard library in exactly the layout of webdataset's
``TarWriter`` (a test checks the bytes are identical): importing webdataset
imports torch (seconds and about half a gigabyte per process), which composing
workers do not need. Readers use webdataset.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from ..io import PathLike, atomic_path, decode_image, write_text_atomic
from ..records import dumps, safe_join

INDEX_FILE = "index.json"
FORMAT = "rssn-shards"
FORMAT_VERSION = 1

#: The members of every sample, in the order a tar holds them (sorted).
MEMBERS = ("alpha.png", "bg.jpg", "composite.jpg", "fg.png", "json")

_SHARD_RE = re.compile(r"^shard-(\d{6,})\.(tar|json)$")
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")

# Fixed tar header fields: bytes must not depend on when or by whom a shard was made.
_TAR_MTIME = 0
_TAR_OWNER = "rssn"


def shard_name(index: int) -> str:
    return f"shard-{index:06d}.tar"


def record_name(index: int) -> str:
    return f"shard-{index:06d}.json"


def sample_key(fg_id: str, k: int) -> str:
    """``<fg id>-c<k:03d>``, with no dots (webdataset splits keys at the first dot).

    Characters other than letters, digits, ``_`` and ``-`` become ``_``, and a short
    hash of the original id is appended so that two ids cannot meet.
    """
    safe = _KEY_UNSAFE.sub("_", fg_id)
    if safe != fg_id:
        safe = f"{safe}_{hashlib.sha1(fg_id.encode('utf-8')).hexdigest()[:6]}"
    return f"{safe}-c{int(k):03d}"


def sha256_file(path: PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class _HashingFile:
    """A write-only file wrapper that hashes what passes through (no re-read)."""

    def __init__(self, f: Any):
        self.f = f
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


class ShardWriter:
    """Write one shard atomically, as webdataset's ``TarWriter`` would (same bytes).

    Example:
        >>> with ShardWriter("out/shard-000000.tar") as w:   # doctest: +SKIP
        ...     w.write("m_01-c000", {"composite.jpg": b"...", "json": b"{}"})
        >>> w.sha256, w.count                                # doctest: +SKIP
    """

    def __init__(self, path: PathLike):
        self.path = Path(path)
        self.count = 0
        self.sha256: str | None = None
        self.bytes = 0

    def __enter__(self) -> "ShardWriter":
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        self._file = open(tmp, "wb")
        self._hashing = _HashingFile(self._file)
        self._tar = tarfile.open(fileobj=self._hashing, mode="w|")
        return self

    def write(self, key: str, members: Mapping[str, bytes]) -> None:
        """Add one sample: ``<key>.<member>`` entries in sorted member order."""
        if "." in key:
            raise ValueError(f"sample key {key!r} contains a dot")
        for name in sorted(members):
            data = members[name]
            info = tarfile.TarInfo(f"{key}.{name}")
            info.size, info.mtime, info.mode = len(data), _TAR_MTIME, 0o444
            info.uname = info.gname = _TAR_OWNER
            self._tar.addfile(info, io.BytesIO(data))
        self.count += 1

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            self._tar.close()
            self._file.flush()
            os.fsync(self._file.fileno())
        finally:
            self._file.close()
        if exc_type is None:
            self.sha256 = self._hashing.sha.hexdigest()
            self.bytes = self._hashing.size
        # Renames the temporary file into place, or removes it on an exception.
        return bool(self._atomic.__exit__(exc_type, exc, tb))


# --------------------------------------------------------------------------- records and index


def write_shard_record(out: PathLike, index: int, record: Mapping[str, Any]) -> Path:
    return write_text_atomic(Path(out) / record_name(index), dumps(record, indent=1) + "\n")


def read_shard_record(out: PathLike, index: int) -> dict[str, Any] | None:
    path = Path(out) / record_name(index)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def shard_is_complete(out: PathLike, index: int, digest: str) -> dict[str, Any] | None:
    """The shard's record if the shard exists, was made by the same work
    (``digest``) and its bytes still match the recorded sha256; else None."""
    rec = read_shard_record(out, index)
    if rec is None or rec.get("digest") != digest:
        return None
    path = Path(out) / shard_name(index)
    try:
        if path.stat().st_size != rec.get("bytes") or sha256_file(path) != rec.get("sha256"):
            return None
    except FileNotFoundError:
        return None
    return rec


def existing_shard_files(out: PathLike) -> dict[int, list[Path]]:
    """Shard tars and shard records in ``out``, by shard number."""
    found: dict[int, list[Path]] = {}
    if Path(out).is_dir():
        for p in Path(out).iterdir():
            m = _SHARD_RE.match(p.name)
            if m:
                found.setdefault(int(m.group(1)), []).append(p)
    return found


def write_index(out: PathLike, index: Mapping[str, Any]) -> Path:
    return write_text_atomic(Path(out) / INDEX_FILE, dumps(index, indent=1) + "\n")


def read_index(shards_dir: PathLike) -> dict[str, Any]:
    """``index.json`` of a shard folder (raises FileNotFoundError with a hint)."""
    path = Path(shards_dir) / INDEX_FILE
    if not path.is_file():
        if existing_shard_files(shards_dir):
            raise FileNotFoundError(f"{path}: missing, but shards are there: the compose run did not finish; "
                                    "run the same `rssn compose` command again to complete it")
        raise FileNotFoundError(f"{path}: no shard index here (is this an `rssn compose` output folder?)")
    with open(path, encoding="utf-8") as f:
        index = json.load(f)
    if index.get("format") != FORMAT:
        raise ValueError(f"{path}: not an rssn shard index (format {index.get('format')!r})")
    return index


def shard_paths(shards_dir: PathLike) -> list[Path]:
    """The shard files listed in the index, as paths (for a webdataset reader)."""
    index = read_index(shards_dir)
    return [safe_join(shards_dir, s["name"]) for s in index["shards"]]


def verify_shards(shards_dir: PathLike) -> list[str]:
    """Problems found when checking every shard against the index (empty = all good)."""
    problems = []
    for s in read_index(shards_dir)["shards"]:
        path = safe_join(shards_dir, s["name"])
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif sha256_file(path) != s["sha256"]:
            problems.append(f"{path}: sha256 differs from the index (changed or damaged)")
    return problems


# --------------------------------------------------------------------------- reading


def decode_sample(sample: Mapping[str, Any]) -> dict[str, Any]:
    """Decode one webdataset sample (raw bytes per member) into arrays.

    Returns a dict with ``key``, ``composite``, ``fg``, ``bg`` (H x W x 3 uint8
    RGB), ``alpha`` (H x W uint8) and ``record`` (the JSON record of decisions).

    Example:
        >>> import webdataset as wds                        # doctest: +SKIP
        >>> ds = wds.WebDataset(urls).map(decode_sample)     # doctest: +SKIP
    """
    key = sample.get("__key__", "<sample>")
    missing = [m for m in MEMBERS if m not in sample]
    if missing:
        raise ValueError(f"sample {key} lacks {', '.join(missing)}")
    raw = sample["json"]
    return {
        "key": key,
        "composite": decode_image(sample["composite.jpg"], name=f"{key}.composite.jpg"),
        "alpha": decode_image(sample["alpha.png"], grey=True, name=f"{key}.alpha.png"),
        "fg": decode_image(sample["fg.png"], name=f"{key}.fg.png"),
        "bg": decode_image(sample["bg.jpg"], name=f"{key}.bg.jpg"),
        "record": json.loads(raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw),
    }


def iter_tar_samples(path: PathLike, suffixes: Iterable[str] | None = None) -> Iterator[dict[str, Any]]:
    """Samples of one shard as raw dicts (members filtered to ``suffixes``), in
    order, without webdataset (for inspection; a trainer should use webdataset)."""
    wanted = None if suffixes is None else set(suffixes)
    current: dict[str, Any] | None = None
    with tarfile.open(path, "r:") as tar:
        for info in tar:
            if not info.isfile():
                continue
            key, _, suffix = info.name.partition(".")
            if current is None or current["__key__"] != key:
                if current is not None:
                    yield current
                current = {"__key__": key}
            if wanted is None or suffix in wanted:
                f = tar.extractfile(info)
                current[suffix] = f.read() if f is not None else b""
    if current is not None:
        yield current


def read_sample(path: PathLike, key: str) -> dict[str, Any]:
    """One sample of a shard, decoded (see :func:`decode_sample`)."""
    with tarfile.open(path, "r:") as tar:
        raw: dict[str, Any] = {"__key__": key}
        for m in MEMBERS:
            f = tar.extractfile(f"{key}.{m}")
            raw[m] = f.read() if f is not None else b""
    return decode_sample(raw)
