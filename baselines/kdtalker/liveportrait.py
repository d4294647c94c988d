"""LivePortrait renderer as KDTalker uses it: source encoding once, then warp + SPADE decode per frame.

    lp = LivePortrait.from_weights(WeightsManager(), device="cpu")   # strict loading of the 4 files
    src = lp.extract_source(crop.img256)                              # F and M on the 256x256 crop
    x_d = lp.keypoints_driving(src, pitch, yaw, roll, exp, t)        # s (x_c R_d + delta) + [tx, ty, 0]
    frames = lp.render(src, x_d, batch_size=8)                        # uint8[T,512,512,3] RGB, 25 fps

What follows KDTalker's ``inference.py`` (not upstream LivePortrait's pipeline): no stitching, no retargeting,
absolute motion, the *source* scale, ``tz = 0`` for both the source and the driving keypoints, no paste-back,
and the uint8 conversion truncates (``clip(x * 255).astype(uint8)``). fp32 by default; ``dtype=torch.float16``
or ``torch.bfloat16`` runs the networks under autocast, like LivePortrait's half-precision flag.

Checkpoints: the official ``appearance_feature_extractor.pth``, ``motion_extractor.pth``,
``warping_module.pth`` and ``spade_generator.pth`` (raw state dicts; weights entries
``liveportrait_{appearance,motion,warping,spade}``).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kdbench.errors import KdbenchError

from .liveportrait_nets import MODULES, NUM_BINS, NUM_KP, SpectralNormConv2d

WEIGHT_ENTRIES = {
    "appearance": "liveportrait_appearance",
    "motion": "liveportrait_motion",
    "warping": "liveportrait_warping",
    "spade": "liveportrait_spade",
}
OFFICIAL_FILES = {
    "appearance": "appearance_feature_extractor.pth",
    "motion": "motion_extractor.pth",
    "warping": "warping_module.pth",
    "spade": "spade_generator.pth",
}
INPUT_SIZE = 256     # LivePortrait input crop, pixels
OUTPUT_SIZE = 512    # rendered frame, pixels
FPS = 25             # KDTalker writes its frames at 25 fps


class CheckpointMismatch(KdbenchError):
    """A checkpoint's keys or shapes differ from the official LivePortrait module."""


# ----------------------------------------------------------------------------------------------------------
# Pose conventions (LivePortrait src/utils/camera.py semantics)
# ----------------------------------------------------------------------------------------------------------
def headpose_bins_to_degrees(logits: torch.Tensor) -> torch.Tensor:
    """Expected angle of 66 bins of 3 degrees: float[B,66] logits -> float[B] degrees (3 E[bin] - 97.5)."""
    idx = torch.arange(NUM_BINS, device=logits.device, dtype=logits.dtype)
    return torch.sum(F.softmax(logits, dim=1) * idx, dim=1) * 3 - 97.5


def get_rotation_matrix(pitch_deg: Any, yaw_deg: Any, roll_deg: Any) -> torch.Tensor:
    """Rotation for row-vector keypoints, LivePortrait convention: ``R = (Rz(roll) Ry(yaw) Rx(pitch))^T``.

    Angles in degrees, each float[B] or float[B,1] (tensors, arrays or numbers). Keypoints rotate as
    ``x @ R`` (x float[...,3] rows). Returns float[B,3,3] (float32 unless a float64 tensor is given).
    """
    angles = [torch.as_tensor(a) for a in (pitch_deg, yaw_deg, roll_deg)]
    ref = next((a for a in angles if a.is_floating_point()), None)
    dtype = ref.dtype if ref is not None else torch.float32
    device = angles[0].device
    pitch, yaw, roll = (a.to(device=device, dtype=dtype).reshape(-1) / 180 * math.pi for a in angles)
    one, zero = torch.ones_like(pitch), torch.zeros_like(pitch)
    cx, sx, cy, sy, cz, sz = (torch.cos(pitch), torch.sin(pitch), torch.cos(yaw), torch.sin(yaw),
                              torch.cos(roll), torch.sin(roll))
    rot_x = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], dim=1).reshape(-1, 3, 3)
    rot_y = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], dim=1).reshape(-1, 3, 3)
    rot_z = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], dim=1).reshape(-1, 3, 3)
    return (rot_z @ rot_y @ rot_x).permute(0, 2, 1)


