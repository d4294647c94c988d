"""``kdbench reproduce``: the paper's Table 1 (and optionally Table 6's DDIM sweep) in one command.

Plan → (fetch weights) → run every row that is ready (resuming what is done) → evaluate → report with the
paper's values. Readiness is the one of ``kdbench ls methods`` and ``kdbench run`` (:mod:`kdbench.readiness`):
a row that is not ready is skipped with what is missing and the command that fixes it, and never gets a run
folder; the others run and are scored, and the report lists the skipped rows in a footnote.

Exit codes of the command (:data:`EXIT_CODES`): 0 every row ran and was evaluated; 3 some rows were skipped
(the others ran and are in the report); 1 ``--strict`` and some row not ready (nothing was run); 2 a bad request
(unknown row or metric, dataset missing or invalid, bad option).
"""

from __future__ import annotations

import shlex
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

EXIT_OK, EXIT_STRICT, EXIT_BAD_REQUEST, EXIT_SKIPPED = 0, 1, 2, 3
EXIT_CODES = {
    EXIT_OK: "every row ran and was evaluated; the report is written",
    EXIT_STRICT: "--strict and some row is not ready: nothing was run (the plan says what is missing)",
    EXIT_BAD_REQUEST: "bad request: unknown row or metric, dataset missing or invalid, bad option",
    EXIT_SKIPPED: "some rows were skipped (not ready, or their start failed); the others ran and the report "
                  "footnotes the skipped ones with the command that fixes them",
}
"""``kdbench reproduce``'s exit codes and their meaning (also in its ``--help``)."""


@dataclass
class Request:
    """What the command line asked for, so that every printed command can repeat it exactly."""

    dataset: str
    out: Path
    seed: int = 0
    device: str = "cpu"
    metrics: list[str] | None = None
    sets: list[str] = field(default_factory=list)
    """Metric options as given (``cpbd.max_frames=2``)."""
    executor: dict[str, Any] = field(default_factory=dict)
    """``executor``, ``ray_address``, ``workers``, ``gpus_per_worker`` (only non-default ones are printed)."""

    def executor_args(self) -> list[str]:
        e = self.executor
        args: list[str] = []
        if e.get("executor", "local") != "local":
            args += ["--executor", str(e["executor"])]
        if e.get("ray_address"):
            args += ["--ray-address", str(e["ray_address"])]
        if e.get("workers"):
            args += ["--workers", str(e["workers"])]
        if e.get("gpus_per_worker", 1.0) not in (None, 1.0):
            args += ["--gpus-per-worker", str(e["gpus_per_worker"])]
        return args


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
    not_applicable: int = 0
    """clips the method cannot generate (``real`` without a GT video)"""
    total: int = 0
    evaluated: bool = False

    @property
    def ready(self) -> bool:
        return not self.missing

    @property
    def status(self) -> str:
        if self.missing:
            return "blocked" if not self.fixable else "needs set-up"
        failed = f", {self.failed} failed" if self.failed else ""
        failed += f", {self.not_applicable} not applicable" if self.not_applicable else ""
        if self.total and self.done + self.failed + self.not_applicable == self.total:
            return ("evaluated" if self.evaluated else "generated") + failed
        started = self.done or self.failed or self.not_applicable
        return f"to run ({self.done}/{self.total} done{failed})" if started else "to run"

    def run_command(self, req: Request) -> str:
        """The complete ``kdbench run`` command of this row (paste-able: same dataset, seed, device, folder)."""
        args = ["kdbench", "run", "--method", self.method, "--dataset", req.dataset, "--seed", str(req.seed),
                "--device", req.device, *req.executor_args()]
        for k, v in self.options.items():
            args += ["--set", f"{k}={v}"]
        return shlex.join([*args, "--out", str(self.run_dir)])

    def eval_command(self, req: Request) -> str:
        """The complete ``kdbench eval`` command that scores this row as ``reproduce`` does."""
        args = ["kdbench", "eval", str(self.run_dir), "--device", req.device]
        if req.metrics:
            args += ["--metrics", ",".join(req.metrics)]
        for s in req.sets:
            args += ["--set", s]
        return shlex.join([*args, *req.executor_args()])


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
    """The runs Table 1 (and Table 6 with ``table6``) needs on ``dataset`` under ``out``, with their blockers
    (:func:`kdbench.readiness.method_readiness`); and the blockers shared by all rows (dataset, metric weights)."""
    from .dataset import load_dataset
    from .evaluate import DEFAULT_METRICS
    from .readiness import method_readiness
    from .runstore import RunStore
    from .weights import WeightsManager

    if methods:
        unknown = set(methods) - {m for _, m in TABLE1_ROWS} - {r for r, _ in TABLE1_ROWS}
        if unknown:
            raise KdbenchError(f"--methods: {', '.join(sorted(unknown))} are not Table 1 rows; choose from "
                               f"{', '.join(m for _, m in TABLE1_ROWS)}")
    weights = WeightsManager()
    out = Path(out)
    shared: list[tuple[str, str]] = []
    try:
        n_clips = len(load_dataset(dataset))
    except KdbenchError as e:
        n_clips = 0
        fix = ("kdbench data prepare hdtf --raw ~/HDTF/raw --annotations ~/HDTF/HDTF_dataset --out ~/HDTF/eval "
               "&& export KDBENCH_HDTF=~/HDTF/eval") if dataset == "hdtf" else f"kdbench data verify {dataset}"
        shared.append((f"dataset {dataset!r}: {e}", fix))
    shared += _metric_blockers(list(metrics or DEFAULT_METRICS), weights)

    wanted = [(row, m) for row, m in TABLE1_ROWS if not methods or m in methods or row in methods]
    runs = [PlanRow(row, m, out / m) for row, m in wanted]
    if table6:
        runs += [PlanRow(f"KDTalker, {s} DDIM steps", "kdtalker", out / "table6" / f"ddim_steps={s}",
                         {"ddim_steps": s}) for s in TABLE6_DDIM_STEPS]
    readiness = {m: method_readiness(m, weights) for m in dict.fromkeys(r.method for r in runs)}
    for r in runs:
        r.missing, r.fixable = list(readiness[r.method].problems), readiness[r.method].fixable
        r.total = n_clips
        store = RunStore(r.run_dir)
        if store.exists():
            last = store.clip_events().values()
            r.done = sum(1 for e in last if e.get("status") == "ok")
            r.not_applicable = sum(1 for e in last if e.get("status") == "not_applicable")
            r.failed = sum(1 for e in last if e.get("status") not in ("ok", "not_applicable"))
            r.evaluated = (r.run_dir / "metrics.json").is_file()
    return runs, shared


