"""Loading evaluated runs (``metrics.json`` + ``config.json`` + ``env.json``) for reports and checks.

A run folder holds ``metrics.json`` written by the evaluator (schema ``kdbench.metrics/1``)::

    {"schema": "kdbench.metrics/1",
     "run": {"method": "kdtalker", "paper_row": "KDTalker", "config": {...}},
     "dataset": {"name": "hdtf-mini", "n_clips": 1, "manifest_id": "..."},
     "env": {"device": "cuda", "gpu": "NVIDIA H100 ..."},
     "weights": {name: {"sha256": "...", "verified": true}},
     "metrics": {NAME: {"info": MetricInfo.to_json(), "options": {...}, "status": "ok"|"skipped"|"error",
                        "skip_reason": str|null, "aggregate": {output: {"mean","std","n"}},
                        "failures": {clip_id: reason}, "per_clip": {clip_id: {output: value}}}}}

and optionally ``config.json`` (with ``method``) and ``env.json`` (with ``device``/``gpu``). Only the
standard library is imported here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdbench.errors import KdbenchError

METRICS_FILE = "metrics.json"
SCHEMA = "kdbench.metrics/1"
GT_METHODS = frozenset({"real"})
"""Methods whose row is the ground truth ("Real Video")."""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise KdbenchError(f"{path} is not valid JSON: {e}") from e
    except UnicodeDecodeError as e:
        raise KdbenchError(f"{path} is not UTF-8 text (byte {e.start}): not a kdbench results file") from e
    except OSError as e:
        raise KdbenchError(f"cannot read {path}: {e.strerror or e}") from e
    if not isinstance(data, dict):
        raise KdbenchError(f"{path} does not hold a JSON object")
    return data


@dataclass
class RunResult:
    """One evaluated run: its ``metrics.json`` document plus the run folder's config and env."""

    doc: dict[str, Any]
    path: Path | None = None
    config: dict[str, Any] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)

    # -- identity -------------------------------------------------------------------------------
    @property
    def run(self) -> dict[str, Any]:
        return self.doc.get("run") or {}

    @property
    def method(self) -> str:
        return str(self.run.get("method") or self.config.get("method") or "unknown")

    @property
    def paper_row(self) -> str | None:
        row = self.run.get("paper_row")
        return str(row) if row else None

    @property
    def is_gt(self) -> bool:
        return self.method in GT_METHODS or self.paper_row == "Real Video"

    @property
    def name(self) -> str:
        """A short name of the run (its folder name, else its method)."""
        if self.path is not None:
            p = self.path.parent if self.path.name == METRICS_FILE else self.path
            return p.name
        return self.method

    @property
    def label(self) -> str:
        """The table row name: Table 1's row (``paper_row``) when known, else the method name."""
        return self.paper_row or self.method

    # -- provenance -----------------------------------------------------------------------------
    @property
    def dataset(self) -> dict[str, Any]:
        return self.doc.get("dataset") or {}

    @property
    def manifest_id(self) -> str | None:
        return self.dataset.get("manifest_id")

    @property
    def metrics(self) -> dict[str, dict[str, Any]]:
        return self.doc.get("metrics") or {}

    @property
    def weights(self) -> dict[str, dict[str, Any]]:
        return self.doc.get("weights") or {}

    def env_value(self, key: str) -> Any:
        """``key`` from ``metrics.json["env"]``, else from ``env.json``."""
        for src in (self.doc.get("env") or {}, self.env):
            if src.get(key) not in (None, ""):
                return src[key]
        return None

    @property
    def device(self) -> str:
        """Human-readable device, e.g. ``"cuda (NVIDIA H100 80GB HBM3)"`` or ``"cpu"``; ``"unknown"``."""
        device = self.env_value("device")
        gpu = self.env_value("gpu")
        if isinstance(gpu, dict):
            gpu = gpu.get("name")
        elif isinstance(gpu, list):
            gpu = ", ".join(str(g.get("name", g)) if isinstance(g, dict) else str(g) for g in gpu)
        if device and gpu and str(device) != "cpu":
            return f"{device} ({gpu})"
        return str(device or gpu or "unknown")

    @property
    def copies_input(self) -> bool:
        """True for rows that replay their inputs (``real``: the GT video, ``static``: the reference image),
        whose "FPS" would time a copy, not a generator.

        Read from ``metrics.json["run"]["copies_input"]`` (recorded by ``kdbench eval`` from
        :attr:`kdbench.method.MethodInfo.copies_input`), else ``run.config.copies_input``, else the method's
        registered metadata (runs evaluated before the flag existed), else False."""
        for src in (self.run, self.run.get("config") or {}, self.config):
            if isinstance(src.get("copies_input"), bool):
                return src["copies_input"]
        try:
            from kdbench.registry import METHODS

            return bool(getattr(METHODS.get(self.method).info, "copies_input", False))
        except Exception:  # noqa: BLE001 - unknown/external method or an import failure: not a copy
            return False

    @property
    def timing(self) -> dict[str, float]:
        """Seconds spent per stage of the evaluation, ``{"decode": s, "<metric>": s, "total": s}``.

        Reads, whichever exist: ``metrics.json["timing"] = {"decode_s": s, "metrics": {name: s}}``,
        a per-metric ``metrics[name]["seconds"]`` (or ``["timing"]["seconds"]``), and
        ``metrics.json["eval_seconds"]`` as the total. Missing or non-numeric values are left out."""
        out: dict[str, float] = {}
        timing = self.doc.get("timing") if isinstance(self.doc.get("timing"), dict) else {}
        if finite(timing.get("decode_s")) is not None:
            out["decode"] = finite(timing["decode_s"])
        for name, sec in (timing.get("metrics") or {}).items():
            if isinstance(sec, dict):
                sec = sec.get("seconds", sec.get("total_s"))
            if finite(sec) is not None:
                out[str(name)] = finite(sec)
        for name, entry in self.metrics.items():
            if name in out or not isinstance(entry, dict):
                continue
            sec = entry.get("seconds")
            if sec is None and isinstance(entry.get("timing"), dict):
                sec = entry["timing"].get("seconds")
            if finite(sec) is not None:
                out[name] = finite(sec)
        total = finite(timing.get("total_s")) if timing.get("total_s") is not None else finite(
            self.doc.get("eval_seconds"))
        if out and total is not None:
            out["total"] = total
        return out


