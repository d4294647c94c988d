"""The HTML report page: the table, the paper comparison, paired comparisons, evaluation timings, the
figures embedded as base64 PNG ``data:`` URIs, the video gallery (:mod:`reports.gallery`, relative links
into the report folder's ``gallery/``) and each run's provenance. No external stylesheet, script or
image: the folder opens from disk without a server."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

from .figures import FigureFile
from .gallery import GALLERY_CSS, Gallery, gallery_caption, gallery_html
from .paper_table import comparison_html
from .table import ReportTable

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;
     color:#222;padding:0 1em}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table.results{border-collapse:collapse;margin:1em 0;font-size:.92em}
table.results caption{caption-side:top;text-align:left;font-weight:600;padding-bottom:.4em}
table.results th,table.results td{padding:.3em .7em;text-align:center;border-bottom:1px solid #e5e5e5}
table.results thead th{border-bottom:2px solid #444}
table.results tbody th{text-align:left;white-space:nowrap}
table.results tr.gt{background:#f4f4f4;font-style:italic}
table.paper tr.delta td{color:#555;border-bottom:2px solid #ccc}
ol.footnotes,p.note,.notes{font-size:.85em;color:#555}
figure{margin:1.5em 0} figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.85em;color:#555}
table.prov{border-collapse:collapse;font-size:.85em} table.prov td,table.prov th{padding:.2em .6em;
  border-bottom:1px solid #eee;text-align:left;vertical-align:top}
code{font-size:.9em}
"""


def data_uri(png: str | Path) -> str:
    """``data:image/png;base64,...`` of a PNG file."""
    return "data:image/png;base64," + base64.b64encode(Path(png).read_bytes()).decode("ascii")


def _provenance(table: ReportTable) -> str:
    esc = html.escape
    rows = []
    for label in table.rows:
        run = table.runs[label]
        metrics = []
        for name, entry in run.metrics.items():
            info = (entry or {}).get("info") or {}
            proto = ((entry or {}).get("options") or {}).get("protocol")
            status = (entry or {}).get("status", "ok")
            metrics.append(f"{name} v{info.get('version', '?')}" + (f" ({proto})" if proto else "")
                           + ("" if status == "ok" else f" [{status}]"))
        rows.append(f"<tr><td>{esc(label)}</td><td><code>{esc(str(run.path or run.name))}</code></td>"
                    f"<td>{esc(run.method)}</td><td>{esc(str(run.dataset.get('name', '')))}</td>"
                    f"<td>{esc(str(run.dataset.get('n_clips', '')))}</td>"
                    f"<td><code>{esc(str(run.manifest_id))}</code></td><td>{esc(run.device)}</td>"
                    f"<td>{esc(', '.join(metrics))}</td></tr>")
    head = "".join(f"<th>{h}</th>" for h in ("row", "run", "method", "dataset", "clips", "manifest_id",
                                              "device", "metrics (version, protocol)"))
    return f'<table class="prov"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def render_html(table: ReportTable, figures: Sequence[FigureFile] = (), compare_paper: bool = False,
                notes: Sequence[str] = (), title: str = "kdbench report",
                other: ReportTable | None = None, comparisons: Sequence[str] = (), timing: str = "",
                gallery: Gallery | None = None) -> str:
    """The full page as a string (figures embedded). ``comparisons``/``timing``: ready HTML fragments."""
    esc = html.escape
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{esc(title)}</title>"
             f"<style>{CSS}{GALLERY_CSS if gallery is not None else ''}</style></head><body>",
             f"<h1>{esc(title)}</h1>",
             "<h2>Results</h2>", table.to_html(),
             "<p class=\"note\">Best value per column in bold (the Real Video row excluded, as in the "
             "paper); ↑ higher is better, ↓ lower is better.</p>"]
    if compare_paper:
        parts += ["<h2>Comparison with the paper (Table 1)</h2>", comparison_html(table)]
    if comparisons:
        parts += ["<h2>Paired comparisons</h2>", *comparisons]
    if other is not None and other.columns:
        parts += ["<h2>Other outputs</h2>", other.to_html()]
    if timing:
        parts += ["<h2>Where the evaluation time went</h2>", timing]
    if figures:
        parts.append("<h2>Figures</h2>")
        for fig in figures:
            parts.append(f'<figure><img alt="{esc(fig.title)}" src="{data_uri(fig.png)}">'
                         f"<figcaption><b>{esc(fig.title)}.</b> {esc(fig.caption)}"
                         + (f" Arrays: <code>{esc(fig.npz.name)}</code>." if fig.npz else "")
                         + "</figcaption></figure>")
    if gallery is not None:
        parts += ["<h2>Gallery</h2>", f'<p class="note">{esc(gallery_caption(gallery))}</p>',
                  gallery_html(gallery, table.precision)]
    if notes:
        parts.append('<h2>Notes</h2><ul class="notes">' + "".join(f"<li>{esc(n)}</li>" for n in notes)
                     + "</ul>")
    parts += ["<h2>Runs</h2>", _provenance(table), "</body></html>"]
    return "\n".join(parts)


def write_html(path: str | Path, table: ReportTable, figures: Sequence[FigureFile] = (),
               compare_paper: bool = False, notes: Sequence[str] = (), title: str = "kdbench report",
               other: ReportTable | None = None, comparisons: Sequence[str] = (), timing: str = "",
               gallery: Gallery | None = None) -> Path:
    path = Path(path)
    path.write_text(render_html(table, figures, compare_paper, notes, title, other, comparisons, timing, gallery),
                    encoding="utf-8")
    return path
