"""Audio I/O: every track becomes 16 kHz mono int16, the format all metrics and methods consume.

Decoding and resampling use PyAV's FFmpeg (swresample), i.e. what ``ffmpeg -ac 1 -ar 16000
-acodec pcm_s16le`` produces — the extraction step of syncnet_python's pipeline.
"""

from __future__ import annotations

import os
import wave
from pathlib import Path

import av
import numpy as np

from . import FPS, SAMPLE_RATE
from .errors import KdbenchError
from .files import atomic_path
from .media_errors import media_error

TRUNCATION_SLACK = 2048
"""Decoded samples may fall this far (two AAC frames) short of the header's duration before a file counts
as truncated."""

SILENCE_DBFS = -50.0
"""Audio is near-silent when the level of its loudest 20 ms windows (95th percentile of the per-window RMS,
in dBFS: 0 = full-scale square wave) is below this. Dither (about -90 dBFS) and a faint hum are caught;
real HDTF speech sits at -11 to -24 dBFS by this measure."""

MIN_AUDIO_SECONDS = 1.0


def read_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode the first audio track of any file (wav, mp4, ...) to ``int16[N]`` mono at ``sample_rate``."""
    path = Path(path)
    if not path.is_file():
        raise KdbenchError(f"audio not found: {path}")
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise KdbenchError(f"{path} has no audio track")
            stream = container.streams.audio[0]
            # encoders pad the last frame (AAC: to 1024 samples); the stream duration is the true length
            n_true = (round(float(stream.duration * stream.time_base) * sample_rate)
                      if stream.duration and stream.time_base else None)
            resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
            chunks = []
            for frame in container.decode(stream):
                frame.pts = None
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except (av.FFmpegError, OSError) as e:
        raise media_error(path, e, "audio") from e
    if not chunks:
        raise KdbenchError(f"{path} has an empty audio track")
    audio = np.concatenate(chunks).astype(np.int16, copy=False)
    if n_true and len(audio) < n_true - TRUNCATION_SLACK:
        raise KdbenchError(f"{path} is truncated: its header declares {n_true / sample_rate:.2f} s of audio, "
                           f"only {len(audio) / sample_rate:.2f} s can be decoded")
    return audio[:n_true] if n_true else audio


def read_audio_librosa(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE,
                       res_type: str = "soxr_hq") -> np.ndarray:
    """``librosa.load(path, sr=sample_rate)``: ``float32[N]`` mono, what methods built on librosa read.

    Differs from :func:`read_audio` (the canonical int16 track) in two ways that move a method's output:
    channels are averaged in float (an int16 mixdown rounds away the half sample wherever two channels sum to
    an odd number), and other rates go through librosa's resampler (``soxr_hq``), not swresample. Files that
    libsndfile reads (wav, flac, ogg) go through ``librosa.load`` itself; others (mp4, m4a) are decoded by
    FFmpeg to native-rate int16, as librosa's audioread fallback receives them, then mixed and resampled
    the same way.
    """
    import librosa
    import soundfile

    path = Path(path)
    if not path.is_file():
        raise KdbenchError(f"audio not found: {path}")
    try:
        soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError):
        pass
    else:
        return librosa.load(str(path), sr=sample_rate, mono=True, res_type=res_type)[0]
    y, sr = _read_native_int16(path)
    y = librosa.to_mono((y.astype(np.float32) / np.float32(32768.0)).T)
    if sr != sample_rate:
        y = librosa.resample(y, orig_sr=sr, target_sr=sample_rate, res_type=res_type)
    return np.asarray(y, dtype=np.float32)


def _read_native_int16(path: Path) -> tuple[np.ndarray, int]:
    """First audio track at its own rate and channels: ``(int16[N, C], rate)`` (FFmpeg's s16 conversion)."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise KdbenchError(f"{path} has no audio track")
            stream = container.streams.audio[0]
            rate, channels = stream.codec_context.sample_rate, stream.codec_context.channels
            resampler = av.AudioResampler(format="s16", layout=stream.codec_context.layout, rate=rate)
            chunks = []
            for frame in container.decode(stream):
                frame.pts = None
                chunks += [o.to_ndarray().reshape(-1, channels) for o in resampler.resample(frame)]
            chunks += [o.to_ndarray().reshape(-1, channels) for o in resampler.resample(None)]
    except av.FFmpegError as e:
        raise KdbenchError(f"cannot decode audio of {path}: {e}") from e
    if not chunks:
        raise KdbenchError(f"{path} has an empty audio track")
    return np.concatenate(chunks).astype(np.int16, copy=False), rate


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write ``int16[N]`` mono PCM wav (atomically)."""
    path = Path(path)
    with atomic_path(path) as tmp, wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(np.asarray(audio, dtype="<i2").tobytes())
    return path


def n_video_frames(n_samples: int, sample_rate: int = SAMPLE_RATE, fps: int = FPS) -> int:
    """Number of whole video frames that an audio track of ``n_samples`` covers (floor)."""
    return (n_samples * fps) // sample_rate


def loudness_dbfs(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, window_s: float = 0.02,
                  percentile: float = 95.0) -> float:
    """``percentile`` of the RMS level of ``window_s`` windows of ``int16[N]`` audio, in dBFS (-inf for zeros)."""
    x = np.asarray(audio, dtype=np.float64) / 32768.0
    w = max(1, int(round(window_s * sample_rate)))
    n = max(1, len(x) // w)
    x = np.pad(x, (0, max(0, n * w - len(x))))[: n * w]
    rms = np.sqrt((x.reshape(n, w) ** 2).mean(axis=1))
    level = float(np.percentile(rms, percentile))
    return 20.0 * np.log10(level) if level > 0 else float("-inf")


def check_audio(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, min_seconds: float = MIN_AUDIO_SECONDS) -> None:
    """Raise a clear error for audio under ``min_seconds``, or near-silent audio (see :data:`SILENCE_DBFS`).

    ``kdbench run`` and ``kdbench data verify`` apply the same check.
    """
    if len(audio) < min_seconds * sample_rate:
        raise KdbenchError(f"audio is {len(audio) / sample_rate:.2f} s long; at least {min_seconds} s is needed")
    if not np.any(audio):
        raise KdbenchError("audio is silent (all samples are zero)")
    level = loudness_dbfs(audio, sample_rate)
    if level < SILENCE_DBFS:
        raise KdbenchError(f"audio is near-silent: its loudest 20 ms windows are at {level:.1f} dBFS, below the "
                           f"{SILENCE_DBFS:g} dBFS threshold (dither, hum or an unplugged microphone)")
