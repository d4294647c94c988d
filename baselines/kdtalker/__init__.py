"""``kdtalker``: KDTalker (Yang et al., IJCV 2026) re-implemented natively, loading the official weights.

Reference image + 16 kHz audio -> 512x512 talking-head frames at 25 fps, one per audio frame:
dlib crop -> LivePortrait source state -> Wav2Lip audio features -> keypoint diffusion (64-frame
windows, DDIM) -> Kalman smoothing -> LivePortrait warp + SPADE decode. Runs on CPU or GPU; no clone
of chaolongy/KDTalker is needed. Importing this module does not import torch.

Options (``--set key=value``):

- ``ddim_steps`` (50): DDIM steps per window (the paper's Table 6 varies it);
- ``batch_size`` (16): frames per LivePortrait render batch;
- ``dtype`` (``fp32``): renderer precision, ``fp32``, ``fp16`` or ``bf16`` (diffusion always runs in fp32);
- ``smoothing`` (true): the upstream Kalman (RTS) smoothing of pose, translation and expression;
- ``cuda_graphs`` (true): on CUDA, replay each window's DDIM loop from a CUDA graph (same motion, bit for bit);
- ``device_uint8`` (true): convert frames to uint8 on the device and copy them out asynchronously (same frames);
- ``channels_last`` (false): warping and SPADE in channels-last layouts (frames may differ by rounding);
- ``compile`` (``none``): ``torch.compile`` mode for warp + decode (``default``, ``max-autotune-no-cudagraphs``,
  ...; frames may differ by rounding). Set the four to false/none for the plain reference path
  (``baselines/kdtalker/fast.py`` explains each).

Seeding: with seed ``S``, each window's initial noise is what the official code draws after
``torch.manual_seed(S)`` on the same device, so both give the same video from the same weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kdbench import FPS
from kdbench.dataset import ClipSpec
from kdbench.errors import KdbenchError
from kdbench.method import Generated, Method, MethodInfo
from kdbench.registry import register_method

from .compile_modes import COMPILE_MODES

WEIGHTS = (
    "kdtalker",
    "kdtalker_norm",
    "wav2lip",
    "shape_predictor_68",
    "liveportrait_appearance",
    "liveportrait_motion",
    "liveportrait_warping",
    "liveportrait_spade",
)


def _as_bool(v: Any) -> bool:
    if isinstance(v, str):
        if v.lower() in ("1", "true", "yes", "on"):
            return True
        if v.lower() in ("0", "false", "no", "off"):
            return False
        raise KdbenchError(f"expected a boolean, got {v!r}")
    return bool(v)


@register_method("kdtalker")
class KDTalker(Method):
    info = MethodInfo(
        name="kdtalker",
        description="KDTalker: implicit-keypoint diffusion (Wav2Lip audio, 64-frame DDIM windows) + "
        "LivePortrait "
        "rendering, native re-implementation loading the official checkpoints.",
        weights=WEIGHTS,
        paper_row="KDTalker",
    )
    default_options = {
        "ddim_steps": 50,
        "batch_size": 16,
        "dtype": "fp32",
        "smoothing": True,
        "cuda_graphs": True,
        "device_uint8": True,
        "channels_last": False,
        "compile": "none",
    }

    def _checked_options(self) -> dict[str, Any]:
        o = self.options
        try:
            steps, batch = int(o["ddim_steps"]), int(o["batch_size"])
        except (TypeError, ValueError) as e:
            raise KdbenchError(f"kdtalker: ddim_steps and batch_size must be integers ({e})") from e
        if not 1 <= steps <= 1000:
            raise KdbenchError(f"kdtalker: ddim_steps must be in 1..1000, got {steps}")
        if batch < 1:
            raise KdbenchError(f"kdtalker: batch_size must be >= 1, got {batch}")
        dtype = str(o["dtype"]).lower()
        if dtype not in ("fp32", "fp16", "bf16", "float32", "float16", "bfloat16"):
            raise KdbenchError(f"kdtalker: dtype must be fp32, fp16 or bf16, got {o['dtype']!r}")
        compile_mode = str(o["compile"]).lower()
        if compile_mode not in ("none", *COMPILE_MODES):
            raise KdbenchError(
                f"kdtalker: compile must be none or one of {', '.join(COMPILE_MODES)}, got {o['compile']!r}"
            )
        return {
            "ddim_steps": steps,
            "batch_size": batch,
            "dtype": dtype,
            "smoothing": _as_bool(o["smoothing"]),
            "cuda_graphs": _as_bool(o["cuda_graphs"]),
            "device_uint8": _as_bool(o["device_uint8"]),
            "channels_last": _as_bool(o["channels_last"]),
            "compile": compile_mode,
        }

    def fast_options(self) -> Any:
        """The :class:`.fast.FastOptions` these options select (imports torch)."""
        from .fast import FastOptions

        o = self._checked_options()
        return FastOptions(
            diffusion_graph=o["cuda_graphs"],
            device_uint8=o["device_uint8"],
            channels_last=o["channels_last"],
            compile=None if o["compile"] == "none" else o["compile"],
            pad_batches=o["compile"] != "none",
        )

    def load(self) -> None:
        from .pipeline import KDTalkerPipeline

        opts = self._checked_options()
        self.pipeline = KDTalkerPipeline.from_weights(
            self.weights, device=self.device, dtype=opts["dtype"], fast=self.fast_options()
        )

    def driving_audio(self, spec: ClipSpec, canonical: np.ndarray) -> np.ndarray:
        """``librosa.load(audio, sr=16000)`` of the clip's audio file (or GT video): ``float32[N]``, the exact
        channel average and librosa's resampler, as the official ``inference.py`` reads it."""
        from kdbench.audio import read_audio_librosa

        src = spec.audio if spec.audio is not None else spec.gt_video
        return canonical if src is None else read_audio_librosa(src)

    def generate(self, spec: ClipSpec, ref_image: np.ndarray, audio: np.ndarray) -> Generated:
        if not hasattr(self, "pipeline"):
            self.load()
        opts = self._checked_options()
        res = self.pipeline(
            ref_image,
            audio,
            seed=self.seed,
            ddim_steps=opts["ddim_steps"],
            batch_size=opts["batch_size"],
            smoothing=opts["smoothing"],
        )
        extra = {k: round(v, 6) for k, v in res.timings.items()}
        extra.update(ddim_steps=opts["ddim_steps"], n_windows=-(-len(res.frames) // 64))
        return Generated(fps=FPS, frames=res.frames, extra=extra)