def format_plan(runs: list[PlanRow], shared: list[tuple[str, str]], req: Request) -> str:
    """Per row: its status, then the exact commands that run and score it, or what is missing and the fix."""
    lines = []
    for what, fix in shared:
        lines.append(f"missing: {what}\n    fix: {fix}")
    width = max(len(r.row) for r in runs) if runs else 0
    said: set[tuple[str, str]] = set()
    pad = " " * width
    for r in runs:
        lines.append(f"{r.row:<{width}}  {r.status}")
        if r.ready:
            lines.append(f"{pad}    run:  {r.run_command(req)}")
            lines.append(f"{pad}    eval: {r.eval_command(req)}")
        for what, fix in r.missing:
            if (what, fix) in said:
                lines.append(f"{pad}    missing: the same as above")
                continue
            said.add((what, fix))
            lines.append(f"{pad}    missing: {what}" + (f"\n{pad}        fix: {fix}" if fix else ""))
    return "\n".join(lines)


def reproduce(dataset: str, out: str | Path, *, methods: list[str] | None = None, table6: bool = False,
              metrics: list[str] | None = None, sets: dict[str, Any] | None = None, seed: int = 0,
              device: str = "cpu", dry_run: bool = False, fetch: bool = True, progress: bool = True,
              strict: bool = False, set_args: list[str] | None = None, announce=None,
              **executor: Any) -> dict[str, Any]:
    """Plan, then (unless ``dry_run``) fetch weights, run, evaluate and report every row that is ready.

    Returns ``{"plan": text before running, "plan_after": text after (None for a dry run), "ran": [rows],
    "skipped": {row: (reason, fix)}, "report": folder or None, "written": [files], "table": markdown or None,
    "exit": code}`` (:data:`EXIT_CODES`). ``strict``: run nothing unless every row is ready. ``set_args``: the
    metric ``--set`` texts as given, repeated in the printed commands (default: from ``sets``). ``announce``:
    called with the plan's text before anything runs (the CLI prints it).
    """
    req = Request(dataset, Path(out), seed, device, list(metrics) if metrics else None,
                  list(set_args) if set_args is not None else [f"{k}={v}" for k, v in (sets or {}).items()],
                  dict(executor))
    runs, shared = plan(dataset, out, methods=methods, table6=table6, metrics=metrics, seed=seed, device=device)
    result: dict[str, Any] = {"plan": format_plan(runs, shared, req), "plan_after": None, "ran": [], "skipped": {},
                              "report": None, "written": [], "table": None, "exit": EXIT_OK}
    not_ready = [r for r in runs if not r.ready]
    if dry_run:
        result["exit"] = EXIT_STRICT if strict and not_ready else EXIT_OK
        return result
    if any(what.startswith("dataset") for what, _ in shared):
        raise KdbenchError(f"cannot reproduce without the dataset:\n{result['plan']}")
    if fetch:
        _fetch_missing(runs, metrics, progress)
        runs, shared = plan(dataset, out, methods=methods, table6=table6, metrics=metrics, seed=seed,
                            device=device)
        result["plan"] = format_plan(runs, shared, req)
        not_ready = [r for r in runs if not r.ready]
    if announce is not None:
        announce(result["plan"])
    if strict and not_ready:
        result["exit"] = EXIT_STRICT
        result["skipped"] = {r.row: _reason(r) for r in not_ready}
        return result
    from .dataset import load_dataset
    from .evaluate import evaluate_run
    from .runner import run_method

    ds = load_dataset(dataset)
    for r in runs:
        if not r.ready:
            result["skipped"][r.row] = _reason(r)
            continue
        try:
            run_method(r.method, ds, r.run_dir, options=r.options, seed=seed, device=device, progress=progress,
                       **executor)
            evaluate_run(r.run_dir, metrics, sets, device=device, progress=progress, **executor)
        except KdbenchError as e:  # a start that failed (a worker that did not load): the other rows go on
            result["skipped"][r.row] = (f"failed: {e}", f"{r.run_command(req)} && {r.eval_command(req)}")
            continue
        result["ran"].append(r.row)
    runs_after, shared_after = plan(dataset, out, methods=methods, table6=table6, metrics=metrics, seed=seed,
                                    device=device)
    result["plan_after"] = format_plan(runs_after, shared_after, req)
    _write_reports(runs, result, Path(out))
    result["exit"] = EXIT_SKIPPED if result["skipped"] else EXIT_OK
    return result


