"""Report figures (matplotlib, Agg): per-clip distributions per metric, FPS per method, and the
motion heatmaps of :mod:`reports.heatmap` when that module is present.

Every figure is a PNG plus an ``.npz`` holding exactly the arrays drawn, so tests (and CI) check
the arrays rather than pixels. The arrays are computed by pure functions (:func:`distribution_data`,
:func:`fps_data`) that do not import matplotlib; matplotlib is imported only when drawing, through
its object-oriented API on an Agg canvas (no pyplot, no global backend switch).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import paper
from .cells import order_runs, row_labels, run_columns
from .runs import RunResult, as_run, finite

GT_COLOR = "#7f7f7f"
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


@dataclass
class FigureFile:
    """A written figure: ``png`` (and ``npz`` with its arrays, when it has any)."""

    name: str
    title: str
    png: Path
    npz: Path | None = None
    caption: str = ""


def _loaded(runs: Sequence[RunResult | dict | str | Path]) -> tuple[list[RunResult], list[str]]:
    loaded = order_runs([as_run(r) for r in runs])
    return loaded, row_labels(loaded)


# ---------------------------------------------------------------------------------------------
# Arrays
# ---------------------------------------------------------------------------------------------
def distribution_data(runs: Sequence[RunResult | dict | str | Path],
                      columns: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Per-clip values behind the distribution figure, as flat aligned arrays.

    Returns ``{"row": str[N], "column": str[N], "clip_id": str[N], "value": float64[N]}``: one entry
    per (method row, Table 1 column, clip) with a finite per-clip value, in row order, then column
    order (Table 1's), then the run's clip order. Set-level metrics without per-clip values (FID)
    contribute nothing, nor does the FPS of a row that copies its input.
    """
    loaded, labels = _loaded(runs)
    cols_by_row = {lab: run_columns(r) for lab, r in zip(labels, loaded, strict=True)}
    if columns is None:
        present = set().union(*[set(c) for c in cols_by_row.values()]) if cols_by_row else set()
        columns = [c for c in paper.TABLE1_COLUMNS if c in present]
    rows, cols, clips, values = [], [], [], []
    for lab, run in zip(labels, loaded, strict=True):
        for col in columns:
            if col not in cols_by_row[lab]:
                continue
            metric, output = cols_by_row[lab][col]
            entry = run.metrics.get(metric) or {}
            if entry.get("status", "ok") != "ok" or (metric == "fps" and run.copies_input):
                continue  # a row that copies its input has no FPS (it would time a copy)
            for clip_id, record in (entry.get("per_clip") or {}).items():
                v = finite((record or {}).get(output))
                if v is None:
                    continue
                rows.append(lab)
                cols.append(col)
                clips.append(str(clip_id))
                values.append(v)
    return {"row": np.array(rows, dtype=str), "column": np.array(cols, dtype=str),
            "clip_id": np.array(clips, dtype=str), "value": np.array(values, dtype=np.float64)}


def fps_data(runs: Sequence[RunResult | dict | str | Path],
             include_gt: bool = False) -> dict[str, np.ndarray]:
    """FPS per method: ``row`` str[M], ``mean``/``std`` float64[M] (NaN std when absent), ``n`` int[M],
    ``paper`` float64[M] (Table 1's FPS of the row, NaN if none) and the per-clip values as
    ``clip_row`` str[K], ``clip_value`` float64[K]. The GT row is left out unless ``include_gt`` (its
    "FPS" is the video's frame rate, not a generation speed); rows that copy their input
    (:attr:`RunResult.copies_input`, e.g. ``static``) are always left out: they time a copy."""
    loaded, labels = _loaded(runs)
    t1 = paper.paper_table1()
    rows, means, stds, ns, pap, crow, cval = [], [], [], [], [], [], []
    for lab, run in zip(labels, loaded, strict=True):
        if (run.is_gt and not include_gt) or run.copies_input:
            continue
        cols = run_columns(run)
        if "FPS" not in cols:
            continue
        metric, output = cols["FPS"]
        entry = run.metrics.get(metric) or {}
        if entry.get("status", "ok") != "ok":
            continue
        agg = (entry.get("aggregate") or {}).get(output) or {}
        mean = finite(agg.get("mean"))
        if mean is None:
            continue
        rows.append(lab)
        means.append(mean)
        std = finite(agg.get("std"))
        stds.append(np.nan if std is None else std)
        ns.append(int(agg.get("n") or 0))
        prow = run.paper_row if run.paper_row in t1.index else None
        pap.append(float(t1.loc[prow, "FPS"]) if prow else np.nan)
        for record in (entry.get("per_clip") or {}).values():
            v = finite((record or {}).get(output))
            if v is not None:
                crow.append(lab)
                cval.append(v)
    return {"row": np.array(rows, dtype=str), "mean": np.array(means, dtype=np.float64),
            "std": np.array(stds, dtype=np.float64), "n": np.array(ns, dtype=np.int64),
            "paper": np.array(pap, dtype=np.float64), "clip_row": np.array(crow, dtype=str),
            "clip_value": np.array(cval, dtype=np.float64)}