def load_run(path: str | Path) -> RunResult:
    """Load a run folder (or a ``metrics.json`` file directly). Raises :class:`KdbenchError`."""
    p = Path(path)
    metrics_path = p / METRICS_FILE if p.is_dir() else p
    if not metrics_path.is_file():
        raise KdbenchError(f"no {METRICS_FILE} at {p} (expected a run folder evaluated by `kdbench`)")
    doc = _read_json(metrics_path)
    schema = doc.get("schema")
    if schema is not None and schema != SCHEMA:
        raise KdbenchError(f"{metrics_path}: schema {schema!r} is not {SCHEMA!r}")
    if not isinstance(doc.get("metrics"), dict):
        raise KdbenchError(f"{metrics_path}: no 'metrics' object")
    folder = metrics_path.parent
    config = _read_json(folder / "config.json") if (folder / "config.json").is_file() else {}
    env = _read_json(folder / "env.json") if (folder / "env.json").is_file() else {}
    check_clip_ids(doc, metrics_path)
    check_same_run(doc, config, metrics_path)
    return RunResult(doc=doc, path=folder if p.is_dir() else metrics_path, config=config, env=env)


CLIP_KEYS = ("per_clip", "failures", "not_applicable")
"""The per-clip maps of a metric entry, keyed by clip id."""


def check_clip_ids(doc: dict[str, Any], path: Path) -> None:
    """Every clip id of ``doc`` (the keys of each metric's per-clip maps) passes the dataset's clip-id check, else
    :class:`KdbenchError` naming the file, metric and id: a results file is input like any other, and the report
    uses clip ids as file names (``gallery/<row>/<clip_id>.mp4``)."""
    from kdbench.dataset import clip_id_problem

    for name, entry in doc["metrics"].items():
        if not isinstance(entry, dict):
            continue
        for key in CLIP_KEYS:
            clips = entry.get(key)
            if clips is None:
                continue
            if not isinstance(clips, dict):
                raise KdbenchError(f"{path}: metrics.{name}.{key} is a {type(clips).__name__}, not an object "
                                   "keyed by clip id")
            for cid in clips:
                why = clip_id_problem(cid)
                if why:
                    raise KdbenchError(f"{path}: metrics.{name}.{key}: {why}. A clip id is a file name: was this "
                                       "file edited?")


def check_same_run(doc: dict[str, Any], config: dict[str, Any], path: Path) -> None:
    """:class:`KdbenchError` when ``metrics.json`` scored another dataset than its run folder's ``config.json``
    records (a results file copied into the wrong folder would show its values beside this folder's videos)."""
    mine = (config.get("dataset") or {}).get("manifest_id") if isinstance(config.get("dataset"), dict) else None
    theirs = (doc.get("dataset") or {}).get("manifest_id") if isinstance(doc.get("dataset"), dict) else None
    if mine and theirs and mine != theirs:
        raise KdbenchError(
            f"{path} scored dataset manifest_id {theirs} ({(doc.get('dataset') or {}).get('name', '?')}), but its run "
            f"folder's config.json was generated on manifest_id {mine} ({config['dataset'].get('name', '?')}): the "
            "results belong to another run. Re-run `kdbench eval` on this folder, or report the folder they came from")


def as_run(obj: RunResult | dict[str, Any] | str | Path) -> RunResult:
    """Accept a :class:`RunResult`, a ``metrics.json`` dict, or a path."""
    if isinstance(obj, RunResult):
        return obj
    if isinstance(obj, dict):
        return RunResult(doc=obj)
    return load_run(obj)


def finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite number, else None."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None
