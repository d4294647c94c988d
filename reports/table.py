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
values for parquet. :func:`paper_comparison` puts the paper's Table 1 next to the measured values;
:func:`sweep_table` lays out a parameter sweep like Table 6.
"""

from __future__ import annotations

import html as _html
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kdbench.errors import generic_reason

from . import paper
from .runs import RunResult, as_run, finite

if TYPE_CHECKING:
    import pandas as pd

DASH = "—"
PRIMARY_METRICS = ("lse", "diversity", "fid", "cpbd", "csim", "fps")
"""Metrics that own a Table 1 column when several metrics of one run map to the same column."""
STATS = ("mean", "std", "n", "failed", "ci_lo", "ci_hi")
COPY_REASON = ("copies its input instead of generating (repeats the reference image or replays the GT video): "
               "its FPS would time a copy, not a generator, so none is shown")


@dataclass
class Cell:
    """One (row, column) entry of the table."""

    row: str
    column: str
    metric: str | None = None
    output: str | None = None
    status: str = "missing"  # ok | skipped | error | missing
    mean: float | None = None
    std: float | None = None
    n: int | None = None
    failed: int = 0
    higher_is_better: bool | None = None
    version: str | None = None
    reason: str | None = None
    failures: dict[str, str] = field(default_factory=dict)
    not_applicable: dict[str, str] = field(default_factory=dict)
    ci_lo: float | None = None
    ci_hi: float | None = None
    """95% bootstrap CI over clips of :attr:`mean` (None when not computed or not computable)."""
    note: str | None = None  # the aggregate's "note" (e.g. frames resized before scoring): shown as a footnote


# ---------------------------------------------------------------------------------------------
# Collecting cells from runs
# ---------------------------------------------------------------------------------------------
def _metric_order(metrics: dict[str, Any]) -> list[str]:
    names = list(metrics)
    primary = [m for m in PRIMARY_METRICS if m in metrics]
    return primary + [m for m in names if m not in primary]


BUILTIN_PAPER_COLUMNS: dict[str, dict[str, str]] = {
    "lse": {"lse_c": "LSE-C", "lse_d": "LSE-D"}, "diversity": {"diversity": "Diversity"},
    "fid": {"fid": "FID"}, "cpbd": {"cpbd": "CPBD"}, "csim": {"csim": "CSIM"}, "fps": {"fps": "FPS"},
}
"""Table 1 columns of the built-in metrics, used only for a metric recorded without its metadata
(e.g. skipped because it could not be imported), so that its column still shows "—" and the reason."""


def _paper_columns(name: str, entry: dict[str, Any]) -> dict[str, str]:
    info = (entry or {}).get("info") or {}
    if "paper_column" in info or "outputs" in info:
        return dict(info.get("paper_column") or {})
    return dict(BUILTIN_PAPER_COLUMNS.get(name, {}))


def run_columns(run: RunResult) -> dict[str, tuple[str, str]]:
    """``{column: (metric, output)}`` for one run.

    Each output with a ``paper_column`` fills that Table 1 column; when two metrics of a run map to
    the same column (e.g. ``csim`` and ``csim_dlib``), the primary metric keeps it and the other
    becomes an extra column ``"CSIM (csim_dlib.csim)"`` so that nothing is dropped silently.
    """
    cols: dict[str, tuple[str, str]] = {}
    for name in _metric_order(run.metrics):
        for output, column in _paper_columns(name, run.metrics[name]).items():
            key = column if column not in cols else f"{column} ({name}.{output})"
            cols[key] = (name, output)
    return cols


def other_columns(run: RunResult) -> dict[str, tuple[str, str]]:
    """``{"metric.output": (metric, output)}`` for the outputs that have no Table 1 column (e.g.
    ``diversity.pose_std_deg``, ``fps.load_s``); a metric recorded without metadata and without a
    built-in column gets one column named after it (so its skip reason is shown)."""
    cols: dict[str, tuple[str, str]] = {}
    for name, entry in run.metrics.items():
        info = (entry or {}).get("info") or {}
        outputs = list((info.get("outputs") or {}).keys())
        paper_cols = _paper_columns(name, entry)
        if not outputs and not paper_cols:
            cols[name] = (name, "")
        for out in outputs:
            if out not in paper_cols:
                cols[f"{name}.{out}"] = (name, out)
    return cols


def _output_hib(info: dict[str, Any], output: str, column: str) -> bool | None:
    meta = (info.get("outputs") or {}).get(output) or {}
    if "higher_is_better" in meta:
        return meta["higher_is_better"]
    base = column.split(" (")[0]
    return paper.TABLE1_HIGHER_IS_BETTER.get(base)


def _cell(run: RunResult, row: str, column: str, metric: str, output: str) -> Cell:
    entry = run.metrics.get(metric) or {}
    info = entry.get("info") or {}
    status = entry.get("status", "ok")
    agg = (entry.get("aggregate") or {}).get(output) or {}
    failures = {str(k): str(v) for k, v in (entry.get("failures") or {}).items()}
    na = {str(k): str(v) for k, v in (entry.get("not_applicable") or {}).items()}
    cell = Cell(row=row, column=column, metric=metric, output=output, status=status,
                higher_is_better=_output_hib(info, output, column), version=info.get("version"),
                failed=len(failures), failures=failures, not_applicable=na)
    if status != "ok":
        cell.reason = entry.get("skip_reason") or entry.get("error") or status
        return cell
    if metric == "fps" and output == "fps" and run.copies_input:
        cell.status, cell.reason = "skipped", COPY_REASON
        return cell
    cell.mean, cell.std = finite(agg.get("mean")), finite(agg.get("std"))
    cell.note = agg.get("note") or None
    n = agg.get("n")
    cell.n = int(n) if isinstance(n, (int, float)) and not isinstance(n, bool) else None
    if cell.mean is None:
        cell.status = "error"
        cell.reason = ("no value (all clips failed)" if failures else
                       "no value (not applicable to any clip)" if na else "no value")
    return cell


def row_labels(runs: Sequence[RunResult]) -> list[str]:
    """Unique row labels, in input order (duplicates get the run's folder name appended)."""
    counts = Counter(r.label for r in runs)
    labels, seen = [], set()
    for r in runs:
        label = r.label if counts[r.label] == 1 else f"{r.label} ({r.name})"
        while label in seen:
            label += "'"
        seen.add(label)
        labels.append(label)
    return labels


def order_runs(runs: Sequence[RunResult]) -> list[RunResult]:
    """GT runs first, then the others in input order."""
    return [r for r in runs if r.is_gt] + [r for r in runs if not r.is_gt]


def clip_values(run: RunResult, metric: str, output: str) -> dict[str, float]:
    """``{clip_id: value}`` of one output's finite per-clip values, in the run's clip order."""
    entry = run.metrics.get(metric) or {}
    out = {}
    for cid, rec in (entry.get("per_clip") or {}).items():
        v = finite((rec or {}).get(output)) if isinstance(rec, dict) else None
        if v is not None:
            out[str(cid)] = v
    return out


def fps_clip_parts(run: RunResult, metric: str = "fps") -> dict[str, tuple[float, float]]:
    """``{clip_id: (frames, seconds)}`` of the FPS metric's per-clip records (pooled FPS = ratio of sums)."""
    entry = run.metrics.get(metric) or {}
    out = {}
    for cid, rec in (entry.get("per_clip") or {}).items():
        f, sec = finite((rec or {}).get("frames")), finite((rec or {}).get("seconds"))
        if f is not None and sec is not None and sec > 0:
            out[str(cid)] = (f, sec)
    return out


def cell_interval(run: RunResult, cell: Cell, resamples: int, seed: int) -> tuple[Any, str | None]:
    """(:class:`reports.stats.Interval` or None, reason when None) for one ``ok`` cell.

    The statistic is the one behind the aggregate: the mean of the per-clip values; FPS: pooled frames /
    seconds; FID (set-level): the pooled Fréchet distance, when the run folder holds the per-clip
    activations (:mod:`reports.fid_ci`). The CI is given only when this statistic reproduces the
    recorded aggregate (else the aggregate is something else and a CI of the clip mean would mislead)."""
    from . import stats

    if cell.metric == "fid":
        from .fid_ci import fid_interval

        return fid_interval(run, resamples=resamples, seed=seed, expected=cell.mean)
    if cell.metric == "fvd":
        return None, ("set-level, usually one window per clip: a clip bootstrap would score resamples with fewer "
                      "distinct windows than the estimate, biased upward (docs/fvd.md)")
    if cell.metric == "fps" and cell.output == "fps":
        parts = fps_clip_parts(run, cell.metric)
        if len(parts) >= 2:
            f, sec = (np.array(v) for v in zip(*parts.values(), strict=True))
            iv = stats.bootstrap_ratio_ci(f, sec, resamples, seed)
            if _close(iv.estimate, cell.mean):
                return iv, None
    vals = clip_values(run, cell.metric, cell.output)
    if len(vals) < 2:
        return None, "fewer than 2 clips"
    iv = stats.bootstrap_ci(np.fromiter(vals.values(), float), resamples, seed)
    if not _close(iv.estimate, cell.mean):
        return None, "the aggregate is not the mean of the per-clip values"
    return iv, None


def _close(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and abs(a - b) <= 1e-6 * max(1.0, abs(b))


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


def _tex_escape(s: str) -> str:
    out = []
    for ch in str(s):
        if ch in "&%$#_{}":
            out.append("\\" + ch)
        elif ch == "~":
            out.append(r"\textasciitilde{}")
        elif ch == "^":
            out.append(r"\textasciicircum{}")
        elif ch == "\\":
            out.append(r"\textbackslash{}")
        elif ch == "±":
            out.append(r"$\pm$")
        elif ch == "—":
            out.append("---")
        elif ch == "−":
            out.append("$-$")
        elif ch == "Δ":
            out.append(r"$\Delta$")
        else:
            out.append(ch)
    return "".join(out)


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


# ---------------------------------------------------------------------------------------------
# Paper comparison
# ---------------------------------------------------------------------------------------------
def _paper_row_for(run: RunResult, paper_index: Sequence[str]) -> str | None:
    if run.paper_row in paper_index:
        return run.paper_row
    lower = {p.lower(): p for p in paper_index}
    return lower.get(run.method.lower())


def paper_comparison(table: ReportTable) -> pd.DataFrame:
    """Measured values next to the paper's Table 1: index = table rows; columns = MultiIndex
    (Table 1 column, ``paper | measured | delta``) with ``delta = measured - paper``. Rows without a
    paper counterpart have NaN paper values; the index also names the paper row compared with."""
    import pandas as pd

    t1 = paper.paper_table1()
    cols = [c for c in paper.TABLE1_COLUMNS if c in table.columns] or list(paper.TABLE1_COLUMNS)
    kinds = ("paper", "measured", "delta")
    data: dict[tuple[str, str], list[float]] = {(c, k): [] for c in cols for k in kinds}
    paper_rows = []
    for row in table.rows:
        prow = _paper_row_for(table.runs[row], list(t1.index))
        paper_rows.append(prow or "")
        for c in cols:
            pv = float(t1.loc[prow, c]) if prow else math.nan
            cell = table.cells.get((row, c))
            mv = cell.mean if cell is not None and cell.status == "ok" and cell.mean is not None else math.nan
            data[(c, "paper")].append(pv)
            data[(c, "measured")].append(mv)
            data[(c, "delta")].append(mv - pv)
    df = pd.DataFrame(data, index=pd.Index(table.rows, name="method"))
    df.columns = pd.MultiIndex.from_tuples(df.columns, names=["metric", "value"])
    df.insert(0, ("paper row", ""), paper_rows)
    return df


def _fmt(v: float, p: int, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return DASH
    return f"{v:+.{p}f}" if signed else f"{v:.{p}f}"


def comparison_display(cmp: pd.DataFrame, precision: int = 3) -> pd.DataFrame:
    """String version of :func:`paper_comparison`, three rows per method (``paper``, ``ours``, ``Δ``)
    and one column per metric, like Table 1."""
    import pandas as pd

    cols = [c for c in cmp.columns.get_level_values(0).unique() if c != "paper row"]
    rows, index = [], []
    for method in cmp.index:
        prow = cmp.loc[method, ("paper row", "")]
        if not prow:
            continue  # no published counterpart (e.g. the static baseline)
        for kind, name in (("paper", f"paper ({prow})" if prow and prow != method else "paper"),
                           ("measured", "ours"),
                           ("delta", "Δ")):
            index.append(f"{method}: {name}")
            rows.append([_fmt(cmp.loc[method, (c, kind)], precision, signed=kind == "delta") for c in cols])
    return pd.DataFrame(rows, index=pd.Index(index, name="method"), columns=cols)


PAPER_NOTE = (paper.TABLE1_CAPTION + " Δ = measured − paper; differences include the clip set "
              "(the paper's 349 clips are not public), the hardware (FPS) and the implementations.")


def comparison_markdown(table: ReportTable) -> str:
    disp = comparison_display(paper_comparison(table), table.precision)
    return f"**Comparison with the paper.** {PAPER_NOTE}\n\n{disp.to_markdown(disable_numparse=True)}\n"


def comparison_latex(table: ReportTable, label: str = "tab:kdbench-paper") -> str:
    disp = comparison_display(paper_comparison(table), table.precision)
    disp = disp.rename(columns=_tex_escape, index=_tex_escape)
    disp.index.name = None
    disp = disp.map(_tex_escape)
    return disp.style.to_latex(hrules=True, caption=_tex_escape(PAPER_NOTE), label=label,
                               position_float="centering", environment="table",
                               column_format="l" + "r" * disp.shape[1])


def comparison_html(table: ReportTable) -> str:
    """The paper comparison as an HTML ``<table>`` (rows: paper / ours / Δ per method)."""
    esc = _html.escape
    disp = comparison_display(paper_comparison(table), table.precision)
    head = "".join(f"<th>{esc(c)}</th>" for c in disp.columns)
    body = []
    for label, row in disp.iterrows():
        cls = ' class="delta"' if str(label).endswith(": Δ") else ""
        tds = "".join(f"<td>{esc(v)}</td>" for v in row)
        body.append(f"<tr{cls}><th>{esc(str(label))}</th>{tds}</tr>")
    return (f'<table class="results paper"><caption>{esc(PAPER_NOTE)}</caption><thead><tr><th></th>{head}'
            f"</tr></thead><tbody>{''.join(body)}</tbody></table>")


def table1_markdown(table: ReportTable, order: Sequence[str], skipped: dict[str, tuple[str, str]]) -> str:
    """Table 1 as reproduced: every row of ``order`` (the paper's order) whether it ran or not. A measured
    cell is the table's cell with the paper's value after it; a row in ``skipped`` (``row -> (why, the command
    that fixes it)``) shows "—" and a footnote with the reason and the fix."""
    import pandas as pd

    t1 = paper.paper_table1()
    notes = list(table.footnotes()[1])
    cols = list(table.columns)
    data: dict[str, list[str]] = {table.header(c): [] for c in cols}
    index = []
    for row in order:
        if row in table.rows:
            prow = _paper_row_for(table.runs[row], list(t1.index))
            for c in cols:
                text = table.cell_text(row, c, "md")
                pv = float(t1.loc[prow, c]) if prow and c in t1.columns else math.nan
                data[table.header(c)].append(text + (f" (paper {pv:.{table.precision}f})" if not math.isnan(pv)
                                                     else ""))
        elif row in skipped:
            why, fix = skipped[row]
            notes.append(f"{row}: not run: {why}" + (f"; fix: `{fix}`" if fix else "") + ".")
            for c in cols:
                data[table.header(c)].append(f"{DASH} [{len(notes)}]")
        else:
            continue
        index.append(row)
    disp = pd.DataFrame(data, index=pd.Index(index, name="Method"))
    parts = [f"**Table 1 reproduced: {table.caption}** Each cell: measured (paper's value).", "",
             disp.to_markdown(disable_numparse=True), ""]
    parts += [f"[{i}] {t}  " for i, t in enumerate(notes, 1)]
    parts += [f"{t}  " for t in table.row_notes()]
    if any(c.status == "missing" for c in table.cells.values()):
        parts.append(f"{DASH} not evaluated in that run.  ")
    return "\n".join(parts).rstrip() + "\n"


# ---------------------------------------------------------------------------------------------
# Sweeps (Table 6 layout)
# ---------------------------------------------------------------------------------------------
SWEEP_COLUMNS = paper.TABLE6_COLUMNS


def _find_key(obj: Any, key: str, depth: int = 0) -> Any:
    if depth > 6 or not isinstance(obj, dict):
        return None
    if key in obj and not isinstance(obj[key], dict):
        return obj[key]
    for v in obj.values():
        found = _find_key(v, key, depth + 1)
        if found is not None:
            return found
    return None


def _unwrap(result: dict[str, Any] | RunResult) -> tuple[RunResult, dict[str, Any]]:
    """(run, wrapper): ``result`` is a run, a ``metrics.json`` dict, or a wrapper
    ``{"value"|param: v, "metrics": doc}``."""
    if isinstance(result, RunResult):
        return result, {}
    inner = result.get("metrics")
    is_doc = isinstance(inner, dict) and isinstance(inner.get("metrics"), dict) and (
        "run" in inner or "schema" in inner)
    if "run" not in result and "schema" not in result and (isinstance(inner, RunResult) or is_doc):
        return as_run(inner), result
    return as_run(result), {}


def sweep_value(result: dict[str, Any] | RunResult, param: str) -> Any:
    """The swept parameter's value for one result.

    ``result`` is a ``metrics.json`` dict (or :class:`RunResult`, or a wrapper ``{"value": v,
    "metrics": doc}`` / ``{param: v, "metrics": doc}``). The value is looked up in the wrapper, then
    ``run.sweep``, ``run`` and ``run.config`` (nested, e.g. ``config.options.ddim_steps``), then
    ``config.json``.
    """
    run, wrapper = _unwrap(result)
    for src in (wrapper.get("value"), wrapper.get(param), (run.run.get("sweep") or {}).get(param),
                run.run.get(param), _find_key(run.run.get("config") or {}, param),
                _find_key(run.config, param)):
        if src is not None:
            return src
    from kdbench.errors import KdbenchError

    raise KdbenchError(f"run {run.name!r} does not record a value for the swept parameter {param!r}")


def sweep_table(results: list[dict[str, Any]], param: str) -> pd.DataFrame:
    """A parameter sweep in the layout of the paper's Table 6.

    ``results``: one ``metrics.json`` dict per variant (see :func:`sweep_value` for where the
    parameter value is read). Returns index = parameter values (sorted, named ``param``), columns
    ``lse_c, lse_d, fid, cpbd, csim`` (aggregate means; NaN where a metric was not evaluated/skipped).
    """
    import pandas as pd

    rows = {}
    for res in results:
        value = sweep_value(res, param)
        run, _ = _unwrap(res)
        vals = dict.fromkeys(SWEEP_COLUMNS, math.nan)
        for col, (metric, output) in run_columns(run).items():
            key = paper.COLUMN_KEYS.get(col)
            if key in vals:
                entry = run.metrics[metric]
                if entry.get("status", "ok") == "ok":
                    m = finite(((entry.get("aggregate") or {}).get(output) or {}).get("mean"))
                    vals[key] = m if m is not None else math.nan
        if value in rows:
            from kdbench.errors import KdbenchError

            raise KdbenchError(f"two results have {param}={value!r}")
        rows[value] = vals
    try:
        order = sorted(rows, key=float)
    except (TypeError, ValueError):
        order = list(rows)
    df = pd.DataFrame([rows[v] for v in order], index=pd.Index(order, name=param),
                      columns=list(SWEEP_COLUMNS))
    return df.astype(float)


def sweep_comparison(sweep: pd.DataFrame, param: str | None = None) -> pd.DataFrame | None:
    """The sweep next to the paper's table for the same parameter (Table 6 for ``ddim_steps``):
    columns = MultiIndex (column, ``paper | measured | delta``); rows = union of parameter values.
    None when the paper has no such table."""
    import pandas as pd

    param = param or sweep.index.name
    ref = paper.paper_sweep_table(param)
    if ref is None:
        return None
    index = sorted(set(ref.index.astype(float)) | set(sweep.index.astype(float)))
    index = [int(v) if float(v).is_integer() else v for v in index]
    ref = ref.set_axis(ref.index.astype(float), axis=0)
    meas = sweep.set_axis(sweep.index.astype(float), axis=0)
    data = {}
    for c in SWEEP_COLUMNS:
        p = [float(ref.loc[float(v), c]) if float(v) in ref.index else math.nan for v in index]
        m = [float(meas.loc[float(v), c]) if float(v) in meas.index else math.nan for v in index]
        data[(c, "paper")] = p
        data[(c, "measured")] = m
        data[(c, "delta")] = [a - b for a, b in zip(m, p, strict=True)]
    df = pd.DataFrame(data, index=pd.Index(index, name=param))
    df.columns = pd.MultiIndex.from_tuples(df.columns, names=["metric", "value"])
    return df


SWEEP_HIB = {"lse_c": True, "lse_d": False, "fid": False, "cpbd": True, "csim": True}


def sweep_markdown(sweep: pd.DataFrame, precision: int = 3, compare_paper: bool = True) -> str:
    """Markdown of a sweep table (best per column in bold), plus the paper comparison if any."""
    import pandas as pd

    disp = {}
    for c in sweep.columns:
        col = sweep[c]
        finite_vals = col.dropna().round(precision)
        best = None
        if len(finite_vals) > 1 and c in SWEEP_HIB:
            best = finite_vals.max() if SWEEP_HIB[c] else finite_vals.min()
        name = paper.KEY_COLUMNS.get(c, c)
        arrow = {True: " ↑", False: " ↓"}.get(SWEEP_HIB.get(c), "")
        texts = []
        for v in col:
            if math.isnan(v):
                texts.append(DASH)
            elif best is not None and round(v, precision) == best:
                texts.append(f"**{v:.{precision}f}**")
            else:
                texts.append(f"{v:.{precision}f}")
        disp[name + arrow] = texts
    text = pd.DataFrame(disp, index=sweep.index).to_markdown(disable_numparse=True) + "\n"
    if compare_paper:
        cmp = sweep_comparison(sweep)
        if cmp is not None:
            flat = {f"{paper.KEY_COLUMNS.get(c, c)} {dict(paper='paper', measured='ours', delta='Δ')[k]}":
                    [_fmt(v, precision, signed=k == "delta") for v in cmp[(c, k)]] for c, k in cmp.columns}
            text += (f"\n**Comparison with the paper.** {paper.TABLE6_CAPTION} Δ = measured − paper.\n\n"
                     + pd.DataFrame(flat, index=cmp.index).to_markdown(disable_numparse=True) + "\n")
    return text


# ---------------------------------------------------------------------------------------------
# Where the evaluation time went
# ---------------------------------------------------------------------------------------------
def timing_frame(table: ReportTable) -> pd.DataFrame | None:
    """Seconds per evaluation stage (rows = the table's rows; columns = ``decode``, each metric, ``total``)
    from :attr:`RunResult.timing`; None when no run records per-metric seconds."""
    import pandas as pd

    times = {row: table.runs[row].timing for row in table.rows}
    if not any(times.values()):
        return None
    cols = list(dict.fromkeys(k for t in times.values() for k in t if k not in ("decode", "total")))
    cols = (["decode"] if any("decode" in t for t in times.values()) else []) + cols
    cols += ["total"] if any("total" in t for t in times.values()) else []
    df = pd.DataFrame([[times[r].get(c, math.nan) for c in cols] for r in table.rows],
                      index=pd.Index(table.rows, name="Method"), columns=cols)
    return df


TIMING_CAPTION = ("Evaluation time in seconds per stage (video decoding, each metric; total = the whole "
                  "`kdbench eval`), as recorded in each run's metrics.json.")


def timing_markdown(df: pd.DataFrame) -> str:
    disp = df.map(lambda v: DASH if not math.isfinite(v) else f"{v:.1f}")
    return f"**{TIMING_CAPTION}**\n\n{disp.to_markdown(disable_numparse=True)}\n"


def timing_html(df: pd.DataFrame) -> str:
    esc = _html.escape
    head = "".join(f"<th>{esc(str(c))}</th>" for c in df.columns)
    body = "".join(f"<tr><th>{esc(str(r))}</th>" + "".join(
        f"<td>{DASH if not math.isfinite(v) else f'{v:.1f}'}</td>" for v in row) + "</tr>"
        for r, row in zip(df.index, df.to_numpy(), strict=True))
    return (f'<table class="results timing"><caption>{esc(TIMING_CAPTION)}</caption><thead><tr><th>Method</th>'
            f"{head}</tr></thead><tbody>{body}</tbody></table>")
