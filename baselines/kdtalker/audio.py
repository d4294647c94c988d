"""KDTalker's audio conditioning: the Wav2Lip mel spectrogram and the Wav2Lip audio encoder.

Mel (Wav2Lip ``audio.py`` + ``hparams.py`` as vendored by KDTalker): 16 kHz float audio trimmed to
``640 N`` samples (N = video frames at 25 fps), pre-emphasis 0.97, STFT (n_fft 800, hop 200, Hann
800, centred with zero padding — librosa >= 0.9's default), magnitude, 80-band Slaney mel
(55-7600 Hz), ``20 log10(max(1e-5, x)) - 20``, symmetric normalisation clipped to [-4, 4]. Video
frame ``i`` sees the 16 mel frames starting at ``int(80 (i - 2) / 25)`` (indices clamped), i.e. a
window that starts two video frames early.

Encoder: the ``audio_encoder`` of the Wav2Lip generator (13 Conv2d+BatchNorm+ReLU blocks, five of
them residual), ``[T, 1, 80, 16] -> [T, 512]`` (non-negative), loaded from ``wav2lip.pth``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

SAMPLE_RATE = 16000
FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
N_FFT = 800
HOP = 200
WIN = 800
N_MELS = 80
FMIN = 55.0
FMAX = 7600.0
PREEMPHASIS = 0.97
MIN_LEVEL_DB = -100.0
REF_LEVEL_DB = 20.0
MAX_ABS_VALUE = 4.0
MEL_STEP = 16  # mel frames per video frame window
MEL_FPS = 80.0  # mel frames per second (16000 / 200)


# -- mel spectrogram -----------------------------------------------------------------------------------------
def int16_to_float(audio: np.ndarray) -> np.ndarray:
    """``int16[N]`` PCM -> ``float32[N]`` in [-1, 1) (``x / 32768``, what libsndfile/librosa return)."""
    return (np.asarray(audio, dtype=np.int16).astype(np.float32) / np.float32(32768.0)).astype(np.float32)


def n_frames_of(n_samples: int) -> int:
    """Video frames (25 fps) covered by ``n_samples`` at 16 kHz: ``int(n / 640)``."""
    return int(n_samples / (SAMPLE_RATE / FPS))


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale (linear below 1 kHz, logarithmic above)."""
    f = np.asanyarray(f, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = f / f_sp
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-300) / min_log_hz) / logstep, mels)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asanyarray(m, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(
    sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS, fmin: float = FMIN, fmax: float = FMAX
) -> np.ndarray:
    """``float32[n_mels, 1 + n_fft/2]`` Slaney-normalised filters (librosa.filters.mel)."""
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper)).astype(np.float32)
    enorm = 2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels])
    return (weights * enorm[:, None]).astype(np.float32)


