"""``kdtalker``: KDTalker (Yang et al., IJCV 2026) re-implemented natively, loading the official weights.

Reference image + 16 kHz audio -> 512x512 talking-head frames at 25 fps, one per audio frame:
dlib crop -> LivePortrait source state -> Wav2Lip audio features -> keypoint diffusion (64-frame
windows, DDIM) -> Kalman smoothing -> LivePortrait warp + SPADE decode. Runs on CPU or GPU; no clone
of chaolongy/KDTalker is needed. Importing this module does not import torch.

Options (``--set key=value``):

- ``ddim_steps`` (50): DDIM steps per window (the paper's Table 6 varies it);
- ``batch_size`` (16): frames per LivePortrait render batch;
- ``dtype`` (``fp32``): renderer precision, ``fp32``, ``fp16`` or ``bf16`` (diffusion always runs in fp32);
- ``smoothing`` (true): the upstream Kalman (RTS) smoothing of pose, translation and expression.

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
    default_options = {"ddim_steps": 50, "batch_size": 16, "dtype": "fp32", "smoothing": True}

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
        return {
            "ddim_steps": steps,
            "batch_size": batch,
            "dtype": dtype,
            "smoothing": _as_bool(o["smoothing"]),
        }

    def load(self) -> None:
        from .pipeline import KDTalkerPipeline

        opts = self._checked_options()
        self.pipeline = KDTalkerPipeline.from_weights(self.weights, device=self.device, dtype=opts["dtype"])

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
