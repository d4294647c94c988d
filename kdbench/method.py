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
    """False for reference rows (``real``, ``static``) that copy inputs: no warm-up, and no FPS is reported."""


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

    def __init__(self, *, options: dict[str, Any] | None = None, device: str = "cpu",
                 weights: WeightsManager | None = None, seed: int = 0):
        unknown = set(options or {}) - set(self.default_options)
        if unknown:
            from .errors import KdbenchError

            raise KdbenchError(f"method {self.info.name!r} has no option(s) {sorted(unknown)}; "
                               f"known: {sorted(self.default_options) or 'none'}")
        self.options: dict[str, Any] = {**self.default_options, **(options or {})}
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

    def load(self) -> None:  # noqa: B027 - optional hook
        """Load models (counted as load time, not generation time). Default: nothing to load."""

    def synchronize(self) -> None:
        """Wait for queued device work (called before every clock read). Default: CUDA sync if used."""
        if str(self.device).startswith("cuda"):
            import torch

            torch.cuda.synchronize()

    def env_record(self) -> dict[str, Any]:
        """Facts about the method's own environment for ``env.json`` (upstream commit, Python, packages)."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release processes or files (called by the runner when the run ends)."""

    @abc.abstractmethod
    def generate(self, spec: ClipSpec, ref_image: np.ndarray, audio: np.ndarray) -> Generated:
        """Generate one clip from ``ref_image`` (``uint8[H,W,3]`` RGB) and ``audio`` (``int16[N]``, 16 kHz mono)."""
