"""Where the evaluation time went: seconds per evaluation stage (decode, each metric, total) of a
:class:`ReportTable`'s runs, as a DataFrame, Markdown or HTML."""

from __future__ import annotations

import html as _html
import math
from typing import TYPE_CHECKING

from .cells import DASH

if TYPE_CHECKING:
    import pandas as pd

    from .table import ReportTable

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
