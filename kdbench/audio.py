"""Audio I/O: every track becomes 16 kHz mono int16, the format all metrics and methods consume.

Decoding and resampling use PyAV's FFmpeg (swresample), i.e. what ``ffmpeg -ac 1 -ar 16000
-acodec pcm_s16le`` produces — the extraction step of syncnet_python's pipeline.
"""

from __future__ import annotations

import os
import wave
from dataclasses import dataclass
from fractions import Fraction
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


def decoded_frames(container, stream):
    """The stream's decoded frames, trimmed as FFmpeg's command line trims them (what ``ffmpeg -i FILE ...``,
    audioread and librosa hear).

    The decoder already drops the encoder's priming samples (the edit list's start). The end is trimmed here:
    each frame is cut to its packet's duration (an AAC encoder pads the last frame to 1,024 samples and the
    container stores the true duration of that packet), and in mp4/mov/m4a nothing is kept past the stream's
    declared end (the edit list's duration; other containers' durations can be estimates, e.g. MPEG-TS's from
    the bitrate, which ffmpeg does not cut at). Untrimmed, a 2.99 s 16 kHz AAC clip decodes to 48,128 samples
    instead of 47,840. Frames are yielded unchanged when nothing is cut, else as new frames of the same format
    and layout.
    """
    tb = stream.time_base
    end = None
    if stream.duration and tb and "mov" in container.format.name.split(","):
        end = (stream.start_time or 0) + stream.duration  # in time_base units
    for frame in container.decode(stream):
        keep = frame.samples
        if frame.duration and 0 < frame.duration < keep and frame.time_base == Fraction(1, frame.sample_rate):
            keep = int(frame.duration)
        if end is not None and frame.pts is not None and tb:
            left = round(float((end - frame.pts) * tb) * frame.sample_rate)
            keep = min(keep, max(left, 0))
        if keep <= 0:
            continue
        if keep < frame.samples:
            frame = _head(frame, keep)
        yield frame


def _head(frame, n: int):
    """The first ``n`` samples of an audio frame, as a new frame (same format, layout, rate and pts)."""
    arr = frame.to_ndarray()
    arr = arr[:, :n] if frame.format.is_planar else arr[:, : n * len(frame.layout.channels)]
    out = av.AudioFrame.from_ndarray(np.ascontiguousarray(arr), format=frame.format.name, layout=frame.layout.name)
    out.sample_rate = frame.sample_rate
    out.pts, out.time_base = frame.pts, frame.time_base
    return out


def read_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode the first audio track of any file (wav, mp4, ...) to ``int16[N]`` mono at ``sample_rate``.

    Equal to ``ffmpeg -i FILE -ac 1 -ar 16000 -acodec pcm_s16le`` (the same trimming of encoder priming and end
    padding, :func:`decoded_frames`, then swresample).
    """
    path = Path(path)
    if not path.is_file():
        raise KdbenchError(f"audio not found: {path}")
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise KdbenchError(f"{path} has no audio track")
            stream = container.streams.audio[0]
            n_true = (round(float(stream.duration * stream.time_base) * sample_rate)
                      if stream.duration and stream.time_base else None)
            resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
            chunks = []
            for frame in decoded_frames(container, stream):
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
    return audio


@dataclass(frozen=True)
class PCM:
    """Audio at its own rate and channels: ``samples`` ``float32[N, C]`` (or ``int16[N, C]``) at ``rate`` Hz.

    What an upstream method's own loader starts from (see :func:`librosa_decode`); handed to its worker as a
    wav of exactly these samples, so that its own code mixes and resamples them as it would the original file.
    """

    samples: np.ndarray
    rate: int

    def head(self, seconds: float) -> PCM:
        """The first ``seconds`` of the audio."""
        return PCM(self.samples[: int(seconds * self.rate)], self.rate)


def head(audio: np.ndarray | PCM, seconds: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray | PCM:
    """The first ``seconds`` of driving audio: a 16 kHz array or a :class:`PCM`."""
    return audio.head(seconds) if isinstance(audio, PCM) else audio[: int(seconds * sample_rate)]


def librosa_decode(path: str | os.PathLike) -> PCM:
    """What ``librosa.load(path)`` decodes before it mixes and resamples, at the file's own rate and channels.

    Files that libsndfile reads (wav, flac, ogg, mp3): ``soundfile.read(dtype="float32")``, as librosa reads them.
    Others (mp4, m4a): librosa falls back to audioread, whose FFmpeg backend pipes ``ffmpeg -i FILE -f s16le -``
    (native rate and channels, encoder priming and end padding trimmed) and scales the int16 samples by 1/32768;
    the same samples are decoded here with PyAV's FFmpeg (:func:`decoded_frames`).

    Returns ``int16[N, C]`` where librosa's floats are exactly those integers / 32768 (16-bit files, audioread),
    so a 16-bit wav of them gives librosa the same floats; ``float32[N, C]`` (librosa's own values) otherwise.
    """
    import soundfile

    path = Path(path)
    if not path.is_file():
        raise KdbenchError(f"audio not found: {path}")
    try:
        info = soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError):
        pass
    else:
        dtype = "int16" if info.subtype == "PCM_16" else "float32"
        y, sr = soundfile.read(str(path), dtype=dtype, always_2d=True)
        return PCM(y, int(sr))
    y, sr = _read_native_int16(path)
    return PCM(y, sr)


def pcm_float(pcm: PCM) -> np.ndarray:
    """``float32[N, C]`` as librosa holds the samples (int16 scaled by 1/32768)."""
    x = np.asarray(pcm.samples)
    return x.astype(np.float32) / np.float32(32768.0) if x.dtype == np.int16 else x.astype(np.float32, copy=False)


def read_audio_librosa(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE,
                       res_type: str = "soxr_hq") -> np.ndarray:
    """``librosa.load(path, sr=sample_rate)``: ``float32[N]`` mono, what methods built on librosa read.

    Differs from :func:`read_audio` (the canonical int16 track) in two ways that move a method's output:
    channels are averaged in float (an int16 mixdown rounds away the half sample wherever two channels sum to
    an odd number), and other rates go through librosa's resampler (``soxr_hq``), not swresample. Files that
    libsndfile reads (wav, flac, ogg) go through ``librosa.load`` itself; others (mp4, m4a) are decoded as
    librosa's audioread fallback receives them from ``ffmpeg`` (:func:`librosa_decode`: priming and end padding
    trimmed), then mixed and resampled by librosa the same way.
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
    pcm = librosa_decode(path)
    y = librosa.to_mono(pcm_float(pcm).T)
    if pcm.rate != sample_rate:
        y = librosa.resample(y, orig_sr=pcm.rate, target_sr=sample_rate, res_type=res_type)
    return np.asarray(y, dtype=np.float32)


