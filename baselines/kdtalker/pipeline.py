"""KDTalker inference: reference image + 16 kHz audio -> 512x512 frames at 25 fps.

The chain of ``inference.py`` (chaolongy/KDTalker), step by step, each a small function:

1. crop the face (dlib, FFHQ quad box) and extract the LivePortrait source state (``crop.py``,
   ``liveportrait.py``);
2. normalise the source motion with ``norm.npz``: the reference token ``[scale, yaw, pitch, roll,
   t(3), exp(63)]`` and the identity token ``[0]*7 + kp_c(63)`` (:func:`source_tokens`);
3. Wav2Lip mel windows + audio encoder -> ``[N, 512]`` (``audio.py``);
4. pad the features to a multiple of 64 with the first frames (:func:`pad_audio_features`) and sample
   non-overlapping 64-frame windows autoregressively, each with DDIM from seeded Gaussian noise; the
   reference token of a window is the last frame of the previous one (:func:`sample_motion`);
5. de-normalise (:func:`denormalize_motion`) and RTS-smooth angles, translation and expression
   (:func:`kalman_smooth`, the pykalman filter of upstream, solved in closed form);
6. driving keypoints ``x_d = s_src (x_c R_d + exp_d) + [tx, ty, 0]`` and warp + SPADE decode in
   batches (``liveportrait.py``).

Clips under 32 frames (1.00-1.27 s): upstream's padding leaves one window of ``2N`` frames and its final
slice keeps only ``3N - 64`` of them, so the official video is shorter than the audio. Here the same
window is sampled (same noise, same diffusion output) and all ``N`` frames are kept; only the Kalman
smoothing near the end differs, because it then sees more frames. From 32 frames on, the outputs are
identical.

Noise: with seed ``S``, window ``k``'s initial noise is the ``k``-th draw of
``torch.randn(1, L, 70, 3)[..., 0]`` from a generator seeded with ``S`` on the sampling device, which is
what the official code draws after ``torch.manual_seed(S)``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from kdbench.errors import ClipFailure, KdbenchError

from .ddim import DDIMSchedule
from .denoiser import MOTION_DIM, KDTalkerDenoiser
from .fast import FastOptions
from .window import sample_window

if TYPE_CHECKING:
    from kdbench.weights import WeightsManager

WINDOW = 64
"""Frames per diffusion window (the training clip length)."""
FPS = 25
SAMPLE_RATE = 16000
MIN_AUDIO_SECONDS = 1.0
MOTION_LAYOUT = (("scale", 1), ("yaw", 1), ("pitch", 1), ("roll", 1), ("t", 3), ("exp", 63))
"""Order and sizes of the 70-d motion vector (note: yaw before pitch)."""
NORM_KEYS = ("scale", "yaw", "pitch", "roll", "t", "exp", "kp")
KALMAN_Q = 0.05
KALMAN_R = 0.001


# -- normalisation statistics --------------------------------------------------------------------------------
@dataclass(frozen=True)
class MotionNorm:
    """``norm.npz``: per-field ``float32`` mean and std; ``normalize`` = ``(v - mean) / std``."""

    mean: dict[str, np.ndarray]
    std: dict[str, np.ndarray]

    @classmethod
    def from_npz(cls, path: str | os.PathLike) -> MotionNorm:
        """Read ``norm.npz``; a file that is not one (not an npz, a key missing, an object array, which would need
        unpickling and is never loaded, or non-numeric values) raises :class:`KdbenchError` naming it and the key."""
        import zipfile

        def bad(why: str) -> KdbenchError:
            return KdbenchError(f"{path} is not KDTalker's norm.npz: {why}. Fetch the original with `kdbench weights "
                                "fetch kdtalker_norm` (or point KDBENCH_WEIGHT_KDTALKER_NORM at it)")

        try:
            with np.load(path, allow_pickle=False) as data:
                missing = [f"{k}_{s}" for k in NORM_KEYS for s in ("mean", "std") if f"{k}_{s}" not in data]
                if missing:
                    raise bad(f"it lacks {', '.join(missing)}")
                arrays = {}
                for key in (f"{k}_{s}" for k in NORM_KEYS for s in ("mean", "std")):
                    try:
                        arrays[key] = np.asarray(data[key])
                    except ValueError as e:  # "Object arrays cannot be loaded when allow_pickle=False"
                        raise bad(f"{key} is an object array (pickled Python objects, which kdbench never "
                                  f"loads): {e}") from None
                    if arrays[key].dtype.kind not in "fiu":
                        raise bad(f"{key} holds {arrays[key].dtype} values, not numbers")
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            if isinstance(e, FileNotFoundError):
                raise
            raise bad(f"it cannot be read as an npz archive ({type(e).__name__}: {e})") from e
        return cls({k: arrays[f"{k}_mean"] for k in NORM_KEYS}, {k: arrays[f"{k}_std"] for k in NORM_KEYS})

    def normalize(self, key: str, v: np.ndarray) -> np.ndarray:
        return (v - self.mean[key]) / self.std[key]

    def denormalize(self, key: str, v: np.ndarray) -> np.ndarray:
        return v * self.std[key] + self.mean[key]


# -- tokens and windows --------------------------------------------------------------------------------------
def source_kp_info(source: Any) -> dict[str, np.ndarray]:
    """The source's LivePortrait motion as upstream's ``get_kp_info`` numpy arrays (float32).

    ``scale [1,1]``, ``yaw/pitch/roll [1,1]`` (degrees), ``t [1,3]``, ``exp [1,63]``, ``kp [1,63]``.
    """

    def arr(x: Any, shape: tuple[int, ...]) -> np.ndarray:
        return x.detach().float().cpu().numpy().reshape(shape)

    return {
        "scale": arr(source.scale, (1, 1)),
        "yaw": arr(source.yaw, (1, 1)),
        "pitch": arr(source.pitch, (1, 1)),
        "roll": arr(source.roll, (1, 1)),
        "t": arr(source.t, (1, 3)),
        "exp": arr(source.exp, (1, 63)),
        "kp": arr(source.kp_c, (1, 63)),
    }


def source_tokens(kp_info: dict[str, np.ndarray], norm: MotionNorm) -> tuple[np.ndarray, np.ndarray]:
    """``(reference token, identity token)``, each ``float32[70]``, normalised.

    reference = ``[scale, yaw, pitch, roll, t, exp]`` of the source; identity = ``[0]*7 + kp_c``.
    """
    n = {k: norm.normalize(k, v) for k, v in kp_info.items() if k in NORM_KEYS}
    ref = np.concatenate([n[k] for k, _ in MOTION_LAYOUT], 1)[0].astype(np.float32)
    ori = np.concatenate([np.zeros((1, 7), np.float32), n["kp"].astype(np.float32)], -1)[0]
    return ref, ori


def pad_audio_features(feats: np.ndarray | torch.Tensor, window: int = WINDOW) -> tuple[Any, int]:
    """Upstream padding: append ``feats[:pad]`` so the length becomes a multiple of ``window``.

    Returns ``(padded, pad)``. As upstream, fewer than ``pad`` rows are appended when the clip is
    shorter than ``pad`` (N < 32): the single window is then ``2N`` frames long.
    """
    n = feats.shape[0]
    pad = (window - n % window) % window
    if pad == 0:
        return feats, 0
    cat = torch.cat if isinstance(feats, torch.Tensor) else np.concatenate
    return cat([feats, feats[:pad]], 0), pad


def window_starts(n_padded: int, window: int = WINDOW) -> list[int]:
    """Start index of every window: ``range(0, n_padded - 1, window)`` (upstream)."""
    return list(range(0, n_padded - 1, window))


def initial_noise(generator: torch.Generator, length: int, device: str | torch.device) -> torch.Tensor:
    """One window's ``x_T [1, length, 70]``: channel 0 of a ``[1, length, 70, 3]`` draw (as upstream)."""
    return torch.randn(1, length, MOTION_DIM, 3, generator=generator, device=device)[..., 0]