# ----------------------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------------------
def _list(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... and {len(keys) - limit} more" if len(keys) > limit else "")


def _skeleton(name: str) -> nn.Module:
    """Network ``name`` built on the meta device (key names and shapes, no memory, no initialisation)."""
    with torch.device("meta"):
        return MODULES[name]()


def check_state_dict(name: str, state: dict[str, Any]) -> None:
    """Raise :class:`CheckpointMismatch` listing missing / unexpected keys and shape mismatches."""
    expected = _skeleton(name).state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(getattr(v, 'shape', ()))} (expected {tuple(expected[k].shape)})"
              for k, v in state.items()
              if k in expected and (not isinstance(v, torch.Tensor) or v.shape != expected[k].shape)]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if missing:
        parts.append(f"missing keys ({len(missing)}): {_list(missing)}")
    if unexpected:
        parts.append(f"unexpected keys ({len(unexpected)}): {_list(unexpected)}")
    if shapes:
        parts.append(f"wrong shapes ({len(shapes)}): {_list(shapes)}")
    hint = ""
    for other in MODULES:
        if other != name and set(state) == set(_skeleton(other).state_dict()):
            hint = f" It looks like the {other} checkpoint ({OFFICIAL_FILES[other]})."
            break
    raise CheckpointMismatch(
        f"LivePortrait {name} checkpoint does not match the official {OFFICIAL_FILES[name]} layout: "
        + "; ".join(parts) + "." + hint)


def load_module(name: str, state: dict[str, Any], device: str | torch.device = "cpu") -> nn.Module:
    """Build network ``name`` (appearance | motion | warping | spade), load ``state`` strictly, eval mode.

    The module adopts the state's tensors (floating ones as float32) instead of copying them, so loading costs
    no random initialisation; on the CPU it shares their memory.
    """
    check_state_dict(name, state)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    module = _skeleton(name)
    module.load_state_dict(state, strict=True, assign=True)
    return module.to(device).eval().requires_grad_(False)