def ffmpeg_wav16k(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> PCM:
    """``ffmpeg -i FILE -f wav -ar 16000 OUT.wav``: ``int16[N, C]`` at ``sample_rate``, the file's own channels.

    Real3D-Portrait's ``save_wav16k`` (no ``-ac``: a stereo file stays stereo; its HuBERT reads channel 0, its F0
    the channel mean). Trimmed like the command line (:func:`decoded_frames`), resampled by swresample.
    """
    path = Path(path)
    if not path.is_file():
        raise KdbenchError(f"audio not found: {path}")
    return PCM(*_decode_s16(path, sample_rate))


def _read_native_int16(path: Path) -> tuple[np.ndarray, int]:
    """First audio track at its own rate and channels: ``(int16[N, C], rate)``, what ``ffmpeg -i FILE -f s16le -``
    writes (FFmpeg's s16 conversion, priming and end padding trimmed)."""
    return _decode_s16(path, None)


def _decode_s16(path: Path, rate: int | None) -> tuple[np.ndarray, int]:
    """First audio track as ``(int16[N, C], rate)``, the file's own channels, resampled by swresample to ``rate``
    (None: the file's own rate); trimmed as the ffmpeg command line trims (:func:`decoded_frames`)."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise KdbenchError(f"{path} has no audio track")
            stream = container.streams.audio[0]
            rate, channels = rate or stream.codec_context.sample_rate, stream.codec_context.channels
            resampler = av.AudioResampler(format="s16", layout=stream.codec_context.layout, rate=rate)
            chunks = []
            for frame in decoded_frames(container, stream):
                frame.pts = None
                chunks += [o.to_ndarray().reshape(-1, channels) for o in resampler.resample(frame)]
            chunks += [o.to_ndarray().reshape(-1, channels) for o in resampler.resample(None)]
    except av.FFmpegError as e:
        raise KdbenchError(f"cannot decode audio of {path}: {e}") from e
    if not chunks:
        raise KdbenchError(f"{path} has an empty audio track")
    return np.concatenate(chunks).astype(np.int16, copy=False), rate


def write_pcm_wav(path: str | os.PathLike, pcm: PCM) -> Path:
    """Write a :class:`PCM` as a wav holding exactly its samples (atomically): ``int16`` as 16-bit PCM,
    ``float32`` as 32-bit IEEE float (WAVE_FORMAT_IEEE_FLOAT, which libsndfile, librosa and ffmpeg read back
    bit for bit)."""
    import struct

    path = Path(path)
    x = np.asarray(pcm.samples)
    x = x.reshape(len(x), -1)
    n, ch = x.shape
    if x.dtype == np.int16:
        fmt, width, data = 1, 2, x.astype("<i2").tobytes()
    elif x.dtype == np.float32:
        fmt, width, data = 3, 4, x.astype("<f4").tobytes()
    else:
        raise ValueError(f"PCM samples must be int16 or float32, got {x.dtype}")
    fmt_chunk = struct.pack("<HHIIHH", fmt, ch, int(pcm.rate), int(pcm.rate) * ch * width, ch * width, 8 * width)
    chunks = b"fmt " + struct.pack("<I", len(fmt_chunk)) + fmt_chunk
    if fmt == 3:  # non-PCM wavs carry a fact chunk (sample frames per channel)
        chunks += b"fact" + struct.pack("<II", 4, n)
    chunks += b"data" + struct.pack("<I", len(data)) + data
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks)
    return path


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
