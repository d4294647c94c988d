"""Video I/O with PyAV (bundled FFmpeg): decode to arrays in memory, encode with audio.

Frames are ``uint8[T,H,W,3]`` RGB everywhere in kdbench.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .errors import KdbenchError
from .files import atomic_path
from .media_errors import media_error

#: Codec of the canonical audio track in every normalised video: lossless, so decoding it gives back the exact
#: int16 samples (AAC would change them, and by an amount that depends on the encoder's version). FLAC in MP4
#: plays in browsers and in every FFmpeg-based tool.
LOSSLESS_AUDIO_CODEC = "flac"
LOSSLESS_AUDIO_CODECS = frozenset({"flac", "alac", "pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_s32le", "wavpack"})


def audio_codec(path: str | os.PathLike) -> str | None:
    """Name of the codec of the first audio track of ``path`` (``"aac"``, ``"flac"``...), None without audio."""
    try:
        with av.open(str(path)) as container:
            return container.streams.audio[0].codec_context.name if container.streams.audio else None
    except av.FFmpegError as e:
        raise KdbenchError(f"cannot read {path}: {e}") from e


def truncated_error(path: str | os.PathLike, what: str, declared: str, found: str) -> KdbenchError:
    return KdbenchError(f"{what} {path} is truncated: its header declares {declared}, the file holds only {found}")


@dataclass(frozen=True)
class VideoInfo:
    """Container facts read without decoding every frame (``n_frames`` may be counted by demuxing).

    ``stream``: index of the video stream kdbench reads (:func:`pick_video_stream`), ``n_video_streams`` how many
    the file has. ``vfr``: the frames' timestamps are not evenly spaced (:func:`is_vfr`); ``duration_s`` is then
    from the timestamps (first frame to the end of the last), else ``n_frames / fps``."""

    fps: float
    n_frames: int
    width: int
    height: int
    has_audio: bool
    duration_s: float
    codec: str
    stream: int = 0
    n_video_streams: int = 1
    vfr: bool = False


VFR_TOLERANCE = 0.01
"""Frame intervals may differ from their median by this fraction (or one tick of the time base: containers round
timestamps, e.g. 33/34 ms for 30 fps in Matroska) and the video still counts as constant frame rate."""


def pick_video_stream(container):
    """The video stream ffmpeg's automatic stream selection maps (``ffmpeg -i IN OUT`` without ``-map``): the
    highest ``width x height``, plus 5,000,000 for the *default* disposition (so a default stream wins up to
    ~2236x2236), an attached picture (cover art) scoring 1; ties go to the lowest index (fftools
    ``map_auto_video``). None when the container has no video stream."""
    from av.stream import Disposition

    best, best_score = None, 0
    for vs in container.streams.video:
        cc = vs.codec_context
        disposition = Disposition(int(getattr(vs, "disposition", 0) or 0))
        score = int(cc.width or 0) * int(cc.height or 0) + 5_000_000 * bool(disposition & Disposition.default)
        if disposition & Disposition.attached_pic:
            score = 1
        if best is None or score > best_score:
            best, best_score = vs, score
    return best


def _video_stream(container, path: Path):
    """``(the video stream ffmpeg would pick, its fps)`` of an open container (:func:`pick_video_stream`);
    :class:`KdbenchError` when it has none."""
    vs = pick_video_stream(container)
    if vs is None:
        raise KdbenchError(f"{path} has no video stream")
    return vs, float(vs.average_rate or vs.guessed_rate or 0)


def is_vfr(pts: list[int] | np.ndarray, tolerance: float = VFR_TOLERANCE) -> bool:
    """True when the presentation timestamps ``pts`` (integer ticks, any order) are not evenly spaced: some
    interval differs from the median interval by more than one tick and more than ``tolerance`` of it."""
    t = np.sort(np.asarray(pts, dtype=np.int64))
    if len(t) < 3:
        return False
    d = np.diff(t)
    med = float(np.median(d))
    return bool(np.any(np.abs(d - med) > max(1.0, tolerance * med)))


def _timing(pts: list[int], durations: list[int], time_base, n: int, fps: float) -> tuple[bool, float]:
    """``(vfr, duration_s)`` from the packets' timestamps; ``n / fps`` when they are missing or even."""
    if len(pts) != n or n < 3 or time_base is None or not is_vfr(pts):
        return False, (n / fps if fps else 0.0)
    t = np.sort(np.asarray(pts, dtype=np.int64))
    last = durations[int(np.argmax(pts))] if durations and len(durations) == n else 0
    last = last or int(np.median(np.diff(t)))
    return True, float((int(t[-1]) - int(t[0]) + last) * time_base)


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read fps, exact frame count (by demuxing packets), size, whether an audio track exists, which video stream
    is read (:func:`pick_video_stream`) and whether its frame rate is variable (:func:`is_vfr`).

    A file whose packets stop before the frame count its header declares is reported as truncated.
    """
    path = Path(path)
    if not path.is_file():
        raise KdbenchError(f"video not found: {path}")
    try:
        with av.open(str(path)) as container:
            vs, fps = _video_stream(container, path)
            pts, durations = [], []
            n = 0
            for p in container.demux(vs):
                if p.size > 0:
                    n += 1
                    if p.pts is not None:
                        pts.append(int(p.pts))
                        durations.append(int(p.duration or 0))
            if vs.frames and n < vs.frames:
                raise truncated_error(path, "video", f"{vs.frames} frames", f"{n}")
            vfr, duration = _timing(pts, durations, vs.time_base, n, fps)
            return VideoInfo(fps=fps, n_frames=n, width=vs.codec_context.width,
                             height=vs.codec_context.height, has_audio=bool(container.streams.audio),
                             duration_s=duration, codec=vs.codec_context.name, stream=vs.index,
                             n_video_streams=len(container.streams.video), vfr=vfr)
    except (av.FFmpegError, OSError) as e:
        raise media_error(path, e) from e


def video_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of the stream kdbench reads (:func:`pick_video_stream`), from the header only."""
    try:
        with av.open(str(path)) as container:
            vs, _ = _video_stream(container, Path(path))
            return (vs.codec_context.width, vs.codec_context.height)
    except (av.FFmpegError, OSError) as e:
        raise media_error(path, e) from e


