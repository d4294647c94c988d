"""The unit of work of ``kdbench eval``: build the metrics once, then score one clip with all of them.

Executors (:mod:`kdbench.executors`) call :func:`score_one` (in this process, or on Ray actors that built their own
metrics with :func:`instantiate_metric`); the evaluator (:mod:`kdbench.evaluate`) drives them and aggregates.
Nothing here imports the evaluator or an executor.

Outcomes per metric and clip: ``("ok", record)``, ``("fail", reason)``, ``("na", reason)``,
``("weights", WeightsMissing)`` or ``("checksum", WeightsChecksumError)``; nothing raises for a bad clip.
"""

from __future__ import annotations

import logging
import re
import time
import traceback
from pathlib import Path
from typing import Any

from .clip import EvalClip
from .errors import ClipFailure, KdbenchError, NotApplicable, WeightsChecksumError, WeightsMissing
from .interrupt import stopping
from .registry import METRICS
from .runstore import RunStore

log = logging.getLogger("kdbench.eval")


def instantiate_failure(record: dict[str, Any], e: WeightsMissing, weights) -> dict[str, Any]:
    """A ``skipped`` record naming the missing weight file and the command that fetches it."""
    m = re.search(r"weights '([^']+)'", str(e))
    name = m.group(1) if m else "?"
    entry = weights.entries.get(name)
    hint = f"pip install {entry.package}" if entry is not None and entry.package else f"kdbench weights fetch {name}"
    file = f" ({entry.file})" if entry is not None else ""
    return {**record, "status": "skipped", "aggregate": {}, "failures": {}, "per_clip": {},
            "skip_reason": f"weights {name!r}{file} are missing: run `{hint}`", "fetch": hint, "detail": str(e)}


def instantiate_metric(name: str, options: dict[str, Any], device: str, weights, context: dict[str, Any]):
    """Build metric ``name`` with its options: ``(metric, None)``, or ``(None, skip record)`` saying why not."""
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
        return None, instantiate_failure(skip, e, weights)
    except WeightsChecksumError as e:
        return None, {**skip, "skip_reason": str(e)}
    metric.context = dict(context)
    reason = metric.skip_reason()
    if reason:
        return None, {**skip, "options": metric.options, "skip_reason": reason}
    return metric, None


def video_changed(video_path: Path, event: dict[str, Any]) -> str | None:
    """A per-clip failure when the video is not the one the run wrote (checked when the event recorded it)."""
    if "video_sha256" not in event and video_path.is_file():
        return None  # run written before kdbench recorded video checksums
    why = RunStore(video_path.parent.parent).video_problem(event["clip_id"], event)
    return f"{why}; re-run `kdbench run` with the same settings to generate it again" if why else None


def score_one(active: dict[str, Any], spec, event: dict[str, Any], video_path: Path, *,
              clip: EvalClip | None = None, seconds: dict[str, float] | None = None,
              side=None) -> dict[str, tuple[str, Any]]:
    """Score one clip with every active metric: ``{metric: ("ok", record) | ("fail", reason) |
    ("na", reason) | ("weights", WeightsMissing) | ("checksum", WeightsChecksumError)}``. Frames are decoded
    once and shared; nothing raises for a bad clip.

    ``clip``: an :class:`EvalClip` already decoded (by :func:`prefetch`); ``seconds`` accumulates each
    metric's wall time; ``side``: a thread pool on which metrics that compute in their own worker processes
    (``Metric.cpu_pool``, e.g. CPBD) run while the others use this thread and the GPU.
    """
    if event.get("status") == "not_applicable":
        return {name: ("na", f"not generated: {event.get('error')}") for name in active}
    if event.get("status") != "ok":
        return {name: ("fail", f"generation failed: {event.get('error')}") for name in active}
    changed = video_changed(video_path, event)
    if changed:
        return {name: ("fail", changed) for name in active}
    try:
        spec.check_files()
    except KdbenchError as e:  # a dataset file changed since the manifest: no metric may use this clip
        return {name: ("fail", str(e)) for name in active}
    clip = clip if clip is not None else EvalClip(spec=spec, video_path=video_path, event=event)

    def run(name: str, metric) -> tuple[str, Any]:
        t0 = time.perf_counter()
        try:
            if metric.info.needs_gt and spec.gt_video is None:
                raise NotApplicable("no GT video for this clip")
            record = metric.score_clip(clip)
            if metric.info.needs_gt and clip.gt_vfr:  # its GT frames were resampled by timestamp (EvalClip.gt_frames)
                record = {**record, "gt_vfr": True}
            return ("ok", record)
        except NotApplicable as e:
            return ("na", str(e))
        except WeightsMissing as e:
            return ("weights", e)
        except WeightsChecksumError as e:  # a weight file fails verification or is an unsafe pickle
            return ("checksum", e)
        except (ClipFailure, KdbenchError) as e:
            return ("fail", str(e))
        except Exception as e:  # noqa: BLE001 - recorded per clip, never a silent number
            if stopping():  # SIGTERM/SIGINT ended the metric's worker processes: not the clip's fault
                return ("fail", "interrupted")
            log.error("metric %s failed on %s:\n%s", name, spec.clip_id, traceback.format_exc())
            return ("fail", f"{type(e).__name__}: {e}")
        finally:
            if seconds is not None:
                seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t0

    aside = {name: side.submit(run, name, m) for name, m in active.items()
             if side is not None and getattr(m, "cpu_pool", False)}
    out = {name: run(name, m) for name, m in active.items() if name not in aside}
    out.update({name: f.result() for name, f in aside.items()})
    return {name: out[name] for name in active}


def prefetch(spec, event: dict[str, Any], video_path: Path, need_gt: bool) -> tuple[EvalClip, float]:
    """An :class:`EvalClip` with its frames (and GT frames when a metric needs them) decoded; seconds spent.

    Runs on a background thread while the previous clip is scored (PyAV decodes without the GIL). A video that
    cannot be decoded is left undecoded: the metrics then raise the decoding error as a per-clip failure.
    """
    clip = EvalClip(spec=spec, video_path=video_path, event=event)
    t0 = time.perf_counter()
    if event.get("status") == "ok":
        try:
            clip.frames  # noqa: B018 - decode now, off the scoring thread
            if need_gt and spec.gt_video is not None:
                clip.gt_frames  # noqa: B018
        except Exception:  # noqa: BLE001 - reported by the metric that reads the frames
            pass
    return clip, time.perf_counter() - t0
