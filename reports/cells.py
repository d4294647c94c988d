"""What every kdbench table is made of: :class:`Cell`, how runs' metrics become cells and columns, and the
shared formatters (:func:`_fmt` for a number or "—", :func:`_tex_escape` for LaTeX).

A table module (:mod:`reports.table` for Table 1's layout, :mod:`reports.paper_table`, :mod:`reports.sweep_table`,
:mod:`reports.timing_table`) builds on these; this module imports none of them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import paper
from .runs import RunResult, finite

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
# Shared formatters
# ---------------------------------------------------------------------------------------------
def _tex_escape(s: str) -> str:
    """``s`` with LaTeX's special characters escaped (and ±, —, −, Δ in math/LaTeX spelling)."""
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


def _fmt(v: float, p: int, signed: bool = False) -> str:
    """``v`` with ``p`` decimals (a sign when ``signed``), or "—" for None/NaN."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return DASH
    return f"{v:+.{p}f}" if signed else f"{v:.{p}f}"
