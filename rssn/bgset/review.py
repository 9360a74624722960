"""Stage 6: the manual check.

The paper checked by hand that no salient object survived the detector. The
build writes two files for that:

- ``review.html``: thumbnails of every kept image and of the *borderline*
  rejections (close to the detector thresholds), with names and reasons (all
  text escaped). Buttons set a verdict per image and download the verdicts as a
  ``review.json``.
- ``review.json``: the same entries with a ``verdict`` field each: ``null``
  (accept the automatic decision), ``"keep"`` or ``"reject"``.

``rssn build-bg --apply-review review.json`` reads the verdicts and redoes only the
split and the output folders. Verdicts are stored in the work cache, so later
reruns of the same build keep them.
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Mapping, Sequence

from ..io import PathLike, write_text_atomic
from ..records import dumps

FORMAT = "rssn-bg-review"
VERDICTS = ("keep", "reject")
INSTRUCTIONS = (
    'Set "verdict" to "keep" or "reject" for any image (null keeps the automatic decision), '
    "then run: rssn build-bg --apply-review review.json"
)


def entry(row: Mapping, thumb: str) -> dict:
    """The review entry of one manifest row (a kept image or a borderline rejection)."""
    return {
        "id": row["digest"],
        "input": row["input"],
        "name": row.get("name"),
        "decision": row["fate"],
        "split": row.get("split"),
        "reason": row.get("reason", ""),
        "detections": list(row.get("detections") or [])[:3],
        "thumb": thumb,
        "verdict": row.get("verdict"),
        "note": row.get("note", ""),
    }


def write_review_json(path: PathLike, entries: Sequence[dict]) -> Path:
    doc = {"format": FORMAT, "version": 1, "instructions": INSTRUCTIONS, "images": list(entries)}
    return write_text_atomic(path, dumps(doc, indent=1) + "\n")


def read_verdicts(path: PathLike) -> dict[str, dict]:
    """Verdicts from a review file: image id -> ``{"verdict", "note"}`` (null verdicts left out).

    Raises
    ------
    ValueError
        When the file is not a review file or a verdict is not keep/reject/null;
        the message names the file and the entry.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("images"), list):
        raise ValueError(f"{path}: not a build-bg review file (expected format {FORMAT!r} with an 'images' list)")
    out: dict[str, dict] = {}
    for n, item in enumerate(doc["images"]):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise ValueError(f"{path}: entry {n} has no image id")
        verdict = item.get("verdict")
        if verdict is None:
            continue
        if verdict not in VERDICTS:
            raise ValueError(f"{path}: entry {n} ({item.get('input')}): verdict {verdict!r} is not 'keep', 'reject' or null")
        out[item["id"]] = {"verdict": verdict, "note": str(item.get("note") or "")}
    return out


_STYLE = """
body{font:14px sans-serif;margin:1em;background:#fafafa}
h2{margin-top:1.5em}
.grid{display:flex;flex-wrap:wrap;gap:10px}
.card{width:268px;background:#fff;border:3px solid #ddd;padding:4px;box-sizing:border-box}
.card img{max-width:256px;max-height:256px;display:block;margin:auto}
.card.keep{border-color:#3a3}.card.reject{border-color:#c33}
.meta{font-size:12px;word-break:break-all;color:#333}
.reason{color:#a50}
button{margin:2px}
"""

_SCRIPT = """
const data = JSON.parse(document.getElementById('review-data').textContent);
const byId = new Map(data.images.map(e => [e.id, e]));
function mark(id, verdict) {
  const e = byId.get(id); e.verdict = (e.verdict === verdict) ? null : verdict;
  const card = document.getElementById('c-' + id);
  card.classList.remove('keep', 'reject'); if (e.verdict) card.classList.add(e.verdict);
  card.querySelector('.verdict').textContent = e.verdict || 'automatic';
}
function download() {
  const blob = new Blob([JSON.stringify(data, null, 1)], {type: 'application/json'});
  const a = document.createElement('a'); a.href = URL.createObjectURL(blob);
  a.download = 'review.json'; a.click();
}
for (const e of data.images) if (e.verdict) { const v = e.verdict; e.verdict = null; mark(e.id, v); }
"""


def _card(e: Mapping) -> str:
    esc = html.escape
    dets = ", ".join(f"{d['name']} {d['score']:.2f} ({d['area'] * 100:.0f}%)" for d in e.get("detections") or [])
    ident = esc(e["id"], quote=True)
    reason = str(e.get("reason") or "")
    where = f' ({esc(str(e["split"]))})' if e.get("split") else ""
    return (
        f'<div class="card" id="c-{ident}">'
        f'<img loading="lazy" src="{esc(e["thumb"], quote=True)}" alt="{esc(str(e.get("name") or ""), quote=True)}">'
        f'<div class="meta"><b>{esc(str(e.get("name") or ""))}</b><br>{esc(str(e["input"]))}<br>'
        f'<span class="reason">{esc(e["decision"])}{where}{": " + esc(reason) if reason else ""}</span>'
        f'{"<br>detections: " + esc(dets) if dets else ""}<br>verdict: <span class="verdict">automatic</span></div>'
        f'<button onclick="mark(\'{ident}\', \'keep\')">keep</button>'
        f'<button onclick="mark(\'{ident}\', \'reject\')">reject</button></div>'
    )


def write_review_html(path: PathLike, entries: Sequence[dict], title: str = "build-bg review") -> Path:
    """A static page of thumbnails; verdicts set there download as ``review.json``."""
    borderline = [e for e in entries if e["decision"] != "kept"]
    kept = [e for e in entries if e["decision"] == "kept"]
    doc = {"format": FORMAT, "version": 1, "instructions": INSTRUCTIONS, "images": list(entries)}
    # JSON inside <script>: escape '<' so no text can close the element
    payload = dumps(doc).replace("<", "\\u003c")
    parts = [
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\">",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{len(kept)} kept images, {len(borderline)} borderline rejections. Click <i>keep</i> or "
        "<i>reject</i> to override the automatic decision, then "
        "<button onclick=\"download()\">download review.json</button> and run "
        "<code>rssn build-bg --apply-review review.json</code> (or edit review.json by hand).</p>",
        f"<h2>Rejections to check ({len(borderline)})</h2><div class=\"grid\">",
        *(_card(e) for e in borderline),
        f"</div><h2>Kept ({len(kept)})</h2><div class=\"grid\">",
        *(_card(e) for e in kept),
        "</div>",
        f'<script type="application/json" id="review-data">{payload}</script>',
        f"<script>{_SCRIPT}</script></body></html>\n",
    ]
    return write_text_atomic(path, "".join(parts))
