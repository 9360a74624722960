"""Writing the gap report: ``gap.json``, ``report.md`` and PNG histograms.

Every file is written atomically. Plots use matplotlib's object API on the Agg
canvas (no pyplot state, no display needed, safe in any process).
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from ..io import write_bytes_atomic, write_text_atomic
from ..records import dumps
from .statistics import STATISTICS

REPORT_JSON = "gap.json"
REPORT_MD = "report.md"
PLOTS = "plots"
OVERVIEW = "overview.png"

_INPUT_COLOUR, _REF_COLOUR = "#d95f02", "#1b9e77"


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    return f"{x:.{digits}g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.1e}"


def _spread(d: dict[str, Any] | None) -> str:
    if not d or not d.get("n"):
        return "-"
    return f"{_fmt(d['median'])} [{_fmt(d['p10'])}, {_fmt(d['p90'])}] (n={d['n']})"


def markdown(report: dict[str, Any], plots: bool = True) -> str:
    """The report as a Markdown page (tables first, then the words, then the plots)."""
    inp, ref = report["input"], report.get("reference")
    lines = ["# Composite-vs-real gap", ""]
    lines.append(f"- INPUT: `{inp['path']}` ({inp['kind']}): {inp['measured']} measured, "
                 f"{inp['incomplete']} incomplete, {inp['failed']} failed, {inp['skipped']} skipped")
    if ref:
        lines.append(f"- REAL: `{ref['path']}` ({ref['kind']}): {ref['measured']} measured, "
                     f"{ref['incomplete']} incomplete, {ref['failed']} failed, {ref['skipped']} skipped")
    lines += ["", "Each discrepancy compares a sample's foreground with its own background; 0 means they agree. "
              "Values: median [10th, 90th percentile].", ""]
    stats = report["statistics"]
    if ref:
        lines += ["| statistic | discrepancy | INPUT | REAL | distance | / real spread | verdict |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for name, c in stats.items():
            lines.append(f"| {c['label']} | `{c['definition']}` | {_spread(c['input'])} | {_spread(c['reference'])} "
                         f"| {_fmt(c['wasserstein'])} | {_fmt(c['normalised'], 2)} | **{c['verdict']}** |")
    else:
        lines += ["| statistic | discrepancy | INPUT | foreground > background |", "| --- | --- | --- | --- |"]
        for name, c in stats.items():
            pos = c["input"].get("positive")
            share = "-" if pos is None else f"{100 * pos:.0f} %"
            lines.append(f"| {c['label']} | `{c['definition']}` | {_spread(c['input'])} | {share} |")
    lines += ["", "## In words", ""]
    for name, c in stats.items():
        lines.append(f"- **{c['label']}**: " + (c["words"] if ref else f"INPUT: {c['input_words']}."))
    ov = report.get("overall") or {}
    if ref and ov.get("mean_normalised") is not None:
        lines += ["", f"Mean distance over the statistics: {ov['mean_normalised']:.2f}x the real spread "
                  f"(far: {', '.join(ov['far']) or 'none'}; different: {', '.join(ov['different']) or 'none'})."]
    regions = report.get("regions") or {}
    if regions.get("input"):
        sets = [("INPUT", "input")] + ([("REAL", "reference")] if regions.get("reference") else [])
        head = " | ".join(f"{label} {r}" for label, _ in sets for r in ("fg", "bg"))
        lines += ["", "## Region values (medians over samples)", "", f"| statistic | {head} |",
                  "| --- |" + " --- |" * (2 * len(sets))]
        for name in stats:
            cells = " | ".join(_fmt(regions[key][name][r]) for _, key in sets for r in ("fg", "bg"))
            lines.append(f"| {STATISTICS[name].label} ({STATISTICS[name].unit}) | {cells} |")
    missing = report.get("missing_reasons") or {}
    if missing:
        lines += ["", "## Not measured", ""]
        for reason, n in missing.items():
            lines.append(f"- {n} x {reason}")
    if plots:
        lines += ["", "## Plots", "", f"![overview]({PLOTS}/{OVERVIEW})", ""]
        for name in stats:
            lines.append(f"- [{STATISTICS[name].label}]({PLOTS}/{name}.png)")
    lines += ["", "How to read this report: docs/gap.md in the rssn repository.", ""]
    return "\n".join(lines)


def _draw(ax, name: str, comp: dict[str, Any], inp: np.ndarray, ref: np.ndarray | None, bins: int) -> None:
    stat = STATISTICS[name]
    allv = np.concatenate([inp, ref]) if ref is not None else inp
    if allv.size == 0:
        ax.text(0.5, 0.5, "nothing measured", ha="center", va="center", transform=ax.transAxes)
    else:
        lo, hi = float(min(allv.min(), 0.0)), float(max(allv.max(), 0.0))
        pad = max(hi - lo, stat.floor) * 0.05
        edges = np.linspace(lo - pad, hi + pad, bins + 1)
        # Weights make each set sum to 1, so sets of different sizes compare.
        # INPUT is filled, REAL an outline drawn on top: both stay visible where they overlap.
        for vals, colour, label, style in ((inp, _INPUT_COLOUR, "INPUT", "stepfilled"),
                                           (ref, _REF_COLOUR, "REAL", "step")):
            if vals is None or vals.size == 0:
                continue
            ax.hist(vals, bins=edges, weights=np.full(vals.size, 1.0 / vals.size), color=colour,
                    alpha=0.5 if style == "stepfilled" else 1.0, histtype=style, linewidth=2,
                    label=f"{label} (n={vals.size}), median: solid line")
            ax.axvline(float(np.median(vals)), color=colour, linestyle="-", linewidth=2)
        ax.axvline(0.0, color="black", linestyle="--", linewidth=1, label="no discrepancy")
        ax.legend(fontsize=7, loc="upper left")  # "best" searches: slow
    title = stat.label
    if comp.get("verdict"):
        title += f": {comp['verdict']}"
        if comp.get("wasserstein") is not None:
            title += f" (W={comp['wasserstein']:.3g})"
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(f"{stat.definition}   (<0: fg {stat.less}, >0: fg {stat.more})", fontsize=7)
    ax.set_ylabel("share of samples", fontsize=8)
    ax.tick_params(labelsize=7)


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def write_plots(out: Path, comparison: dict[str, dict[str, Any]], input_values: dict[str, np.ndarray],
                reference_values: dict[str, np.ndarray] | None, bins: int = 30) -> list[Path]:
    """One histogram PNG per statistic plus ``overview.png`` (all six); returns the paths."""
    from matplotlib.figure import Figure

    folder = out / PLOTS
    written = []
    for name in STATISTICS:
        fig = Figure(figsize=(6, 4))
        fig.subplots_adjust(left=0.11, right=0.97, top=0.91, bottom=0.14)
        ax = fig.add_subplot(1, 1, 1)
        _draw(ax, name, comparison[name], input_values[name],
              None if reference_values is None else reference_values[name], bins)
        written.append(write_bytes_atomic(folder / f"{name}.png", _png(fig)))
    fig = Figure(figsize=(15, 8))
    fig.subplots_adjust(left=0.05, right=0.98, top=0.9, bottom=0.08, wspace=0.22, hspace=0.38)
    for i, name in enumerate(STATISTICS):
        ax = fig.add_subplot(2, 3, i + 1)
        _draw(ax, name, comparison[name], input_values[name],
              None if reference_values is None else reference_values[name], bins)
    fig.suptitle("Foreground-vs-background discrepancy per sample: INPUT vs REAL" if reference_values is not None
                 else "Foreground-vs-background discrepancy per sample")
    written.append(write_bytes_atomic(folder / OVERVIEW, _png(fig)))
    return written


def write_report(out: Path, report: dict[str, Any], plots: bool = True) -> tuple[Path, Path]:
    """``gap.json`` and ``report.md`` (which links the plots when ``plots``)."""
    j = write_text_atomic(out / REPORT_JSON, dumps(report, indent=2) + "\n")
    m = write_text_atomic(out / REPORT_MD, markdown(report, plots))
    return j, m
