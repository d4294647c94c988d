"""``kdbench run``: generate every clip of a dataset with one method into a run store.

The driver: resolve the config, open (create or resume) the run folder, hand the clips still to do to the
executor (:mod:`kdbench.executors`, ``--executor local|ray``), and append each clip's event as it comes back. The
unit of work, one clip generated and written, is :class:`kdbench.generation.ClipGenerator`. Clips already done
under the same config are skipped (resume); a clip that fails is recorded with its reason and the run goes on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import FPS, __version__
from .config import config_hash, split_scoped
from .dataset import Dataset, dataset_files
from .envinfo import resolve_device
from .errors import KdbenchError
from .executors import get_executor
from .generation import check_weights
from .normalize import DEFAULT_MAX_PAD_FRAMES
from .options import check_option_types
from .registry import METHODS
from .runstore import RunStore, check_out_apart

log = logging.getLogger("kdbench.run")


@dataclass
class RunSummary:
    run_dir: Path
    ok: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    not_applicable: dict[str, str] = field(default_factory=dict)
    resumed: list[str] = field(default_factory=list)
    load_seconds: float | None = None
    frames: int = 0
    """Frames written by this invocation (all clips)."""
    wall_seconds: float | None = None
    """Wall time from the first clip's start to the last clip's video on disk (throughput, not FPS)."""
    unwritten: list[str] = field(default_factory=list)
    """Clips (also in ``failed``) whose video could not be written: the disk is full, over quota or failing."""


def default_frame_size(ds: Dataset) -> tuple[int, int]:
    """The dataset's frame size (:meth:`Dataset.frame_size`: recorded in the manifest, the same for every clip)."""
    return ds.frame_size()


def build_config(method: str, ds: Dataset, options: dict[str, Any], seed: int, device: str,
                 frame_size: tuple[int, int], grid: str | None,
                 normalizer: dict[str, Any] | None = None) -> dict[str, Any]:
    cls = METHODS.get(method)
    plain, scoped = split_scoped(options)
    if scoped:
        raise KdbenchError(f"metric options ({', '.join(f'{k}.*' for k in scoped)}) belong to `kdbench eval --set`")
    unknown = set(plain) - set(cls.default_options)
    if unknown:
        raise KdbenchError(f"method {method!r} has no option(s) {sorted(unknown)}; "
                           f"known: {sorted(cls.default_options) or 'none'}")
    plain = check_option_types(method, plain, cls.default_options, cls.option_types,
                               getattr(cls, "option_ranges", None))
    cfg = {
        "method": method,
        "method_version": cls.info.version,
        "paper_row": cls.info.paper_row,
        "options": {**cls.default_options, **plain},
        "dataset": {"name": ds.name, "root": str(ds.root), "manifest_id": ds.manifest_id},
        "seed": seed,
        "device": device,
        "frame_size": list(frame_size),
        "fps": FPS,
        "grid": grid,
        "normalizer": normalizer or {"max_pad_frames": DEFAULT_MAX_PAD_FRAMES, "letterbox": False},
        "kdbench_version": __version__,
    }
    cfg["config_hash"] = config_hash(cfg)
    return cfg


def prepare_run(method: str, ds: Dataset, out: str | Path, *, options: dict[str, Any] | None = None,
                seed: int = 0, device: str = "cpu", frame_size: tuple[int, int] | None = None,
                grid: str | None = None, policy: dict[str, Any] | None = None,
                check_ready: bool = False) -> tuple[RunStore, dict[str, Any]]:
    """Resolve the config and open (create or resume) the run folder. The executor is not part of the config,
    so a run started with one executor can be finished with another. ``check_ready``: refuse a method that is
    not ready here (:mod:`kdbench.readiness`) before the folder exists."""
    device = resolve_device(device)  # an unusable device fails here, before the run folder exists
    frame_size = tuple(frame_size) if frame_size else default_frame_size(ds)
    config = build_config(method, ds, options or {}, seed, device, frame_size, grid, policy)  # bad options first
    if check_ready:
        _check_ready(method)
    check_out_apart(out, files=dataset_files(ds))  # never write over the dataset's own files
    return RunStore(out).open(config), config