@torch.no_grad()
def sample_motion(
    denoiser: KDTalkerDenoiser,
    feats: torch.Tensor,
    ref_token: np.ndarray,
    ori_token: np.ndarray,
    num_steps: int = 50,
    seed: int | None = 0,
    window: int = WINDOW,
    noise_fn: Callable[[int, int], torch.Tensor] | None = None,
    window_fn: Callable[..., torch.Tensor] | None = None,
) -> np.ndarray:
    """Audio features ``[N, 512]`` (on the sampling device) -> normalised motion ``float32[N, 70]``.

    ``seed``: seeds a generator on ``feats.device`` (None: nondeterministic). ``noise_fn(k, L)`` overrides
    the initial noise of window ``k`` (tests). ``window_fn``: replaces :func:`sample_window` (same signature),
    e.g. the CUDA-graph sampler of ``fast.py``.
    """
    window_fn = window_fn or sample_window
    device = feats.device
    n = feats.shape[0]
    padded, _ = pad_audio_features(feats, window)
    schedule = DDIMSchedule(num_steps)
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(int(seed))
    ori = torch.from_numpy(ori_token).to(device)[None]
    ref = torch.from_numpy(ref_token).to(device)[None]
    windows = []
    for k, start in enumerate(window_starts(padded.shape[0], window)):
        aud = padded[start : start + window][None]
        x_t = (
            noise_fn(k, aud.shape[1])
            if noise_fn is not None
            else initial_noise(generator, aud.shape[1], device)
        )
        x0 = window_fn(denoiser, schedule, x_t.to(device), ori, ref, aud)
        windows.append(x0[0].float().cpu().numpy())
        ref = torch.from_numpy(windows[-1][-1]).to(device)[None]
    motion = np.concatenate(windows, 0)[:n]
    # upstream stacks three identical copies ("x, y, z" of a point) and averages them back in float32
    return np.mean(np.stack([motion, motion, motion], -1), -1)


