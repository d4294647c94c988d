"""Random weights in the official ``syncnet_v2.model`` / ``sfd_face.pth`` formats, and real hdtf-mini inputs.

Used by tests/test_lse*.py and benchmarks/lse.py. The real checkpoints cannot be downloaded here, so the
equivalence tests run kdbench and the syncnet-python reference on the same random state_dicts.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

HDTF_CLIP = "gt/WDA_KatieHill_000.mp4"


def random_syncnet_state(seed: int = 0) -> dict:
    """A random state_dict with the keys and shapes of syncnet_v2.model; BN statistics randomised too."""
    import torch

    from metrics.syncnet_net import SyncNetS

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = SyncNetS()
    state = net.state_dict()
    for k, v in state.items():
        if k.endswith("running_mean"):
            v.copy_(torch.randn(v.shape, generator=g) * 0.1)
        elif k.endswith("running_var"):
            v.copy_(torch.rand(v.shape, generator=g) * 0.5 + 0.75)
        elif v.dim() == 1 and k.endswith("weight"):  # BN gamma
            v.copy_(torch.rand(v.shape, generator=g) * 0.5 + 0.75)
        elif k.endswith("bias") and v.dim() == 1:
            v.copy_(torch.randn(v.shape, generator=g) * 0.05)
    return state


def random_s3fd_state(
    seed: int = 0,
    face_level: int = 5,
    face_logit: float = 4.0,
    wh_logit: float | None = None,
    head_scale: float = 0.02,
) -> dict:
    """A random state_dict with the keys and shapes of sfd_face.pth, with a planted "face" output.

    Random S3FD weights almost never score a box above 0.9. Here the classification heads get small random
    weights and a bias that makes prior level ``face_level`` score about sigmoid(face_logit) (other levels
    far below 0.9); the regression heads get small random weights and a width/height bias ``wh_logit``
    (default: boxes half the frame wide for level 5, whose single prior is centred at 128x128 input). Scores
    and boxes still depend on the image through the random backbone, so NMS, thresholds and tracking run
    on real data.
    """
    import torch

    from metrics.s3fd import S3FDNet

    torch.manual_seed(seed)
    net = S3FDNet()
    state = net.state_dict()
    if wh_logit is None:
        wh_logit = math.log(0.125) / 0.2 if face_level == 5 else 0.0
    g = torch.Generator().manual_seed(seed + 1)
    for lvl in range(6):
        for head in ("conf", "loc"):
            w, b = state[f"{head}.{lvl}.weight"], state[f"{head}.{lvl}.bias"]
            w.copy_(torch.randn(w.shape, generator=g) * head_scale / math.sqrt(w[0].numel()))
            b.zero_()
        face = face_logit if lvl == face_level else -8.0
        state[f"conf.{lvl}.bias"][-1] = face  # last channel = face (channels 0..2 of level 0: background)
        state[f"loc.{lvl}.bias"][2:] = wh_logit
    return state


def save_state(state: dict, path: Path) -> Path:
    import torch

    torch.save(state, str(path))
    return path


def hdtf_clip_path() -> Path:
    from kdbench.hdtf_mini import hdtf_mini_root

    return hdtf_mini_root(download=False) / HDTF_CLIP


def hdtf_frames_audio(n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """First ``n_frames`` RGB frames ``uint8[T,512,512,3]`` of the real HDTF clip + matching int16 audio."""
    from kdbench.audio import read_audio
    from kdbench.video import read_video

    p = hdtf_clip_path()
    frames, _ = read_video(p, max_frames=n_frames)
    audio = read_audio(p)[: n_frames * 640]
    return frames, audio


def make_clip(frames: np.ndarray, audio: np.ndarray, fps: float = 25.0, clip_id: str = "clip"):
    """An EvalClip whose decoded frames/audio are given (nothing is read from disk)."""
    from kdbench.clip import EvalClip
    from kdbench.dataset import ClipSpec

    spec = ClipSpec(clip_id=clip_id)
    clip = EvalClip(spec=spec, video_path=Path("unused.mp4"))
    clip.__dict__["_decoded"] = (frames, fps)
    clip.__dict__["audio"] = audio
    return clip
