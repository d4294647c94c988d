"""The normaliser every method's output goes through, so all methods are scored on equal terms.

Output: 25 fps, exactly the audio's frame count (trimmed, or padded by repeating the last frame),
the dataset's frame size, and the canonical 16 kHz mono audio muxed in losslessly (FLAC; stream-copied
when the input already carries exactly those samples), so every metric hears the dataset's samples and
re-scoring a run does not depend on an audio encoder. An optional grid hook cuts
one panel out of side-by-side outputs (AniPortrait writes a 3-panel grid). What was changed is
returned and recorded in the run's events.

A variable-frame-rate video (uneven timestamps, :func:`kdbench.video.is_vfr`) is resampled by its timestamps:
output frame ``i`` shows the frame whose timestamp is nearest to ``i / 25`` s (:func:`resample_indices_by_time`,
the rule of the constant-rate path); it is recorded as ``vfr``. A file with several video streams is read from the
one ffmpeg would pick (:func:`kdbench.video.pick_video_stream`); its index is recorded as ``stream``.

No silent numbers: padding is allowed up to ``max_pad_frames`` (default
:data:`DEFAULT_MAX_PAD_FRAMES`; methods differ by a few frames in how they round the audio's length) and
recorded per clip; a video shorter than that fails the clip with both lengths. A video whose aspect ratio
differs from the frame size by more than :data:`ASPECT_TOLERANCE` (or one pixel) fails the clip with both sizes, unless
``letterbox=True`` (scaled to fit, centred on black bars).

A video that already conforms is remuxed without re-encoding, so its frames stay bit-exact.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from . import FPS, SAMPLE_RATE
from .audio import n_video_frames
from .errors import ClipFailure, KdbenchError

DEFAULT_MAX_PAD_FRAMES = 5
"""Frames (at 25 fps, 0.2 s) a video may fall short of its audio and still be padded with its last frame."""

ASPECT_TOLERANCE = 0.01
"""Relative aspect-ratio difference up to which a video is resized to the frame size; a difference of one pixel
(an odd size rounded to an even one) is always accepted."""


@dataclass(frozen=True)
class GridCrop:
    """Take panel ``index`` (0-based, row-major) of a ``cols`` x ``rows`` grid of equal panels.

    ``padding`` is the pixel gap laid out the way ``torchvision.utils.make_grid`` does it: a frame of
    ``cols * (pw + padding) + padding`` by ``rows * (ph + padding) + padding`` pixels, panel ``(r, c)``
    at ``x = c * (pw + padding) + padding``, ``y = r * (ph + padding) + padding``, size ``pw`` x ``ph``
    (padding around and between the panels). AniPortrait's 1544x516 output at 512 is
    ``GridCrop(cols=3, index=2, padding=2)``: its generated video is x 1030-1541, y 2-513.
    """

    cols: int
    index: int
    rows: int = 1
    padding: int = 0

    def panel_box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """``(x0, y0, panel_w, panel_h)`` of the panel inside a ``width`` x ``height`` frame, in pixels."""
        if self.cols < 1 or self.rows < 1 or self.padding < 0:
            raise KdbenchError(f"invalid grid {self.spec()}: need COLS, ROWS >= 1 and pad >= 0")
        if not 0 <= self.index < self.cols * self.rows:
            raise KdbenchError(f"grid panel {self.index} out of range for {self.cols}x{self.rows}")
        p = self.padding
        if (width - p) % self.cols or (height - p) % self.rows:
            raise KdbenchError(f"frame {width}x{height} does not split into a {self.cols}x{self.rows} grid with "
                               f"padding {p}: the width must be COLS*(panel+pad)+pad (e.g. AniPortrait at 512: "
                               f"1544x516 is --grid 3:2,pad=2)")
        pw, ph = (width - p) // self.cols - p, (height - p) // self.rows - p
        if pw < 1 or ph < 1:
            raise KdbenchError(f"frame {width}x{height} is too small for a {self.cols}x{self.rows} grid "
                               f"with padding {p}")
        r, c = divmod(self.index, self.cols)
        return c * (pw + p) + p, r * (ph + p) + p, pw, ph

    def apply(self, frames: np.ndarray) -> np.ndarray:
        """``frames: uint8[T,H,W,3]`` -> ``uint8[T,ph,pw,3]``, the selected panel without padding."""
        _, h, w, _ = frames.shape
        x0, y0, pw, ph = self.panel_box(w, h)
        return frames[:, y0:y0 + ph, x0:x0 + pw]

    def spec(self) -> str:
        """The ``--grid`` text that parses back to this crop, e.g. ``"3x1:2,pad=2"``."""
        return f"{self.cols}x{self.rows}:{self.index}" + (f",pad={self.padding}" if self.padding else "")

    @classmethod
    def parse(cls, text: str | None) -> GridCrop | None:
        """``COLS[xROWS]:INDEX[,pad=N]``: ``"3:1"`` (3 columns, panel 1), ``"3x2:4"`` (3 columns, 2 rows,
        panel 4), ``"3:2,pad=2"`` (AniPortrait: panel 2 of make_grid's 3-panel row with 2-pixel padding).

        Raises :class:`KdbenchError` for anything else (zero or negative counts, a panel out of range).
        """
        if not text:
            return None
        m = _GRID_RE.fullmatch(str(text).strip())
        if m is None:
            raise KdbenchError(f"bad --grid {text!r}: expected COLS[xROWS]:INDEX[,pad=N], e.g. 3:1 or 3:2,pad=2")
        cols, rows, index, pad = m.groups()
        grid = cls(cols=int(cols), rows=int(rows or 1), index=int(index or 0), padding=int(pad or 0))
        if grid.cols < 1 or grid.rows < 1 or grid.cols * grid.rows < 2:
            raise KdbenchError(f"grid {text!r}: a grid needs at least 2 panels (COLS >= 1, ROWS >= 1)")
        if not 0 <= grid.index < grid.cols * grid.rows:
            raise KdbenchError(f"grid {text!r}: panel {grid.index} is out of range 0..{grid.cols * grid.rows - 1}")
        return grid


_GRID_RE = re.compile(r"(\d+)(?:x(\d+))?(?::(\d+))?(?:,pad=(\d+))?")


@dataclass(frozen=True)
class NormalizeReport:
    orig_fps: float
    orig_n_frames: int
    orig_size: tuple[int, int]
    n_frames: int
    size: tuple[int, int]
    resampled: bool
    resized: bool
    trimmed: int
    padded: int
    grid: str | None
    reencoded: bool
    letterboxed: bool = False
    vfr: bool = False
    stream: int | None = None
    n_video_streams: int = 1

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def resample_indices(n_src: int, src_fps: float, n_out: int, dst_fps: float = FPS) -> np.ndarray:
    """Source frame index for each output frame, chosen by timestamp: ``int64[n_out]``.

    Output frame ``i`` is presented at ``i / dst_fps`` s; it takes the source frame whose timestamp
    ``k / src_fps`` is nearest (``k = round(i * src_fps / dst_fps)``, halves up, as ffmpeg's ``fps``
    filter does). Nearest rather than the previous frame: the timing error is at most half a source
    frame (1/60 s for 30 -> 25) instead of a whole one, with no systematic lag, and it is the exact
    inverse of the same rule upwards, so a 25 fps clip taken to 30 fps and back returns its own frames.
    The rates are taken as exact fractions (29.97 = 30000/1001), so no float drift over long clips.
    Indices past the end repeat the last frame (padding).
    """
    if n_src <= 0:
        raise KdbenchError("video has no frames")
    ratio = Fraction(src_fps).limit_denominator(1001) / Fraction(dst_fps).limit_denominator(1001)
    i = np.arange(n_out, dtype=np.int64)
    idx = (2 * i * ratio.numerator + ratio.denominator) // (2 * ratio.denominator)
    return np.minimum(idx, n_src - 1)


def resample_indices_by_time(times, n_out: int, dst_fps: float = FPS) -> np.ndarray:
    """Source frame index for each output frame of a variable-frame-rate video: ``int64[n_out]``.

    ``times``: each source frame's presentation time in seconds from the first (increasing; exact fractions).
    Output frame ``i`` (at ``i / dst_fps`` s) takes the source frame whose timestamp is nearest, the later one on a
    tie and the last of frames sharing a timestamp: for evenly spaced timestamps this is :func:`resample_indices`
    exactly. Past the last frame, the last one (padding).
    """
    import bisect

    ts = [Fraction(t) for t in times]
    if not ts:
        raise KdbenchError("video has no frames")
    step = 1 / Fraction(dst_fps).limit_denominator(1001)
    out = np.empty(n_out, dtype=np.int64)
    for i in range(n_out):
        t = i * step
        j = bisect.bisect_right(ts, t)  # ts[j - 1] <= t < ts[j]
        if j == 0:
            out[i] = 0
        elif j == len(ts):
            out[i] = len(ts) - 1
        else:
            out[i] = j if ts[j] - t <= t - ts[j - 1] else j - 1
    return out


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``uint8[T,H,W,3]`` to ``size = (width, height)`` with bicubic filtering (PIL)."""
    from PIL import Image

    w, h = size
    return np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BICUBIC)) for f in frames])


