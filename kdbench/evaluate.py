"""``kdbench eval``: score a run (or any folder of ``<clip_id>.mp4``) with registered metrics.

The driver: build the metrics, hand the run's clips to the executor (:mod:`kdbench.executors`,
``--executor local|ray``), collect each clip's outcomes, aggregate, and write ``metrics.json``. The unit of work,
one clip scored by every metric, is :func:`kdbench.scoring.score_one`: run store video → frames decoded once
(:class:`kdbench.clip.EvalClip`) → each metric's ``score_clip`` (per-metric features, pure scoring). Metrics whose
weights are absent are listed as skipped with the exact command that fetches them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from . import __version__
from .config import split_scoped
from .dataset import BUILTIN_DATASETS, Dataset, dataset_files, load_dataset
from .envinfo import collect_env, resolve_device
from .errors import ClipFailure, KdbenchError, WeightsMissing
from .executors import ScoreJob, check_executor, get_executor
from .normalize import DEFAULT_MAX_PAD_FRAMES, normalizer_summary
from .numerics import PRECISION, on_gpu
from .options import check_metric_options
from .runstore import RunStore, check_out_apart, write_json_atomic
from .scoring import instantiate_failure, instantiate_metric

log = logging.getLogger("kdbench.eval")

DEFAULT_METRICS = ("lse", "diversity", "pose_offline", "fid", "cpbd", "csim", "csim_dlib", "fvd", "fps")
SCHEMA = "kdbench.metrics/1"


def dataset_of_run(config: dict[str, Any]) -> Dataset:
    d = config["dataset"]
    ds = load_dataset(d["name"] if d["name"] in BUILTIN_DATASETS else d["root"])
    if ds.manifest_id != d["manifest_id"]:
        raise KdbenchError(f"dataset {d['name']} changed since the run (manifest_id {ds.manifest_id} vs "
                           f"{d['manifest_id']}): its files differ from those the run used")
    return ds


def _weights_before_na(record: dict[str, Any], weights) -> None:
    """Turn ``record`` (a metric that applied to no clip) into a weights-missing skip when a weight file it
    declares is missing: "not applicable" would hide that the metric could not have run at all."""
    absent = [w for w in (record.get("info") or {}).get("weights") or [] if not weights.available(w)]
    if absent:
        e = WeightsMissing(f"weights '{absent[0]}' are not available")
        record.update(instantiate_failure(record, e, weights), not_applicable=record["not_applicable"])


def _copies_input(config: dict[str, Any]) -> bool:
    """The method's ``MethodInfo.copies_input`` (False for external videos and unknown methods)."""
    from .registry import METHODS

    try:
        return bool(METHODS.get(config["method"]).info.copies_input)
    except (KdbenchError, ImportError):
        return False


def check_eval_request(metrics: list[str] | None, sets: dict[str, Any] | None,
                       device: str) -> tuple[list[str], dict[str, dict[str, Any]], str]:
    """Validate an evaluation before anything is read, scored or written: metric names, ``--set`` keys and the
    kinds of their values, and the device (a missing GPU is an error). Returns (names, scoped options, device)."""
    plain, scoped = split_scoped(sets or {})
    names = list(metrics or DEFAULT_METRICS)
    if plain:
        raise KdbenchError(f"metric options need a metric prefix, e.g. --set lse.protocol=full (got {sorted(plain)})")
    unknown = set(scoped) - set(names)
    if unknown:
        raise KdbenchError(f"--set for metric(s) not being evaluated: {sorted(unknown)}")
    check_metric_options(names, scoped)
    return names, scoped, resolve_device(device)


