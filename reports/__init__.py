"""Reports for kdbench results: paper-style tables, figures, HTML pages and CI drift checks.

Importing this package is cheap: it imports neither torch nor matplotlib (matplotlib is imported
only when a figure is drawn) nor pandas (imported when a table is built). Main entry points:

* :func:`reports.runs.load_run` — read a run folder (``metrics.json``, ``config.json``, ``env.json``);
* :func:`reports.table.build_table` — the methods x metrics table in Table 1's layout, with
  Markdown/LaTeX/CSV/HTML output (its cells: :mod:`reports.cells`); :func:`reports.paper_table.paper_comparison`;
  :func:`reports.sweep_table.sweep_table`; :func:`reports.timing_table.timing_frame`;
* :func:`reports.cli.write_report` — everything ``kdbench report`` writes;
* :func:`reports.stats.bootstrap_ci` — the 95% CIs over clips; :func:`reports.compare.compare_pair` — paired
  A − B with CI and Wilcoxon / paired-bootstrap tests; :func:`reports.gallery.build_gallery` — the video gallery;
* :func:`reports.check.check` — ``kdbench check`` (exit 0 ok / 1 drift / 2 incomparable);
  import it from :mod:`reports.check` (the name is also the module's).
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "load_run": "reports.runs",
    "RunResult": "reports.runs",
    "build_table": "reports.table",
    "ReportTable": "reports.table",
    "paper_comparison": "reports.paper_table",
    "per_clip_frame": "reports.table",
    "sweep_table": "reports.sweep_table",
    "sweep_comparison": "reports.sweep_table",
    "write_report": "reports.cli",
    "compare_pair": "reports.compare",
    "bootstrap_ci": "reports.stats",
    "build_gallery": "reports.gallery",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'reports' has no attribute {name!r}")
