"""Base class of the per-method worker hooks: load the models once, generate one clip per request.

A subclass lives in ``baselines/<name>/worker.py`` and runs inside the method's own environment (any
Python >= 3.8), so it may import only the standard library, this module and the upstream code.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

NUMPY_PICKLE_GLOBALS = (
    "numpy.core.multiarray:scalar", "numpy._core.multiarray:scalar", "numpy:dtype", "numpy:ndarray",
    "numpy.core.multiarray:_reconstruct", "numpy._core.multiarray:_reconstruct",
    "numpy.dtypes:Int64DType", "numpy.dtypes:Int32DType", "numpy.dtypes:Float64DType", "numpy.dtypes:Float32DType",
    "numpy.dtypes:BoolDType",
)
"""numpy scalars and arrays as training loops save them (``global_step: np.int64``, a best score, an array of
statistics): rebuilt from their bytes by numpy's own reconstructors, no code of the file runs."""


class WorkerHooks:
    """Load once (:meth:`load`), then :meth:`generate` per clip inside a fresh scratch folder (the cwd).

    ``source``: the upstream checkout (on ``sys.path``); ``device``: ``cpu`` / ``cuda`` / ``cuda:N``;
    ``options``: the method's resolved ``--set`` options.
    """

    packages: tuple = ("torch", "torchvision", "numpy")
    """Distributions whose versions the worker reports (recorded in env.json)."""

    pickle_allow: tuple = NUMPY_PICKLE_GLOBALS
    """``"module:qualname"`` globals a checkpoint of this method may hold when it is loaded ``weights_only=True``
    (every file without a matching published pin; :func:`kdbench.runtime.compat.torch_load_pinned_pickle`): the
    objects upstream's own save code puts next to the tensors. Classes only, never functions that run code."""

    def __init__(self, source: Path, device: str, options: dict[str, Any]):
        self.source = Path(source)
        self.device = device
        self.options = dict(options)

    def load(self) -> None:
        """Build the upstream models and load their weights (timed as load time). cwd = the source tree."""

    def generate(self, image: Path, audio: Path, out_dir: Path) -> Any:
        """Generate one clip; return the video path, or a dict ``{"video": path, "n_frames": int}``.

        ``image``/``audio`` are copies in the scratch folder (the cwd); ``out_dir`` is an empty folder in it.
        Returning None makes the worker take the newest ``*.mp4`` under ``out_dir``.
        """
        raise NotImplementedError

    def seed(self, seed: int) -> None:
        """Seed every generator upstream draws from before a clip (default: Python's ``random``, numpy, torch).

        Override when the official script seeds at a point after which it draws more (e.g. AniTalker seeds, then
        initialises modules, then draws its noise): the override reproduces the state the script has there.
        """
        from .worker import seed_all

        seed_all(seed)

    def synchronize(self) -> None:
        """Wait for queued device work; called before each clock read."""
        torch = sys.modules.get("torch")
        if torch is not None and str(self.device).startswith("cuda") and torch.cuda.is_available():
            torch.cuda.synchronize()

    def info(self) -> dict[str, Any] | None:
        """Extra facts for env.json: the GPU and CUDA version, or torch's CPU threads (None without torch)."""
        torch = sys.modules.get("torch")
        if torch is None:
            return None
        if str(self.device).startswith("cuda") and torch.cuda.is_available():
            return {"gpu": torch.cuda.get_device_name(), "cuda": torch.version.cuda}
        return {"torch_threads": torch.get_num_threads()}


class FrameHooks(WorkerHooks):
    """Hooks of a method whose frames the worker gets in memory (:meth:`frames`), as the official script would
    write them; they reach the normaliser losslessly (FFV1 at :attr:`fps`), never through a lossy encode."""

    fps: float = 25

    def frames(self, image: Path, audio: Path):
        """``uint8[T,H,W,3]`` RGB: the frames the official script produces for this image and audio."""
        raise NotImplementedError

    def generate(self, image: Path, audio: Path, out_dir: Path) -> dict[str, Any]:
        frames = self.frames(image, audio)
        video = out_dir / f"{image.stem}-{audio.stem}.mkv"
        write_lossless(video, frames, self.fps)
        return {"video": str(video), "n_frames": int(len(frames))}


def write_lossless(path: Path, frames, fps: float) -> None:
    """``uint8[T,H,W,3]`` RGB -> FFV1 (lossless) at ``fps`` with imageio-ffmpeg (in the method's environment), so
    kdbench's normaliser gets exactly the frames the official script produced, not a lossy libx264 encode of them."""
    import imageio_ffmpeg

    t, h, w, _ = frames.shape
    writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=fps, codec="ffv1", pix_fmt_in="rgb24",
                                         pix_fmt_out="bgr0", macro_block_size=1, output_params=["-level", "3"])
    writer.send(None)
    for f in frames:
        writer.send(f.tobytes())
    writer.close()