def load_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read an official LivePortrait ``.pth`` (a raw state dict) on the CPU, tensors only."""
    from kdbench.checkpoint import load_checkpoint

    state = load_checkpoint(path)
    if not isinstance(state, dict):
        raise CheckpointMismatch(f"{path} holds a {type(state).__name__}, not a LivePortrait state dict")
    return state


def random_state_dict(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Randomly initialised state dict of network ``name`` in the official key format (see below)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = MODULES[name]()
        with torch.no_grad():
            for mod in module.modules():
                if isinstance(mod, SpectralNormConv2d):
                    mod.power_iteration(30)
            for key, t in module.state_dict(keep_vars=True).items():
                if not t.is_floating_point():
                    continue
                leaf = key.rsplit(".", 1)[-1]
                if leaf == "running_mean":
                    t.normal_(0.0, 0.1)
                elif leaf == "running_var":
                    t.uniform_(0.5, 1.5)
                elif leaf in ("gamma", "beta"):        # GRN
                    t.normal_(0.0, 0.1)
                elif t.ndim == 1 and leaf == "weight":  # BatchNorm / LayerNorm scale
                    t.uniform_(0.8, 1.2)
                elif leaf == "bias":
                    t.normal_(0.0, 0.05)
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def random_state_dicts(seed: int = 0) -> tuple[dict, dict, dict, dict]:
    """Randomly initialised (appearance, motion, warping, spade) state dicts in the official key format.

    For tests without the real weights: default PyTorch initialisation, then non-trivial BatchNorm running
    statistics, norm affine parameters and GRN parameters, and spectral-norm singular vectors refreshed by
    power iteration (as in a trained checkpoint). Deterministic for a given ``seed``; the global RNG is left
    untouched. Costs a few seconds of CPU (about 130 M parameters).
    """
    return tuple(random_state_dict(name, seed * 4 + i)  # type: ignore[return-value]
                 for i, name in enumerate(("appearance", "motion", "warping", "spade")))


# ----------------------------------------------------------------------------------------------------------
# Renderer
# ----------------------------------------------------------------------------------------------------------
@dataclass
class SourceState:
    """Everything computed once per source image (all tensors on the renderer's device, float32).

    f_s: [1,32,16,64,64] appearance volume; kp_c: [1,21,3] canonical keypoints; scale: [1,1];
    R: [1,3,3] rotation of the source pose; exp: [1,21,3] expression offsets; t: [1,3] translation;
    pitch/yaw/roll: [1] degrees;
    x_s: [1,21,3] transformed source keypoints ``s (x_c R + exp)`` with ``t_xy`` added (tz dropped).
    """

    f_s: torch.Tensor
    kp_c: torch.Tensor
    scale: torch.Tensor
    R: torch.Tensor
    exp: torch.Tensor
    t: torch.Tensor
    pitch: torch.Tensor
    yaw: torch.Tensor
    roll: torch.Tensor
    x_s: torch.Tensor

    def kp_info(self) -> dict[str, np.ndarray]:
        """KDTalker's ``get_kp_info`` layout as float32 arrays: pitch/yaw/roll/scale [1,1], t [1,3],
        exp and kp flattened to [1,63] (the input of ``norm.npz`` normalisation)."""
        arrays = {
            "pitch": self.pitch[:, None], "yaw": self.yaw[:, None], "roll": self.roll[:, None],
            "t": self.t, "exp": self.exp.reshape(1, -1), "scale": self.scale, "kp": self.kp_c.reshape(1, -1),
        }
        return {k: v.detach().cpu().float().numpy() for k, v in arrays.items()}


class LivePortrait:
    """LivePortrait networks F, M, W, G in eval mode with KDTalker's rendering conventions.

    ``dtype``: float32 (default, as KDTalker) or float16 / bfloat16 (networks under autocast, like
    LivePortrait's ``flag_use_half_precision``; outputs are float32). float16 is meant for CUDA: on a CPU its
    3-D convolutions are many times slower than float32.
    ``batch_size``: frames per warp + decode call in :meth:`render`.
    """

    def __init__(self, appearance: nn.Module, motion: nn.Module, warping: nn.Module, spade: nn.Module,
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, batch_size: int = 8):
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"dtype must be float32, float16 or bfloat16, not {dtype}")
        self.device = torch.device(device)
        self.dtype = dtype
        self.batch_size = int(batch_size)
        self.appearance, self.motion, self.warping, self.spade = appearance, motion, warping, spade

    # -- construction --------------------------------------------------------------------------------------
    @classmethod
    def from_state_dicts(cls, appearance: dict, motion: dict, warping: dict, spade: dict,
                         device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                         batch_size: int = 8) -> LivePortrait:
        """Strictly load the four official state dicts (:class:`CheckpointMismatch` lists any difference)."""
        states = {"appearance": appearance, "motion": motion, "warping": warping, "spade": spade}
        mods = {name: load_module(name, state, device) for name, state in states.items()}
        return cls(**mods, device=device, dtype=dtype, batch_size=batch_size)

    @classmethod
    def from_weights(cls, weights: Any, device: str | torch.device = "cpu",
                     dtype: torch.dtype = torch.float32, batch_size: int = 8) -> LivePortrait:
        """Load the official files through a :class:`kdbench.weights.WeightsManager`."""
        states = {name: load_checkpoint(weights.path(entry)) for name, entry in WEIGHT_ENTRIES.items()}
        return cls.from_state_dicts(**states, device=device, dtype=dtype, batch_size=batch_size)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    get_rotation_matrix = staticmethod(get_rotation_matrix)

    # -- once per source -------------------------------------------------------------------------------------
    def image_tensor(self, img256: np.ndarray) -> torch.Tensor:
        """uint8[256,256,3] RGB -> float32[1,3,256,256] in [0,1] on the device (no mean/std normalisation)."""
        img = np.asarray(img256)
        if img.dtype != np.uint8 or img.shape != (INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(f"expected a uint8[{INPUT_SIZE},{INPUT_SIZE},3] RGB crop, "
                             f"got {img.dtype}{list(img.shape)}")
        return torch.from_numpy(img.transpose(2, 0, 1).astype(np.float32)).unsqueeze(0).to(self.device) / 255

    @torch.no_grad()
    def extract_source(self, img256: np.ndarray) -> SourceState:
        """Run M and F on the source crop uint8[256,256,3] RGB and build the source keypoints."""
        x = self.image_tensor(img256)
        with self._autocast():
            info = self.motion(x)
            f_s = self.appearance(x)
        info = {k: v.float() for k, v in info.items()}
        pitch, yaw, roll = (headpose_bins_to_degrees(info[k]) for k in ("pitch", "yaw", "roll"))
        kp_c = info["kp"].reshape(1, NUM_KP, 3)
        exp = info["exp"].reshape(1, NUM_KP, 3)
        rot = get_rotation_matrix(pitch, yaw, roll)
        x_s = (kp_c @ rot + exp) * info["scale"][..., None]
        x_s[:, :, 0:2] += info["t"][:, None, 0:2]
        return SourceState(f_s=f_s.float(), kp_c=kp_c, scale=info["scale"], R=rot, exp=exp, t=info["t"],
                           pitch=pitch, yaw=yaw, roll=roll, x_s=x_s)

    # -- per frame -------------------------------------------------------------------------------------------
    def keypoints_driving(self, source: SourceState, pitch_deg: Any, yaw_deg: Any, roll_deg: Any, exp: Any,
                          t: Any, scale: Any = None) -> torch.Tensor:
        """KDTalker's absolute driving keypoints ``x_d = scale (x_c R_d + exp) + [tx, ty, 0]``.

        pitch/yaw/roll: degrees [B] or [B,1]; exp: [B,21,3] or [B,63]; t: [B,3] (tz is ignored, as KDTalker
        zeroes it); scale: [B,1], or None for the source scale (KDTalker discards the predicted scale).
        Returns float32[B,21,3] on the device.
        """
        def tensor(a: Any) -> torch.Tensor:
            return torch.as_tensor(a).to(device=self.device, dtype=torch.float32)

        rot = get_rotation_matrix(tensor(pitch_deg), tensor(yaw_deg), tensor(roll_deg))
        b = rot.shape[0]
        exp_t = tensor(exp).reshape(b, NUM_KP, 3)
        t_t = tensor(t).reshape(b, 3).clone()
        t_t[:, 2] = 0
        s = source.scale.expand(b, 1) if scale is None else tensor(scale).reshape(b, 1)
        return s[:, :, None] * (source.kp_c @ rot + exp_t) + t_t[:, None, :]

    @torch.no_grad()
    def warp_decode(self, source: SourceState, kp_driving: torch.Tensor) -> torch.Tensor:
        """W + G for a batch of driving keypoints [B,21,3] -> float32[B,3,512,512] in (0,1)."""
        kp_driving = torch.as_tensor(kp_driving).to(device=self.device, dtype=torch.float32)
        b = kp_driving.shape[0]
        f_s = source.f_s.expand(b, *source.f_s.shape[1:])
        x_s = source.x_s.expand(b, *source.x_s.shape[1:])
        with self._autocast():
            warped = self.warping(f_s, kp_driving=kp_driving, kp_source=x_s)["out"]
            out = self.spade(warped)
        return out.float()

    @staticmethod
    def to_uint8(out: torch.Tensor) -> np.ndarray:
        """float[B,3,H,W] in [0,1] -> uint8[B,H,W,3], truncating like LivePortrait's ``parse_output``."""
        arr = np.clip(out.detach().cpu().float().numpy().transpose(0, 2, 3, 1), 0, 1)
        return np.clip(arr * 255, 0, 255).astype(np.uint8)

    def iter_render(self, source: SourceState, kp_driving: Any,
                    batch_size: int | None = None) -> Iterator[np.ndarray]:
        """Yield uint8[b,512,512,3] RGB frames, ``batch_size`` frames at a time (keeps memory bounded)."""
        kp = torch.as_tensor(kp_driving)
        if kp.ndim != 3 or tuple(kp.shape[1:]) != (NUM_KP, 3):
            raise ValueError(f"kp_driving must be [T,{NUM_KP},3], got {list(kp.shape)}")
        bs = max(1, int(batch_size or self.batch_size))
        for i in range(0, kp.shape[0], bs):
            yield self.to_uint8(self.warp_decode(source, kp[i:i + bs]))

    def render(self, source: SourceState, kp_driving: Any, batch_size: int | None = None) -> np.ndarray:
        """Render driving keypoints [T,21,3] -> uint8[T,512,512,3] RGB frames (25 fps in KDTalker)."""
        chunks = list(self.iter_render(source, kp_driving, batch_size))
        if not chunks:
            return np.zeros((0, OUTPUT_SIZE, OUTPUT_SIZE, 3), np.uint8)
        return np.concatenate(chunks, axis=0)