# -- post-processing -----------------------------------------------------------------------------------------
def denormalize_motion(motion: np.ndarray, norm: MotionNorm) -> dict[str, np.ndarray]:
    """``float32[N, 70]`` normalised -> ``{scale [N], yaw/pitch/roll [N,1] (deg), t [N,3], exp [N,63]}``."""
    out = {
        "scale": motion[:, 0],
        "yaw": motion[:, 1, None],
        "pitch": motion[:, 2, None],
        "roll": motion[:, 3, None],
        "t": motion[:, 4:7],
        "exp": motion[:, 7:],
    }
    return {k: norm.denormalize(k, v) for k, v in out.items()}


def kalman_smooth(seq: np.ndarray, q: float = KALMAN_Q, r: float = KALMAN_R) -> np.ndarray:
    """RTS smoother of a random walk observed with noise: ``float[N, D] -> float64[N, D]``.

    Equals ``pykalman.KalmanFilter(initial_state_mean=seq[0], transition_covariance=q I,
    observation_covariance=r I).smooth(seq)[0]`` (identity dynamics and observation, initial
    covariance I). Every covariance is then a multiple of I, so the D channels share scalar gains.
    """
    z = np.asarray(seq, dtype=np.float64)
    n = len(z)
    m_pred = np.empty_like(z)
    m_filt = np.empty_like(z)
    p_pred = np.empty(n)
    p_filt = np.empty(n)
    m_pred[0], p_pred[0] = z[0], 1.0
    for i in range(n):
        if i > 0:
            m_pred[i], p_pred[i] = m_filt[i - 1], p_filt[i - 1] + q
        gain = p_pred[i] / (p_pred[i] + r)
        m_filt[i] = m_pred[i] + gain * (z[i] - m_pred[i])
        p_filt[i] = p_pred[i] - gain * p_pred[i]
    m_smooth = np.empty_like(z)
    m_smooth[-1] = m_filt[-1]
    for i in range(n - 2, -1, -1):
        g = p_filt[i] / p_pred[i + 1]
        m_smooth[i] = m_filt[i] + g * (m_smooth[i + 1] - m_pred[i + 1])
    return m_smooth


