"""The report folder: ``kdbench report`` writes and removes files only inside ``--out``.

The default ``--out`` of one run is ``RUN_DIR/report``, inside a folder that may come from someone else, so
what lies there is input too: a symbolic link where the report writes (``table.md``, ``figures/``,
``gallery/<row>/<clip>.mp4``, or the report folder itself) would send a write, or the removal of an old
gallery file, outside the folder. :func:`check_out_dir` refuses such a folder before anything is written, and
:func:`inside` checks each destination as it is used. Only the standard library is imported here.
"""

from __future__ import annotations

import os
from pathlib import Path

from kdbench.errors import KdbenchError

REPORT_FILES = ("table.md", "table.tex", "table.csv", "paper_comparison.csv", "other_outputs.csv",
                "comparison.csv", "timing.csv", "report.html", "per_clip.parquet")
"""Files ``kdbench report`` writes at the top of the report folder."""
REPORT_DIRS = ("figures", "gallery")
"""Folders it writes into (and, for ``gallery``, replaces files in)."""


def _refuse(out: Path, link: Path) -> KdbenchError:
    return KdbenchError(f"{link} is a symbolic link (to {os.readlink(link)}): the report writes only inside its "
                        f"folder {out}, so it will not write through a link; remove the link or choose another --out")


def check_out_dir(out: str | Path, default: bool = False) -> None:
    """:class:`KdbenchError` when a path the report writes under ``out`` is a symbolic link (followed, it could
    lead outside ``out``). ``default``: ``out`` was not given by the user (``RUN_DIR/report``), so ``out`` itself
    must not be a link either."""
    out = Path(out)
    if default and out.is_symlink():
        raise _refuse(out.parent, out)
    if not out.is_dir():
        return
    for name in (*REPORT_FILES, *REPORT_DIRS):
        if (out / name).is_symlink():
            raise _refuse(out, out / name)
    for name in REPORT_DIRS:
        for folder, dirs, files in os.walk(out / name, followlinks=False):
            for entry in (*dirs, *files):
                if (Path(folder) / entry).is_symlink():
                    raise _refuse(out, Path(folder) / entry)


def inside(out: str | Path, path: str | Path) -> Path:
    """``path`` when it (its folder resolved, symlinks followed) lies inside ``out`` and is not itself a link,
    else :class:`KdbenchError`: the last check before a file of the report is written or replaced."""
    out, path = Path(out), Path(path)
    base, folder = out.resolve(), path.parent.resolve()
    if path.is_symlink():
        raise _refuse(out, path)
    if not folder.is_relative_to(base):
        raise KdbenchError(f"refusing to write {path}: its folder resolves to {folder}, outside the report folder "
                           f"{base}")
    return path
