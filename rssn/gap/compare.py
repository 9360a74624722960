"""Set-level view: distributions of each discrepancy, distances, plain-words verdicts.

The distance between INPUT's and REAL's distributions of a discrepancy is the
1-D Wasserstein distance (earth mover's distance,
``scipy.stats.wasserstein_distance``): how far, in the statistic's own units,
the values would have to move to turn one distribution into the other. For a
pure shift it equals the shift.

To say whether a distance is large, it is divided by a *scale*: REAL's standard
deviation of that discrepancy, but never less than the statistic's floor (a
tiny or single-sample reference must not make every difference look huge). The
verdicts:

- ``close``: normalised distance below 0.5: INPUT's distribution sits within
  REAL's natural spread;
- ``different``: 0.5 to 1.5: a visible shift or change of shape;
- ``far``: 1.5 and above: INPUT's composites differ from real photos in this
  respect as a rule, and a model can learn it as a cue.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np

from .statistics import STATISTICS, Statistic

CLOSE = 0.5
FAR = 1.5
FEW = 5  # fewer samples than this in a set: the verdict is only indicative


def values_of(rows: Iterable[dict[str, Any]], stat: str) -> np.ndarray:
    """The finite discrepancies of ``stat`` among measured rows."""
    vals = [r["discrepancy"][stat] for r in rows if r.get("discrepancy") and r["discrepancy"].get(stat) is not None]
    arr = np.asarray(vals, np.float64)
    return arr[np.isfinite(arr)]


def distribution(values: Sequence[float]) -> dict[str, Any]:
    """Summary of one distribution: n, mean, std, quantiles (None when empty)."""
    v = np.asarray(values, np.float64)
    if v.size == 0:
        return {"n": 0, "mean": None, "std": None, "min": None, "p10": None, "p25": None, "median": None,
                "p75": None, "p90": None, "max": None, "positive": None}
    q = np.percentile(v, [0, 10, 25, 50, 75, 90, 100])
    return {"n": int(v.size), "mean": float(v.mean()), "std": float(v.std()), "min": float(q[0]),
            "p10": float(q[1]), "p25": float(q[2]), "median": float(q[3]), "p75": float(q[4]),
            "p90": float(q[5]), "max": float(q[6]), "positive": float(np.mean(v > 0))}


def wasserstein(a: Sequence[float], b: Sequence[float]) -> float:
    """1-D Wasserstein distance between two samples (NaN if either is empty)."""
    from scipy.stats import wasserstein_distance

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.size == 0 or b.size == 0:
        return math.nan
    return float(wasserstein_distance(a, b))


def verdict(normalised: float) -> str:
    """``close``, ``different`` or ``far`` for a normalised distance."""
    if math.isnan(normalised):
        return "unknown"
    if normalised < CLOSE:
        return "close"
    return "different" if normalised < FAR else "far"


def _near_zero(stat: Statistic, value: float) -> bool:
    return abs(value) < stat.floor / 2


def describe_value(stat: Statistic, median: float) -> str:
    """"foregrounds are 2.1x noisier than their backgrounds" for a median discrepancy."""
    if _near_zero(stat, median):
        return f"foregrounds are about {stat.same} their backgrounds"
    word = stat.more if median > 0 else stat.less
    if stat.kind == "log2_ratio":
        # The factor is fg / bg (ignoring the eps), so "cleaner (x0.5)" reads as half the noise.
        return f"foregrounds are {word} than their backgrounds (x{2 ** median:.2g} in {stat.label}, log2 {median:+.2f})"
    unit = "" if stat.unit == "0-1" else f" {stat.unit}"
    return f"foregrounds are {word} than their backgrounds (by {median:+.3g}{unit})"


def describe_set(stat: Statistic, values: Sequence[float]) -> str:
    """Plain words about one set's discrepancy of ``stat``."""
    v = np.asarray(values, np.float64)
    if v.size == 0:
        return "not measured (no sample had both regions)"
    median = float(np.median(v))
    if _near_zero(stat, median):
        share = ""
    else:
        n_dir = int(np.sum(v > 0)) if median > 0 else int(np.sum(v < 0))
        share = f"; true of {n_dir} of {v.size} samples"
    return f"typically {describe_value(stat, median)}{share}"


def compare_stat(stat: Statistic, inp: Sequence[float], ref: Sequence[float] | None) -> dict[str, Any]:
    """Distributions, distance and verdict of one statistic.

    Returns
    -------
    ``statistic``, ``label``, ``definition``, ``unit``, ``input`` and ``reference``
    (:func:`distribution`), ``input_words``, ``reference_words``, and with a
    reference: ``wasserstein``, ``scale``, ``normalised``, ``verdict`` and
    ``words`` (one sentence).
    """
    inp = np.asarray(inp, np.float64)
    out: dict[str, Any] = {
        "statistic": stat.name, "label": stat.label, "definition": stat.definition, "unit": stat.unit,
        "input": distribution(inp), "input_words": describe_set(stat, inp),
        "reference": None, "reference_words": None, "wasserstein": None, "scale": None, "normalised": None,
        "verdict": None, "words": None,
    }
    if ref is None:
        return out
    ref = np.asarray(ref, np.float64)
    out["reference"] = distribution(ref)
    out["reference_words"] = describe_set(stat, ref)
    w = wasserstein(inp, ref)
    scale = max(float(ref.std()) if ref.size else 0.0, stat.floor)
    norm = w / scale if not math.isnan(w) else math.nan
    v = verdict(norm)
    out.update({"wasserstein": None if math.isnan(w) else w, "scale": scale,
                "normalised": None if math.isnan(norm) else norm, "verdict": v})
    out["words"] = _words(stat, v, inp, ref, w, norm)
    return out


def _words(stat: Statistic, v: str, inp: np.ndarray, ref: np.ndarray, w: float, norm: float) -> str:
    if v == "unknown":
        which = "INPUT" if inp.size == 0 else "REAL"
        return f"Cannot compare: no sample of {which} had both regions measurable."
    mi, mr = float(np.median(inp)), float(np.median(ref))
    head = {"close": "Close to the real photos", "different": "Different from the real photos",
            "far": "Far from the real photos"}[v]
    text = (f"{head} (distance {w:.3g}, {norm:.2f}x the real spread). "
            f"In INPUT {describe_value(stat, mi)}; in REAL {describe_value(stat, mr)}.")
    if min(inp.size, ref.size) < FEW:
        text += f" Few samples ({inp.size} vs {ref.size}): indicative only."
    return text


def compare_sets(
    input_rows: Sequence[dict[str, Any]], reference_rows: Sequence[dict[str, Any]] | None
) -> dict[str, dict[str, Any]]:
    """:func:`compare_stat` for every statistic, from measured rows."""
    out = {}
    for name, stat in STATISTICS.items():
        ref = values_of(reference_rows, name) if reference_rows is not None else None
        out[name] = compare_stat(stat, values_of(input_rows, name), ref)
    return out


def overall(comparison: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean normalised distance over the statistics that could be compared."""
    norms = [c["normalised"] for c in comparison.values() if c.get("normalised") is not None]
    if not norms:
        return {"mean_normalised": None, "far": [], "different": [], "close": []}
    by = {k: [n for n, c in comparison.items() if c.get("verdict") == k] for k in ("far", "different", "close")}
    return {"mean_normalised": float(np.mean(norms)), **by}
