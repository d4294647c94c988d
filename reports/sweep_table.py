"""A parameter sweep (one run per value, e.g. KDTalker's ``ddim_steps``) in the layout of the paper's Table 6,
and its comparison with the paper's table for the same parameter."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from . import paper
from .cells import DASH, _fmt, run_columns
from .runs import RunResult, as_run, finite

if TYPE_CHECKING:
    import pandas as pd

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
