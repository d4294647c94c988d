"""Is method A better than B? Paired comparisons of two evaluated runs over the clips both scored.

:func:`compare_runs` gives, per Table 1 column, the paired difference ``A - B`` of the statistic behind
the aggregate (clip mean; pooled frames/seconds for FPS; pooled Fréchet distance for FID), its 95%
bootstrap CI (the same resampled clips for both runs), and a paired test: Wilcoxon signed-rank on the
per-clip differences (``scipy.stats.wilcoxon``), or for FID the paired bootstrap p-value; with the
number of clips used. Runs on different clip sets (``manifest_id``) are refused, as ``kdbench check``
refuses them. See :mod:`reports.stats` for the procedures.
"""

from __future__ import annotations

import html as _html
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from kdbench.errors import KdbenchError

from . import paper, stats
from .cells import DASH, _tex_escape, clip_values, fps_clip_parts, run_columns
from .runs import RunResult

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ("metric", "n", "A", "B", "A - B", "ci_lo", "ci_hi", "test", "p", "better")


def comparable(a: RunResult, b: RunResult) -> None:
    """Raise :class:`KdbenchError` naming why ``a`` and ``b`` cannot be compared clip by clip."""
    if a.manifest_id != b.manifest_id:
        raise KdbenchError(
            f"cannot compare {a.label!r} with {b.label!r}: different clip sets (manifest_id {a.manifest_id!r} "
            f"vs {b.manifest_id!r}); evaluate both on the same dataset version (as `kdbench check` requires)")


def _hib(run: RunResult, metric: str, output: str, column: str) -> bool | None:
    meta = (((run.metrics.get(metric) or {}).get("info") or {}).get("outputs") or {}).get(output) or {}
    if "higher_is_better" in meta:
        return meta["higher_is_better"]
    return paper.TABLE1_HIGHER_IS_BETTER.get(column.split(" (")[0])


def compare_pair(a: RunResult, b: RunResult, resamples: int = stats.DEFAULT_RESAMPLES,
                 seed: int = stats.DEFAULT_SEED) -> pd.DataFrame:
    """One row per Table 1 column both runs evaluated: ``metric, n, A, B, A - B, ci_lo, ci_hi, test, p,
    better`` (``better``: the label of the run whose value is better when the CI excludes 0, else "")."""
    import pandas as pd

    comparable(a, b)
    ca, cb = run_columns(a), run_columns(b)
    rows: list[dict[str, Any]] = []
    for col in [c for c in ca if c in cb]:
        (ma, oa), (mb, ob) = ca[col], cb[col]
        ea, eb = a.metrics.get(ma) or {}, b.metrics.get(mb) or {}
        rec: dict[str, Any] = {"metric": col, "n": 0, "A": math.nan, "B": math.nan, "A - B": math.nan,
                               "ci_lo": math.nan, "ci_hi": math.nan, "test": "", "p": math.nan, "better": ""}
        if ea.get("status", "ok") != "ok" or eb.get("status", "ok") != "ok":
            rec["test"] = "skipped in " + " and ".join(
                r.label for r, e in ((a, ea), (b, eb)) if e.get("status", "ok") != "ok")
            rows.append(rec)
            continue
        if ma == "fps" and (a.copies_input or b.copies_input):
            rec["test"] = "copies its input: no FPS"
            rows.append(rec)
            continue
        res = None
        if ma == "fid" and mb == "fid":
            from .fid_ci import paired_fid

            res, why = paired_fid(a, b, resamples=resamples, seed=seed)
            if res is None:
                rec["test"] = why
        elif ma == "fps" and oa == "fps":
            pa, pb = fps_clip_parts(a, ma), fps_clip_parts(b, mb)
            shared = [c for c in pa if c in pb]
            if shared:
                arr = np.array([[*pa[c], *pb[c]] for c in shared])
                res = stats.paired_ratio(*arr.T, resamples=resamples, seed=seed)
        if res is None and not rec["test"]:
            va, vb = clip_values(a, ma, oa), clip_values(b, mb, ob)
            shared = [c for c in va if c in vb]
            if not shared:
                rec["test"] = "no clip scored by both"
                rows.append(rec)
                continue
            res = stats.paired_mean([va[c] for c in shared], [vb[c] for c in shared], resamples, seed)
        if res is not None and res.n < 2:  # one clip: a difference, but no interval and no test
            rec.update({"n": res.n, "A": res.mean_a, "B": res.mean_b, "A - B": res.diff,
                        "test": "1 shared clip: no CI, no test" if res.n else "no clip scored by both"})
        elif res is not None:
            rec.update({"n": res.n, "A": res.mean_a, "B": res.mean_b, "A - B": res.diff, "ci_lo": res.lo,
                        "ci_hi": res.hi, "test": res.test, "p": res.p_value})
            hib = _hib(a, ma, oa, col)
            if hib is not None and res.n and (res.lo > 0 or res.hi < 0):
                rec["better"] = a.label if (res.lo > 0) == hib else b.label
        rows.append(rec)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def compare_runs(runs: Sequence[RunResult], baseline: str, resamples: int = stats.DEFAULT_RESAMPLES,
                 seed: int = stats.DEFAULT_SEED, labels: Sequence[str] | None = None) -> dict[str, pd.DataFrame]:
    """Every run against the ``baseline`` run (matched by row label, run folder name or method):
    ``{label: compare_pair(run, baseline)}``."""
    labels = list(labels or [r.label for r in runs])
    base = find_run(runs, baseline, labels)
    return {lab: compare_pair(r, base, resamples, seed) for lab, r in zip(labels, runs, strict=True)
            if r is not base}


