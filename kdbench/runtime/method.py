"""The :class:`~kdbench.method.Method` for upstream code: one persistent worker per run, one request per clip.

``upstream_method(spec)`` builds the class a ``baselines/<name>/method.py`` registers. Per clip it writes the
reference image (PNG) and audio (16 kHz WAV) into a temporary folder, asks the worker for the video and returns
it to the runner with the worker's own generation time (models loaded, device synchronised), so FPS means the
same for every method. The worker's log is ``RUN_DIR/worker-<name>.log``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import FPS
from ..errors import KdbenchError
from ..method import Generated, Method, MethodInfo
from .client import WorkerClient
from .compat import PINS_ENV, TRUST_UNPINNED_ENV
from .spec import UpstreamSpec, env_for

if TYPE_CHECKING:
    from ..dataset import ClipSpec


RUNTIME_OPTIONS: dict[str, Any] = {
    "clip_timeout": 0.0,  # seconds one clip may take before its worker is killed and the clip failed; 0 = no limit
}
"""Options every upstream method takes besides its spec's (handled here, not sent to the worker)."""


def write_inputs(folder: Path, ref_image: np.ndarray, audio: np.ndarray) -> tuple[Path, Path]:
    """The files a worker gets: ``folder/ref.png`` (``uint8[H,W,3]`` RGB, lossless) and ``folder/audio.wav``
    (``int16[N]``, 16 kHz mono)."""
    from PIL import Image

    from ..audio import write_wav

    folder.mkdir(parents=True, exist_ok=True)
    image, wav = folder / "ref.png", folder / "audio.wav"
    Image.fromarray(np.ascontiguousarray(ref_image)).save(image)
    write_wav(wav, audio)
    return image, wav


class UpstreamMethod(Method):
    """Runs ``spec``'s official code in its environment (``kdbench setup NAME``) through a worker."""

    spec: UpstreamSpec

    @classmethod
    def setup_problems(cls, weights) -> list[tuple[str, str]]:
        """Not ready unless ``kdbench setup NAME`` finished here and its weights are linked
        (:meth:`~kdbench.runtime.spec.MethodEnv.status`); ``kdbench setup`` fetches missing weights too."""
        status = env_for(cls.spec.name).status()
        return [] if status == "ready" else [(status, f"kdbench setup {cls.spec.name}")]

    def load(self) -> None:
        env = env_for(self.spec.name)
        status = env.status()
        if status != "ready":
            raise KdbenchError(f"method {self.spec.name!r} is {status} (in {env.root}). Run `kdbench setup "
                               f"{self.spec.name}` (offline: `kdbench setup {self.spec.name} --source DIR`), "
                               f"then `kdbench ls methods` shows it ready.")
        self.env = env
        # verified now, right before the worker reads them (status() above checked the same, cached by fingerprint)
        self.weights_used, problems = env.verify_weights()
        if problems:
            raise KdbenchError(f"method {self.spec.name!r}: weights fail verification: "
                               + "; ".join(f"{n}: {why}" for n, why in problems.items()))
        self._tmp = Path(tempfile.mkdtemp(prefix=f"kdbench-{self.spec.name}-"))
        pins = self._tmp / "pins.json"
        pins.write_text(json.dumps(worker_pins(self.weights_used)))
        self.trust_unpinned = os.environ.get(TRUST_UNPINNED_ENV) == "1"
        log_dir = Path(self.run_dir) if self.run_dir else self._tmp
        worker_options = {k: v for k, v in self.options.items() if k not in RUNTIME_OPTIONS}
        self.client = WorkerClient(env.python, env.source, self.spec.hooks, device=self.device, options=worker_options,
                                   compat=self.spec.compat, links=self.spec.scratch_links,
                                   log_path=log_dir / f"worker-{self.spec.name}.log", scratch=self._tmp / "scratch",
                                   clip_timeout=float(self.options["clip_timeout"]),
                                   env={PINS_ENV: str(pins)})
        ready = self.client.start()
        self.load_seconds = float(ready["load_seconds"])
        self._n = 0

    def generate(self, spec: ClipSpec, ref_image: np.ndarray, audio: np.ndarray) -> Generated:
        self._n += 1
        clip_dir = self._tmp / f"clip{self._n}"
        shutil.rmtree(self._tmp / f"clip{self._n - 1}", ignore_errors=True)  # the runner has read the previous one
        image, wav = write_inputs(clip_dir, ref_image, audio)
        out = clip_dir / f"{spec.clip_id}.mp4"
        starts = self.client.starts
        reply = self.client.request(image, wav, out, self.seed)
        extra: dict[str, Any] = {"worker_seconds": reply["seconds"], "worker_n_frames": reply.get("n_frames"),
                                 "worker_peak_rss_mb": reply.get("peak_rss_mb")}
        if self.client.starts != starts:
            extra["worker_restarted"] = True
        return Generated(fps=FPS, video_path=Path(reply["video"]), seconds=float(reply["seconds"]), extra=extra,
                         grid=self.spec.grid)

    def synchronize(self) -> None:
        """Nothing to wait for here: the worker synchronises its own device around its clock."""

    def env_record(self) -> dict[str, Any]:
        rec = dict(self.env.record() or {})
        # the files verified for this run (not setup's record): their sha256, trust and how the worker loaded them
        links = {n: dict(v) for n, v in rec.get("weights", {}).items()}
        for name, used in self.weights_used.items():
            link = links.setdefault(name, {})
            if link.get("sha256") and link["sha256"] != used.get("sha256"):
                link["setup_sha256"] = link["sha256"]
            link.update({"sha256": used.get("sha256"), "verified": used.get("verified"), "trust": used.get("trust"),
                         "file": used.get("file")})
        rec["weights"] = links
        rec["trust_unpinned"] = self.trust_unpinned
        rec["unpinned_weights"] = sorted(n for n, u in self.weights_used.items() if u.get("trust") != "pinned")
        if self.client.ready:
            r = self.client.ready
            rec["worker"] = {"python": r.get("python"), "packages": r.get("packages"), "compat": r.get("compat"),
                             "info": r.get("info"), "load_seconds": r.get("load_seconds"),
                             "starts": self.client.starts, "loads": r.get("loads"),
                             "peak_rss_mb": r.get("peak_rss_mb")}
        return rec

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
        tmp = getattr(self, "_tmp", None)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def worker_pins(records: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``realpath -> pin record`` for :func:`kdbench.runtime.compat.torch_load_pinned_pickle`: every verified file
    with its sha256, fingerprint and whether its pin is a whole published digest (only those are unpickled fully)."""
    out = {}
    for name, r in records.items():
        fp = r.get("fingerprint") or {}
        out[os.path.realpath(r["file"])] = {
            "name": name, "sha256": r.get("sha256"), "size": fp.get("size"), "mtime_ns": fp.get("mtime_ns"),
            "inode": fp.get("inode"), "trust": r.get("trust"),
            "pin_full": bool(r.get("pin_full")) and r.get("trust") == "pinned"}
    return out


def upstream_method(spec: UpstreamSpec) -> type[UpstreamMethod]:
    """The Method class for ``spec`` (register it with ``register_method(spec.name)``)."""
    info = MethodInfo(name=spec.name, description=spec.description, version=spec.version, paper_row=spec.paper_row)
    return type(f"Upstream_{spec.name}", (UpstreamMethod,), {"spec": spec, "info": info,
                                                              "default_options": {**spec.options, **RUNTIME_OPTIONS}})