def smooth_motion(motion: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Smooth pitch, yaw, roll, t and exp separately (upstream); scale is left as is (and unused)."""
    out = dict(motion)
    for k in ("pitch", "yaw", "roll", "t", "exp"):
        out[k] = kalman_smooth(motion[k])
    return out


def driving_params(
    motion: dict[str, np.ndarray], device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """Per-frame renderer inputs (float32): ``pitch/yaw/roll [N]`` degrees, ``exp [N,21,3]``, ``t [N,3]``."""

    def f32(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(np.asarray(x, dtype=np.float32))).to(device)

    n = len(motion["exp"])
    return {
        "pitch": f32(motion["pitch"]).reshape(n),
        "yaw": f32(motion["yaw"]).reshape(n),
        "roll": f32(motion["roll"]).reshape(n),
        "exp": f32(motion["exp"]).reshape(n, 21, 3),
        "t": f32(motion["t"]).reshape(n, 3),
    }


# -- the whole chain -----------------------------------------------------------------------------------------
def _dtype(name: str | torch.dtype) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    table = {
        "fp32": torch.float32,
        "float32": torch.float32,
        "fp16": torch.float16,
        "float16": torch.float16,
        "half": torch.float16,
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
    }
    if str(name) not in table:
        raise KdbenchError(f"dtype must be one of fp32, fp16, bf16; got {name!r}")
    return table[str(name)]


@dataclass
class KDTalkerResult:
    frames: np.ndarray
    """``uint8[N, 512, 512, 3]`` RGB at 25 fps."""
    motion: dict[str, np.ndarray]
    """De-normalised (and smoothed) driving motion, per frame."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per stage: ``t_source``, ``t_audio``, ``t_diffusion``, ``t_smooth``, ``t_render``."""


class KDTalkerPipeline:
    """All KDTalker networks on one device; :meth:`__call__` runs one clip."""

    def __init__(
        self,
        denoiser: KDTalkerDenoiser,
        audio_encoder: torch.nn.Module,
        renderer: Any,
        norm: MotionNorm,
        crop_fn: Callable[[np.ndarray], Any],
        device: str | torch.device = "cpu",
        fast: FastOptions | None = None,
    ):
        self.denoiser = denoiser
        self.audio_encoder = audio_encoder
        self.renderer = renderer
        self.norm = norm
        self.crop_fn = crop_fn
        self.device = torch.device(device)
        self.set_fast(fast or FastOptions())

    def set_fast(self, fast: FastOptions) -> None:
        """Choose the fast paths (``fast.py``); ``FastOptions()`` is the plain reference path."""
        from .fast import FastRenderer, WindowSampler

        self.fast = fast
        self._window_fn = WindowSampler(self.denoiser, use_graph=True) if fast.diffusion_graph else None
        # on a CPU the uint8 conversion is host work either way: device_uint8 alone keeps the plain renderer
        render_opts = (fast.device_uint8 and self.device.type == "cuda", fast.channels_last, fast.compile,
                       fast.pad_batches)
        self._fast_renderer = FastRenderer(self.renderer, fast) if any(render_opts) else None

    @classmethod
    def from_weights(
        cls,
        weights: WeightsManager,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype = "fp32",
        fast: FastOptions | None = None,
    ) -> KDTalkerPipeline:
        """Load every network through the weights manager (strict keys everywhere)."""
        from .audio import load_audio_encoder
        from .crop import crop_source
        from .denoiser import load_denoiser
        from .liveportrait import LivePortrait

        denoiser = load_denoiser(weights.path("kdtalker"), device)
        encoder = load_audio_encoder(weights.path("wav2lip"), device)
        norm = MotionNorm.from_npz(weights.path("kdtalker_norm"))
        renderer = LivePortrait.from_weights(weights, device=device, dtype=_dtype(dtype))
        return cls(denoiser, encoder, renderer, norm, lambda image: crop_source(image, weights), device, fast)

    def _sync(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    @torch.no_grad()
    def __call__(
        self,
        ref_image: np.ndarray,
        audio: np.ndarray,
        *,
        seed: int | None = 0,
        ddim_steps: int = 50,
        batch_size: int = 16,
        smoothing: bool = True,
        noise_fn: Callable[[int, int], torch.Tensor] | None = None,
    ) -> KDTalkerResult:
        """``ref_image uint8[H,W,3]`` RGB, 16 kHz ``audio`` (see :func:`prepare_audio`) -> frames.

        Raises :class:`ClipFailure` for audio under 1 s or a reference image without a face.
        """
        from .audio import audio_features, n_frames_of

        wav = prepare_audio(audio)
        n = n_frames_of(len(wav))
        timings: dict[str, float] = {}
        t0 = self._sync()
        crop = self.crop_fn(ref_image)
        source = self.renderer.extract_source(crop.img256)
        ref_token, ori_token = source_tokens(source_kp_info(source), self.norm)
        t1 = self._sync()
        timings["t_source"] = t1 - t0
        feats = audio_features(wav, self.audio_encoder, self.device)
        t2 = self._sync()
        timings["t_audio"] = t2 - t1
        motion_n = sample_motion(
            self.denoiser, feats, ref_token, ori_token, ddim_steps, seed, noise_fn=noise_fn,
            window_fn=self._window_fn,
        )
        motion = denormalize_motion(motion_n, self.norm)
        t3 = self._sync()
        timings["t_diffusion"] = t3 - t2
        if smoothing:
            motion = smooth_motion(motion)
        t4 = self._sync()
        timings["t_smooth"] = t4 - t3
        frames = self.render(source, motion, batch_size)
        t5 = self._sync()
        timings["t_render"] = t5 - t4
        if len(frames) != n:
            raise RuntimeError(f"rendered {len(frames)} frames for an audio track of {n} frames")
        return KDTalkerResult(frames=frames, motion=motion, timings=timings)

    def render(self, source: Any, motion: dict[str, np.ndarray], batch_size: int = 16) -> np.ndarray:
        """Driving keypoints (source scale, tz = 0), warp + decode in batches -> ``uint8[N,512,512,3]``."""
        p = driving_params(motion, self.device)
        kp = self.renderer.keypoints_driving(source, p["pitch"], p["yaw"], p["roll"], p["exp"], p["t"], None)
        if self._fast_renderer is not None:
            return self._fast_renderer.render(source, kp, batch_size=batch_size)
        return self.renderer.render(source, kp, batch_size=batch_size)


def prepare_audio(audio: np.ndarray) -> np.ndarray:
    """Driving audio at 16 kHz -> ``float32[N]`` in [-1, 1].

    ``int16`` samples are divided by 32768 (what librosa reads from a 16-bit wav); several channels
    (``[N, C]`` or ``[C, N]``, C <= 8) are averaged after that conversion, as ``librosa.load`` mixes
    down. Raises :class:`ClipFailure` when the audio is shorter than 1 s.
    """
    a = np.asarray(audio)
    if a.ndim not in (1, 2):
        raise KdbenchError(f"audio must be 16 kHz samples [N] or [N, channels], got shape {a.shape}")
    if np.issubdtype(a.dtype, np.integer):
        if a.dtype != np.int16:
            raise KdbenchError(f"integer audio must be int16 PCM, got {a.dtype}")
        a = a.astype(np.float32) / np.float32(32768.0)
    a = a.astype(np.float32, copy=False)
    if a.ndim == 2:
        a = np.mean(a, axis=1 if a.shape[1] <= 8 else 0).astype(np.float32)
    if len(a) < MIN_AUDIO_SECONDS * SAMPLE_RATE:
        raise ClipFailure(
            f"audio is {len(a) / SAMPLE_RATE:.2f} s long; KDTalker needs at least {MIN_AUDIO_SECONDS:g} s"
        )
    return a