def evaluate_run(run_dir: str | Path, metrics: list[str] | None = None, sets: dict[str, Any] | None = None,
                 device: str = "cpu", out: str | Path | None = None, progress: bool = True,
                 executor: str = "local", ray_address: str | None = None, workers: int | None = None,
                 gpus_per_worker: float = 1.0) -> dict[str, Any]:
    """Score the videos of a run folder; write and return ``metrics.json``.

    An existing ``metrics.json`` of the same run keeps every metric not evaluated now; the file is replaced
    (atomically) only once the new results are complete. ``executor="ray"`` scores clips on actors that hold the
    metric networks (:mod:`kdbench.executors`); per-clip records are the same, and set-level metrics (FID) are
    merged from the actors' sufficient statistics.
    """
    from .weights import WeightsManager

    check_executor(executor)
    names, scoped, device = check_eval_request(metrics, sets, device)
    store = RunStore(run_dir)
    if not store.exists():
        raise KdbenchError(f"{run_dir} is not a run folder (no config.json); create one with `kdbench run`")
    store.clean_temp_files()  # e.g. a metrics.json being written when a previous eval was killed
    config = store.config()
    ds = dataset_of_run(config)
    events = store.clip_events()
    load_events = [e for e in store.events() if e.get("event") == "load"]
    from .registry import METHODS

    try:
        generates = METHODS.get(config["method"]).info.generates
    except KdbenchError:
        generates = config.get("generates", True)
    context = {"manifest_id": ds.manifest_id, "dataset": ds.name, "method": config["method"],
               "generates": generates and config.get("generates", True), "copies_input": _copies_input(config),
               "device": device, "run_dir": str(store.root), "external_videos": config.get("videos"),
               "load_seconds": load_events[-1]["seconds"] if load_events else None}
    weights = WeightsManager()
    results: dict[str, dict[str, Any]] = {}
    active = {}
    for name in names:
        metric, skipped = instantiate_metric(name, scoped.get(name, {}), device, weights, context)
        if skipped:
            results[name] = skipped
            log.info("metric %s skipped: %s", name, skipped["skip_reason"])
        else:
            active[name] = metric
            results[name] = {"info": metric.info.to_json(), "options": metric.options, "status": "ok",
                             "skip_reason": None, "aggregate": {}, "failures": {}, "not_applicable": {},
                             "per_clip": {}}

    clip_ids = [c.clip_id for c in ds.clips if c.clip_id in events]
    t0 = time.perf_counter()
    seconds: dict[str, float] = {}

    def record(cid: str, outcome: dict[str, tuple[str, Any]]) -> None:
        for name, (kind, value) in outcome.items():
            if name not in active:
                continue
            if kind == "ok":
                results[name]["per_clip"][cid] = value
            elif kind == "fail":
                results[name]["failures"][cid] = value
            elif kind == "na":
                results[name]["not_applicable"][cid] = value
            elif kind == "checksum":  # a weight file fails verification or is an unsafe pickle
                results[name] = {**results[name], "status": "skipped", "skip_reason": str(value), "per_clip": {}}
                del active[name]
            else:  # weights looked up lazily: the metric cannot run at all
                results[name] = instantiate_failure(results[name], value, weights)
                del active[name]

    job = ScoreJob(ds=ds, store=store, clip_ids=clip_ids, events=events, names=list(active), scoped=scoped,
                   device=device, context=context, active=active, desc=f"eval {config['method']}", seconds=seconds)
    env_executor = get_executor(executor, ray_address=ray_address, workers=workers,
                                gpus_per_worker=gpus_per_worker).score(job, record, progress=progress)
    for name, metric in active.items():
        t_agg = time.perf_counter()
        try:
            agg = metric.aggregate(results[name]["per_clip"])
        except Exception as e:  # noqa: BLE001
            results[name]["status"] = "error"
            results[name]["skip_reason"] = f"aggregation failed: {type(e).__name__}: {e}"
            agg = {}
        for a in agg.values():
            a.setdefault("n_failed", len(results[name]["failures"]))
            a.setdefault("n_not_applicable", len(results[name]["not_applicable"]))
            a.setdefault("n_clips", len(clip_ids))
        results[name]["aggregate"] = agg
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t_agg
    for name, m in results.items():
        if m.get("status") == "ok" and not m["per_clip"] and not m["failures"] and m.get("not_applicable"):
            _weights_before_na(m, weights)  # no clip applied, so its weights were never looked up
        if m.get("status") == "skipped":  # the time until a lazily looked-up weight file was found missing
            seconds.pop(name, None)
        elif name in seconds:
            m["seconds"] = seconds[name]

    env = collect_env(device)
    env["executor"] = env_executor
    if on_gpu(device):
        env["metrics_fp32_precision"] = PRECISION  # score_clip runs without TF32 (kdbench.numerics)
    doc = {
        "schema": SCHEMA,
        "kdbench_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "eval_seconds": time.perf_counter() - t0,
        "timing": {"wall_s": time.perf_counter() - t0, "decode_s": seconds.get("decode"),
                   "metrics": {n: v for n, v in seconds.items() if n != "decode"},
                   "note": "seconds per metric summed over clips (wall time of its calls, aggregation included); "
                           "decoding runs on a background thread and overlaps scoring"},
        "run": {"run_dir": str(store.root), "method": config["method"], "paper_row": config.get("paper_row"),
                "copies_input": _copies_input(config),
                "config": config, "config_hash": config["config_hash"], "generation_env": store.env()},
        "dataset": {**ds.describe(), "n_clips": len(clip_ids)},
        "normalizer": normalizer_summary({c: events[c] for c in clip_ids}, config),
        "env": env,
        "weights": {**store.env().get("weights", {}), **weights.record()},
        "metrics": results,
    }
    for name in results:
        used = (results[name].get("info") or {}).get("weights") or []
        used_on = active[name].device_used if name in active else None
        results[name]["evaluated"] = {"created": doc["created"], "device": used_on, "kdbench_version": __version__,
                                      "weights_sha256": {w: doc["weights"].get(w, {}).get("sha256") for w in used}}
    target = Path(out) if out else store.root / "metrics.json"
    doc = merge_metrics(target, doc)
    doc["weights_verified"] = all(w.get("verified", True) for w in doc["weights"].values())
    doc["weights_trust"] = weights_trust(doc["weights"])
    write_json_atomic(target, doc)
    return doc


def weights_trust(weights: dict[str, dict[str, Any]]) -> str:
    """``verified`` (every file matches a published checksum), ``tofu`` (some are trusted on first use) or
    ``unverified`` (some differ from their pin, used under KDBENCH_ALLOW_UNVERIFIED)."""
    trusts = {w.get("trust", "pinned" if w.get("verified", True) else "unverified") for w in weights.values()}
    return "unverified" if "unverified" in trusts else "tofu" if "tofu" in trusts else "verified"