def letterbox_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale ``uint8[T,H,W,3]`` to fit inside ``size = (width, height)`` keeping its aspect, centred on black."""
    t, h, w, _ = frames.shape
    width, height = size
    scale = min(width / w, height / h)
    nw, nh = max(1, min(width, round(w * scale))), max(1, min(height, round(h * scale)))
    inner = resize_frames(frames, (nw, nh)) if (nw, nh) != (w, h) else frames
    out = np.zeros((t, height, width, 3), np.uint8)
    y0, x0 = (height - nh) // 2, (width - nw) // 2
    out[:, y0:y0 + nh, x0:x0 + nw] = inner
    return out


def check_aspect(src: tuple[int, int], size: tuple[int, int], letterbox: bool = False) -> bool:
    """True when ``src`` (width, height) must be letterboxed into ``size``; raise :class:`ClipFailure` when its
    aspect ratio differs by more than :data:`ASPECT_TOLERANCE` and ``letterbox`` is off."""
    (w, h), (width, height) = src, size
    if abs(w * height - h * width) <= max(width, height, ASPECT_TOLERANCE * h * width):  # 1 px, or 1 %
        return False
    if letterbox:
        return True
    raise ClipFailure(f"video is {w}x{h} (aspect {w / h:.3f}) but the dataset's frame size is {width}x{height} "
                      f"(aspect {width / height:.3f}): it would be stretched. Pass --letterbox to fit it on black "
                      "bars, --grid to cut one panel out, or --frame-size WxH")


def check_padding(n_covered: int, n_out: int, max_pad_frames: int = DEFAULT_MAX_PAD_FRAMES) -> int:
    """Frames to pad (``n_out - n_covered``, at least 0); raise :class:`ClipFailure` beyond ``max_pad_frames``."""
    pad = max(0, n_out - n_covered)
    if pad > max_pad_frames:
        raise ClipFailure(f"video is {pad} frames ({pad / FPS:.2f} s) shorter than its audio: it covers {n_covered} "
                          f"of {n_out} frames at {FPS} fps, more than the {max_pad_frames}-frame padding tolerance "
                          "(--max-pad-frames)")
    return pad


def covered_frames(duration_s: float, fps: float = FPS) -> int:
    """Frames at ``fps`` that ``duration_s`` seconds of video cover: ``floor(duration_s * fps)`` (with 1e-6 of slack
    for the float rounding of exact durations)."""
    return int(math.floor(duration_s * fps + 1e-6))


def vfr_times(info, frames: np.ndarray, times, path: Path) -> list[Fraction] | None:
    """The timestamps to resample ``frames`` by (:func:`resample_indices_by_time`): ``times`` (from
    :func:`kdbench.video.read_video_timed`) when ``info`` (:func:`kdbench.video.probe_video` of ``path``) says the
    frame rate is variable, None for a constant rate or a file without timestamps. :class:`ClipFailure` when there is
    not one timestamp per decoded frame."""
    if not info.vfr or times is None:
        return None
    if len(times) != len(frames):
        raise ClipFailure(f"variable-frame-rate video {path}: {len(frames)} frames decoded for "
                          f"{info.n_frames} packets, so its timestamps cannot be matched to its frames")
    return times


def normalize_frames(frames: np.ndarray, src_fps: float, n_out: int, size: tuple[int, int],
                     grid: GridCrop | None = None, *, max_pad_frames: int = DEFAULT_MAX_PAD_FRAMES,
                     letterbox: bool = False, times=None,
                     duration_s: float | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Pure array part of the normaliser: grid crop, fps resample, trim/pad, resize (or letterbox).

    ``frames: uint8[T,H,W,3]`` at ``src_fps`` -> ``uint8[n_out,size[1],size[0],3]`` at 25 fps. Raises
    :class:`ClipFailure` past the padding tolerance or for a different aspect ratio without ``letterbox``.
    ``times`` (seconds from the first frame) and ``duration_s``: a variable-frame-rate video, resampled by its
    timestamps (:func:`resample_indices_by_time`) instead of by ``src_fps``.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise KdbenchError(f"expected frames uint8[T,H,W,3], got shape {frames.shape}")
    if not math.isfinite(src_fps) or src_fps <= 0:
        raise KdbenchError(f"invalid source fps {src_fps}")
    if grid is not None:
        frames = grid.apply(frames)
    t, h, w, _ = frames.shape
    vfr = times is not None
    if vfr and (len(times) != t or duration_s is None):
        raise KdbenchError(f"{len(times)} timestamps for {t} frames (and duration {duration_s})")
    resampled = vfr or abs(src_fps - FPS) > 1e-6
    if vfr:
        n_covered = covered_frames(duration_s)
    else:
        n_covered = covered_frames(t / src_fps) if resampled else t
    padded = check_padding(n_covered, n_out, max_pad_frames)
    letterboxed = check_aspect((w, h), tuple(size), letterbox)
    idx = resample_indices_by_time(times, n_out) if vfr else resample_indices(t, src_fps, n_out)
    out = frames[idx]
    resized = (w, h) != tuple(size)
    if letterboxed:
        out = letterbox_frames(out, size)
    elif resized:
        out = resize_frames(out, size)
    return np.ascontiguousarray(out), {
        "resampled": resampled, "resized": resized, "letterboxed": letterboxed,
        "trimmed": max(0, n_covered - n_out), "padded": padded, "vfr": vfr,
    }


def normalize_to_file(out_path: Path, audio: np.ndarray, size: tuple[int, int], *, frames: np.ndarray | None = None,
                      fps: float = FPS, video_path: Path | None = None, grid: GridCrop | None = None,
                      crf: int = 15, max_pad_frames: int = DEFAULT_MAX_PAD_FRAMES,
                      letterbox: bool = False) -> NormalizeReport:
    """Write the normalised mp4 for one clip and say what was changed.

    Give either ``frames`` (``uint8[T,H,W,3]`` RGB at ``fps``) or ``video_path``. ``audio`` is the
    canonical ``int16[N]`` 16 kHz mono track; the output has ``N * 25 // 16000`` frames. A video too
    short for its audio or of another aspect ratio raises :class:`ClipFailure` (see the module docstring),
    before anything is decoded when it comes from ``video_path``.
    """
    from .video import LOSSLESS_AUDIO_CODEC, probe_video, read_video_timed, remux_with_audio, write_video

    n_out = n_video_frames(len(audio))
    if n_out < 1:
        raise KdbenchError("audio is shorter than one video frame")
    info = times = None
    if video_path is not None:
        info = probe_video(video_path)
        conforms = (grid is None and abs(info.fps - FPS) < 1e-6 and info.n_frames == n_out and not info.vfr
                    and (info.width, info.height) == tuple(size))
        if grid is None and info.fps > 0:
            check_padding(covered_frames(info.duration_s), n_out, max_pad_frames)
            check_aspect((info.width, info.height), tuple(size), letterbox)
        if conforms:
            remux_with_audio(video_path, out_path, audio, SAMPLE_RATE, audio_codec=LOSSLESS_AUDIO_CODEC)
            return NormalizeReport(info.fps, info.n_frames, (info.width, info.height), n_out, tuple(size),
                                   False, False, 0, 0, None, False, stream=info.stream,
                                   n_video_streams=info.n_video_streams)
        frames, fps, times = read_video_timed(video_path)
        times = vfr_times(info, frames, times, video_path)
    if frames is None:
        raise KdbenchError("normaliser needs frames or a video path")
    orig = (frames.shape[2], frames.shape[1])
    out, changes = normalize_frames(frames, fps, n_out, size, grid, max_pad_frames=max_pad_frames,
                                    letterbox=letterbox, times=times,
                                    duration_s=info.duration_s if times is not None else None)
    write_video(out_path, out, FPS, audio=audio, sample_rate=SAMPLE_RATE, crf=crf, audio_codec=LOSSLESS_AUDIO_CODEC)
    return NormalizeReport(float(fps), int(frames.shape[0]), orig, n_out, tuple(size), changes["resampled"],
                           changes["resized"], changes["trimmed"], changes["padded"],
                           None if grid is None else grid.spec(), True,
                           changes["letterboxed"], vfr=changes["vfr"],
                           stream=info.stream if info is not None else None,
                           n_video_streams=info.n_video_streams if info is not None else 1)


def normalizer_summary(events: dict[str, dict[str, Any]], config: dict[str, Any]) -> dict[str, Any]:
    """What the normaliser changed in a run, for ``metrics.json``: the policy, and the clips padded (frames
    per clip) or letterboxed. ``events``: the run store's last event per clip; ``config``: its config."""
    policy = dict(config.get("normalizer") or {})
    padded, letterboxed = {}, []
    for cid, ev in events.items():
        rep = ev.get("normalizer") or {}
        if ev.get("status") == "ok" and rep.get("padded"):
            padded[cid] = int(rep["padded"])
        if ev.get("status") == "ok" and rep.get("letterboxed"):
            letterboxed.append(cid)
    return {"max_pad_frames": policy.get("max_pad_frames", DEFAULT_MAX_PAD_FRAMES),
            "letterbox": bool(policy.get("letterbox", False)), "padded": padded, "letterboxed": sorted(letterboxed)}
