"""``kdbench run``: generate every clip of a dataset with one method into a run store.

Per clip: load reference image and audio → ``method.generate`` (timed, device synchronised) →
normaliser → ``videos/<clip_id>.mp4`` + one event. Clips already done under the same config are
skipped (resume); a clip that fails is recorded with its reason and the run goes on.
"""

from __future__ import annotations

import logging
import random
import resource
import sys
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import FPS, __version__
from .audio import check_audio
from .config import config_hash, split_scoped
from .dataset import Dataset, dataset_files
from .envinfo import collect_env, resolve_device
from .errors import ClipFailure, KdbenchError, NotApplicable, WeightsMissing
from .files import storage_error
from .normalize import DEFAULT_MAX_PAD_FRAMES, GridCrop, normalize_to_file
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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


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
    plain = check_option_types(method, plain, cls.default_options, cls.option_types)
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
                grid: str | None = None, policy: dict[str, Any] | None = None) -> tuple[RunStore, dict[str, Any]]:
    """Resolve the config and open (create or resume) the run folder. The executor is not part of the config,
    so a run started with one executor can be finished with another."""
    device = resolve_device(device)  # an unusable device fails here, before the run folder exists
    frame_size = tuple(frame_size) if frame_size else default_frame_size(ds)
    config = build_config(method, ds, options or {}, seed, device, frame_size, grid, policy)
    check_out_apart(out, files=dataset_files(ds))  # never write over the dataset's own files
    return RunStore(out).open(config), config


def check_weights(method: str, weights) -> None:
    """Raise :class:`WeightsMissing` listing every weight file ``method`` needs that is not available."""
    cls = METHODS.get(method)
    missing = [w for w in cls.info.weights if not weights.available(w)]
    if missing:
        where = "; ".join(f"{w}: {weights.entry(w).source} -> {weights.cache_path(w)}" for w in missing)
        raise WeightsMissing(f"method {method!r} needs weights that are not available: {', '.join(missing)}. "
                             f"Run `kdbench weights fetch {' '.join(missing)}`; offline, put the files here by "
                             f"hand ({where}).")