def _reason(r: PlanRow) -> tuple[str, str]:
    """(why ``r`` is not ready, the command(s) that fix it)."""
    return "; ".join(w for w, _ in r.missing), " && ".join(dict.fromkeys(f for _, f in r.missing if f))


def _write_reports(runs: list[PlanRow], result: dict[str, Any], out: Path) -> None:
    """``out/report`` (with the skipped Table 1 rows footnoted) and ``out/table6/sweep.md``; fills ``result``."""
    done = {r.row: r.run_dir for r in runs if r.row in result["ran"] and not r.options}
    table1_skipped = {row: why for row, why in result["skipped"].items()
                      if any(r.row == row and not r.options for r in runs)}
    if done:
        from reports.cli import write_report
        from reports.paper_table import table1_markdown
        from reports.table import build_table

        report_dir = out / "report"
        notes = [f"{row}: not run ({why}); fix: `{fix}`" for row, (why, fix) in table1_skipped.items()]
        written = write_report(list(done.values()), report_dir, compare_paper=True, notes=notes)
        order = [r.row for r in runs if not r.options]
        md = table1_markdown(build_table(list(done.values())), order, table1_skipped)
        (report_dir / "table1.md").write_text(md, encoding="utf-8")
        result.update(report=report_dir, table=md, written=[report_dir / "table1.md", *written])
    swept = [r for r in runs if r.options and r.row in result["ran"]]
    if swept:
        import json

        from reports.sweep_table import sweep_markdown, sweep_table

        docs = [json.loads((r.run_dir / "metrics.json").read_text()) for r in swept]
        table = sweep_table(docs, "ddim_steps")
        (out / "table6").mkdir(parents=True, exist_ok=True)
        (out / "table6" / "sweep.md").write_text(sweep_markdown(table) + "\n")
        table.to_csv(out / "table6" / "sweep.csv")
        result["table6"] = out / "table6" / "sweep.md"
        result["written"] += [out / "table6" / "sweep.md", out / "table6" / "sweep.csv"]


def _fetch_missing(runs: list[PlanRow], metrics: list[str] | None, progress: bool) -> None:
    """Fetch every weight file a native row or a metric needs (download errors are left to the plan)."""
    from .evaluate import DEFAULT_METRICS
    from .registry import METHODS, METRICS
    from .weights import WeightsManager

    wm = WeightsManager()
    names: list[str] = []
    for r in runs:
        if r.fixable and r.method in METHODS.names():
            try:
                names += list(METHODS.get(r.method).info.weights)
            except ImportError:
                continue
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
