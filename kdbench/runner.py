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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import FPS, __version__
from .audio import check_audio
from .config import config_hash, split_scoped
from .dataset import Dataset
from .envinfo import collect_env, resolve_device
from .errors import ClipFailure, KdbenchError, WeightsMissing
from .normalize import GridCrop, normalize_to_file
from .registry import METHODS
from .runstore import RunStore

log = logging.getLogger("kdbench.run")


@dataclass
class RunSummary:
    run_dir: Path
    ok: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    resumed: list[str] = field(default_factory=list)
    load_seconds: float | None = None


def default_frame_size(ds: Dataset) -> tuple[int, int]:
    """The dataset's frame size: that of its first GT video, else 512x512 (HDTF's evaluation size)."""
    for c in ds.clips:
        if c.gt_video is not None and c.gt_video.is_file():
            from .video import probe_video

            info = probe_video(c.gt_video)
            return (info.width, info.height)
    return (512, 512)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def build_config(method: str, ds: Dataset, options: dict[str, Any], seed: int, device: str,
                 frame_size: tuple[int, int], grid: str | None) -> dict[str, Any]:
    cls = METHODS.get(method)
    plain, scoped = split_scoped(options)
    if scoped:
        raise KdbenchError(f"metric options ({', '.join(f'{k}.*' for k in scoped)}) belong to `kdbench eval --set`")
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
        "kdbench_version": __version__,
    }
    cfg["config_hash"] = config_hash(cfg)
    return cfg


def run_method(method: str, ds: Dataset, out: str | Path, *, options: dict[str, Any] | None = None,
               seed: int = 0, device: str = "cpu", limit: int | None = None, warmup: int = 1,
               frame_size: tuple[int, int] | None = None, grid: str | None = None,
               progress: bool = True) -> RunSummary:
    """Run ``method`` on (the first ``limit`` clips of) ``ds`` into the run folder ``out``."""

    device = resolve_device(device)
    frame_size = tuple(frame_size) if frame_size else default_frame_size(ds)
    config = build_config(method, ds, options or {}, seed, device, frame_size, grid)
    store = RunStore(out).open(config)
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

    cls = METHODS.get(method)
    from .weights import WeightsManager

    weights = WeightsManager()
    missing = [w for w in cls.info.weights if not weights.available(w)]
    if missing:
        where = "; ".join(f"{w}: {weights.entry(w).source} -> {weights.cache_path(w)}" for w in missing)
        raise WeightsMissing(f"method {method!r} needs weights that are not available: {', '.join(missing)}. "
                             f"Run `kdbench weights fetch {' '.join(missing)}`; offline, put the files here by "
                             f"hand ({where}).")
    impl = cls(options=config["options"], device=device, weights=weights, seed=seed)
    impl.run_dir = store.root
    try:
        return _run_loaded(impl, cls, store, config, summary, todo, weights, seed, device, frame_size, grid,
                           warmup, progress)
    finally:
        impl.close()


def _run_loaded(impl, cls, store, config, summary, todo, weights, seed, device, frame_size, grid, warmup,
                progress) -> RunSummary:
    from tqdm import tqdm

    method, chash = config["method"], config["config_hash"]
    seed_everything(seed)
    t0 = time.perf_counter()
    impl.load()
    impl.synchronize()
    wall = time.perf_counter() - t0
    summary.load_seconds = impl.load_seconds if impl.load_seconds is not None else wall
    store.append_event({"event": "load", "seconds": summary.load_seconds, "wall_seconds": wall,
                        "config_hash": chash, "time": time.time()})
    grid_crop = GridCrop.parse(grid)

    if warmup and cls.info.generates:
        _warm_up(impl, todo[0], warmup)
    env = collect_env(device)
    env["weights"] = weights.record()
    method_env = impl.env_record()
    if method_env:
        env["method_env"] = method_env
    store.write_env(env)

    bar = tqdm(todo, desc=f"run {method}", unit="clip", disable=not progress)
    for spec in bar:
        bar.set_postfix_str(spec.clip_id)
        event: dict[str, Any] = {"clip_id": spec.clip_id, "config_hash": chash, "time": time.time()}
        try:
            ref = spec.load_ref_image()
            audio = spec.load_audio()
            try:
                check_audio(audio)
            except KdbenchError as e:
                raise ClipFailure(str(e)) from e
            seed_everything(seed)
            cuda = str(device).startswith("cuda")
            if cuda:
                import torch

                torch.cuda.reset_peak_memory_stats()
            impl.synchronize()
            t_start = time.perf_counter()
            gen = impl.generate(spec, ref, audio)
            impl.synchronize()
            t_gen = time.perf_counter() - t_start
            if gen.seconds is not None:
                t_gen = gen.seconds
            n_gen = len(gen.frames) if gen.frames is not None else None
            report = normalize_to_file(store.video_path(spec.clip_id), audio, frame_size, frames=gen.frames,
                                       fps=gen.fps, video_path=gen.video_path,
                                       grid=GridCrop.parse(gen.grid) if gen.grid else grid_crop)
            event.update(status="ok", n_frames=report.n_frames, n_generated=n_gen or report.orig_n_frames,
                         seconds=t_gen, timed=cls.info.generates, normalizer=report.to_json(),
                         peak_rss_mb=_peak_rss_mb(), extra=gen.extra)
            if cuda:
                import torch

                event["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
            summary.ok.append(spec.clip_id)
        except (ClipFailure, KdbenchError) as e:
            event.update(status="failed", error=str(e))
            summary.failed[spec.clip_id] = str(e)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 - one broken clip must not lose the run
            event.update(status="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
            summary.failed[spec.clip_id] = f"{type(e).__name__}: {e}"
            log.error("clip %s failed:\n%s", spec.clip_id, traceback.format_exc())
        store.append_event(event)
    env["weights"] = weights.record()
    if method_env:
        env["method_env"] = impl.env_record()
    store.write_env(env)
    return summary


def _warm_up(impl, spec, n: int) -> None:
    """Run the method on (a 2 s slice of) the first clip ``n`` times, untimed, so FPS excludes warm-up."""
    try:
        ref = spec.load_ref_image()
        audio = spec.load_audio()[: 2 * 16000]
        for _ in range(n):
            impl.generate(spec, ref, audio)
        impl.synchronize()
    except Exception as e:  # noqa: BLE001 - a failing warm-up is reported by the real attempt
        log.warning("warm-up failed: %s", e)
