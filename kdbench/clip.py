"""One clip as the metrics see it: decoded once, shared by every metric.

The evaluator builds an :class:`EvalClip` per clip and passes the same object to each metric in
turn, so the video is decoded once, and expensive intermediates (face tracks, detections) can be
kept in ``clip.cache`` under a key that names the producer and its options.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .dataset import ClipSpec


@dataclass
class EvalClip:
    """A generated (or GT) video plus its dataset row.

    Attributes:
        spec: the manifest row (reference image, audio, optional GT video).
        video_path: the video being scored (normalised: 25 fps, 16 kHz mono audio track).
        event: the run-store event for this clip (generation seconds, frames, device), if any.
        cache: shared intermediates, e.g. ``cache["s3fd_tracks"]``.
    """

    spec: ClipSpec
    video_path: Path
    event: dict[str, Any] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def clip_id(self) -> str:
        return self.spec.clip_id

    @cached_property
    def _decoded(self) -> tuple[np.ndarray, float]:
        from .video import read_video

        return read_video(self.video_path)

    @property
    def frames(self) -> np.ndarray:
        """The scored video's frames, ``uint8[T,H,W,3]`` RGB, decoded on first access only."""
        return self._decoded[0]

    @property
    def fps(self) -> float:
        return self._decoded[1]

    @cached_property
    def audio(self) -> np.ndarray:
        """The scored video's own audio track, ``int16[N]`` mono 16 kHz (what SyncNet hears)."""
        from .audio import read_audio

        return read_audio(self.video_path)

    @cached_property
    def gt_frames(self) -> np.ndarray | None:
        """The GT video's frames ``uint8[T,H,W,3]`` RGB, or None when the dataset has no GT video."""
        if self.spec.gt_video is None:
            return None
        from .video import read_video

        return read_video(self.spec.gt_video)[0]

    @cached_property
    def ref_image(self) -> np.ndarray:
        """The reference (identity) image, ``uint8[H,W,3]`` RGB."""
        return self.spec.load_ref_image()
