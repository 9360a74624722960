"""Stage 5: salient-object rejection with an ultralytics YOLO detector.

The paper ran YOLO over every candidate and removed photos with salient objects.
Here the detector only *records* what it sees (class, score, box area as a
fraction of the image); the decision is a pure function of those detections and a
:class:`RejectRule`, so thresholds can be studied or changed without running the
network again, and the rule is testable on detections given as data.

Detector weights are code (ultralytics ``.pt`` files are pickles): only point
``--detector`` at files you trust.
"""
from __future__ import annotations

import hashlib
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..io import decode_image, file_digest, read_bytes

#: COCO classes that make a photo a picture *of something*: people, animals and
#: vehicles. Furniture, plants and tableware are ordinary parts of interiors and
#: landscapes, which BG-20k contains on purpose.
DEFAULT_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe",
)

#: Part of the detection cache key: bumped when the same settings would give
#: other detections (2: square letterbox for every image, see detect_batch).
DETECT_VERSION = 2


@dataclass(frozen=True)
class Detection:
    """One detected object: class id and name, confidence, box area / image area."""

    cls: int
    name: str
    score: float
    area: float
    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # x0, y0, x1, y1 as fractions

    @classmethod
    def from_dict(cls, d: Mapping) -> "Detection":
        return cls(int(d["class"]), str(d["name"]), float(d["score"]), float(d["area"]), tuple(d.get("box", (0, 0, 0, 0))))

    def to_dict(self) -> dict:
        return {"class": self.cls, "name": self.name, "score": round(self.score, 4),
                "area": round(self.area, 4), "box": [round(v, 4) for v in self.box]}


@dataclass(frozen=True)
class RejectRule:
    """When a detection makes a photo unusable as a background.

    Parameters
    ----------
    classes:
        Class names or ids (as text) that count; ``None`` means every class.
    min_score:
        A detection counts from this confidence up.
    min_area:
        ... and from this box area (fraction of the image) up.
    review_score, review_area:
        A rejection is *borderline*, and shown for review, when its deciding
        detection scores below ``review_score`` or covers less than
        ``review_area``.
    """

    classes: frozenset[str] | None = frozenset(DEFAULT_CLASSES)
    min_score: float = 0.5
    min_area: float = 0.05
    review_score: float = 0.7
    review_area: float = 0.15

    def __post_init__(self) -> None:
        for name in ("min_score", "min_area", "review_score", "review_area"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {v}")

    def matches_class(self, det: Detection) -> bool:
        return self.classes is None or det.name in self.classes or str(det.cls) in self.classes


def parse_classes(text: str | Iterable[str] | None) -> frozenset[str] | None:
    """``"all"`` -> None (every class); ``"person,dog,3"`` -> {"person", "dog", "3"}."""
    if text is None:
        return frozenset(DEFAULT_CLASSES)
    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text)]
    items = [t for t in items if t]
    if items == ["all"]:
        return None
    if not items:
        raise ValueError("the class set is empty (give names or ids, or 'all')")
    return frozenset(items)


def deciding_detection(detections: Sequence[Detection], rule: RejectRule) -> Detection | None:
    """The detection that rejects the photo (highest score, then largest area), or None."""
    hits = [d for d in detections if rule.matches_class(d) and d.score >= rule.min_score and d.area >= rule.min_area]
    if not hits:
        return None
    return max(hits, key=lambda d: (d.score, d.area))


def is_borderline(det: Detection, rule: RejectRule) -> bool:
    """True when a rejection by ``det`` is close enough to the thresholds to show a person."""
    return det.score < rule.review_score or det.area < rule.review_area


# --------------------------------------------------------------------------- the model


def _bundled_yaml(name: str) -> Path | None:
    """The model yaml ultralytics ships under ``name`` (``yolov8n.yaml`` -> ``yolov8.yaml``)."""
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.origin:
        return None
    cfg = Path(spec.origin).parent / "cfg" / "models"
    # a scale letter after the version picks a width/depth of the same file
    unified = re.sub(r"(\d+)([nslmx])(.*)\.ya?ml$", r"\1\3.yaml", name)
    for candidate in (name, unified):
        hits = sorted(cfg.rglob(candidate))
        if hits:
            return hits[0]
    return None


