"""``kdbench report`` and ``kdbench check`` subcommands (wired into ``kdbench/cli.py``).

Each ``add_*_parser(subparsers)`` registers one subcommand whose ``func(args) -> int`` is the exit
code. :func:`write_report` is the library entry point behind ``kdbench report``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kdbench.errors import KdbenchError

from .stats import DEFAULT_RESAMPLES

FORMATS = ("md", "tex", "csv", "html")

REPORT_EPILOG = """\
examples:
  kdbench report runs/real runs/kdtalker --out report/
  kdbench report runs/* --format md,html --compare-paper
  kdbench report runs/kdtalker --format csv --no-figures
  kdbench report --compare runs/kdtalker runs/sadtalker --out cmp/
  kdbench report runs/* --baseline sadtalker --ci 2000 --seed 1
  kdbench report runs/* --ci none --no-gallery

writes, under --out (default: RUN_DIR/report for one run, ./kdbench-report for several):
  table.md, table.tex, table.csv   Table 1 layout: GT row first, best per column in bold,
                                   value [95% CI over clips] (--ci none: mean ± std), n, failures
                                   counted, skipped metrics footnoted; rows that copy their input
                                   (real, static) show no FPS
  report.html                      page with the table, embedded figures and the video gallery
                                   (gallery/: videos + contact sheets, relative links, no server)
  comparison.csv                   with --compare/--baseline: A - B, CI, Wilcoxon p, clips used
  timing.csv                       when metrics.json records per-metric seconds
  per_clip.parquet                 every per-clip value (long format)
  paper_comparison.csv             with --compare-paper: paper, measured and delta per cell
  figures/*.png + *.npz            per-clip distributions, FPS per method, motion heatmaps
"""

CHECK_EPILOG = """\
examples:
  kdbench run --method static --dataset hdtf-mini --out runs/static
  kdbench eval runs/static --metrics cpbd,pose_offline,csim_dlib,fps
  kdbench check runs/static --baseline ci/baselines/static-hdtf-mini.json   # the committed baseline
  kdbench check runs/ci/metrics.json --baseline baseline.json --tolerance tol.toml --per-clip
  kdbench check runs/ci --baseline baseline.json --json > check.json

exit status:
  0  every value within tolerance
  1  drift: a value outside tolerance, a metric missing, or a changed number of failed clips
     (1 means drift and nothing else)
  2  not comparable: different manifest_id, method, metric version, protocol or weight
     checksum (each named), an unreadable or malformed input, a bad option, or an internal error

tolerance file (TOML; |result - baseline| <= atol + rtol * |baseline|):
  [default]        atol = 1e-3, rtol = 1e-3     (built-in; fid: atol 0.01; fps: rtol 0.5;
                                                fps.load_s: not checked)
  [fid]            atol = 0.05                  (a whole metric)
  [lse.lse_d]      atol = 0.02                  (one output)
  [fps]            check = false                (not compared)
"""


def _formats(text: str) -> list[str]:
    fmts = [f.strip().lower() for f in text.split(",") if f.strip()]
    aliases = {"markdown": "md", "latex": "tex"}
    fmts = [aliases.get(f, f) for f in fmts]
    bad = [f for f in fmts if f not in FORMATS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown format(s) {bad}; choose from {','.join(FORMATS)}")
    return fmts


def _precision(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= v <= 12:
        raise argparse.ArgumentTypeError(f"must be 0..12 decimals, got {v}")
    return v


def _pairs(table: Any, compare: Sequence[str] | None, baseline: str | None) -> list[tuple[str, str]]:
    """(A label, B label) pairs to compare: ``compare = (A, B)`` and/or every row against ``baseline``."""
    from .compare import find_run

    runs, labels = [table.runs[r] for r in table.rows], table.rows
    label_of = {id(r): lab for lab, r in zip(labels, runs, strict=True)}
    pairs = []
    if compare:
        a, b = (find_run(runs, k, labels) for k in compare)
        pairs.append((label_of[id(a)], label_of[id(b)]))
    if baseline:
        base = find_run(runs, baseline, labels)
        pairs += [(lab, label_of[id(base)]) for lab, r in zip(labels, runs, strict=True) if r is not base]
    return list(dict.fromkeys(pairs))


def _resamples(text: str) -> int | None:
    if text.strip().lower() in ("none", "off", "0"):
        return None
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--ci takes a number of resamples or 'none', not {text!r}") from None
    if n < 100:
        raise argparse.ArgumentTypeError(f"--ci {n}: use at least 100 resamples (or 'none')")
    return n


def write_report(run_dirs: Sequence[str | Path], out: str | Path, formats: Sequence[str] = FORMATS,
                 compare_paper: bool = False, figures: bool = True, precision: int = 3,
                 heatmap_options: dict[str, Any] | None = None, title: str = "kdbench report",
                 ci: int | None = DEFAULT_RESAMPLES, seed: int = 0, compare: Sequence[str] | None = None,
                 baseline: str | None = None, gallery: bool = True, notes: Sequence[str] = (),
                 allow_mixed: bool = False) -> list[Path]:
    """Write the report files for ``run_dirs`` into ``out``; returns the paths written.

    ``ci``: bootstrap resamples for the 95% CIs over clips (None/0: none); ``seed`` seeds them.
    ``compare = (A, B)`` and/or ``baseline``: paired comparisons (runs named by row label, folder or
    method; refused with the reason when their clip sets differ). ``gallery``: copy the videos into
    ``out/gallery`` and show them in report.html. ``notes``: lines shown under the tables (e.g. rows not run).
    Runs scored on different datasets (``manifest_id``) are refused unless ``allow_mixed`` (then no value is marked
    best across them). Nothing is written or removed outside ``out`` (:mod:`reports.outdir`)."""
    from .compare import compare_pair, pair_html, pair_latex, pair_markdown
    from .outdir import check_out_dir, inside
    from .paper_table import comparison_latex, comparison_markdown, paper_comparison
    from .runs import load_run
    from .table import build_table, per_clip_frame
    from .timing_table import timing_frame, timing_html, timing_markdown

    runs = [load_run(p) for p in run_dirs]
    mixed = mixed_datasets(runs)
    if mixed and not allow_mixed:
        raise KdbenchError(f"the runs were scored on different datasets — {mixed}: one table across them would rank "
                           "values over different clips. Report each dataset separately, or pass --allow-mixed "
                           "(the caption then names each run's manifest_id and no value is marked best)")
    out = Path(out)
    check_out_dir(out)
    table = build_table(runs, precision=precision, ci=ci or None, seed=seed)
    other = build_table(runs, precision=precision, other=True, ci=ci or None, seed=seed)
    if not other.columns:
        other = None
    resamples = ci or DEFAULT_RESAMPLES
    pairs = [(a, b, compare_pair(table.runs[a], table.runs[b], resamples, seed))
             for a, b in _pairs(table, compare, baseline)]
    timing = timing_frame(table)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    notes = [*notes, *weights_trust_notes(table.runs)]
    figs = []
    if figures:
        from .figures import all_figures

        figs, fig_notes = all_figures(list(table.runs.values()), out / "figures", compare_paper=compare_paper,
                                      heatmap_options=heatmap_options)
        notes += fig_notes
        written += [p for f in figs for p in (f.png, f.npz) if p is not None]

    def put(name: str, text: str) -> None:
        path = inside(out, out / name)
        path.write_text(text, encoding="utf-8")
        written.append(path)

    if "md" in formats:
        md = table.to_markdown()
        if compare_paper:
            md += "\n" + comparison_markdown(table)
        for a, b, df in pairs:
            md += "\n" + pair_markdown(df, a, b, resamples, seed, precision)
        if other is not None:
            md += "\n" + other.to_markdown()
        if timing is not None:
            md += "\n" + timing_markdown(timing)
        if figs:
            md += "\n" + "\n".join(f"![{f.title}]({f.png.relative_to(out).as_posix()})" for f in figs) + "\n"
        if notes:
            md += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
        put("table.md", md)
    if "tex" in formats:
        tex = "% requires \\usepackage{booktabs}\n" + table.to_latex()
        if compare_paper:
            tex += "\n" + comparison_latex(table)
        for i, (a, b, df) in enumerate(pairs, 1):
            tex += "\n" + pair_latex(df, a, b, resamples, seed, precision, label=f"tab:kdbench-compare{i}")
        if other is not None:
            tex += "\n" + other.to_latex(label="tab:kdbench-other")
        put("table.tex", tex)
    if "csv" in formats:
        put("table.csv", table.to_csv())
        if compare_paper:
            cmp = paper_comparison(table)
            cmp.columns = [f"{c} {k}".strip() for c, k in cmp.columns]
            put("paper_comparison.csv", cmp.to_csv())
        if other is not None:
            put("other_outputs.csv", other.to_csv())
        if pairs:
            import pandas as pd

            frames = [df.assign(**{"A run": a, "B run": b}) for a, b, df in pairs]
            cols = ["A run", "B run", *frames[0].columns[:-2]]
            put("comparison.csv", pd.concat(frames)[cols].to_csv(index=False))
        if timing is not None:
            put("timing.csv", timing.to_csv())
    if "html" in formats:
        from .html import write_html

        gal = None
        if gallery:
            from .gallery import build_gallery

            gal = build_gallery(table, out, other=other)
            if gal is None:
                notes.append("gallery: no run folder has videos (videos/<clip_id>.mp4)")
            else:
                notes += gal.notes
                written += sorted(p for p in (out / "gallery").rglob("*") if p.is_file())
        written.append(write_html(inside(out, out / "report.html"), table, figs, compare_paper, notes, title,
                                  other=other,
                                  comparisons=[pair_html(df, a, b, resamples, seed, precision) for a, b, df in pairs],
                                  timing=timing_html(timing) if timing is not None else "", gallery=gal))
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        notes.append("per_clip.parquet not written: pyarrow is not installed (pip install kdbench[report])")
    else:
        path = inside(out, out / "per_clip.parquet")
        per_clip_frame(list(table.runs.values())).to_parquet(path, index=False)
        written.append(path)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    return written


def mixed_datasets(runs: Sequence[Any]) -> str:
    """``""`` when every run was scored on one dataset (``manifest_id``), else the runs per dataset, e.g.
    ``"hdtf-mini (manifest_id 1a2b…): runs/a, runs/b; tiny (manifest_id 9f8e…): runs/c"``. A run that records
    no ``manifest_id`` counts as a dataset of its own (``unknown``)."""
    groups: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    for r in runs:
        key = str(r.manifest_id or "unknown")
        groups.setdefault(key, []).append(str(r.path or r.label))
        names.setdefault(key, str(r.dataset.get("name") or "unknown dataset"))
    if len(groups) < 2:
        return ""
    return "; ".join(f"{names[k]} (manifest_id {k}): {', '.join(v)}" for k, v in groups.items())


def _run_report(args: argparse.Namespace) -> int:
    from .outdir import check_out_dir

    if args.out is not None:
        out = Path(args.out)
    elif len(args.run_dirs) == 1 and not args.compare:
        out = Path(args.run_dirs[0]) / "report"
    else:
        out = Path("kdbench-report")
    heat = {"kind": args.heatmap} if args.heatmap else None
    run_dirs = list(args.run_dirs)
    for key in [*(args.compare or []), *([args.baseline] if args.baseline else [])]:
        if Path(key).exists() and not any(Path(key).resolve() == Path(d).resolve() for d in run_dirs):
            run_dirs.append(key)  # `--compare runs/a runs/b` alone: the compared runs are the report's runs
    if not run_dirs:
        print("error: name at least one RUN_DIR (or two with --compare A B)", file=sys.stderr)
        return 2
    try:
        if args.out is None:
            check_out_dir(out, default=True)
        written = write_report(run_dirs, out, formats=args.format, compare_paper=args.compare_paper,
                               figures=not args.no_figures, precision=args.precision, heatmap_options=heat,
                               title=args.title, ci=args.ci, seed=args.seed, compare=args.compare,
                               baseline=args.baseline, gallery=not args.no_gallery, allow_mixed=args.allow_mixed)
    except KdbenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (AttributeError, KeyError, TypeError, ValueError) as e:  # valid JSON of the wrong shape
        print(f"error: cannot build the report: a results file is malformed ({type(e).__name__}: {e}); "
              "is each RUN_DIR a folder (or metrics.json) written by `kdbench eval`?", file=sys.stderr)
        return 2
    for p in written:
        print(p)
    return 0


def add_report_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``kdbench report``."""
    p = subparsers.add_parser(
        "report", help="paper-style tables (md/tex/csv/html) and figures from evaluated runs",
        description="Build the Table 1-style report (methods x LSE-C, LSE-D, Diversity, FID, CPBD, CSIM, "
                    "FPS) from one or more evaluated run folders (each holding metrics.json).",
        epilog=REPORT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", help="run folder(s) or metrics.json file(s)")
    p.add_argument("--out", metavar="DIR", default=None, help="output folder (see below for the default)")
    p.add_argument("--format", type=_formats, default=list(FORMATS),
                   help="comma-separated subset of md,tex,csv,html (default: all)")
    p.add_argument("--compare-paper", action="store_true",
                   help="add the KDTalker paper's Table 1 side by side with the measured values and deltas")
    p.add_argument("--no-figures", action="store_true", help="skip the figures (no matplotlib needed)")
    p.add_argument("--heatmap", choices=("pose", "pixel"), default=None,
                   help="motion heatmap variant passed to reports.heatmap (default: its own)")
    p.add_argument("--precision", type=_precision, default=3,
                   help="decimals in the tables (default: 3, as in the paper)")
    p.add_argument("--title", default="kdbench report", help="title of the HTML page")
    p.add_argument("--ci", type=_resamples, default=DEFAULT_RESAMPLES, metavar="N|none",
                   help=f"bootstrap resamples for the 95%% CIs over clips (default {DEFAULT_RESAMPLES}; "
                        "'none': no CIs, cells show mean ± std)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling (default 0)")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"), default=None,
                   help="paired comparison A - B over the clips both scored (row label, run folder or method)")
    p.add_argument("--baseline", metavar="RUN", default=None,
                   help="paired comparison of every other run against this one")
    p.add_argument("--no-gallery", action="store_true",
                   help="do not copy the videos into OUT/gallery nor show the gallery in report.html")
    p.add_argument("--allow-mixed", action="store_true",
                   help="allow runs scored on different datasets (manifest_id) in one table; no value is then "
                        "marked best across them (default: refused)")
    p.set_defaults(func=_run_report)
    return p


def _run_check(args: argparse.Namespace) -> int:
    from .check import EXIT_INCOMPARABLE, run_check

    try:
        return run_check(args.results, args.baseline, args.tolerance, per_clip=args.per_clip, as_json=args.json)
    except Exception as e:  # noqa: BLE001 - never exit 1 (drift) for a crash: CI must tell them apart
        print(f"error: kdbench check could not compare the inputs: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_INCOMPARABLE


def add_check_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``kdbench check``."""
    p = subparsers.add_parser(
        "check", help="compare results with a stored baseline (CI drift check; exit 0/1/2)",
        description="Compare the per-metric aggregates (and optionally per-clip values) of RESULTS with a "
                    "baseline results file, within per-metric absolute/relative tolerances.",
        epilog=CHECK_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", metavar="RESULTS", help="run folder or metrics.json to check")
    p.add_argument("--baseline", required=True, metavar="BASELINE",
                   help="baseline run folder or metrics.json")
    p.add_argument("--tolerance", metavar="FILE", default=None, help="TOML tolerance overrides (see below)")
    p.add_argument("--per-clip", action="store_true", help="also compare every clip's values")
    p.add_argument("--json", action="store_true", help="print a JSON report instead of the table")
    p.set_defaults(func=_run_check)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry (``python -m reports.cli report ...``) until kdbench/cli.py wires these in."""
    parser = argparse.ArgumentParser(prog="kdbench")
    sub = parser.add_subparsers(dest="command", required=True)
    add_report_parser(sub)
    add_check_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())


def weights_trust_notes(runs: dict) -> list[str]:
    """One note per row whose videos were produced with weights that are not pinned to a published checksum
    (trusted on first use, or unverified under ``KDBENCH_ALLOW_UNVERIFIED``) or with ``--trust-unpinned``
    (from each run's ``env.json``: ``method_env`` of a baseline, ``weights`` of a native method)."""
    notes = []
    for row, run in runs.items():
        env = getattr(run, "env", None) or {}
        menv = env.get("method_env") or {}
        weak = {n: r.get("trust") for n, r in (env.get("weights") or {}).items()
                if isinstance(r, dict) and r.get("trust") in ("tofu", "unverified")}
        weak.update({n: r.get("trust") for n, r in (menv.get("weights") or {}).items()
                     if isinstance(r, dict) and r.get("trust") in ("tofu", "unverified")})
        if weak:
            notes.append(f"{row}: produced with weights not pinned to a published checksum: "
                         + ", ".join(f"{n} ({t})" for n, t in sorted(weak.items())))
        if menv.get("trust_unpinned"):
            notes.append(f"{row}: run with --trust-unpinned (checkpoints without a published pin could be unpickled "
                         "fully; see method_env.worker.loads in its env.json)")
    return notes