def merge_metrics(target: Path, doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` plus every metric of the ``metrics.json`` at ``target`` that ``doc`` does not replace.

    Old metrics are kept only when they belong to the same run: same schema, run config hash and dataset
    ``manifest_id``; otherwise they cannot be mixed with the new ones and the old file is moved to
    ``metrics.json.<created>.other-run``. An unreadable old file is moved to ``metrics.json.unreadable``. Nothing
    is overwritten silently.
    """
    if not target.is_file():
        return doc
    try:
        old = json.loads(target.read_text())
        if not isinstance(old, dict) or not isinstance(old.get("metrics"), dict):
            raise ValueError("no 'metrics' object")
    except (ValueError, UnicodeDecodeError) as e:
        backup = target.with_name(target.name + ".unreadable")
        os.replace(target, backup)
        log.warning("%s is not a kdbench metrics file (%s); moved to %s", target, e, backup)
        return doc
    same = (old.get("schema") == doc["schema"]
            and (old.get("run") or {}).get("config_hash") == doc["run"]["config_hash"]
            and (old.get("dataset") or {}).get("manifest_id") == doc["dataset"]["manifest_id"])
    kept = {k: v for k, v in old["metrics"].items() if k not in doc["metrics"]}
    if not same:
        stamp = re.sub(r"[^0-9A-Za-z]", "", str(old.get("created") or "old"))[:20]
        backup = target.with_name(f"{target.name}.{stamp}.other-run")
        os.replace(target, backup)
        log.warning("%s belongs to another run or dataset (not mixed with these results); moved to %s", target, backup)
        return doc
    merged = dict(doc)
    merged["metrics"] = {**kept, **doc["metrics"]}
    merged["weights"] = {**(old.get("weights") or {}), **doc["weights"]}
    return merged


def external_video(videos_dir: Path, clip_id: str) -> Path:
    """``videos_dir/<clip_id>.mp4`` if it is a file inside ``videos_dir`` (symlinks resolved), else ClipFailure."""
    from .dataset import check_clip_id

    src = videos_dir / f"{check_clip_id(clip_id)}.mp4"
    if not src.is_file():
        raise ClipFailure(f"no video {src.name} in {videos_dir}")
    if not src.resolve().is_relative_to(videos_dir.resolve()):
        raise ClipFailure(f"{src} resolves to {src.resolve()}, outside {videos_dir}: only files inside the --videos "
                          "folder are read (copy the video there instead of linking it)")
    return src


def import_videos(videos_dir: str | Path, ds: Dataset, out: str | Path, *, frame_size=None, grid: str | None = None,
                  max_pad_frames: int = DEFAULT_MAX_PAD_FRAMES, letterbox: bool = False,
                  progress: bool = True) -> RunStore:
    """Turn a folder of ``<clip_id>.mp4`` from any tool into a run store (normalised, no timing).

    ``max_pad_frames`` / ``letterbox``: the normaliser's policy (:mod:`kdbench.normalize`), recorded in the config.
    """
    from tqdm import tqdm

    from .config import config_hash
    from .normalize import GridCrop, normalize_to_file
    from .runner import default_frame_size

    videos_dir = Path(videos_dir)
    if not videos_dir.is_dir():
        raise KdbenchError(f"--videos {videos_dir} is not a folder")
    frame_size = tuple(frame_size) if frame_size else default_frame_size(ds)
    config = {"method": f"external:{videos_dir.name}", "generates": False, "paper_row": None,
              "videos": str(videos_dir.resolve()),
              "dataset": {"name": ds.name, "root": str(ds.root), "manifest_id": ds.manifest_id},
              "frame_size": list(frame_size), "grid": grid, "kdbench_version": __version__,
              "normalizer": {"max_pad_frames": int(max_pad_frames), "letterbox": bool(letterbox)}}
    config["config_hash"] = config_hash(config)
    check_out_apart(out, folders=[("--videos", videos_dir)], files=dataset_files(ds))  # before anything is written
    store = RunStore(out).open(config)
    done = store.done(config["config_hash"])
    grid_crop = GridCrop.parse(grid)
    for spec in tqdm(ds.clips, desc="import videos", unit="clip", disable=not progress):
        if spec.clip_id in done:
            continue
        event: dict[str, Any] = {"clip_id": spec.clip_id, "config_hash": config["config_hash"], "time": time.time()}
        try:
            src = external_video(videos_dir, spec.clip_id)
            spec.check_files()
            report = normalize_to_file(store.video_path(spec.clip_id), spec.load_audio(), frame_size,
                                       video_path=src, grid=grid_crop, **config["normalizer"])
            event.update(status="ok", n_frames=report.n_frames, normalizer=report.to_json(), timed=False,
                         **store.video_record(spec.clip_id))
        except (ClipFailure, KdbenchError) as e:
            event.update(status="failed", error=str(e))
        store.append_event(event)
    return store