def resolve_detector(spec: str | None) -> str | None:
    """Check ``--detector`` before any work: ``none`` -> None, else the path to load.

    Accepts an existing weights file (``.pt``), an existing model yaml, or the name
    of a model yaml bundled with ultralytics (random weights: for tests only).

    Raises
    ------
    FileNotFoundError
        With the path and what to do instead.
    """
    if spec is None:
        raise ValueError("choose a detector: --detector PATH (YOLO weights or model yaml) or --detector none")
    if str(spec).lower() == "none":
        return None
    p = Path(spec)
    if p.is_file():
        return str(p)
    if p.suffix.lower() in (".yaml", ".yml") and p.parent == Path(".") and _bundled_yaml(p.name):
        return p.name
    raise FileNotFoundError(
        f"{spec}: detector weights not found (give an existing YOLO .pt file or model .yaml, "
        "or --detector none to skip salient-object rejection); nothing is downloaded"
    )


def detector_key(spec: str, imgsz: int, floor: float) -> str:
    """Identity of a detector setting (weights bytes, input size, floor) for the cache."""
    if Path(spec).is_file():
        ident = file_digest(spec)
    else:  # a bundled yaml: its seeded random weights depend on the ultralytics version
        import importlib.metadata

        ident = f"bundled:{spec}:{importlib.metadata.version('ultralytics')}"
    return hashlib.sha256(f"v{DETECT_VERSION}|{ident}|{int(imgsz)}|{float(floor)}".encode()).hexdigest()[:16]


_MODELS: dict[str, object] = {}


def load_model(spec: str):
    """The YOLO model for ``spec``, loaded once per process."""
    model = _MODELS.get(spec)
    if model is None:
        import torch
        from ultralytics import YOLO

        # a yaml gives random weights: seed them (in a forked RNG, leaving the
        # caller's alone) so that every worker builds the same network
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = YOLO(spec)
        _MODELS[spec] = model
    return model


def detections_from_result(result) -> list[Detection]:
    """Our :class:`Detection` list from one ultralytics ``Results``."""
    boxes = result.boxes
    if boxes is None or len(boxes) == 0:
        return []
    h, w = result.orig_shape
    xyxy = boxes.xyxy.cpu().numpy().astype(np.float64)
    cls = boxes.cls.cpu().numpy().astype(int)
    conf = boxes.conf.cpu().numpy().astype(np.float64)
    out = []
    for (x0, y0, x1, y1), c, s in zip(xyxy, cls, conf):
        x0, x1 = np.clip([x0, x1], 0, w) / w
        y0, y1 = np.clip([y0, y1], 0, h) / h
        out.append(Detection(int(c), str(result.names.get(int(c), c)), float(s),
                             float((x1 - x0) * (y1 - y0)), (float(x0), float(y0), float(x1), float(y1))))
    out.sort(key=lambda d: (-d.score, -d.area))
    return out


def detect_batch(unit: dict) -> list[list[dict]]:
    """Work unit of stage 5: run the detector over a batch of resized images.

    Parameters
    ----------
    unit:
        ``detector`` (resolved spec), ``paths`` (resized JPEGs from the cache),
        ``imgsz``, ``floor`` (lowest confidence recorded), ``device``.

    Returns
    -------
    For each path, its detections as dicts (see :meth:`Detection.to_dict`).
    """
    model = load_model(unit["detector"])
    # ultralytics takes numpy arrays as BGR, the OpenCV order
    images = [np.ascontiguousarray(decode_image(read_bytes(p), name=str(p))[:, :, ::-1]) for p in unit["paths"]]
    # rect=False: every image is letterboxed to the same square input. With
    # ultralytics' default (rect=True) a batch whose images share one shape gets
    # minimal padding instead, so an image's detections would depend on the
    # images batched with it (and so on --batch and on what a resumed run redoes).
    results = model.predict(images, imgsz=int(unit["imgsz"]), conf=float(unit["floor"]),
                            device=unit.get("device"), rect=False, verbose=False)
    return [[d.to_dict() for d in detections_from_result(r)] for r in results]
