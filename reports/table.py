"""Paper-style results tables: methods x metrics, in the layout of the KDTalker paper's Table 1.

:func:`build_table` turns evaluated runs into a :class:`ReportTable` whose :attr:`ReportTable.frame`
is one pandas DataFrame (rows = methods, the GT "Real Video" row first; columns = Table 1's metric
columns in the paper's order, each with ``mean``/``std``/``n``/``failed``). The best value per
column (GT row excluded, as in the paper) is bold, using each metric output's ``higher_is_better``.
A metric that a run did not evaluate shows "—"; a skipped or failed metric shows "—" with its reason
in a footnote; per-clip failures are counted in the cell and listed in a footnote. Clips a metric does
not apply to (no GT video) are counted apart ("n/a") with their reason in a footnote, and clips the
normaliser padded or letterboxed are listed under the table (:meth:`ReportTable.row_notes`).

Formats: Markdown (``DataFrame.to_markdown``), LaTeX (``Styler.to_latex``, booktabs), CSV, and an
HTML fragment (see :mod:`reports.html` for the page); :func:`per_clip_frame` gives the per-clip
values for parquet. The cells and their formatters are :mod:`reports.cells`; the other tables built
from a :class:`ReportTable` or from runs are their own modules: :mod:`reports.paper_table` (the paper's
Table 1 next to the measured values), :mod:`reports.sweep_table` (a parameter sweep like Table 6) and
:mod:`reports.timing_table` (where the evaluation time went).
"""

from __future__ import annotations

import html as _html
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdbench.errors import generic_reason

from . import paper
from .cells import (
    DASH,
    STATS,
    Cell,
    _cell,
    _tex_escape,
    cell_interval,
    order_runs,
    other_columns,
    row_labels,
    run_columns,
)
from .runs import RunResult, as_run, finite

if TYPE_CHECKING:
    import pandas as pd

# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------
@dataclass
class ReportTable:
    """Methods x metrics. ``cells[(row, column)]``; rows and columns in display order."""

    rows: list[str]
    columns: list[str]
    cells: dict[tuple[str, str], Cell]
    runs: dict[str, RunResult]
    gt_rows: set[str]
    precision: int = 3
    title: str = ""
    always_n: bool = False
    transpose: bool = False
    """Display (md/tex/html) with methods as columns: for tables with many columns."""
    ci_resamples: int | None = None
    """Bootstrap resamples behind the cells' CIs (None: no CIs)."""
    ci_seed: int = 0
    _notes: tuple[dict[tuple[str, str], int], list[str]] | None = field(
        default=None, repr=False, compare=False)

    # -- numbers --------------------------------------------------------------------------------
    @property
    def frame(self) -> pd.DataFrame:
        """The table as one DataFrame: index = method rows; columns = MultiIndex (column, stat) with
        stat in ``mean, std, n, failed`` (NaN where not evaluated)."""
        import pandas as pd

        data = {}
        for col in self.columns:
            for stat in STATS:
                vals = []
                for row in self.rows:
                    c = self.cells[(row, col)]
                    v = getattr(c, stat)
                    vals.append(float("nan") if v is None or (stat == "failed" and c.status == "missing")
                                else v)
                data[(col, stat)] = vals
        df = pd.DataFrame(data, index=pd.Index(self.rows, name="method"))
        df.columns = pd.MultiIndex.from_tuples(df.columns, names=["metric", "stat"])
        return df

    @property
    def means(self) -> pd.DataFrame:
        """rows x columns of mean values (NaN where not available)."""
        return self.frame.xs("mean", axis=1, level="stat")

    def higher_is_better(self, column: str) -> bool | None:
        vals = {c.higher_is_better for (r, col), c in self.cells.items() if col == column and c.metric}
        vals.discard(None)
        return vals.pop() if len(vals) == 1 else None

    def best_rows(self, column: str) -> set[str]:
        """Rows holding the best value of ``column`` (GT excluded; ties at display precision)."""
        hib = self.higher_is_better(column)
        if hib is None:
            return set()
        cand = {r: round(c.mean, self.precision) for r in self.rows
                if r not in self.gt_rows and (c := self.cells[(r, column)]).status == "ok"
                and c.mean is not None}
        if len(cand) < 2 or len({self.runs[r].manifest_id for r in cand}) > 1:
            return set()  # none, one, or values over different clip sets (`report --allow-mixed`): no best
        best = max(cand.values()) if hib else min(cand.values())
        return {r for r, v in cand.items() if v == best}

    # -- text -----------------------------------------------------------------------------------
    @property
    def show_n(self) -> bool:
        """Show n per cell only when it varies between cells or some clips failed."""
        ns = {c.n for c in self.cells.values() if c.status == "ok" and c.n is not None}
        return self.always_n or len(ns) > 1 or any(c.failed for c in self.cells.values() if c.status == "ok")

    def footnotes(self) -> tuple[dict[tuple[str, str], int], list[str]]:
        """Footnote number per (row, column) that has one, and the footnote texts (numbered from 1).
        Computed once per table (the table is not meant to change after :func:`build_table`).

        A skip/error reason shared by several rows is one footnote naming those rows; per-clip
        failures get one footnote per row and metric, with the count of each reason."""
        if self._notes is not None:
            return self._notes
        keys: list[str] = []
        rows_of: dict[str, list[str]] = {}
        marks: dict[tuple[str, str], int] = {}
        for row in self.rows:
            for col in self.columns:
                c = self.cells[(row, col)]
                if c.status in ("skipped", "error"):
                    key, shared = f"{c.metric}: {c.status}: {c.reason}", True
                elif c.status == "ok" and (c.failed or c.not_applicable):
                    parts = []
                    for what, d in (("failed", c.failures), ("not applicable", c.not_applicable)):
                        if d:
                            counts = Counter(generic_reason(k, v) for k, v in d.items())
                            reasons = "; ".join(f"{reason} ({k})" for reason, k in counts.most_common())
                            parts.append(f"{len(d)} clip(s) {what}: {reasons}")
                    key, shared = f"{row}, {c.metric}: {'; '.join(parts)}", False
                    if c.note:
                        key += f"; {c.note}"
                elif c.status == "ok" and c.note:
                    key, shared = f"{row}, {c.metric}: {c.note}", False
                else:
                    continue
                if key not in rows_of:
                    keys.append(key)
                    rows_of[key] = []
                if shared and row not in rows_of[key]:
                    rows_of[key].append(row)
                marks[(row, col)] = keys.index(key) + 1
        texts = [f"{', '.join(rows_of[k])}, {k}" if rows_of[k] else k for k in keys]
        self._notes = (marks, texts)
        return self._notes

    def cell_text(self, row: str, column: str, fmt: str = "md") -> str:
        """Cell as text for ``fmt`` in md | tex | html | plain (bold best, footnote mark)."""
        c = self.cells[(row, column)]
        marks, _ = self.footnotes()
        mark = marks.get((row, column))
        p = self.precision
        pm = {"tex": r" $\pm$ ", "html": " ± "}.get(fmt, " ± ")
        if c.status != "ok":
            dash = {"tex": "---"}.get(fmt, DASH)
            text = dash
        else:
            text = f"{c.mean:.{p}f}"
            if c.ci_lo is not None and c.ci_hi is not None:
                ci = f"[{c.ci_lo:.{p}f}, {c.ci_hi:.{p}f}]"
                text += f" {{\\scriptsize {ci}}}" if fmt == "tex" else f" {ci}"
            elif c.std is not None and (c.n or 0) > 1:
                text += f"{pm}{c.std:.{p}f}"
            extra = []
            if self.show_n and c.n is not None:
                extra.append(f"n={c.n}")
            if c.failed:
                extra.append(f"{c.failed} failed")
            if c.not_applicable:
                extra.append(f"{len(c.not_applicable)} n/a")
            if extra:
                text += f" ({', '.join(extra)})"
            if row in self.best_rows(column):
                text = {"md": f"**{text}**", "tex": text, "html": f"<strong>{text}</strong>"}.get(fmt, text)
        if mark:
            text += {"tex": f"$^{{{mark}}}$", "html": f"<sup>{mark}</sup>", "md": f" [{mark}]"}.get(
                fmt, f" [{mark}]")
        return text

    def header(self, column: str, fmt: str = "md") -> str:
        hib = self.higher_is_better(column)
        if hib is None:
            return _tex_escape(column) if fmt == "tex" else column
        if fmt == "tex":
            return f"{_tex_escape(column)} $\\{'uparrow' if hib else 'downarrow'}$"
        return f"{column} {'↑' if hib else '↓'}"

    def display(self, fmt: str = "md") -> pd.DataFrame:
        """DataFrame of cell strings (rows x columns) for ``fmt``; bold and footnote marks applied."""
        import pandas as pd

        data = {self.header(col, fmt): [self.cell_text(row, col, fmt) for row in self.rows]
                for col in self.columns}
        rows = [_tex_escape(r) for r in self.rows] if fmt == "tex" else list(self.rows)
        df = pd.DataFrame(data, index=pd.Index(rows, name=None if fmt == "tex" else "Method"))
        if self.transpose:
            df = df.T
            df.index.name = None if fmt == "tex" else "Output"
            df.columns.name = None
        return df

    def _bold_mask(self) -> list[list[bool]]:
        """``mask[i][j]``: display cell (i, j) is a best value (follows :attr:`transpose`)."""
        best = {(r, c) for c in self.columns for r in self.best_rows(c)}
        mask = [[(r, c) in best for c in self.columns] for r in self.rows]
        return [list(x) for x in zip(*mask, strict=True)] if self.transpose and mask else mask

    @property
    def caption(self) -> str:
        cap = table_caption(list(self.runs.values()), n_label=not self.show_n, cells=self.cells.values(),
                            ci=self.ci_text)
        return f"{self.title}. {cap}" if self.title else cap

    def row_notes(self) -> list[str]:
        """One line per run whose videos the normaliser padded (frames per clip) or letterboxed."""
        lines = []
        for row in self.rows:
            norm = self.runs[row].doc.get("normalizer") or {}
            padded, boxed = norm.get("padded") or {}, norm.get("letterboxed") or []
            if padded:
                clips = ", ".join(f"{cid}: {k}" for cid, k in sorted(padded.items()))
                lines.append(f"{row}: {len(padded)} clip(s) padded with repeated last frames (frames per clip: "
                             f"{clips}; tolerance {norm.get('max_pad_frames')} frames).")
            if boxed:
                lines.append(f"{row}: {len(boxed)} clip(s) letterboxed to the frame size: {', '.join(boxed)}.")
        return lines

    @property
    def ci_text(self) -> str:
        """How the CIs were made (empty when no cell has one)."""
        if not self.ci_resamples or not any(c.ci_lo is not None for c in self.cells.values()):
            return ""
        return (f"value [95% CI: percentile bootstrap over clips, {self.ci_resamples:,} resamples, "
                f"seed {self.ci_seed}]")

    # -- formats --------------------------------------------------------------------------------
    def to_markdown(self) -> str:
        _, notes = self.footnotes()
        parts = [f"**{self.caption}**", "", self.display("md").to_markdown(disable_numparse=True), ""]
        parts += [f"[{i}] {t}  " for i, t in enumerate(notes, 1)]
        parts += [f"{t}  " for t in self.row_notes()]
        if any(c.status == "missing" for c in self.cells.values()):
            parts.append(f"{DASH} not evaluated in that run.  ")
        return "\n".join(parts).rstrip() + "\n"

    def to_latex(self, label: str = "tab:kdbench") -> str:
        disp = self.display("tex")
        mask = self._bold_mask()

        def bold(df):
            import pandas as pd

            return pd.DataFrame([["font-weight: bold;" if b else "" for b in row] for row in mask],
                                index=df.index, columns=df.columns)

        styler = disp.style.apply(bold, axis=None)
        tex = styler.to_latex(hrules=True, convert_css=True, caption=_tex_escape(self.caption), label=label,
                              position_float="centering", column_format="l" + "c" * disp.shape[1],
                              environment="table")
        _, notes = self.footnotes()
        lines = [f"\\textsuperscript{{{i}}}{_tex_escape(t)}" for i, t in enumerate(notes, 1)]
        lines += [_tex_escape(t) for t in self.row_notes()]
        if any(c.status == "missing" for c in self.cells.values()):
            lines.append("--- not evaluated in that run.")
        if lines:
            block = "\\par\\smallskip\\footnotesize\n" + "\\\\\n".join(lines) + "\n"
            tex = tex.replace("\\end{table}", block + "\\end{table}")
        return tex

    def to_csv_frame(self) -> pd.DataFrame:
        """Flat numeric frame: one row per method, columns ``"<column> <stat>"``, plus run provenance."""
        import pandas as pd

        df = self.frame.copy()
        p = self.precision
        cis = {}
        for col, stat in df.columns:  # the value as the md/html tables show it: `7.330 [7.210, 7.450]`
            if stat == "mean" and (col, "ci_lo") in df.columns and (col, "ci_hi") in df.columns:
                cis[col] = [f"{m:.{p}f} [{lo:.{p}f}, {hi:.{p}f}]" if pd.notna(lo) and pd.notna(hi) and pd.notna(m)
                            else "" for m, lo, hi in zip(df[(col, "mean")], df[(col, "ci_lo")], df[(col, "ci_hi")],
                                                         strict=True)]
        df.columns = [col if stat == "mean" else f"{col} {stat}" for col, stat in df.columns]
        for col, text in cis.items():
            df[f"{col} [95% CI]"] = text
        df.insert(0, "run", [self.runs[r].name for r in self.rows])
        df.insert(1, "method_id", [self.runs[r].method for r in self.rows])
        return df

    def to_csv(self) -> str:
        return self.to_csv_frame().to_csv()

    def to_html(self) -> str:
        """An HTML ``<table>`` fragment with caption and footnotes (no external resources)."""
        esc = _html.escape
        disp = self.display("html")
        head = "".join(f"<th>{esc(str(c))}</th>" for c in disp.columns)
        body = []
        for label, row in disp.iterrows():
            cls = ' class="gt"' if not self.transpose and label in self.gt_rows else ""
            tds = "".join(f"<td>{v}</td>" for v in row)  # cell_text(..., "html") is already markup
            body.append(f"<tr{cls}><th>{esc(str(label))}</th>{tds}</tr>")
        corner = esc(str(disp.index.name or ""))
        _, notes = self.footnotes()
        foot = "".join(f"<li value=\"{i}\">{esc(t)}</li>" for i, t in enumerate(notes, 1))
        foot_rows = "".join(f'<p class="note">{esc(t)}</p>' for t in self.row_notes())
        missing = any(c.status == "missing" for c in self.cells.values())
        return (f'<table class="results"><caption>{esc(self.caption)}</caption>'
                f"<thead><tr><th>{corner}</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
                + (f'<ol class="footnotes">{foot}</ol>' if notes else "") + foot_rows
                + (f'<p class="note">{DASH} not evaluated in that run.</p>' if missing else ""))