def _check_ready(method: str) -> None:
    """Raise when ``method`` is unknown or not ready (:mod:`kdbench.readiness`), naming the fixing command."""
    from .readiness import method_readiness
    from .weights import WeightsManager

    METHODS.get(method)  # an unknown method: the registry's message with the names that exist
    weights = WeightsManager()
    ready = method_readiness(method, weights)
    if not ready.ready:
        check_weights(method, weights)  # native weights missing: the message that also says where files go
        raise KdbenchError(ready.message())


def run_method(method: str, ds: Dataset, out: str | Path, *, options: dict[str, Any] | None = None,
               seed: int = 0, device: str = "cpu", limit: int | None = None, warmup: int = 1,
               frame_size: tuple[int, int] | None = None, grid: str | None = None,
               max_pad_frames: int = DEFAULT_MAX_PAD_FRAMES, letterbox: bool = False,
               progress: bool = True, overlap_writes: bool = False, executor: str = "local",
               ray_address: str | None = None, workers: int | None = None,
               gpus_per_worker: float = 1.0, keep_generated: bool = False) -> RunSummary:
    """Run ``method`` on (the first ``limit`` clips of) ``ds`` into the run folder ``out``.

    ``max_pad_frames`` / ``letterbox``: the normaliser's policy (:mod:`kdbench.normalize`), recorded in the config.

    ``executor``: ``local`` (this process) or ``ray`` (one long-lived actor per worker, see
    :mod:`kdbench.executors`); both give the same videos and events.

    ``overlap_writes`` (throughput mode, local executor): clip i is normalised, encoded and written on a writer
    thread while clip i+1 generates (at most one clip waits; events keep the clip order). The videos and events
    are those of the default mode; the generation clock still brackets only ``generate``, but encoding then
    competes with it for the CPU, so take FPS from a default-mode run. Either way a ``throughput`` event records
    frames per wall second of the whole loop (never called FPS).

    ``keep_generated`` (local executor): also keep each clip's output as the method handed it to the normaliser,
    losslessly, in ``generated/`` (recorded in its event as ``generated``); the scored videos are unchanged.
    """

    # built first, so that an unknown --executor, or a flag it refuses (--keep-generated with ray), fails before the
    # run folder exists
    exe = get_executor(executor, overlap_writes=overlap_writes, ray_address=ray_address, workers=workers,
                       gpus_per_worker=gpus_per_worker, keep_generated=keep_generated)
    policy = {"max_pad_frames": int(max_pad_frames), "letterbox": bool(letterbox)}
    store, config = prepare_run(method, ds, out, options=options, seed=seed, device=device,
                                frame_size=frame_size, grid=grid, policy=policy, check_ready=executor == "local")
    chash = config["config_hash"]
    summary = RunSummary(run_dir=store.root)
    clips = ds.limit(limit).clips
    done = store.done(chash)
    todo = [c for c in clips if c.clip_id not in done]
    summary.resumed = [c.clip_id for c in clips if c.clip_id in done]
    if summary.resumed:
        log.info("resuming: %d clip(s) already done", len(summary.resumed))
    if not todo:
        return summary

    def record(event: dict[str, Any]) -> None:
        store.append_event(event)
        if event.get("status") == "ok":
            summary.ok.append(event["clip_id"])
            summary.frames += int(event.get("n_frames") or 0)
        elif event.get("status") == "not_applicable":
            summary.not_applicable[event["clip_id"]] = event.get("error", "?")
        else:
            summary.failed[event["clip_id"]] = event.get("error", "?")
            if event.get("write_error"):
                summary.unwritten.append(event["clip_id"])

    outcome = exe.generate(config, store, todo, record, warmup=warmup, progress=progress)
    summary.load_seconds = outcome.load_seconds
    _throughput(store, summary, outcome.loop_seconds, len(todo), exe.overlap_writes)
    store.write_env(outcome.env)
    return summary


def _throughput(store: RunStore, summary: RunSummary, loop_seconds: float, n_clips: int, overlap: bool) -> None:
    """Append the ``throughput`` event: frames per wall second of the whole generation loop (never called FPS)."""
    summary.wall_seconds = loop_seconds
    store.append_event({"event": "throughput", "clips": n_clips, "frames": summary.frames,
                        "wall_seconds": summary.wall_seconds, "overlap_writes": bool(overlap),
                        "frames_per_wall_second": summary.frames / summary.wall_seconds
                        if summary.wall_seconds > 0 else None, "time": time.time()})
