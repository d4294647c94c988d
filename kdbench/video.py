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
    """Container facts read without decoding every frame (``n_frames`` may be counted by demuxing)."""

    fps: float
    n_frames: int
    width: int
    height: int
    has_audio: bool
    duration_s: float
    codec: str


def _video_stream(container, path: Path):
    """``(first video stream, its fps)`` of an open container; :class:`KdbenchError` when it has none."""
    if not container.streams.video:
        raise KdbenchError(f"{path} has no video stream")
    vs = container.streams.video[0]
    return vs, float(vs.average_rate or vs.guessed_rate or 0)


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read fps, exact frame count (by demuxing packets), size and whether an audio track exists.

    A file whose packets stop before the frame count its header declares is reported as truncated.
    """
    path = Path(path)
    if not path.is_file():
        raise KdbenchError(f"video not found: {path}")
    try:
        with av.open(str(path)) as container:
            vs, fps = _video_stream(container, path)
            n = sum(1 for p in container.demux(vs) if p.size > 0)
            if vs.frames and n < vs.frames:
                raise truncated_error(path, "video", f"{vs.frames} frames", f"{n}")
            duration = n / fps if fps else 0.0
            return VideoInfo(fps=fps, n_frames=n, width=vs.codec_context.width,
                             height=vs.codec_context.height, has_audio=bool(container.streams.audio),
                             duration_s=duration, codec=vs.codec_context.name)
    except (av.FFmpegError, OSError) as e:
        raise media_error(path, e) from e


def video_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` from the container header only (no demuxing)."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise KdbenchError(f"{path} has no video stream")
            cc = container.streams.video[0].codec_context
            return (cc.width, cc.height)
    except (av.FFmpegError, OSError) as e:
        raise media_error(path, e) from e


def iter_frames(path: str | os.PathLike, max_frames: int | None = None):
    """Yield decoded frames ``uint8[H,W,3]`` RGB one by one (memory stays bounded)."""
    try:
        with av.open(str(path)) as container:
            vs = container.streams.video[0]
            vs.thread_type = "AUTO"
            for i, frame in enumerate(container.decode(vs)):
                if max_frames is not None and i >= max_frames:
                    break
                yield frame.to_ndarray(format="rgb24")
    except (av.FFmpegError, OSError) as e:
        raise media_error(path, e) from e


def read_video(path: str | os.PathLike, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Decode a whole video: ``(frames uint8[T,H,W,3] RGB, fps)``.

    Fewer decodable frames than the header declares is an error that says the file is truncated.
    """
    path = Path(path)
    if not path.is_file():
        raise KdbenchError(f"video not found: {path}")
    try:
        with av.open(str(path)) as container:
            vs, fps = _video_stream(container, path)
            declared = int(vs.frames or 0)
    except (av.FFmpegError, OSError) as e:
        raise media_error(path, e) from e
    frames = list(iter_frames(path, max_frames))
    if not frames:
        raise KdbenchError(f"{path} has no decodable frames")
    if max_frames is None and declared and len(frames) < declared:
        raise truncated_error(path, "video", f"{declared} frames", f"{len(frames)} decodable")
    return np.stack(frames), fps


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
            ivs = inp.streams.video[0]
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
