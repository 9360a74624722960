"""The only module that opens, decodes, encodes and writes image files.

Reads are defensive: every failure is raised as an :class:`ImageError` subclass
that names the path and says what is wrong, so a batch job can record the reason
and carry on. Writes are atomic: the data goes to a temporary name in the target
folder and is renamed into place, so a killed run never leaves half a file.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

PathLike = Union[str, os.PathLike]

#: Default ceiling on width*height before anything is decoded (decompression bombs).
DEFAULT_MAX_PIXELS = int(os.environ.get("RSSN_MAX_PIXELS", 150_000_000))

#: File extensions treated as images when scanning folders.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

_UMASK = os.umask(0)
os.umask(_UMASK)

# PIL has its own, warning-based bomb check; ours replaces it with a typed error.
Image.MAX_IMAGE_PIXELS = None


class ImageError(Exception):
    """An image could not be used. ``path`` names it, ``reason`` says why."""

    kind = "image error"

    def __init__(self, path: PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {self.kind}: {reason}")


class NotAnImageError(ImageError):
    kind = "not an image"


class TruncatedImageError(ImageError):
    kind = "truncated"


class UnsupportedModeError(ImageError):
    kind = "unsupported mode"


class ImageTooLargeError(ImageError):
    kind = "too large"


class SizeMismatchError(ImageError):
    kind = "size mismatch"


def is_image_file(path: PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def list_images(root: PathLike, recursive: bool = True) -> list[Path]:
    """Image files below ``root`` (by extension), sorted for a stable order."""
    root = Path(root)
    it = root.rglob("*") if recursive else root.iterdir()
    # Hidden files and anything inside hidden folders (caches, partial outputs) are not inputs.
    return sorted(
        p for p in it
        if p.is_file() and is_image_file(p) and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


# --------------------------------------------------------------------------- reading


def _pil_open() -> Callable[..., Image.Image]:
    """Pillow's own ``Image.open``, even after another library replaced it.

    ultralytics swaps ``PIL.Image.open`` for a wrapper that, on a file Pillow cannot
    identify, tries to install and import a HEIF plugin: in a process that has
    imported it, a corrupt file would raise ModuleNotFoundError (or start a package
    install) instead of our typed error. The original stays reachable from there.
    """
    op = Image.open
    if getattr(op, "__module__", None) == Image.__name__:
        return op
    patches = sys.modules.get("ultralytics.utils.patches")
    original = getattr(patches, "_image_open", None)
    if original is not None and getattr(original, "__module__", None) == Image.__name__:
        return original
    return op


def open_image(path: PathLike) -> Image.Image:
    """Open lazily (header only) with Pillow's own opener; the caller closes it."""
    return _pil_open()(path)


def _open(source: PathLike | bytes, name: str, max_pixels: int) -> Image.Image:
    """Open without decoding, check the pixel budget, then decode fully."""
    try:
        fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else open(source, "rb")
    except FileNotFoundError:
        raise NotAnImageError(name, "file does not exist") from None
    except OSError as e:
        raise NotAnImageError(name, f"cannot open: {e.strerror or e}") from None
    try:
        try:
            img = _pil_open()(fp)
        except UnidentifiedImageError:
            raise NotAnImageError(name, "not a recognised image format") from None
        w, h = img.size
        if w * h > max_pixels:
            raise ImageTooLargeError(name, f"{w}x{h} = {w * h} pixels exceeds the limit of {max_pixels}")
        try:
            img.load()
        except OSError as e:
            msg = str(e)
            if "truncated" in msg or "broken data stream" in msg or "unrecognized data stream" in msg:
                raise TruncatedImageError(name, f"data ends early or is damaged ({msg})") from None
            raise NotAnImageError(name, f"cannot decode: {msg}") from None
        except (SyntaxError, ValueError) as e:
            raise NotAnImageError(name, f"cannot decode: {e}") from None
        return img
    finally:
        fp.close()


