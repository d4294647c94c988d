"""The KDTalker paper's published numbers (kdbench's own transcription) and comparisons with them.

``reports/data/paper_table1_hdtf.csv`` is Table 1 (HDTF, first 8 s of 349 clips, first frame as
reference, FPS on one RTX 4090); ``reports/data/paper_table6_ddim_steps.csv`` is Table 6 (DDIM
sampling steps of KDTalker). Both are copies of ``shared/paper/*.csv`` kept inside the package so a
report can be compared with the paper without the paper folder. Diversity in Table 1 is KDTalker's
own logit-std definition (see ``metrics/diversity.py``), not degrees.

Only pandas is imported (lazily); no torch, no matplotlib.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

TABLE1_COLUMNS: tuple[str, ...] = ("LSE-C", "LSE-D", "Diversity", "FID", "CPBD", "CSIM", "FPS")
"""Table 1's metric columns, in the paper's order."""

TABLE1_HIGHER_IS_BETTER: dict[str, bool] = {
    "LSE-C": True, "LSE-D": False, "Diversity": True, "FID": False, "CPBD": True, "CSIM": True, "FPS": True,
}
"""The arrows in Table 1's header (used only when a run does not state ``higher_is_better``)."""

COLUMN_KEYS: dict[str, str] = {
    "LSE-C": "lse_c", "LSE-D": "lse_d", "Diversity": "diversity", "FID": "fid",
    "CPBD": "cpbd", "CSIM": "csim", "FPS": "fps",
}
"""Table 1 column name -> the key used in the CSV transcriptions (and in sweep tables)."""

KEY_COLUMNS: dict[str, str] = {v: k for k, v in COLUMN_KEYS.items()}

GT_ROW = "Real Video"
"""Table 1's ground-truth row."""

TABLE1_CAPTION = ("KDTalker paper, Table 1: HDTF, first 8 s of 349 clips, first frame as reference; "
                  "FPS on one RTX 4090.")
TABLE6_CAPTION = "KDTalker paper, Table 6: DDIM sampling steps (KDTalker on HDTF)."

TABLE6_COLUMNS: tuple[str, ...] = ("lse_c", "lse_d", "fid", "cpbd", "csim")
"""Table 6's metric columns (CSV keys), in the paper's order."""

TABLE6_PARAM = {"ddim_steps": "steps"}
"""Sweep parameter name -> the first column of the paper table that varies it."""


def _read_csv(name: str) -> pd.DataFrame:
    import pandas as pd

    with resources.files("reports").joinpath("data", name).open("r", encoding="utf-8") as f:
        return pd.read_csv(f)


def paper_table1() -> pd.DataFrame:
    """Table 1 as a DataFrame: index = method row (``"Real Video"``, ``"KDTalker"``, ...), columns =
    ``"Venue"`` followed by :data:`TABLE1_COLUMNS` (floats)."""
    df = _read_csv("paper_table1_hdtf.csv").set_index("method")
    df.index.name = "method"
    df = df.rename(columns={"venue": "Venue", **KEY_COLUMNS})
    return df[["Venue", *TABLE1_COLUMNS]].astype({c: float for c in TABLE1_COLUMNS})


def paper_table6() -> pd.DataFrame:
    """Table 6 as a DataFrame: index = DDIM steps (int, named ``steps``), columns = :data:`TABLE6_COLUMNS`."""
    df = _read_csv("paper_table6_ddim_steps.csv").set_index("steps")
    return df[list(TABLE6_COLUMNS)].astype(float)


def paper_sweep_table(param: str) -> pd.DataFrame | None:
    """The paper table that sweeps ``param`` (only ``ddim_steps`` -> Table 6), or None."""
    if param in TABLE6_PARAM or param == "steps":
        return paper_table6()
    return None