# ---------------------------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------------------------
def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def fit_suptitle(fig, text: str, fontsize: float):
    """``fig.suptitle(text)`` wrapped onto as many lines as it takes to fit the figure's width (a one-panel
    figure is narrower than a long title; matplotlib would cut it on both sides). Returns the Text."""
    import textwrap

    room = fig.get_figwidth() * fig.dpi * 0.96  # pixels
    renderer = fig.canvas.get_renderer()
    title = fig.suptitle(text, fontsize=fontsize)
    width = title.get_window_extent(renderer).width
    n = len(text)
    while width > room and n > 8:
        n = min(n - 1, int(n * room / width))
        title.set_text(textwrap.fill(text, n))
        width = title.get_window_extent(renderer).width
    return title


def _colors(labels: Sequence[str], gt: set[str]) -> list[str]:
    out, k = [], 0
    for lab in labels:
        if lab in gt:
            out.append(GT_COLOR)
        else:
            out.append(PALETTE[k % len(PALETTE)])
            k += 1
    return out


def plot_distributions(runs: Sequence[RunResult | dict | str | Path], out_dir: str | Path,
                       name: str = "per_clip_distributions") -> FigureFile | None:
    """Box plot + jittered strip of the per-clip values, one panel per Table 1 column.

    Writes ``<name>.png`` and ``<name>.npz`` (the arrays of :func:`distribution_data`). None when no
    run has per-clip values."""
    loaded, labels = _loaded(runs)
    data = distribution_data(loaded)
    if data["value"].size == 0:
        return None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = [c for c in paper.TABLE1_COLUMNS if c in set(data["column"].tolist())]
    gt = {lab for lab, r in zip(labels, loaded, strict=True) if r.is_gt}
    rows = [lab for lab in labels if lab in set(data["row"].tolist())]
    colors = dict(zip(rows, _colors(rows, gt), strict=True))
    ncols = min(3, len(columns))
    nrows = (len(columns) + ncols - 1) // ncols
    fig = _new_figure(4.2 * ncols, 0.6 + 2.9 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    rng = np.random.default_rng(0)
    hib = paper.TABLE1_HIGHER_IS_BETTER
    for k, col in enumerate(columns):
        ax = axes[k // ncols][k % ncols]
        groups = [data["value"][(data["column"] == col) & (data["row"] == r)] for r in rows]
        present = [i for i, g in enumerate(groups) if g.size]
        bp = ax.boxplot([groups[i] for i in present], positions=present, widths=0.55,
                        orientation="horizontal", patch_artist=True, showfliers=False,
                        medianprops={"color": "black"})
        for patch, i in zip(bp["boxes"], present, strict=True):
            patch.set_facecolor(colors[rows[i]])
            patch.set_alpha(0.35)
        for i in present:
            jitter = rng.uniform(-0.15, 0.15, groups[i].size)
            ax.scatter(groups[i], i + jitter, s=14, color=colors[rows[i]], zorder=3, edgecolor="white",
                       linewidth=0.4)
        for i, g in enumerate(groups):
            if not g.size:
                ax.text(0.5, i, "no per-clip values",
                        transform=ax.get_yaxis_transform(), ha="center", va="center", fontsize=8,
                        color="gray", style="italic")
        ax.set_yticks(range(len(rows)), [f"{r} (n={g.size})" for r, g in zip(rows, groups, strict=True)])
        ax.set_ylim(len(rows) - 0.5, -0.5)
        arrow = {True: " ↑ (higher is better)", False: " ↓ (lower is better)"}.get(hib.get(col), "")
        ax.set_title(col + arrow, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    for k in range(len(columns), nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    fit_suptitle(fig, "Per-clip values (n = clips with a value, per method and metric; box = quartiles, "
                 "dots = clips)", fontsize=11)
    png, npz = out_dir / f"{name}.png", out_dir / f"{name}.npz"
    fig.savefig(png)
    np.savez(npz, **data)
    return FigureFile(name, "Per-clip distributions", png, npz,
                      "Per-clip values of each metric per method (box: quartiles and median; dots: clips; "
                      "n after each method = its clips with a value in that panel). "
                      "Set-level metrics (FID) have no per-clip values.")


def plot_fps(runs: Sequence[RunResult | dict | str | Path], out_dir: str | Path, name: str = "fps",
             compare_paper: bool = False) -> FigureFile | None:
    """Horizontal bars of mean FPS (± std) per method with per-clip dots; a dashed line at 25 FPS
    (real time) and, with ``compare_paper``, Table 1's FPS as diamonds. Writes PNG + npz."""
    data = fps_data(runs)
    if data["row"].size == 0:
        return None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = data["row"].tolist()
    colors = _colors(rows, set())
    fig = _new_figure(6.4, 1.5 + 0.6 * len(rows))
    ax = fig.subplots()
    y = np.arange(len(rows))
    std = np.nan_to_num(data["std"], nan=0.0)
    ax.barh(y, data["mean"], xerr=std, color=colors, alpha=0.6, capsize=3, height=0.6, label="mean ± std")
    for i, r in enumerate(rows):
        v = data["clip_value"][data["clip_row"] == r]
        ax.scatter(v, np.full(v.size, i), s=12, color="black", zorder=3,
                   label="clips" if i == 0 else None)
        label = f"{data['mean'][i]:.2f}" + (f" ± {std[i]:.2f}" if data["n"][i] > 1 else "") + " FPS"
        right = [data["mean"][i] + std[i], *v.tolist()]
        if compare_paper and np.isfinite(data["paper"][i]):
            right.append(data["paper"][i])
        ax.text(max(right), i, "  " + label, va="center", ha="left", fontsize=8, color="black",
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 1})
    if compare_paper and np.isfinite(data["paper"]).any():
        ok = np.isfinite(data["paper"])
        ax.scatter(data["paper"][ok], y[ok], marker="D", s=36, color="white", edgecolor="black", zorder=4,
                   label="paper (RTX 4090)")
    ax.axvline(25, color="gray", linestyle="--", linewidth=1, label="real time (25 FPS)")
    ax.set_yticks(y, rows)
    ax.set_ylim(len(rows) - 0.4, -0.6)
    ax.set_xlabel("frames per second (higher is better)")
    ax.set_xlim(0, max(30.0, float(np.nanmax(np.concatenate([data["mean"] + std, data["clip_value"],
                                                             data["paper"]]))) * 1.3))
    ax.grid(axis="x", alpha=0.3)
    fig.legend(fontsize=8, loc="outside lower center", ncols=4, frameon=False)
    ax.set_title("Inference speed per method", fontsize=11)
    png, npz = out_dir / f"{name}.png", out_dir / f"{name}.npz"
    fig.savefig(png)
    np.savez(npz, **data)
    return FigureFile(name, "FPS per method", png, npz,
                      "Generation speed per method: bars = mean ± std over clips, dots = clips"
                      + ("; diamonds = the paper's Table 1 (one RTX 4090)." if compare_paper else "."))


POSE_METRICS = ("diversity", "pose_offline")
"""Metrics whose per-clip records carry per-frame ``yaw_deg``/``pitch_deg``/``roll_deg``."""
POSE_ESTIMATORS = {"diversity": "Hopenet (diversity metric)",
                   "pose_offline": "dlib 68 landmarks + solvePnP (pose_offline metric)"}
"""The head-pose estimator behind each pose metric, named in the heatmap's title and caption."""


def _pose_heatmap(mod: Any, runs: Sequence[RunResult], out_dir: Path, options: dict[str, Any]) -> tuple[
        list[Path], str]:
    """Use ``reports.heatmap``'s pose API: ``angles_from_metrics(doc, metric)`` per run and
    ``write_pose_heatmaps({row: angles}, png, **options)``. Returns (PNGs, pose metric used)."""
    kind = options.pop("kind", None)
    if kind not in (None, "pose"):
        raise ValueError(f"reports.heatmap draws pose heatmaps only (asked for {kind!r})")
    loaded = order_runs(list(runs))
    labels = row_labels(loaded)

    def angles(run: RunResult, metric: str) -> list[np.ndarray]:
        entry = run.metrics.get(metric) or {}
        if entry.get("status", "ok") != "ok":
            return []
        try:
            return list(mod.angles_from_metrics(run.doc, metric=metric))
        except (KeyError, ValueError, TypeError):
            return []

    best, best_angles = None, {}
    for metric in POSE_METRICS:  # the pose source that covers the most runs (Hopenet first)
        got = {lab: a for lab, r in zip(labels, loaded, strict=True) if (a := angles(r, metric))}
        if len(got) > len(best_angles):
            best, best_angles = metric, got
    if not best_angles:
        return [], ""
    png = out_dir / "motion_heatmap.png"
    gt = next((lab for lab, r in zip(labels, loaded, strict=True) if r.is_gt and lab in best_angles), None)
    options.setdefault("title", f"Head motion; pose estimator: {POSE_ESTIMATORS.get(best, best)}")
    mod.write_pose_heatmaps(best_angles, png, gt=gt, **options)
    return [png], best


def heatmap_figures(runs: Sequence[RunResult], out_dir: str | Path, **options: Any) -> tuple[
        list[FigureFile], list[str]]:
    """Motion heatmaps from :mod:`reports.heatmap` if that module exists (it is written separately).

    Uses ``reports.heatmap.draw_heatmaps(run_dirs, out_dir, **options) -> [png paths]`` when the
    module has it, else its pose API (``angles_from_metrics`` + ``write_pose_heatmaps``) on the
    per-frame head poses of the ``diversity`` (or ``pose_offline``) metric. An ``.npz`` next to a PNG
    is picked up as its arrays. Returns (figures, notes): a missing module, missing pose data or a
    failure becomes a note, never an exception."""
    if importlib.util.find_spec("reports.heatmap") is None:
        return [], ["motion heatmaps: not drawn (reports/heatmap.py is not present)"]
    out_dir = Path(out_dir)
    source = ""
    try:
        mod = importlib.import_module("reports.heatmap")
        if hasattr(mod, "draw_heatmaps"):
            run_dirs = [r.path for r in runs if r.path is not None]
            paths = mod.draw_heatmaps(run_dirs, out_dir, **options)
        elif hasattr(mod, "write_pose_heatmaps") and hasattr(mod, "angles_from_metrics"):
            out_dir.mkdir(parents=True, exist_ok=True)
            paths, source = _pose_heatmap(mod, runs, out_dir, dict(options))
        else:
            return [], ["motion heatmaps: reports.heatmap has neither draw_heatmaps() nor "
                        "write_pose_heatmaps()"]
    except Exception as e:  # a figure must not abort the report; say why it is missing
        return [], [f"motion heatmaps failed: {type(e).__name__}: {e}"]
    if isinstance(paths, (str, Path)):
        paths = [paths]
    caption = ("Head-motion heatmaps: yaw x pitch of every frame relative to the clip's first frame, "
               "fraction of frames per bin, shared log colour scale"
               + (f"; head pose from {POSE_ESTIMATORS.get(source, source + ' metric')}" if source else "")
               + "; each panel's title gives its clip and frame counts.")
    figs = []
    for p in paths or []:
        p = Path(p)
        if p.suffix.lower() != ".png" or not p.is_file():
            continue
        npz = p.with_suffix(".npz")
        figs.append(FigureFile(p.stem, "Motion heatmap", p, npz if npz.is_file() else None, caption))
    if not figs:
        return [], ["motion heatmaps: not drawn (no run has per-frame head poses: evaluate with the "
                    "diversity or pose_offline metric)"]
    return figs, []


def all_figures(runs: Sequence[RunResult], out_dir: str | Path, compare_paper: bool = False,
                heatmap_options: dict[str, Any] | None = None) -> tuple[list[FigureFile], list[str]]:
    """Every report figure: heatmaps (if available), per-clip distributions, FPS. Returns (figures, notes)."""
    figs, notes = heatmap_figures(runs, out_dir, **(heatmap_options or {}))
    for fig in (plot_distributions(runs, out_dir), plot_fps(runs, out_dir, compare_paper=compare_paper)):
        if fig is not None:
            figs.append(fig)
    return figs, notes