def _distinct(values: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


PROTOCOL_OPTIONS: dict[str, dict[str, Any]] = {
    "diversity": {"max_frames": 200, "upsample": 1, "conf_threshold": 1.0, "min_faces": 2},
    "pose_offline": {"max_frames": 200},
    "fid": {"stride": 1, "max_frames": None},
    "cpbd": {"size": 512, "stride": 1, "max_frames": None},
    "csim": {"frame_stride": 1, "max_frames": 0, "det_size": 640, "det_thresh": 0.5},
}
"""The metric options that change the numbers, at the values of the paper's protocol (each metric's defaults;
``tests/test_report_table.py`` checks they are): which frames are scored, at what size, by which detector
thresholds. Options that only change speed (batch sizes, workers, caches) are not listed, nor LSE's
``protocol``, which selects between SyncNet pipelines rather than shortening one."""


def protocol_differences(runs: Sequence[RunResult]) -> list[str]:
    """``["diversity.max_frames=8 (protocol 200)", …]``: the options of evaluated metrics that differ from the
    paper's protocol (:data:`PROTOCOL_OPTIONS`), each prefixed with its runs' labels when not all runs share it."""
    found: dict[str, list[str]] = {}
    for run in runs:
        for name, entry in run.metrics.items():
            if (entry or {}).get("status") != "ok":
                continue
            options = (entry or {}).get("options") or {}
            for key, protocol in PROTOCOL_OPTIONS.get(name, {}).items():
                if key in options and options[key] != protocol:
                    text = f"{name}.{key}={options[key]} (protocol {protocol})"
                    found.setdefault(text, []).append(run.label)
    return [text if len(labels) == len(runs) else f"{text} for {', '.join(labels)}"
            for text, labels in found.items()]


def table_caption(runs: Sequence[RunResult], n_label: bool = True, cells: Iterable[Cell] = (),
                  ci: str = "") -> str:
    """``"hdtf-mini, N=3 clips, manifest_id 1a2b3c4d5e6f, device: cuda (NVIDIA H100)."`` — differences
    between runs are spelled out instead of hidden."""
    datasets = _distinct(r.dataset.get("name") or "unknown dataset" for r in runs)
    n_clips = _distinct(r.dataset.get("n_clips") for r in runs)
    manifests = _distinct(r.manifest_id or "unknown" for r in runs)
    devices = _distinct(r.device for r in runs)
    parts = [" / ".join(map(str, datasets))]
    if len(n_clips) == 1 and n_clips[0] is not None:
        parts.append(f"N={n_clips[0]} clips")
    elif len(n_clips) > 1:
        parts.append("N=" + "/".join(str(n) for n in n_clips) + " clips (differs between runs)")
    if len(manifests) == 1:
        parts.append(f"manifest_id {manifests[0]}")
    else:
        parts.append("manifest_id DIFFERS between runs: "
                     + ", ".join(f"{r.label}: {r.manifest_id}" for r in runs))
    if len(devices) == 1:
        parts.append(f"device: {devices[0]}")
    else:
        parts.append("device: " + "; ".join(f"{r.label}: {r.device}" for r in runs))
    text = ", ".join(parts)
    cells = list(cells)
    ns = _distinct(c.n for c in cells if c.status == "ok" and c.n is not None)
    if ci:
        text += f"; {ci}, else mean ± std"
        if n_label and len(ns) == 1:
            text += f"; n={ns[0]} clips per cell"
    elif n_label and len(ns) == 1:
        text += f"; every cell is mean ± std over n={ns[0]} clips"
    differ = protocol_differences(runs)
    if differ:
        text += f". NOT the paper's protocol: {'; '.join(differ)}"
    return text + "."


def build_table(runs: Sequence[RunResult | dict | str | Path], precision: int = 3,
                columns: Sequence[str] | None = None, other: bool = False, ci: int | None = None,
                seed: int = 0) -> ReportTable:
    """Build the methods x metrics table.

    ``columns``: the columns to show (default: Table 1's columns that any run evaluated, in the
    paper's order, followed by extra columns from duplicate metrics). ``other=True`` builds instead
    the table of the outputs that are not in Table 1 (:func:`other_columns`), in metric order.
    ``ci``: bootstrap resamples for a 95% CI over clips of every cell that has per-clip values (see
    :func:`cell_interval`); None or 0: no CIs. ``seed`` seeds every cell's resampling.
    """
    loaded = order_runs([as_run(r) for r in runs])
    if not loaded:
        from kdbench.errors import KdbenchError

        raise KdbenchError("no runs to report")
    labels = row_labels(loaded)
    mapping = other_columns if other else run_columns
    per_run = {label: mapping(run) for label, run in zip(labels, loaded, strict=True)}
    if columns is None and other:
        columns = list(dict.fromkeys(c for cols in per_run.values() for c in cols))
    elif columns is None:
        present = set().union(*[set(c) for c in per_run.values()])
        columns = [c for c in paper.TABLE1_COLUMNS if c in present]
        columns += sorted(c for c in present if c not in paper.TABLE1_COLUMNS)
    cells: dict[tuple[str, str], Cell] = {}
    for label, run in zip(labels, loaded, strict=True):
        for col in columns:
            if col in per_run[label]:
                metric, output = per_run[label][col]
                cells[(label, col)] = _cell(run, label, col, metric, output)
            else:
                cells[(label, col)] = Cell(row=label, column=col)
            c = cells[(label, col)]
            if ci and c.status == "ok" and c.metric:
                iv, _ = cell_interval(run, c, ci, seed)
                if iv is not None and math.isfinite(iv.lo) and math.isfinite(iv.hi):
                    c.ci_lo, c.ci_hi = iv.lo, iv.hi
    by_label = dict(zip(labels, loaded, strict=True))
    return ReportTable(rows=labels, columns=list(columns), cells=cells, runs=by_label,
                       gt_rows={lab for lab, r in by_label.items() if r.is_gt}, precision=precision,
                       title="Outputs not in the paper's Table 1" if other else "", always_n=other,
                       transpose=other, ci_resamples=ci or None, ci_seed=seed)


# ---------------------------------------------------------------------------------------------
# Per-clip values
# ---------------------------------------------------------------------------------------------
def per_clip_frame(runs: Sequence[RunResult | dict | str | Path]) -> pd.DataFrame:
    """Long DataFrame of per-clip values: ``row, run, method, metric, output, column, clip_id, value,
    failure`` (one row per clip and numeric output; failed clips have value NaN and their reason)."""
    import pandas as pd

    loaded = order_runs([as_run(r) for r in runs])
    labels = row_labels(loaded)
    recs = []
    for label, run in zip(labels, loaded, strict=True):
        for name, entry in run.metrics.items():
            info = (entry or {}).get("info") or {}
            outputs = list((info.get("outputs") or {}).keys())
            paper_cols = info.get("paper_column") or {}
            per_clip = entry.get("per_clip") or {}
            failures = entry.get("failures") or {}
            for clip_id, record in per_clip.items():
                for out in outputs:
                    v = (record or {}).get(out)
                    if v is None or isinstance(v, (list, dict, str)):
                        continue
                    recs.append((label, run.name, run.method, name, out, paper_cols.get(out, ""),
                                 str(clip_id), finite(v) if finite(v) is not None else math.nan, None))
            for clip_id, reason in failures.items():
                for out in outputs:
                    recs.append((label, run.name, run.method, name, out, paper_cols.get(out, ""),
                                 str(clip_id), math.nan, str(reason)))
    cols = ["row", "run", "method", "metric", "output", "column", "clip_id", "value", "failure"]
    df = pd.DataFrame.from_records(recs, columns=cols)
    return df.astype({"value": float})