def find_run(runs: Sequence[RunResult], key: str, labels: Sequence[str] | None = None) -> RunResult:
    """The run whose row label, folder name, path or method is ``key`` (case-insensitive)."""
    labels = list(labels or [r.label for r in runs])
    k = str(key).rstrip("/").lower()
    for lab, r in zip(labels, runs, strict=True):
        names = {lab.lower(), r.label.lower(), r.name.lower(), r.method.lower()}
        if r.path is not None:
            names.add(str(r.path).rstrip("/").lower())
        if k in names:
            return r
    raise KdbenchError(f"no run {key!r} among the reported runs ({', '.join(labels)}); name a row label, a run "
                       "folder or a method")


def _p_text(p: float) -> str:
    if p is None or not math.isfinite(p):
        return DASH
    return "<0.001" if p < 1e-3 else f"{p:.3f}"


def pair_display(df: pd.DataFrame, precision: int = 3) -> pd.DataFrame:
    """Strings for a :func:`compare_pair` frame: ``A − B [lo, hi]``, test, p, n."""
    import pandas as pd

    def f(v: float, signed: bool = False) -> str:
        return DASH if v is None or not math.isfinite(v) else (f"{v:+.{precision}f}" if signed else
                                                                f"{v:.{precision}f}")

    out = []
    for _, r in df.iterrows():
        diff = DASH if not math.isfinite(r["A - B"]) else f(r["A - B"], True)
        if math.isfinite(r["A - B"]) and math.isfinite(r["ci_lo"]):
            diff += f" [{f(r['ci_lo'], True)}, {f(r['ci_hi'], True)}]"
        out.append([r["metric"], f(r["A"]), f(r["B"]), diff, r["test"] or DASH, _p_text(r["p"]),
                    str(int(r["n"])), r["better"] or DASH])
    return pd.DataFrame(out, columns=["Metric", "A", "B", "A − B [95% CI]", "test", "p", "clips", "better"])


def pair_caption(a_label: str, b_label: str, resamples: int, seed: int) -> str:
    return (f"Paired comparison, A = {a_label}, B = {b_label}, over the clips both scored: A − B with its "
            f"95% paired-bootstrap CI ({resamples:,} resamples, seed {seed}); test: Wilcoxon signed-rank on the "
            "per-clip differences (FID: paired bootstrap); better: the run whose value is better when the CI "
            "excludes 0.")


def pair_markdown(df: pd.DataFrame, a_label: str, b_label: str, resamples: int, seed: int,
                  precision: int = 3) -> str:
    disp = pair_display(df, precision)
    return (f"**{pair_caption(a_label, b_label, resamples, seed)}**\n\n"
            + disp.to_markdown(index=False, disable_numparse=True) + "\n")


def pair_latex(df: pd.DataFrame, a_label: str, b_label: str, resamples: int, seed: int,
               precision: int = 3, label: str = "tab:kdbench-compare") -> str:
    disp = pair_display(df, precision).map(_tex_escape)
    disp.columns = [_tex_escape(c) for c in disp.columns]
    return disp.style.hide(axis="index").to_latex(
        hrules=True, caption=_tex_escape(pair_caption(a_label, b_label, resamples, seed)), label=label,
        position_float="centering", environment="table", column_format="l" + "r" * (disp.shape[1] - 1))


def pair_html(df: pd.DataFrame, a_label: str, b_label: str, resamples: int, seed: int, precision: int = 3) -> str:
    esc = _html.escape
    disp = pair_display(df, precision)
    head = "".join(f"<th>{esc(c)}</th>" for c in disp.columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(str(v))}</td>" for v in row) + "</tr>"
                   for row in disp.itertuples(index=False))
    return (f'<table class="results compare"><caption>{esc(pair_caption(a_label, b_label, resamples, seed))}'
            f"</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
