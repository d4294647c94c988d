"""The unit of work of ``kdbench run``: one method loaded once, generating one clip at a time into a run folder.

Executors (:mod:`kdbench.executors`) hold :class:`ClipGenerator` objects (in this process, or one per Ray actor);
the runner (:mod:`kdbench.runner`) drives them. Nothing here imports the runner or an executor.

Per clip: reference image and canonical audio → the method's driving audio → ``method.generate`` (timed, device
synchronised) → normaliser → ``videos/<clip_id>.mp4`` and the clip's event. A bad clip never raises: its event
says why it failed.
"""

from __future__ import annotations

import logging
import random
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from .audio import check_audio, head
from .errors import ClipFailure, KdbenchError, NotApplicable, WeightsMissing
from .files import storage_error
from .normalize import GridCrop, normalize_to_file
from .registry import METHODS
from .runstore import RunStore

log = logging.getLogger("kdbench.run")


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and (when loaded) torch's generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)


def peak_rss_mb() -> float:
    """This process's peak resident memory, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


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

    def __init__(self, config: dict[str, Any], run_dir: str | Path, weights=None, *, keep_generated: bool = False):
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
        self.keep_generated = bool(keep_generated)  # also keep each clip's output as the normaliser gets it
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
        self.warmup_record = None
        if warmup and warmup_spec is not None and self.cls.info.generates:
            self.warmup_record = {"n": int(warmup), "clip_id": warmup_spec.clip_id,
                                  "seconds": warm_up(self.impl, warmup_spec, warmup)}
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
            if self.keep_generated:  # before the normaliser's lossy encode: what equivalence proofs compare
                event["generated"] = self.store.keep_generated(spec.clip_id, gen)
            report = normalize_to_file(self.store.video_path(spec.clip_id), audio, self.frame_size,
                                       frames=gen.frames, fps=gen.fps, video_path=gen.video_path,
                                       grid=GridCrop.parse(gen.grid) if gen.grid else self.grid_crop, **self.policy)
            event.update(status="ok", n_frames=report.n_frames, n_generated=n_gen or report.orig_n_frames,
                         seconds=t_gen, timed=self.cls.info.generates, normalizer=report.to_json(),
                         peak_rss_mb=(gen.extra or {}).get("worker_peak_rss_mb") or peak_rss_mb(),
                         extra=gen.extra, **self.store.video_record(spec.clip_id))
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


def warm_up(impl, spec, n: int) -> float | None:
    """Run the method on (a 2 s slice of) the first clip ``n`` times, untimed, so FPS excludes warm-up; returns the
    wall seconds it took (recorded in the ``load`` event and env.json), None when it failed."""
    t0 = time.perf_counter()
    try:
        ref = spec.load_ref_image()
        audio = head(impl.driving_audio(spec, spec.load_audio()), 2.0)
        for _ in range(n):
            impl.generate(spec, ref, audio)
        impl.synchronize()
    except Exception as e:  # noqa: BLE001 - a failing warm-up is reported by the real attempt
        log.warning("warm-up failed: %s", e)
        return None
    return round(time.perf_counter() - t0, 3)