def stft_magnitude(y: np.ndarray, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """``|STFT|`` ``float64[1 + n_fft/2, 1 + len/hop]``: periodic Hann, centred, zero padding."""
    y = np.asarray(y, dtype=np.float64)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    padded = np.pad(y, n_fft // 2, mode="constant")
    n = 1 + (len(padded) - n_fft) // hop
    frames = np.lib.stride_tricks.as_strided(
        padded, shape=(n, n_fft), strides=(padded.strides[0] * hop, padded.strides[0])
    )
    return np.abs(np.fft.rfft(frames * window, axis=-1)).T


def melspectrogram(wav: np.ndarray) -> np.ndarray:
    """Wav2Lip's normalised log-mel ``float64[80, 1 + len/200]`` of 16 kHz float audio, values in [-4, 4]."""
    wav = np.asarray(wav)
    emphasised = np.empty(len(wav), dtype=np.float64)
    x = wav.astype(np.float64)
    emphasised[:1] = x[:1]
    emphasised[1:] = x[1:] + (-PREEMPHASIS) * x[:-1]
    mel = np.dot(mel_filterbank(), stft_magnitude(emphasised))
    min_level = np.exp(MIN_LEVEL_DB / 20 * np.log(10))
    s = 20 * np.log10(np.maximum(min_level, mel)) - REF_LEVEL_DB
    return np.clip(
        (2 * MAX_ABS_VALUE) * ((s - MIN_LEVEL_DB) / (-MIN_LEVEL_DB)) - MAX_ABS_VALUE,
        -MAX_ABS_VALUE,
        MAX_ABS_VALUE,
    )


def mel_window_starts(n_frames: int) -> np.ndarray:
    """First mel frame of each video frame's window: ``int(80 * ((i - 2) / 25))`` (truncation toward zero)."""
    i = np.arange(n_frames, dtype=np.float64)
    return np.trunc(MEL_FPS * ((i - 2) / float(FPS))).astype(np.int64)


def mel_windows(wav: np.ndarray) -> np.ndarray:
    """Per-video-frame mel windows ``float32[N, 80, 16]`` of 16 kHz float audio (N = ``int(len / 640)``)."""
    n = n_frames_of(len(wav))
    wav = np.asarray(wav)[: int(n * (SAMPLE_RATE / FPS))]
    mel = melspectrogram(wav).T  # [frames, 80]
    idx = mel_window_starts(n)[:, None] + np.arange(MEL_STEP)[None, :]
    idx = np.clip(idx, 0, mel.shape[0] - 1)
    return mel[idx].transpose(0, 2, 1).astype(np.float32)


# -- encoder -------------------------------------------------------------------------------------------------
class ConvBlock(nn.Module):
    """Wav2Lip's ``Conv2d`` block: conv + BatchNorm (+ input when residual), then ReLU."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel_size: int,
        stride: int | tuple[int, int],
        padding: int,
        residual: bool = False,
    ):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.Conv2d(cin, cout, kernel_size, stride, padding), nn.BatchNorm2d(cout)
        )
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return self.act(out)


class Wav2LipAudioEncoder(nn.Sequential):
    """``mel windows [T, 1, 80, 16] -> features [T, 512]``; keys ``{0..12}.conv_block.{0,1}.*``."""

    def __init__(self):
        spec = [
            (1, 32, 3, 1, 1, False),
            (32, 32, 3, 1, 1, True),
            (32, 32, 3, 1, 1, True),
            (32, 64, 3, (3, 1), 1, False),
            (64, 64, 3, 1, 1, True),
            (64, 64, 3, 1, 1, True),
            (64, 128, 3, 3, 1, False),
            (128, 128, 3, 1, 1, True),
            (128, 128, 3, 1, 1, True),
            (128, 256, 3, (3, 2), 1, False),
            (256, 256, 3, 1, 1, True),
            (256, 512, 3, 1, 0, False),
            (512, 512, 1, 1, 0, False),
        ]
        super().__init__(*(ConvBlock(*s) for s in spec))

    def encode(self, mels: torch.Tensor, batch: int = 2048) -> torch.Tensor:
        """``[T, 80, 16]`` or ``[T, 1, 80, 16]`` -> ``[T, 512]``, in chunks of ``batch`` windows."""
        if mels.dim() == 3:
            mels = mels[:, None]
        out = [
            super(Wav2LipAudioEncoder, self).forward(mels[i : i + batch]) for i in range(0, len(mels), batch)
        ]
        return torch.cat(out, 0).flatten(1)


def audio_encoder_state_dict(checkpoint: Mapping) -> dict[str, torch.Tensor]:
    """The ``audio_encoder`` tensors of a Wav2Lip checkpoint, prefix ``[module.]audio_encoder.`` removed."""
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, Mapping) else checkpoint
    out = {}
    for k, v in state.items():
        for prefix in ("module.audio_encoder.", "audio_encoder."):
            if k.startswith(prefix):
                out[k[len(prefix) :]] = v
                break
    return out


def load_audio_encoder(
    source: str | os.PathLike | Mapping, device: str | torch.device = "cpu"
) -> Wav2LipAudioEncoder:
    """The Wav2Lip audio encoder from ``wav2lip.pth`` (path or loaded dict), strict keys, eval mode.

    Only the ``audio_encoder`` part is read; the rest of the generator is ignored (as upstream).
    """
    from .denoiser import check_state_dict, torch_load

    checkpoint = torch_load(source) if isinstance(source, (str, os.PathLike)) else source
    state = audio_encoder_state_dict(checkpoint)
    enc = Wav2LipAudioEncoder()
    what = f"Wav2Lip checkpoint {source if isinstance(source, (str, os.PathLike)) else ''}".rstrip()
    if not state:
        raise_no_encoder(what)
    check_state_dict(enc, state, what + " (audio_encoder)")
    enc.load_state_dict(state, strict=True)
    return enc.eval().to(device)


def raise_no_encoder(what: str) -> None:
    from kdbench.errors import KdbenchError

    raise KdbenchError(
        f"{what} has no 'module.audio_encoder.*' tensors: is it the Wav2Lip generator checkpoint "
        "(wav2lip.pth, not the SyncNet expert or a GAN discriminator)?"
    )


@torch.no_grad()
def audio_features(
    wav: np.ndarray, encoder: Wav2LipAudioEncoder, device: str | torch.device = "cpu", batch: int = 2048
) -> torch.Tensor:
    """16 kHz float audio -> Wav2Lip features ``float32[N, 512]`` on ``device`` (N = ``int(len / 640)``)."""
    mels = torch.from_numpy(mel_windows(wav)).to(device)
    return encoder.encode(mels, batch=batch)
