"""The method interface: a talking-portrait generator that kdbench can run and time.

A method is a class registered with ``@register_method(name)``. The runner builds it once, calls
:meth:`Method.load` (timed as load time), then :meth:`Method.generate` per clip (timed as generation
time, with the device synchronised), and passes the result through the normaliser, so every method's
video ends up 25 fps, with exactly the audio's frame count, the dataset's frame size and the
canonical 16 kHz audio.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from .dataset import ClipSpec
    from .weights import WeightsManager


@dataclass(frozen=True)
class MethodInfo:
    name: str
    description: str
    version: str = "1"
    weights: tuple[str, ...] = ()
    paper_row: str | None = None
    """The row of the paper's Table 1 this method reproduces (e.g. "KDTalker", "Real Video")."""
    generates: bool = True
    """False for rows that replay a file instead of running code (``real``): no warm-up, no FPS measured."""
    copies_input: bool = False
    """True for reference rows whose output is a copy of an input (``real``: the GT video, ``static``: the
    reference image): reports show no FPS for them (it would time a copy, not a generator). Recorded by
    ``kdbench eval`` as ``metrics.json["run"]["copies_input"]``."""


@dataclass
class Generated:
    """A method's raw output for one clip: frames in memory, or a video file on disk.

    ``frames``: ``uint8[T,H,W,3]`` RGB; ``fps``: their frame rate. ``video_path`` is used when the
    method wrote a file (an external tool); the normaliser decodes it. ``extra`` is recorded in events.
    """

    fps: float
    frames: np.ndarray | None = None
    video_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None
    """Generation seconds measured by the method itself (a worker process timing its own model calls with the
    device synchronised); when set, the runner reports it instead of its own clock (which would add IPC)."""
    grid: str | None = None
    """The output is a grid of panels: ``--grid`` text of the one to keep (e.g. ``"3:2,pad=2"``); it takes precedence
    over the run's ``--grid``, which is meant for external tools."""


class Method(abc.ABC):
    info: ClassVar[MethodInfo]
    default_options: ClassVar[dict[str, Any]] = {}
    option_types: ClassVar[dict[str, tuple]] = {}
    option_ranges: ClassVar[dict[str, Any]] = {}
    """Accepted values of options (see :mod:`kdbench.options`); NaN and Infinity are refused for every option."""

    def __init__(self, *, options: dict[str, Any] | None = None, device: str = "cpu",
                 weights: WeightsManager | None = None, seed: int = 0):
        unknown = set(options or {}) - set(self.default_options)
        if unknown:
            from .errors import KdbenchError

            raise KdbenchError(f"method {self.info.name!r} has no option(s) {sorted(unknown)}; "
                               f"known: {sorted(self.default_options) or 'none'}")
        from .options import check_option_types

        options = check_option_types(self.info.name, options or {}, self.default_options, self.option_types,
                                     self.option_ranges)
        self.options: dict[str, Any] = {**self.default_options, **options}
        self.device = device
        if weights is None:
            from .weights import WeightsManager

            weights = WeightsManager()
        self.weights = weights
        self.seed = seed
        self.run_dir: Path | None = None
        """The run folder, set by the runner before :meth:`load` (for logs a method writes)."""
        self.load_seconds: float | None = None
        """Load time measured by the method itself (e.g. inside a worker); None: the runner's clock is used."""

    @classmethod
    def setup_problems(cls, weights: WeightsManager) -> list[tuple[str, str]]:
        """What must be installed before this method can run: ``[(what is missing, the command that fixes
        it)]``, empty when ready (:func:`kdbench.readiness.method_readiness`). Default: the weight files of
        :attr:`MethodInfo.weights` that ``weights`` does not have. Must not load models."""
        unknown = [w for w in cls.info.weights if w not in weights.entries]
        if unknown:  # a user manifest (KDBENCH_WEIGHTS_MANIFEST) that lacks the method's entries
            import os

            where = os.environ.get("KDBENCH_WEIGHTS_MANIFEST") or "the manifest in use"
            return [(f"weights not in {where}: {', '.join(unknown)}",
                     "add them to that manifest, or unset KDBENCH_WEIGHTS_MANIFEST")]
        absent = [w for w in cls.info.weights if not weights.available(w)]
        if not absent:
            return []
        return [(f"weights missing: {', '.join(absent)}", f"kdbench weights fetch {' '.join(absent)}")]

    def load(self) -> None:  # noqa: B027 - optional hook
        """Load models (counted as load time, not generation time). Default: nothing to load."""

    def synchronize(self) -> None:
        """Wait for queued device work (called before every clock read). Default: CUDA sync if used."""
        if str(self.device).startswith("cuda"):
            import torch

            torch.cuda.synchronize()

    def driving_audio(self, spec: ClipSpec, canonical: np.ndarray) -> np.ndarray:
        """The driving audio handed to :meth:`generate`: what the method's official code would read.

        ``canonical`` is the clip's ``int16[N]`` 16 kHz mono track (what the output video carries and the
        metrics hear). The default hands that over. A method whose official code loads the file another way
        (KDTalker: ``librosa.load(path, sr=16000)``, float, the exact channel average) overrides this, so
        that it sees the samples its official implementation sees; an upstream method run in its own environment
        returns a :class:`~kdbench.audio.PCM` (the file's samples at their own rate, which its worker gets as a
        wav: :data:`kdbench.runtime.method.AUDIO_LOADERS`). Not timed.
        """
        return canonical

    def env_record(self) -> dict[str, Any]:
        """Facts about the method's own environment for ``env.json`` (upstream commit, Python, packages)."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release processes or files (called by the runner when the run ends)."""

    @abc.abstractmethod
    def generate(self, spec: ClipSpec, ref_image: np.ndarray, audio: np.ndarray) -> Generated:
        """Generate one clip from ``ref_image`` (``uint8[H,W,3]`` RGB) and ``audio`` (16 kHz mono, as returned
        by :meth:`driving_audio`: ``int16[N]`` by default)."""