def image_size(path: PathLike) -> tuple[int, int]:
    """(width, height) from the header, orientation applied, without decoding pixels."""
    try:
        with open_image(path) as img:
            w, h = img.size
            orientation = img.getexif().get(0x0112, 1)
    except FileNotFoundError:
        raise NotAnImageError(path, "file does not exist") from None
    except UnidentifiedImageError:
        raise NotAnImageError(path, "not a recognised image format") from None
    except OSError as e:
        raise NotAnImageError(path, f"cannot read header: {e}") from None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale integer or float data of any depth to 8 bits."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16 or (arr.dtype.kind in "iu" and arr.max(initial=0) > 255):
        return np.clip(np.round(arr.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
    if arr.dtype.kind == "f":
        scale = 255.0 if arr.max(initial=0) <= 1.0 else 1.0
        return np.clip(np.round(arr * scale), 0, 255).astype(np.uint8)
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    return np.clip(arr, 0, 255).astype(np.uint8)


def _sixteen_bit(img: Image.Image) -> np.ndarray | None:
    """Greyscale 16/32-bit modes as an 8-bit array, else None."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img)
        if img.mode == "I" and arr.max(initial=0) <= 255:
            return arr.astype(np.uint8)
        return _to_uint8(arr.astype(np.uint16) if img.mode != "I" else np.clip(arr, 0, 65535).astype(np.uint16))
    if img.mode == "F":
        return _to_uint8(np.asarray(img))
    return None


def read_rgb(source: PathLike | bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, name: str | None = None) -> np.ndarray:
    """Decode an image as an ``H x W x 3`` uint8 RGB array.

    EXIF orientation is applied. Grey, palette, RGBA/LA (alpha dropped), CMYK and
    16-bit images are accepted; 16-bit data is scaled to 8 bits.

    Example:
        >>> rgb = read_rgb("photo.jpg")  # doctest: +SKIP
        >>> rgb.shape[2]
        3
    """
    name = name or (str(source) if not isinstance(source, (bytes, bytearray)) else "<bytes>")
    img = _open(source, name, max_pixels)
    img = ImageOps.exif_transpose(img)
    grey16 = _sixteen_bit(img)
    if grey16 is not None:
        return np.repeat(grey16[:, :, None], 3, axis=2)
    if img.mode in ("RGB;16", "RGBA;16"):  # pragma: no cover - rare PIL modes
        img = img.convert("RGB")
    if img.mode == "RGB":
        return np.asarray(img).copy()
    if img.mode in ("L", "1", "P", "PA", "LA", "RGBA", "RGBa", "CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(img.convert("RGB")).copy()
    raise UnsupportedModeError(name, f"image mode {img.mode!r} cannot be read as RGB")


def read_alpha(source: PathLike | bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, name: str | None = None) -> np.ndarray:
    """Decode an alpha matte as an ``H x W`` uint8 array (0 = background, 255 = foreground).

    Accepted: grey (8 or 16 bit), LA/RGBA (the alpha channel is used), palette
    images (through their RGB or RGBA expansion) and RGB whose three channels are
    equal. Anything else raises :class:`UnsupportedModeError` with the reason.
    """
    name = name or (str(source) if not isinstance(source, (bytes, bytearray)) else "<bytes>")
    img = _open(source, name, max_pixels)
    img = ImageOps.exif_transpose(img)
    grey16 = _sixteen_bit(img)
    if grey16 is not None:
        return grey16
    if img.mode == "L":
        return np.asarray(img).copy()
    if img.mode == "1":
        return np.asarray(img.convert("L")).copy()
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("LA", "PA", "RGBA", "RGBa"):
        return np.asarray(img.getchannel("A")).copy()
    if img.mode == "RGB":
        arr = np.asarray(img)
        if np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]):
            return arr[..., 0].copy()
        raise UnsupportedModeError(name, "RGB alpha matte whose channels differ (a colour image, not a matte)")
    raise UnsupportedModeError(name, f"image mode {img.mode!r} is not an alpha matte (expected L, LA, RGBA or grey RGB)")


def read_pair(image: PathLike, alpha: PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, np.ndarray]:
    """Read an image and its alpha matte and check that their sizes agree."""
    rgb = read_rgb(image, max_pixels=max_pixels)
    a = read_alpha(alpha, max_pixels=max_pixels)
    if rgb.shape[:2] != a.shape:
        raise SizeMismatchError(
            alpha, f"alpha is {a.shape[1]}x{a.shape[0]} but image {image} is {rgb.shape[1]}x{rgb.shape[0]}"
        )
    return rgb, a


def read_bytes(path: PathLike) -> bytes:
    with open(path, "rb") as f:
        return f.read()


# --------------------------------------------------------------------------- hashing


def file_digest(path: PathLike, extra: str = "") -> str:
    """sha256 of a file's bytes (plus an optional parameter string), hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if extra:
        h.update(b"\0" + extra.encode())
    return h.hexdigest()


def pixel_digest(path: PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> str:
    """sha256 of the decoded RGB pixels and their shape: equal for byte-different
    files that hold the same picture (for example a PNG and its re-save)."""
    return array_digest(read_rgb(path, max_pixels=max_pixels))


def array_digest(arr: np.ndarray) -> str:
    """sha256 of an array's shape and bytes (what :func:`pixel_digest` hashes)."""
    h = hashlib.sha256(f"{arr.shape}".encode())
    h.update(np.ascontiguousarray(arr).data)
    return h.hexdigest()


# --------------------------------------------------------------------------- encoding / writing


def encode_image(arr: np.ndarray, fmt: str, *, quality: int = 95, compress_level: int = 3) -> bytes:
    """Encode an RGB (H x W x 3) or grey (H x W) uint8 array as ``jpg`` or ``png`` bytes."""
    import cv2

    arr = np.ascontiguousarray(arr)
    if arr.dtype != np.uint8:
        raise ValueError(f"encode_image needs uint8 data, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA)
    elif arr.ndim != 2:
        raise ValueError(f"encode_image needs H x W, H x W x 3 or H x W x 4, got shape {arr.shape}")
    fmt = fmt.lower().lstrip(".")
    if fmt in ("jpg", "jpeg"):
        ok, buf = cv2.imencode(".jpg", arr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    elif fmt == "png":
        ok, buf = cv2.imencode(".png", arr, [cv2.IMWRITE_PNG_COMPRESSION, int(compress_level)])
    else:
        raise ValueError(f"unsupported output format {fmt!r} (use jpg or png)")
    if not ok:  # pragma: no cover - OpenCV reports failure only on broken input
        raise ValueError(f"OpenCV could not encode a {arr.shape} array as {fmt}")
    return buf.tobytes()


def decode_image(data: bytes, *, grey: bool = False, name: str = "<bytes>") -> np.ndarray:
    """Fast decode of trusted bytes we wrote ourselves (shards, caches) with OpenCV."""
    import cv2

    buf = np.frombuffer(data, np.uint8)
    arr = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR)
    if arr is None:
        raise NotAnImageError(name, "bytes could not be decoded")
    return arr if grey else cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; rename it to ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_bytes_atomic(path: PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def write_text_atomic(path: PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_image(path: PathLike, arr: np.ndarray, *, quality: int = 95, compress_level: int = 3) -> Path:
    """Write an image atomically; the format follows the extension (.jpg/.jpeg/.png)."""
    data = encode_image(arr, Path(path).suffix, quality=quality, compress_level=compress_level)
    return write_bytes_atomic(path, data)


def is_partial_file(path: PathLike) -> bool:
    """True for the temporary names :func:`atomic_path` uses (left by a killed run)."""
    name = Path(path).name
    return name.startswith(".") and name.endswith(".tmp")
