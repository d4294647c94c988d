"""``kdbench eval``: score a run (or any folder of ``<clip_id>.mp4``) with registered metrics.

One clip's path: dataset row → run store video → frames decoded once (:class:`EvalClip`) → each
metric's ``score_clip`` (per-metric features, pure scoring) → ``aggregate`` → ``metrics.json``.
Metrics whose weights are absent are listed as skipped with the exact command that fetches them.
"""

from __future__ import annotations

import logging
import re
import time
import traceback
from pathlib import Path
from typing import Any

from . import __version__
from .clip import EvalClip
from .config import split_scoped
from .dataset import BUILTIN_DATASETS, Dataset, load_dataset
from .envinfo import collect_env, resolve_device
from .errors import ClipFailure, KdbenchError, WeightsChecksumError, WeightsMissing
from .numerics import PRECISION, on_gpu
from .registry import METRICS
from .runstore import RunStore, write_json_atomic

log = logging.getLogger("kdbench.eval")

DEFAULT_METRICS = ("lse", "diversity", "pose_offline", "fid", "cpbd", "csim", "csim_dlib", "fps")
SCHEMA = "kdbench.metrics/1"


def dataset_of_run(config: dict[str, Any]) -> Dataset:
    d = config["dataset"]
    ds = load_dataset(d["name"] if d["name"] in BUILTIN_DATASETS else d["root"])
    if ds.manifest_id != d["manifest_id"]:
        raise KdbenchError(f"dataset {d['name']} changed since the run (manifest_id {ds.manifest_id} vs "
                           f"{d['manifest_id']}): its files differ from those the run used")
    return ds


def _instantiate_failure(record: dict[str, Any], e: WeightsMissing, weights) -> dict[str, Any]:
    """A ``skipped`` record naming the missing weight file and the command that fetches it."""
    m = re.search(r"weights '([^']+)'", str(e))
    name = m.group(1) if m else "?"
    entry = weights.entries.get(name)
    hint = f"pip install {entry.package}" if entry is not None and entry.package else f"kdbench weights fetch {name}"
    file = f" ({entry.file})" if entry is not None else ""
    return {**record, "status": "skipped", "aggregate": {}, "failures": {}, "per_clip": {},
            "skip_reason": f"weights {name!r}{file} are missing: run `{hint}`", "fetch": hint, "detail": str(e)}


def _instantiate(name: str, options: dict[str, Any], device: str, weights, context: dict[str, Any]):
    """(metric, None) or (None, skip record)."""
    try:
        cls = METRICS.get(name)
    except ImportError as e:
        return None, {"info": {"name": name}, "options": options, "status": "skipped", "aggregate": {},
                      "failures": {}, "per_clip": {},
                      "skip_reason": f"cannot import the metric ({e}); install kdbench[metrics]"}
    skip = {"info": cls.info.to_json(), "options": {**cls.default_options, **options}, "status": "skipped",
            "aggregate": {}, "failures": {}, "per_clip": {}}
    try:
        metric = cls(options=options, device=device, weights=weights)
    except WeightsMissing as e:
        return None, _instantiate_failure(skip, e, weights)
    except WeightsChecksumError as e:
        return None, {**skip, "skip_reason": str(e)}
    metric.context = dict(context)
    reason = metric.skip_reason()
    if reason:
        return None, {**skip, "options": metric.options, "skip_reason": reason}
    return metric, None


def _copies_input(config: dict[str, Any]) -> bool:
    """The method's ``MethodInfo.copies_input`` (False for external videos and unknown methods)."""
    from .registry import METHODS

    try:
        return bool(METHODS.get(config["method"]).info.copies_input)
    except (KdbenchError, ImportError):
        return False


