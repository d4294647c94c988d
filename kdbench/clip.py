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
    audio_source: str | None = None
    """Where :attr:`audio` came from (set when it is first read)."""

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
        """The clip's canonical audio, ``int16[N]`` mono 16 kHz (what SyncNet hears).

        The normaliser stores it losslessly in the scored video, so it is read from there. A video whose
        track is lossy (AAC: an external file, or a run written before the normaliser kept the samples)
        carries altered samples; the dataset's own track is decoded instead. :attr:`audio_source` says which.
        """
        from .audio import read_audio
        from .video import LOSSLESS_AUDIO_CODECS, audio_codec

        codec = audio_codec(self.video_path)
        if codec in LOSSLESS_AUDIO_CODECS or (self.spec.audio is None and self.spec.gt_video is None):
            self.audio_source = f"video ({codec})"
            return read_audio(self.video_path)
        self.audio_source = f"dataset (the video's {codec} track is lossy)"
        return self.spec.load_audio()

    @cached_property
    def _gt_info(self):
        from .video import probe_video

        return probe_video(self.spec.gt_video)

    @property
    def gt_vfr(self) -> bool | None:
        """Whether the GT video has a variable frame rate (:func:`kdbench.video.is_vfr`), so that :attr:`gt_frames`
        resamples it by its timestamps; None without a GT video. Probes the file (no decoding) on first access.
        Metrics that need GT frames say so in their per-clip record (``gt_vfr``, :func:`kdbench.scoring.score_one`)."""
        return None if self.spec.gt_video is None else self._gt_info.vfr

    @cached_property
    def gt_frames(self) -> np.ndarray | None:
        """The GT video's frames ``uint8[T,H,W,3]`` RGB, or None when the dataset has no GT video.

        A constant-rate GT video is decoded as it is. A variable-frame-rate one (:attr:`gt_vfr`) is resampled by its
        timestamps onto the 25 fps grid as the normaliser does for generated videos
        (:func:`kdbench.normalize.normalize_frames`): ``floor(duration * 25)`` frames, frame ``i`` the one whose
        timestamp is nearest to ``i / 25`` s; never resized."""
        if self.spec.gt_video is None:
            return None
        from .normalize import covered_frames, normalize_frames, vfr_times
        from .video import read_video_timed

        frames, fps, times = read_video_timed(self.spec.gt_video)
        times = vfr_times(self._gt_info, frames, times, self.spec.gt_video)
        if times is None:
            return frames
        duration = self._gt_info.duration_s
        size = (frames.shape[2], frames.shape[1])
        return normalize_frames(frames, fps, covered_frames(duration), size, times=times, duration_s=duration)[0]

    @cached_property
    def ref_image(self) -> np.ndarray:
        """The reference (identity) image, ``uint8[H,W,3]`` RGB."""
        return self.spec.load_ref_image()
