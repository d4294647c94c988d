"""The paper comparison: the KDTalker paper's Table 1 (:mod:`reports.paper`) next to a :class:`ReportTable`'s
measured values (``paper | measured | delta``, as a DataFrame, Markdown, LaTeX or HTML), and Table 1 as
reproduced (:func:`table1_markdown`, every row of the paper whether it ran or not)."""

from __future__ import annotations

import html as _html
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import paper
from .cells import DASH, _fmt, _tex_escape
from .runs import RunResult

if TYPE_CHECKING:
    import pandas as pd

    from .table import ReportTable

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