def _iter_decoded(path: str | os.PathLike, max_frames: int | None = None):
    """Yield ``(frame uint8[H,W,3] RGB, pts in seconds as a Fraction or None)`` of the stream ffmpeg would pick."""
    try:
        with av.open(str(path)) as container:
            vs, _ = _video_stream(container, Path(path))
            vs.thread_type = "AUTO"
            tb = vs.time_base
            for i, frame in enumerate(container.decode(vs)):
                if max_frames is not None and i >= max_frames:
                    break
                t = Fraction(frame.pts) * tb if frame.pts is not None and tb is not None else None
                yield frame.to_ndarray(format="rgb24"), t
    except (av.FFmpegError, OSError) as e:
        raise media_error(path, e) from e


def iter_frames(path: str | os.PathLike, max_frames: int | None = None):
    """Yield decoded frames ``uint8[H,W,3]`` RGB one by one (memory stays bounded), from the video stream ffmpeg
    would pick (:func:`pick_video_stream`)."""
    for frame, _ in _iter_decoded(path, max_frames):
        yield frame


def read_video(path: str | os.PathLike, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Decode a whole video: ``(frames uint8[T,H,W,3] RGB, fps)``.

    Fewer decodable frames than the header declares is an error that says the file is truncated.
    """
    frames, fps, _ = read_video_timed(path, max_frames)
    return frames, fps


def read_video_timed(path: str | os.PathLike,
                     max_frames: int | None = None) -> tuple[np.ndarray, float, list[Fraction] | None]:
    """:func:`read_video` plus each frame's presentation time in seconds (exact fractions, from the first frame's),
    or None when the file carries no timestamps. Timestamps that go backwards are an error saying so."""
    path = Path(path)
    if not path.is_file():
        raise KdbenchError(f"video not found: {path}")
    try:
        with av.open(str(path)) as container:
            vs, fps = _video_stream(container, path)
            declared = int(vs.frames or 0)
    except (av.FFmpegError, OSError) as e:
        raise media_error(path, e) from e
    decoded = list(_iter_decoded(path, max_frames))
    if not decoded:
        raise KdbenchError(f"{path} has no decodable frames")
    if max_frames is None and declared and len(decoded) < declared:
        raise truncated_error(path, "video", f"{declared} frames", f"{len(decoded)} decodable")
    times = [t for _, t in decoded]
    if any(t is None for t in times):
        times = None
    else:
        times = [t - times[0] for t in times]
        back = next((i for i in range(1, len(times)) if times[i] < times[i - 1]), None)
        if back is not None:
            before, after = float(times[back - 1]), float(times[back])
            raise KdbenchError(f"video {path}: frame timestamps go backwards at frame {back} ({before:.3f} s, then "
                               f"{after:.3f} s): the file's timing is broken; re-encode it with a constant frame rate")
    return np.stack([f for f, _ in decoded]), fps, times


def write_video(path: str | os.PathLike, frames, fps: float = 25, audio: np.ndarray | None = None,
                sample_rate: int = 16000, crf: int = 15, codec: str = "libx264", audio_codec: str = "aac") -> Path:
    """Encode frames (iterable of ``uint8[H,W,3]`` RGB) to H.264/yuv420p mp4, with optional mono int16 audio
    (``audio_codec``: AAC by default, :data:`LOSSLESS_AUDIO_CODEC` to keep the samples exact).

    The file is written to a temporary name and renamed, so a crash never leaves a half-written video.
    ``crf`` 15 keeps re-encoding losses well below what the metrics resolve.
    """
    path = Path(path)
    rate = Fraction(fps).limit_denominator(1001)
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w") as out:
            vs = None
            astream = None
            if audio is not None:
                astream = out.add_stream(audio_codec, rate=sample_rate)
                astream.layout = "mono"
            n = 0
            for frame in frames:
                frame = np.ascontiguousarray(frame, dtype=np.uint8)
                if vs is None:
                    h, w = frame.shape[:2]
                    if h % 2 or w % 2:
                        raise KdbenchError(f"frame size {w}x{h} must be even for yuv420p")
                    vs = out.add_stream(codec, rate=rate)
                    vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
                    vs.options = {"crf": str(crf), "preset": "medium"} if codec == "libx264" else {}
                for packet in vs.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    out.mux(packet)
                n += 1
            if vs is None:
                raise KdbenchError(f"no frames to write to {path}")
            for packet in vs.encode():
                out.mux(packet)
            if astream is not None:
                _encode_audio(out, astream, audio, sample_rate)
    return path


def has_exact_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int = 16000) -> bool:
    """True when the first audio track of ``path`` is lossless, mono, at ``sample_rate`` and decodes to exactly
    ``audio`` (``int16[N]``): such a track can be stream-copied instead of re-encoded."""
    from .audio import read_audio

    with av.open(str(path)) as container:
        if not container.streams.audio:
            return False
        cc = container.streams.audio[0].codec_context
        if cc.name not in LOSSLESS_AUDIO_CODECS or cc.sample_rate != sample_rate or cc.channels != 1:
            return False
    got = read_audio(path, sample_rate)
    return len(got) == len(audio) and bool(np.array_equal(got, audio))


def remux_with_audio(src: str | os.PathLike, dst: str | os.PathLike, audio: np.ndarray,
                     sample_rate: int = 16000, audio_codec: str = "aac") -> Path:
    """Copy the video stream of ``src`` without re-encoding and add ``audio`` (mono int16) as ``audio_codec``.

    When ``audio_codec`` is lossless and ``src``'s own track already decodes to exactly ``audio``
    (:func:`has_exact_audio`), that track is stream-copied too.
    """
    dst = Path(dst)
    copy_audio = audio_codec in LOSSLESS_AUDIO_CODECS and has_exact_audio(src, audio, sample_rate)
    try:
        inp = av.open(str(src))
    except (av.FFmpegError, OSError) as e:
        raise media_error(src, e) from e
    with atomic_path(dst) as tmp, inp:
        with av.open(str(tmp), mode="w") as out:
            ivs = pick_video_stream(inp)
            if ivs is None:
                raise KdbenchError(f"{src} has no video stream")
            ovs = out.add_stream_from_template(ivs)
            if copy_audio:
                ias = inp.streams.audio[0]
                oas = out.add_stream_from_template(ias)
                streams = {ivs.index: ovs, ias.index: oas}
                packets = inp.demux(ivs, ias)
            else:
                astream = out.add_stream(audio_codec, rate=sample_rate)
                astream.layout = "mono"
                streams = {ivs.index: ovs}
                packets = inp.demux(ivs)
            for packet in packets:
                if packet.dts is None:
                    continue
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
            if not copy_audio:
                _encode_audio(out, astream, audio, sample_rate)
    return dst


def _encode_audio(out, astream, audio: np.ndarray, sample_rate: int) -> None:
    samples = np.ascontiguousarray(np.asarray(audio, dtype=np.int16).reshape(1, -1))
    chunk = 1024 * 16
    pts = 0
    for start in range(0, samples.shape[1], chunk):
        part = np.ascontiguousarray(samples[:, start:start + chunk])
        frame = av.AudioFrame.from_ndarray(part, format="s16", layout="mono")
        frame.sample_rate = sample_rate
        frame.pts = pts
        pts += part.shape[1]
        for packet in astream.encode(frame):
            out.mux(packet)
    for packet in astream.encode(None):
        out.mux(packet)