class ClipGenerator:
    """One method loaded once, generating clips into a run folder; the same code serves every executor.

    ``produce(spec)`` generates (timed, device synchronised); ``finish(...)`` normalises and writes
    ``videos/<clip_id>.mp4`` (atomically, where it will live) and completes the event; ``generate(spec)`` does
    both. None of them writes ``events.jsonl`` (the driver is the run store's only writer) or raises for a bad clip.
    """

    def __init__(self, config: dict[str, Any], run_dir: str | Path, weights=None):
        from .weights import WeightsManager

        self.config = config
        self.store = RunStore(run_dir)
        self.cls = METHODS.get(config["method"])
        self.weights = weights if weights is not None else WeightsManager()
        self.device = config["device"]
        self.seed = int(config["seed"])
        self.frame_size = tuple(config["frame_size"])
        self.grid_crop = GridCrop.parse(config.get("grid"))
        self.policy = dict(config.get("normalizer") or {})
        self.impl = None

    def load(self, warmup_spec=None, warmup: int = 1) -> float:
        """Build and load the method (seconds returned: load time), then warm it up untimed on ``warmup_spec``."""
        check_weights(self.config["method"], self.weights)
        self.impl = self.cls(options=self.config["options"], device=self.device, weights=self.weights,
                             seed=self.seed)
        self.impl.run_dir = self.store.root
        seed_everything(self.seed)
        t0 = time.perf_counter()
        self.impl.load()
        self.impl.synchronize()
        self.load_wall_seconds = time.perf_counter() - t0
        # a method that loads in a worker process reports its own load time (models only, not process start)
        seconds = self.impl.load_seconds if self.impl.load_seconds is not None else self.load_wall_seconds
        if warmup and warmup_spec is not None and self.cls.info.generates:
            _warm_up(self.impl, warmup_spec, warmup)
        return seconds

    def env_record(self) -> dict[str, Any]:
        """The method's own environment (upstream commit, Python, packages) for ``env.json``, if it has one."""
        return self.impl.env_record() if self.impl is not None else {}

    def close(self) -> None:
        """Release the method's processes or files (a baseline's worker)."""
        if self.impl is not None:
            self.impl.close()

    def new_event(self, spec) -> dict[str, Any]:
        return {"clip_id": spec.clip_id, "config_hash": self.config["config_hash"], "time": time.time()}

    def produce(self, spec, event: dict[str, Any]) -> tuple[Any, np.ndarray, float, float | None] | None:
        """Load and generate one clip (timed, device synchronised): ``(generated, audio, seconds, peak GPU MiB)``,
        or None after recording the failure in ``event``."""
        impl, device = self.impl, self.device
        try:
            spec.check_files()
            ref = spec.load_ref_image()
            audio = spec.load_audio()  # canonical int16: the output video's track, what the metrics hear
            try:
                check_audio(audio)
            except KdbenchError as e:
                raise ClipFailure(str(e)) from e
            driving = impl.driving_audio(spec, audio)  # what the method's official code would read
            seed_everything(self.seed)
            cuda = str(device).startswith("cuda")
            if cuda:
                import torch

                torch.cuda.reset_peak_memory_stats()
            impl.synchronize()
            t_start = time.perf_counter()
            gen = impl.generate(spec, ref, driving)
            impl.synchronize()
            t_gen = time.perf_counter() - t_start
            if gen.seconds is not None:  # timed inside the method's own worker, device synchronised there
                t_gen = gen.seconds
            peak_gpu_mb = None
            if cuda:
                import torch

                peak_gpu_mb = torch.cuda.max_memory_allocated() / 2**20
            return gen, audio, t_gen, peak_gpu_mb
        except NotApplicable as e:
            event.update(status="not_applicable", error=str(e))
        except (ClipFailure, KdbenchError) as e:
            event.update(status="failed", error=str(e))
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 - one broken clip must not lose the run
            event.update(status="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
            log.error("clip %s failed:\n%s", spec.clip_id, traceback.format_exc())
        return None

    def finish(self, spec, event: dict[str, Any], gen, audio, t_gen: float,
               peak_gpu_mb: float | None) -> dict[str, Any]:
        """Normalise + encode + write one generated clip; returns its completed event."""
        try:
            n_gen = len(gen.frames) if gen.frames is not None else None
            report = normalize_to_file(self.store.video_path(spec.clip_id), audio, self.frame_size,
                                       frames=gen.frames, fps=gen.fps, video_path=gen.video_path,
                                       grid=GridCrop.parse(gen.grid) if gen.grid else self.grid_crop, **self.policy)
            event.update(status="ok", n_frames=report.n_frames, n_generated=n_gen or report.orig_n_frames,
                         seconds=t_gen, timed=self.cls.info.generates, normalizer=report.to_json(),
                         peak_rss_mb=_peak_rss_mb(), extra=gen.extra, **self.store.video_record(spec.clip_id))
            if peak_gpu_mb is not None:
                event["peak_gpu_mb"] = peak_gpu_mb
        except (ClipFailure, KdbenchError) as e:
            event.update(status="failed", error=str(e))
        except Exception as e:  # noqa: BLE001 - one broken clip must not lose the run
            if storage_error(e):  # the disk, not the clip: one line naming the file, no traceback
                event.update(status="failed", write_error=True,
                             error=f"cannot write {e.filename or self.store.video_path(spec.clip_id)}: {e.strerror}; "
                                   "free space, then re-run the same command (finished clips are kept)")
            else:
                event.update(status="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
                log.error("clip %s failed:\n%s", spec.clip_id, traceback.format_exc())
        return event

    def generate(self, spec) -> dict[str, Any]:
        """Generate, time, normalise and write one clip; returns its event."""
        event = self.new_event(spec)
        produced = self.produce(spec, event)
        return event if produced is None else self.finish(spec, event, *produced)


def run_method(method: str, ds: Dataset, out: str | Path, *, options: dict[str, Any] | None = None,
               seed: int = 0, device: str = "cpu", limit: int | None = None, warmup: int = 1,
               frame_size: tuple[int, int] | None = None, grid: str | None = None,
               max_pad_frames: int = DEFAULT_MAX_PAD_FRAMES, letterbox: bool = False,
               progress: bool = True, overlap_writes: bool = False, executor: str = "local",
               ray_address: str | None = None, workers: int | None = None,
               gpus_per_worker: float = 1.0) -> RunSummary:
    """Run ``method`` on (the first ``limit`` clips of) ``ds`` into the run folder ``out``.

    ``max_pad_frames`` / ``letterbox``: the normaliser's policy (:mod:`kdbench.normalize`), recorded in the config.

    ``executor``: ``local`` (this process) or ``ray`` (one long-lived actor per worker, see
    :mod:`kdbench.executor`); both give the same videos and events.

    ``overlap_writes`` (throughput mode, local executor): clip i is normalised, encoded and written on a writer
    thread while clip i+1 generates (at most one clip waits; events keep the clip order). The videos and events
    are those of the default mode; the generation clock still brackets only ``generate``, but encoding then
    competes with it for the CPU, so take FPS from a default-mode run. Either way a ``throughput`` event records
    frames per wall second of the whole loop (never called FPS).
    """

    check_executor(executor)
    policy = {"max_pad_frames": int(max_pad_frames), "letterbox": bool(letterbox)}
    store, config = prepare_run(method, ds, out, options=options, seed=seed, device=device,
                                frame_size=frame_size, grid=grid, policy=policy)
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

    t_loop = time.perf_counter()
    if executor == "ray":
        from .executor import ray_generate

        env, summary.load_seconds = ray_generate(config, store, todo, record, address=ray_address,
                                                 workers=workers, gpus_per_worker=gpus_per_worker,
                                                 warmup=warmup, progress=progress)
        _throughput(store, summary, t_loop, len(todo), False)
        store.write_env(env)
        return summary

    from .weights import WeightsManager

    weights = WeightsManager()
    gen = ClipGenerator(config, store.root, weights)
    check_weights(method, weights)
    try:
        return _run_local(gen, store, config, summary, todo, weights, warmup, progress, overlap_writes, record)
    finally:
        gen.close()


def _run_local(gen: ClipGenerator, store: RunStore, config: dict[str, Any], summary: RunSummary, todo: list,
               weights, warmup: int, progress: bool, overlap_writes: bool, record) -> RunSummary:
    """The local executor: load once, then every clip in this process (writes overlapped when asked)."""
    from tqdm import tqdm

    method, chash = config["method"], config["config_hash"]
    summary.load_seconds = gen.load(todo[0], warmup)
    store.append_event({"event": "load", "seconds": summary.load_seconds, "wall_seconds": gen.load_wall_seconds,
                        "config_hash": chash, "time": time.time()})
    env = collect_env(config["device"])
    env["executor"] = {"name": "local", "workers": 1}
    env["weights"] = weights.record()
    method_env = gen.env_record()
    if method_env:
        env["method_env"] = method_env
    store.write_env(env)

    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kdbench-writer") if overlap_writes else None
    pending: list[Future] = []

    def submit(fn, *fn_args) -> None:
        """Run ``fn`` now, or on the writer thread after waiting for the previous write (bounded memory)."""
        if writer is None:
            fn(*fn_args)
            return
        while pending:
            pending.pop().result()
        pending.append(writer.submit(fn, *fn_args))

    t_loop = time.perf_counter()
    bar = tqdm(todo, desc=f"run {method}", unit="clip", disable=not progress)
    try:
        for spec in bar:
            bar.set_postfix_str(spec.clip_id)
            event = gen.new_event(spec)
            produced = gen.produce(spec, event)
            if produced is None:
                submit(record, event)
            else:
                submit(lambda *a: record(gen.finish(*a)), spec, event, *produced)
    finally:
        while pending:
            pending.pop().result()
        if writer is not None:
            writer.shutdown(wait=True)
    _throughput(store, summary, t_loop, len(todo), overlap_writes)
    env["weights"] = weights.record()
    if method_env:
        env["method_env"] = gen.env_record()
    store.write_env(env)
    return summary


def _throughput(store: RunStore, summary: RunSummary, t_loop: float, n_clips: int, overlap: bool) -> None:
    """Append the ``throughput`` event: frames per wall second of the whole generation loop (never called FPS)."""
    summary.wall_seconds = time.perf_counter() - t_loop
    store.append_event({"event": "throughput", "clips": n_clips, "frames": summary.frames,
                        "wall_seconds": summary.wall_seconds, "overlap_writes": bool(overlap),
                        "frames_per_wall_second": summary.frames / summary.wall_seconds
                        if summary.wall_seconds > 0 else None, "time": time.time()})


EXECUTORS = ("local", "ray")


def check_executor(executor: str) -> None:
    if executor not in EXECUTORS:
        raise KdbenchError(f"--executor must be one of {', '.join(EXECUTORS)} (got {executor!r})")


def _warm_up(impl, spec, n: int) -> None:
    """Run the method on (a 2 s slice of) the first clip ``n`` times, untimed, so FPS excludes warm-up."""
    try:
        ref = spec.load_ref_image()
        audio = impl.driving_audio(spec, spec.load_audio())[: 2 * 16000]
        for _ in range(n):
            impl.generate(spec, ref, audio)
        impl.synchronize()
    except Exception as e:  # noqa: BLE001 - a failing warm-up is reported by the real attempt
        log.warning("warm-up failed: %s", e)