def evaluate_run(run_dir: str | Path, metrics: list[str] | None = None, sets: dict[str, Any] | None = None,
                 device: str = "cpu", out: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Score the videos of a run folder; write and return ``metrics.json``."""
    from tqdm import tqdm

    from .weights import WeightsManager

    store = RunStore(run_dir)
    if not store.exists():
        raise KdbenchError(f"{run_dir} is not a run folder (no config.json); create one with `kdbench run`")
    config = store.config()
    ds = dataset_of_run(config)
    events = store.clip_events()
    load_events = [e for e in store.events() if e.get("event") == "load"]
    device = resolve_device(device)
    plain, scoped = split_scoped(sets or {})
    names = list(metrics or DEFAULT_METRICS)
    if plain:
        raise KdbenchError(f"metric options need a metric prefix, e.g. --set lse.protocol=full (got {sorted(plain)})")
    unknown = set(scoped) - set(names)
    if unknown:
        raise KdbenchError(f"--set for metric(s) not being evaluated: {sorted(unknown)}")
    from .registry import METHODS

    try:
        generates = METHODS.get(config["method"]).info.generates
    except KdbenchError:
        generates = config.get("generates", True)
    context = {"manifest_id": ds.manifest_id, "dataset": ds.name, "method": config["method"],
               "generates": generates and config.get("generates", True), "device": device, "run_dir": str(store.root),
               "load_seconds": load_events[-1]["seconds"] if load_events else None}
    weights = WeightsManager()
    results: dict[str, dict[str, Any]] = {}
    active = {}
    for name in names:
        metric, skipped = _instantiate(name, scoped.get(name, {}), device, weights, context)
        if skipped:
            results[name] = skipped
            log.info("metric %s skipped: %s", name, skipped["skip_reason"])
        else:
            active[name] = metric
            results[name] = {"info": metric.info.to_json(), "options": metric.options, "status": "ok",
                             "skip_reason": None, "aggregate": {}, "failures": {}, "per_clip": {}}

    clip_ids = [c.clip_id for c in ds.clips if c.clip_id in events]
    t0 = time.perf_counter()
    for cid in tqdm(clip_ids, desc=f"eval {config['method']}", unit="clip", disable=not progress or not active):
        spec = ds.get(cid)
        ev = events[cid]
        if ev.get("status") != "ok":
            for name in active:
                results[name]["failures"][cid] = f"generation failed: {ev.get('error')}"
            continue
        clip = EvalClip(spec=spec, video_path=store.video_path(cid), event=ev)
        for name, metric in list(active.items()):
            try:
                if metric.info.needs_gt and spec.gt_video is None:
                    raise ClipFailure("no GT video for this clip")
                results[name]["per_clip"][cid] = metric.score_clip(clip)
            except WeightsMissing as e:  # weights looked up lazily: the metric cannot run at all
                results[name] = _instantiate_failure(results[name], e, weights)
                del active[name]
            except (ClipFailure, KdbenchError) as e:
                results[name]["failures"][cid] = str(e)
            except Exception as e:  # noqa: BLE001 - recorded per clip, never a silent number
                results[name]["failures"][cid] = f"{type(e).__name__}: {e}"
                log.error("metric %s failed on %s:\n%s", name, cid, traceback.format_exc())
        del clip
    for name, metric in active.items():
        try:
            agg = metric.aggregate(results[name]["per_clip"])
        except Exception as e:  # noqa: BLE001
            results[name]["status"] = "error"
            results[name]["skip_reason"] = f"aggregation failed: {type(e).__name__}: {e}"
            agg = {}
        for a in agg.values():
            a.setdefault("n_failed", len(results[name]["failures"]))
            a.setdefault("n_clips", len(clip_ids))
        results[name]["aggregate"] = agg

    env = collect_env(device)
    if on_gpu(device):
        env["metrics_fp32_precision"] = PRECISION  # score_clip runs without TF32 (kdbench.numerics)
    doc = {
        "schema": SCHEMA,
        "kdbench_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "eval_seconds": time.perf_counter() - t0,
        "run": {"run_dir": str(store.root), "method": config["method"], "paper_row": config.get("paper_row"),
                "copies_input": _copies_input(config),
                "config": config, "config_hash": config["config_hash"], "generation_env": store.env()},
        "dataset": {**ds.describe(), "n_clips": len(clip_ids)},
        "env": env,
        "weights": {**store.env().get("weights", {}), **weights.record()},
        "metrics": results,
    }
    doc["weights_verified"] = all(w.get("verified", True) for w in doc["weights"].values())
    write_json_atomic(Path(out) if out else store.root / "metrics.json", doc)
    return doc


def import_videos(videos_dir: str | Path, ds: Dataset, out: str | Path, *, frame_size=None, grid: str | None = None,
                  progress: bool = True) -> RunStore:
    """Turn a folder of ``<clip_id>.mp4`` from any tool into a run store (normalised, no timing)."""
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
              "frame_size": list(frame_size), "grid": grid, "kdbench_version": __version__}
    config["config_hash"] = config_hash(config)
    store = RunStore(out).open(config)
    done = store.done(config["config_hash"])
    grid_crop = GridCrop.parse(grid)
    for spec in tqdm(ds.clips, desc="import videos", unit="clip", disable=not progress):
        if spec.clip_id in done:
            continue
        src = videos_dir / f"{spec.clip_id}.mp4"
        event: dict[str, Any] = {"clip_id": spec.clip_id, "config_hash": config["config_hash"], "time": time.time()}
        try:
            if not src.is_file():
                raise ClipFailure(f"no video {src.name} in {videos_dir}")
            report = normalize_to_file(store.video_path(spec.clip_id), spec.load_audio(), frame_size,
                                       video_path=src, grid=grid_crop)
            event.update(status="ok", n_frames=report.n_frames, normalizer=report.to_json(), timed=False)
        except (ClipFailure, KdbenchError) as e:
            event.update(status="failed", error=str(e))
        store.append_event(event)
    return store
