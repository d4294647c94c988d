"""``kdbench check``: compare a results file against a stored baseline, for CI drift detection.

Exit codes (:attr:`CheckReport.exit_code`):

* **0** — every compared value is within tolerance;
* **1** — drift: a value outside tolerance, a metric/value missing from the results, or a changed
  number of failed clips;
* **2** — the inputs are not comparable: different ``manifest_id``, method, metric ``version``,
  metric ``protocol`` option, or weight checksum (each one is named), or an unreadable or malformed
  input (not UTF-8, not JSON, wrong shape), a value that is not a finite number (NaN, ±Infinity,
  ``true``, a list, a number written as a string; the file and key are named), in the results, the
  baseline or the tolerance file, or any internal error. Exit 1 means drift and nothing else.

Rows that copy their input (``static``, ``real``: :attr:`reports.runs.RunResult.copies_input`) have no
FPS: ``kdbench eval`` does not measure it, and an ``fps`` recorded by an older eval is not compared
(``unchecked``), in the results or in the baseline.

A value passes when ``|result - baseline| <= atol + rtol * |baseline|`` (numpy ``isclose``
semantics). Tolerances come from :data:`DEFAULT_TOLERANCES`, overridden by a TOML file::

    [default]            # every output of every metric
    atol = 1e-3
    rtol = 1e-3

    [fid]                # every output of one metric
    atol = 0.05

    [lse.lse_d]          # one output
    atol = 0.02

    [fps]
    check = false        # not compared (hardware dependent); shown as "unchecked"

Keys: ``atol``, ``rtol``, ``check`` and, for ``--per-clip``, ``clip_atol``/``clip_rtol`` (default: the
aggregate's tolerance).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kdbench.errors import KdbenchError

from .runs import RunResult, finite, load_run

TOL_KEYS = {"atol", "rtol", "check", "clip_atol", "clip_rtol"}

DEFAULT_TOLERANCES: dict[str, dict[str, Any]] = {
    # Same weights + same code on a CPU runner reproduce values up to float noise; these catch any real
    # change while ignoring BLAS/thread-order differences between machines.
    "default": {"atol": 1e-3, "rtol": 1e-3},
    # FID goes through a matrix square root (scipy sqrtm), whose result varies slightly across BLAS builds.
    "fid": {"atol": 0.01, "rtol": 1e-3},
    "fvd": {"atol": 0.01, "rtol": 1e-3},  # the same sqrtm (of a 400x400 product)
    # Throughput depends on the machine and its load: only flag a halving (or doubling). Model loading
    # time depends on the disk cache: recorded, not judged.
    "fps": {"atol": 0.0, "rtol": 0.5, "load_s": {"check": False}},
}

EXIT_OK, EXIT_DRIFT, EXIT_INCOMPARABLE = 0, 1, 2
DRIFT_STATUSES = {"DRIFT", "missing", "failures"}


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise KdbenchError(f"cannot read tolerance file {path}: {e}") from e
    except tomllib.TOMLDecodeError as e:
        raise KdbenchError(f"tolerance file {path} is not valid TOML: {e}") from e


def _validate(table: dict[str, Any], where: str, source: str = "tolerance file") -> None:
    for key, value in table.items():
        if isinstance(value, dict):
            continue
        if key not in TOL_KEYS:
            raise KdbenchError(
                f"{source}: unknown key {key!r} in [{where}] (known: {sorted(TOL_KEYS)})")
        if key == "check":
            if not isinstance(value, bool):
                raise KdbenchError(f"{source}: [{where}] check must be true or false, got {value!r}")
        elif (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
              or value < 0):
            raise KdbenchError(f"{source}: [{where}] {key} must be a finite number >= 0, got {value!r}"
                               + (" (use check = false to not compare a value)" if isinstance(value, float)
                                  and not math.isfinite(value) else ""))


class Tolerances:
    """Resolved tolerances: ``[metric.output]`` over ``[metric]`` over ``[default]``; a file over the
    built-in defaults."""

    def __init__(self, overrides: dict[str, Any] | None = None, source: str = "tolerance file"):
        merged: dict[str, dict[str, Any]] = {k: dict(v) for k, v in DEFAULT_TOLERANCES.items()}
        for name, table in (overrides or {}).items():
            if not isinstance(table, dict):
                raise KdbenchError(f"{source}: top-level {name!r} must be a table like [{name}]")
            _validate(table, name, source)
            for out, sub in table.items():
                if isinstance(sub, dict):
                    _validate(sub, f"{name}.{out}", source)
            base = merged.setdefault(name, {})
            for k, v in table.items():
                base[k] = {**base.get(k, {}), **v} if isinstance(v, dict) else v
        self.table = merged

    @classmethod
    def from_file(cls, path: str | Path | None) -> Tolerances:
        return cls(_load_toml(Path(path)), source=f"tolerance file {path}") if path else cls()

    def get(self, metric: str, output: str) -> dict[str, Any]:
        """``{"atol", "rtol", "check", "clip_atol", "clip_rtol"}`` for one output."""
        default = self.table.get("default", {})
        m = self.table.get(metric, {})
        o = m.get(output, {}) if isinstance(m.get(output), dict) else {}
        res: dict[str, Any] = {"atol": 0.0, "rtol": 0.0, "check": True}
        for layer in (default, {k: v for k, v in m.items() if not isinstance(v, dict)}, o):
            res.update({k: v for k, v in layer.items() if not isinstance(v, dict)})
        res.setdefault("clip_atol", res["atol"])
        res.setdefault("clip_rtol", res["rtol"])
        return res


def within(result: float, baseline: float, atol: float, rtol: float) -> bool:
    """``|result - baseline| <= atol + rtol * |baseline|``."""
    return abs(result - baseline) <= atol + rtol * abs(baseline)


@dataclass
class CheckRow:
    metric: str
    output: str
    status: str  # ok | DRIFT | missing | failures | new | unchecked | skipped
    baseline: float | None = None
    result: float | None = None
    clip: str | None = None  # None = aggregate
    atol: float | None = None
    rtol: float | None = None
    note: str = ""

    @property
    def delta(self) -> float | None:
        if self.baseline is None or self.result is None:
            return None
        return self.result - self.baseline

    @property
    def rel_delta(self) -> float | None:
        d = self.delta
        if d is None or not self.baseline:
            return None
        return d / abs(self.baseline)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "delta": self.delta, "rel_delta": self.rel_delta}


@dataclass
class CheckReport:
    results: str
    baseline: str
    incomparable: list[str] = field(default_factory=list)
    rows: list[CheckRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def drift(self) -> list[CheckRow]:
        return [r for r in self.rows if r.status in DRIFT_STATUSES]

    @property
    def exit_code(self) -> int:
        if self.incomparable:
            return EXIT_INCOMPARABLE
        return EXIT_DRIFT if self.drift else EXIT_OK

    @property
    def status(self) -> str:
        return {EXIT_OK: "ok", EXIT_DRIFT: "drift", EXIT_INCOMPARABLE: "incomparable"}[self.exit_code]

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "exit_code": self.exit_code, "results": self.results,
                "baseline": self.baseline, "incomparable": self.incomparable, "notes": self.notes,
                "n_compared": sum(r.status in ("ok", "DRIFT") for r in self.rows),
                "n_drift": len(self.drift), "rows": [r.to_json() for r in self.rows]}

    def diff_frame(self, all_clips: bool = True):
        """The diff table as strings; ``all_clips=False`` keeps only the per-clip rows that are not ok."""
        import pandas as pd

        def num(v: float | None, signed: bool = False) -> str:
            if v is None:
                return "—"
            return f"{v:+.6g}" if signed else f"{v:.6g}"

        recs = []
        for r in self.rows:
            if r.clip and not all_clips and r.status == "ok":
                continue
            tol = "" if r.atol is None else f"atol {r.atol:g}, rtol {r.rtol:g}"
            rel = "" if r.rel_delta is None else f"{100 * r.rel_delta:+.3g}%"
            recs.append({"metric": r.metric, "output": r.output, "clip": r.clip or "(all)",
                         "baseline": num(r.baseline), "result": num(r.result), "Δ": num(r.delta, True),
                         "Δ rel": rel, "tolerance": tol,
                         "status": r.status + (f" ({r.note})" if r.note else "")})
        columns = ["metric", "output", "clip", "baseline", "result", "Δ", "Δ rel", "tolerance", "status"]
        return pd.DataFrame.from_records(recs, columns=columns)

    def to_text(self) -> str:
        lines = [f"kdbench check: {self.results} against baseline {self.baseline}"]
        if self.incomparable:
            lines.append("INCOMPARABLE: the results and the baseline differ in:" if not any(
                r.startswith(("bad value:", "unreadable input:", "malformed input", "tolerance file", "…"))
                for r in self.incomparable) else "INCOMPARABLE: the inputs cannot be compared:")
            lines += [f"  - {reason}" for reason in self.incomparable]
        if self.rows:
            table = self.diff_frame(all_clips=False).to_markdown(index=False, disable_numparse=True)
            lines += ["", table, ""]
            n_clip_ok = sum(r.clip is not None and r.status == "ok" for r in self.rows)
            if n_clip_ok:
                lines.append(f"per-clip: {n_clip_ok} more value(s) within tolerance (listed by --json).")
        lines += [f"note: {n}" for n in self.notes]
        if self.exit_code == EXIT_INCOMPARABLE:
            lines.append("exit 2: inputs not comparable (regenerate the baseline if the change is intended).")
        elif self.exit_code == EXIT_DRIFT:
            names = ", ".join(sorted({f"{r.metric}.{r.output}" + (f"[{r.clip}]" if r.clip else "")
                                      for r in self.drift}))
            lines.append(f"exit 1: DRIFT in {len(self.drift)} value(s): {names}")
        else:
            n = sum(r.status == "ok" for r in self.rows)
            lines.append(f"exit 0: all {n} compared value(s) within tolerance.")
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
def incomparable_reasons(res: RunResult, base: RunResult) -> list[str]:
    """Everything that makes two results incomparable, each named."""
    reasons = []
    if res.manifest_id != base.manifest_id:
        reasons.append(f"manifest_id: baseline {base.manifest_id!r}, results {res.manifest_id!r}")
    if res.method != base.method:
        reasons.append(f"method: baseline {base.method!r}, results {res.method!r}")
    for name in sorted(set(res.metrics) & set(base.metrics)):
        r, b = res.metrics[name] or {}, base.metrics[name] or {}
        rv, bv = (r.get("info") or {}).get("version"), (b.get("info") or {}).get("version")
        if rv != bv:
            reasons.append(f"metric {name}: version: baseline {bv!r}, results {rv!r}")
        rp, bp = (r.get("options") or {}).get("protocol"), (b.get("options") or {}).get("protocol")
        if rp != bp:
            reasons.append(f"metric {name}: protocol: baseline {bp!r}, results {rp!r}")
    for w in sorted(set(res.weights) & set(base.weights)):
        rs, bs = (res.weights[w] or {}).get("sha256"), (base.weights[w] or {}).get("sha256")
        if rs != bs:
            reasons.append(f"weights {w}: sha256: baseline {str(bs)[:16]}…, results {str(rs)[:16]}…")
    return reasons


def _option_notes(res: RunResult, base: RunResult) -> list[str]:
    notes = []
    for name in sorted(set(res.metrics) & set(base.metrics)):
        ro = {k: v for k, v in ((res.metrics[name] or {}).get("options") or {}).items() if k != "protocol"}
        bo = {k: v for k, v in ((base.metrics[name] or {}).get("options") or {}).items() if k != "protocol"}
        for k in sorted(set(ro) | set(bo)):
            if ro.get(k) != bo.get(k):
                notes.append(f"metric {name}: option {k}: baseline {bo.get(k)!r}, results {ro.get(k)!r}")
    for w in sorted(set(res.weights) ^ set(base.weights)):
        side = "results" if w in res.weights else "baseline"
        notes.append(f"weights {w} recorded only in the {side}")
    return notes


def _outputs(entry: dict[str, Any]) -> list[str]:
    info = entry.get("info") or {}
    return list((info.get("outputs") or {}).keys()) or list((entry.get("aggregate") or {}).keys())


def _is_number(value: Any) -> bool:
    """A finite JSON number: not a bool, not a string, not NaN or ±Infinity."""
    return type(value) in (int, float) and math.isfinite(value)


def _shown(value: Any) -> str:
    """``value`` as it is written in the JSON file (``NaN``, ``Infinity``, ``true``, ``"0.5"``, ``[1, 2]``)."""
    text = json.dumps(value, allow_nan=True, default=str)
    return text if len(text) <= 40 else text[:39] + "…"


def bad_values(run: RunResult, role: str, per_clip: bool = False, limit: int = 10) -> list[str]:
    """Every value ``kdbench check`` would compare that is not a finite number (or null, "no value"), named by
    file and key: aggregate ``mean`` and ``n`` of each output of each scored metric, the ``failures`` object,
    and with ``per_clip`` each clip's value. NaN, ±Infinity, ``true``, lists and numbers written as strings
    make the inputs incomparable (exit 2), never drift."""
    where = f"{role} {run.path if run.path is not None else '(in memory)'}"
    problems: list[str] = []

    def bad(key: str, value: Any, want: str = "a finite number (or null)") -> None:
        kind = "bad value" if want.startswith(("a finite", "a count")) else "malformed input"
        problems.append(f"{kind}: {where}: {key} is {_shown(value)}, not {want}")

    for name, entry in run.metrics.items():
        if not isinstance(entry, dict):
            bad(f"metrics.{name}", entry, "an object")
            continue
        if entry.get("status", "ok") != "ok":
            continue
        agg = entry.get("aggregate") or {}
        if not isinstance(agg, dict):
            bad(f"metrics.{name}.aggregate", agg, "an object")
            continue
        outputs = _outputs(entry)
        for out in outputs:
            a = agg.get(out)
            if a is None:
                continue
            if not isinstance(a, dict):
                bad(f"metrics.{name}.aggregate.{out}", a, "an object")
                continue
            if a.get("mean") is not None and not _is_number(a["mean"]):
                bad(f"metrics.{name}.aggregate.{out}.mean", a["mean"])
            n = a.get("n")
            if n is not None and not (type(n) is int and n >= 0):
                bad(f"metrics.{name}.aggregate.{out}.n", n, "a count (an integer >= 0)")
        failures = entry.get("failures")
        if failures is not None and not isinstance(failures, dict):
            bad(f"metrics.{name}.failures", failures, "an object {clip_id: reason}")
        if per_clip:
            records = entry.get("per_clip") or {}
            if not isinstance(records, dict):
                bad(f"metrics.{name}.per_clip", records, "an object {clip_id: record}")
                continue
            for clip, rec in records.items():
                if not isinstance(rec, dict):
                    bad(f"metrics.{name}.per_clip.{clip}", rec, "an object")
                    continue
                for out in outputs:
                    if rec.get(out) is not None and not _is_number(rec[out]):
                        bad(f"metrics.{name}.per_clip.{clip}.{out}", rec[out])
    if len(problems) > limit:
        problems = problems[:limit] + [f"… and {len(problems) - limit} more such value(s) in {where}"]
    return problems


def _compare_value(metric: str, output: str, b: Any, r: Any, tol: dict[str, Any],
                   clip: str | None = None) -> CheckRow:
    atol, rtol = (tol["clip_atol"], tol["clip_rtol"]) if clip else (tol["atol"], tol["rtol"])
    bv, rv = finite(b), finite(r)
    row = CheckRow(metric, output, "ok", bv, rv, clip, atol, rtol)
    if not tol["check"]:
        row.status = "unchecked"
    elif bv is None and rv is None:
        row.note = "no value in either"
    elif bv is None:
        row.status = "new"
    elif rv is None:
        row.status = "missing"
    elif not within(rv, bv, atol, rtol):
        row.status = "DRIFT"
    return row


def compare(res: RunResult, base: RunResult, tolerances: Tolerances | None = None,
            per_clip: bool = False) -> list[CheckRow]:
    """Rows comparing every baseline metric output (aggregate mean and failure count; optionally every
    clip's value) with the results."""
    tolerances = tolerances or Tolerances()
    rows: list[CheckRow] = []
    for name in sorted(set(base.metrics) | set(res.metrics)):
        b, r = base.metrics.get(name), res.metrics.get(name)
        if name == "fps" and (res.copies_input or base.copies_input):
            # a row that copies its input has no FPS (it would time a file copy): not in a drift check either
            rows.append(CheckRow(name, "*", "unchecked", note=f"{base.method if base.copies_input else res.method} "
                                                              "copies its input: no FPS"))
            continue
        if b is None:
            rows.append(CheckRow(name, "*", "new", note="metric not in the baseline"))
            continue
        bstat = b.get("status", "ok")
        rstat = r.get("status", "ok") if r is not None else "absent"
        if bstat != "ok":
            status = "skipped" if rstat != "ok" else "new"
            rows.append(CheckRow(name, "*", status, note=f"baseline {bstat}; results {rstat}"))
            continue
        if rstat != "ok":
            reason = (r or {}).get("skip_reason") or (r or {}).get("error") or ""
            note = f"results {rstat}" + (f": {reason}" if reason else "")
            rows.append(CheckRow(name, "*", "missing", note=note))
            continue
        assert r is not None
        for out in _outputs(b):
            tol = tolerances.get(name, out)
            ba = (b.get("aggregate") or {}).get(out) or {}
            ra = (r.get("aggregate") or {}).get(out) or {}
            row = _compare_value(name, out, ba.get("mean"), ra.get("mean"), tol)
            if tol["check"] and ba.get("n") != ra.get("n") and row.status in ("ok", "DRIFT"):
                # a clip without a value (NaN) that is not a recorded failure changes n, not the failures
                row.status = "DRIFT"
                row.note = f"n {ba.get('n')} -> {ra.get('n')}"
            rows.append(row)
            if per_clip:
                bclips, rclips = b.get("per_clip") or {}, r.get("per_clip") or {}
                for clip in sorted(set(bclips) | set(rclips)):
                    rows.append(_compare_value(name, out, (bclips.get(clip) or {}).get(out),
                                               (rclips.get(clip) or {}).get(out), tol, clip=clip))
        bf, rf = b.get("failures") or {}, r.get("failures") or {}
        if set(bf) != set(rf):
            added, fixed = sorted(set(rf) - set(bf)), sorted(set(bf) - set(rf))
            note = "; ".join(x for x in (
                ("newly failing: " + ", ".join(f"{c} ({rf[c]})" for c in added)) if added else "",
                ("no longer failing: " + ", ".join(fixed)) if fixed else "") if x)
            rows.append(CheckRow(name, "failures", "failures", float(len(bf)), float(len(rf)), note=note))
    return rows


def check(results: str | Path, baseline: str | Path, tolerance: str | Path | None = None,
          per_clip: bool = False) -> CheckReport:
    """Compare a results file/run folder with a baseline (see the module docstring)."""
    report = CheckReport(results=str(results), baseline=str(baseline))
    try:
        res, base = load_run(results), load_run(baseline)
    except KdbenchError as e:
        report.incomparable.append(f"unreadable input: {e}")
        return report
    try:
        tolerances = Tolerances.from_file(tolerance)
    except KdbenchError as e:
        report.incomparable.append(str(e))
        return report
    try:
        bad = bad_values(res, "results", per_clip) + bad_values(base, "baseline", per_clip)
    except Exception as e:  # noqa: BLE001 - valid JSON of the wrong shape: not comparable (2), never drift (1)
        bad = [f"malformed input ({type(e).__name__}: {e}): is each file a kdbench metrics.json?"]
    if bad:
        report.incomparable += bad
        return report
    try:
        report.incomparable = incomparable_reasons(res, base)
        report.notes = _option_notes(res, base)
        if res.device != base.device:
            report.notes.append(f"device: baseline {base.device}, results {res.device}")
        report.rows = compare(res, base, tolerances, per_clip=per_clip)
    except Exception as e:  # noqa: BLE001 - valid JSON of the wrong shape: not comparable (2), never drift (1)
        report.rows = []
        report.incomparable.append(f"malformed input ({type(e).__name__}: {e}): is each file a kdbench "
                                   "metrics.json?")
    return report


def run_check(results: str | Path, baseline: str | Path, tolerance: str | Path | None = None,
              per_clip: bool = False, as_json: bool = False, out=None) -> int:
    """CLI body: print the diff table (or JSON) and return the exit code."""
    import sys

    out = out or sys.stdout
    report = check(results, baseline, tolerance, per_clip)
    if as_json:
        json.dump(report.to_json(), out, indent=2, allow_nan=False)
        out.write("\n")
    else:
        out.write(report.to_text())
    return report.exit_code

