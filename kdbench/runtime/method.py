"""The :class:`~kdbench.method.Method` for upstream code: one persistent worker per run, one request per clip.

``upstream_method(spec)`` builds the class a ``baselines/<name>/method.py`` registers. Per clip it writes the
reference image (PNG) and the audio its official code would read (a WAV: see ``AUDIO_LOADERS``) into a
temporary folder, asks the worker for the video and returns it to the runner with the worker's own generation
time (models loaded, device synchronised), so FPS means the same for every method. The worker's log is
``RUN_DIR/worker-<name>.log``.
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
from ..audio import PCM
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


AUDIO_LOADERS = ("librosa", "ffmpeg_wav16k")
"""What an upstream method's official code calls to read its driving audio (``UpstreamSpec.audio_loader``):

- ``librosa``: ``librosa.load(path, sr=16000)`` (SadTalker ``src/utils/audio.py:load_wav``, AniTalker
  ``code/demo.py``, AniPortrait ``src/utils/audio_util.py``). The worker gets the samples librosa decodes from the
  clip's audio file (:func:`kdbench.audio.librosa_decode`: its rate and channels, AAC priming and end padding
  trimmed as ffmpeg trims them) in a wav, so the method's own librosa mixes and resamples them as it would the file
  (SadTalker's and AniPortrait's librosa 0.9.2 with resampy's ``kaiser_best``, AniTalker's 0.10.1 with ``soxr_hq``).
- ``ffmpeg_wav16k``: ``ffmpeg -i A -f wav -ar 16000 A_16k.wav`` (Real3D-Portrait ``save_wav16k``), then
  ``soundfile.read`` (HuBERT, channel 0) and ``librosa.load`` (F0, channel mean). The worker gets that 16 kHz wav
  with the file's channels (:func:`kdbench.audio.ffmpeg_wav16k`); upstream's ffmpeg copies it unchanged.
"""


def write_inputs(folder: Path, ref_image: np.ndarray, audio: np.ndarray | PCM) -> tuple[Path, Path]:
    """The files a worker gets: ``folder/ref.png`` (``uint8[H,W,3]`` RGB, lossless) and ``folder/audio.wav``:
    ``int16[N]`` 16 kHz mono for an array, the exact samples, rate and channels of a :class:`~kdbench.audio.PCM`."""
    from PIL import Image

    from ..audio import write_pcm_wav, write_wav

    folder.mkdir(parents=True, exist_ok=True)
    image, wav = folder / "ref.png", folder / "audio.wav"
    Image.fromarray(np.ascontiguousarray(ref_image)).save(image)
    if isinstance(audio, PCM):
        write_pcm_wav(wav, audio)
    else:
        write_wav(wav, audio)
    return image, wav


def upstream_driving_audio(loader: str, path: Path) -> PCM:
    """The audio an upstream method's worker gets for the clip's audio file ``path`` (see :data:`AUDIO_LOADERS`)."""
    from ..audio import ffmpeg_wav16k, librosa_decode

    if loader == "librosa":
        return librosa_decode(path)
    if loader == "ffmpeg_wav16k":
        return ffmpeg_wav16k(path)
    raise KdbenchError(f"unknown audio loader {loader!r}; expected one of {AUDIO_LOADERS}")


class UpstreamMethod(Method):
    """Runs ``spec``'s official code in its environment (``kdbench setup NAME``) through a worker."""

    spec: UpstreamSpec

    @classmethod
    def setup_problems(cls, weights) -> list[tuple[str, str]]:
        """Not ready unless ``kdbench setup NAME`` finished here and its weights are linked
        (:meth:`~kdbench.runtime.spec.MethodEnv.status`); ``kdbench setup`` fetches missing weights too."""
        status = env_for(cls.spec.name).status(cls.spec)
        return [] if status == "ready" else [(status, f"kdbench setup {cls.spec.name}")]

    def load(self) -> None:
        env = env_for(self.spec.name)
        status = env.status(self.spec)
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

    def driving_audio(self, spec: ClipSpec, canonical: np.ndarray) -> np.ndarray | PCM:
        """What the official code reads from the clip's audio file (or GT video), per the spec's
        ``audio_loader`` (:data:`AUDIO_LOADERS`); the canonical track when the clip names no file."""
        src = spec.audio if spec.audio is not None else spec.gt_video
        return canonical if src is None else upstream_driving_audio(self.spec.audio_loader, Path(src))

    def generate(self, spec: ClipSpec, ref_image: np.ndarray, audio: np.ndarray | PCM) -> Generated:
        self._n += 1
        clip_dir = self._tmp / f"clip{self._n}"
        # the clip before the previous one: the runner has read it. Not the previous one, which the writer thread of
        # `run --overlap-writes` may still be normalising while this clip generates
        shutil.rmtree(self._tmp / f"clip{self._n - 2}", ignore_errors=True)
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
