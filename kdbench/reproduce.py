"""``kdbench reproduce``: the paper's Table 1 (and optionally Table 6's DDIM sweep) in one command.

Plan → (fetch weights, set up baseline environments) → run every method on the dataset (resuming what is
done) → evaluate → report with ``--compare-paper``. ``--dry-run`` prints the plan: per row its method, what is
done, what is missing (weights, environment, dataset) and the exact command that fixes each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import KdbenchError

TABLE1_ROWS = (
    ("Real Video", "real"),
    ("SadTalker", "sadtalker"),
    ("Real3DPortrait", "real3dportrait"),
    ("AniTalker", "anitalker"),
    ("AniPortrait", "aniportrait"),
    ("KDTalker", "kdtalker"),
)
"""Table 1's rows in the paper's order, with the kdbench method that produces each."""
TABLE6_DDIM_STEPS = (1, 5, 10, 20, 50, 100, 200)
"""Table 6: KDTalker at these DDIM step counts."""


@dataclass
class PlanRow:
    """One run of the plan: a Table 1 row (or a Table 6 setting) and what stands in its way."""

    row: str
    method: str
    run_dir: Path
    options: dict[str, Any] = field(default_factory=dict)
    missing: list[tuple[str, str]] = field(default_factory=list)
    """(what is missing, the command that fixes it)"""
    fixable: bool = True
    """False when no command here can fix what is missing (e.g. a method this kdbench does not have)."""
    done: int = 0
    """clips generated"""
    failed: int = 0
    """clips whose last attempt failed (retried by the next run)"""
    total: int = 0
    evaluated: bool = False

    @property
    def status(self) -> str:
        if self.missing:
            return "blocked" if not self.fixable else "needs set-up"
        failed = f", {self.failed} failed" if self.failed else ""
        if self.total and self.done + self.failed == self.total:
            return ("evaluated" if self.evaluated else "generated") + failed
        return f"to run ({self.done}/{self.total} done{failed})" if self.done or self.failed else "to run"


def _method_blockers(method: str, weights, dataset: str) -> tuple[list[tuple[str, str]], bool]:
    from .registry import METHODS

    if method not in METHODS.names():
        return [(f"method {method!r} is not available in this kdbench version", "(none yet: see the README's "
                                                                                  "Methods section)")], False
    cls = METHODS.get(method)
    missing: list[tuple[str, str]] = []
    ready = getattr(cls, "setup_problem", None)
    if callable(ready):
        problem = ready()
        if problem:
            missing.append((problem, f"kdbench setup {method}"))
    absent = [w for w in cls.info.weights if not weights.available(w)]
    if absent:
        missing.append((f"weights: {', '.join(absent)}", f"kdbench weights fetch {' '.join(absent)}"))
    return missing, True


def _metric_blockers(metrics: list[str], weights) -> list[tuple[str, str]]:
    from .registry import METRICS

    absent: list[str] = []
    for name in metrics:
        try:
            absent += [w for w in METRICS.get(name).info.weights if not weights.available(w) and w not in absent]
        except ImportError:
            continue
    return [(f"metric weights: {', '.join(absent)} (those metrics would be skipped)",
             f"kdbench weights fetch {' '.join(absent)}")] if absent else []


def plan(dataset: str, out: str | Path, *, methods: list[str] | None = None, table6: bool = False,
         metrics: list[str] | None = None, seed: int = 0, device: str = "cpu") -> tuple[list[PlanRow], list]:
    """The runs Table 1 (and Table 6 with ``table6``) needs on ``dataset`` under ``out``, with their blockers;
    and the blockers shared by all rows (dataset, metric weights)."""
    from .dataset import load_dataset
    from .evaluate import DEFAULT_METRICS
    from .runstore import RunStore
    from .weights import WeightsManager

    weights = WeightsManager()
    out = Path(out)
    shared: list[tuple[str, str]] = []
    try:
        ds = load_dataset(dataset)
        n_clips = len(ds)
    except KdbenchError as e:
        ds, n_clips = None, 0
        fix = ("kdbench data prepare hdtf --raw ~/HDTF/raw --annotations ~/HDTF/HDTF_dataset --out ~/HDTF/eval "
               "&& export KDBENCH_HDTF=~/HDTF/eval") if dataset == "hdtf" else f"kdbench data verify {dataset}"
        shared.append((f"dataset {dataset!r}: {e}", fix))
    shared += _metric_blockers(list(metrics or DEFAULT_METRICS), weights)

    wanted = [(row, m) for row, m in TABLE1_ROWS if not methods or m in methods or row in methods]
    if methods:
        unknown = set(methods) - {m for _, m in TABLE1_ROWS} - {r for r, _ in TABLE1_ROWS}
        if unknown:
            raise KdbenchError(f"--methods: {', '.join(sorted(unknown))} are not Table 1 rows; choose from "
                               f"{', '.join(m for _, m in TABLE1_ROWS)}")
    runs = [PlanRow(row, m, out / m) for row, m in wanted]
    if table6:
        runs += [PlanRow(f"KDTalker, {s} DDIM steps", "kdtalker", out / "table6" / f"ddim_steps={s}",
                         {"ddim_steps": s}) for s in TABLE6_DDIM_STEPS]
    for r in runs:
        r.missing, r.fixable = _method_blockers(r.method, weights, dataset)
        r.total = n_clips
        store = RunStore(r.run_dir)
        if store.exists():
            last = store.clip_events().values()
            r.done = sum(1 for e in last if e.get("status") == "ok")
            r.failed = sum(1 for e in last if e.get("status") != "ok")
            r.evaluated = (r.run_dir / "metrics.json").is_file()
    return runs, shared


def format_plan(runs: list[PlanRow], shared: list[tuple[str, str]]) -> str:
    lines = []
    for what, fix in shared:
        lines.append(f"missing: {what}\n    fix: {fix}")
    width = max(len(r.row) for r in runs) if runs else 0
    said: set[tuple[str, str]] = set()
    for r in runs:
        opts = " ".join(f"--set {k}={v}" for k, v in r.options.items())
        lines.append(f"{r.row:<{width}}  {r.status:<22} kdbench run --method {r.method} {opts}".rstrip()
                     + f" --out {r.run_dir}")
        for what, fix in r.missing:
            if (what, fix) in said:
                lines.append(f"{'':<{width}}    missing: the same as above")
                continue
            said.add((what, fix))
            lines.append(f"{'':<{width}}    missing: {what}\n{'':<{width}}        fix: {fix}")
    return "\n".join(lines)


def reproduce(dataset: str, out: str | Path, *, methods: list[str] | None = None, table6: bool = False,
              metrics: list[str] | None = None, sets: dict[str, Any] | None = None, seed: int = 0,
              device: str = "cpu", dry_run: bool = False, fetch: bool = True, progress: bool = True,
              **executor: Any) -> dict[str, Any]:
    """Plan, then (unless ``dry_run``) fetch weights, run, evaluate and report every row that can run.

    Returns ``{"plan": text, "ran": [rows], "skipped": {row: reason}, "report": path or None}``.
    """
    from .evaluate import evaluate_run
    from .runner import run_method

    runs, shared = plan(dataset, out, methods=methods, table6=table6, metrics=metrics, seed=seed, device=device)
    text = format_plan(runs, shared)
    result: dict[str, Any] = {"plan": text, "ran": [], "skipped": {}, "report": None}
    if dry_run:
        return result
    if any(what.startswith("dataset") for what, _ in shared):
        raise KdbenchError(f"cannot reproduce without the dataset:\n{text}")
    if fetch:
        _fetch_missing(runs, metrics, progress)
        runs, shared = plan(dataset, out, methods=methods, table6=table6, metrics=metrics, seed=seed,
                            device=device)
    from .dataset import load_dataset

    ds = load_dataset(dataset)
    for r in runs:
        if r.missing:
            result["skipped"][r.row] = "; ".join(f"{w} (fix: {f})" for w, f in r.missing)
            continue
        run_method(r.method, ds, r.run_dir, options=r.options, seed=seed, device=device, progress=progress,
                   **executor)
        evaluate_run(r.run_dir, metrics, sets, device=device, progress=progress, **executor)
        result["ran"].append(r.row)
    done = [r.run_dir for r in runs if (r.run_dir / "metrics.json").is_file() and not r.options]
    if done:
        from reports.cli import write_report

        report_dir = Path(out) / "report"
        write_report(done, report_dir, compare_paper=True)
        result["report"] = report_dir
    swept = [r for r in runs if r.options and (r.run_dir / "metrics.json").is_file()]
    if swept:
        import json

        from reports.table import sweep_markdown, sweep_table

        docs = [json.loads((r.run_dir / "metrics.json").read_text()) for r in swept]
        table = sweep_table(docs, "ddim_steps")
        (Path(out) / "table6").mkdir(parents=True, exist_ok=True)
        (Path(out) / "table6" / "sweep.md").write_text(sweep_markdown(table) + "\n")
        table.to_csv(Path(out) / "table6" / "sweep.csv")
        result["table6"] = Path(out) / "table6" / "sweep.md"
    return result


def _fetch_missing(runs: list[PlanRow], metrics: list[str] | None, progress: bool) -> None:
    """Fetch every weight file a runnable row or a metric needs (download errors are left to the plan)."""
    from .evaluate import DEFAULT_METRICS
    from .registry import METHODS, METRICS
    from .weights import WeightsManager

    wm = WeightsManager()
    names: list[str] = []
    for r in runs:
        if r.fixable and r.method in METHODS.names():
            names += list(METHODS.get(r.method).info.weights)
    for m in metrics or DEFAULT_METRICS:
        try:
            names += list(METRICS.get(m).info.weights)
        except ImportError:
            continue
    for n in dict.fromkeys(names):
        if not wm.available(n):
            try:
                wm.fetch(n, progress=progress)
            except KdbenchError as e:
                print(f"could not fetch {n}: {e}")
