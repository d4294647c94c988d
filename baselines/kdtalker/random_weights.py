"""Randomly initialised KDTalker checkpoints in the official file formats (tests and benchmarks).

No real weights can be downloaded in CI: these files have the official key names, shapes and
containers (``KDTalker.pth = {'model': {'point_model.model.*': ...}}``, ``wav2lip.pth =
{'state_dict': {'module.audio_encoder.*': ..., <rest of the generator>}}``), so every loader runs
exactly as on the real files. Values are random but of trained-network magnitude (non-trivial
BatchNorm statistics, LayerNorm gains around 1); RoPE and ``freq_bands`` keep their fixed values.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .audio import Wav2LipAudioEncoder
from .denoiser import CKPT_PREFIX, KDTalkerDenoiser


def random_denoiser_checkpoint(seed: int = 0, std: float = 0.02) -> dict:
    """``{'model': state}`` of the denoiser with random weights (deterministic for ``seed``)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, v in KDTalkerDenoiser().state_dict().items():
        if k.endswith(("rotary_emb.freqs", "freq_bands")):
            state[CKPT_PREFIX + k] = v.clone()
        elif k.endswith(".gamma"):
            state[CKPT_PREFIX + k] = 1 + 0.1 * torch.randn(v.shape, generator=g)
        else:
            state[CKPT_PREFIX + k] = std * torch.randn(v.shape, generator=g)
    return {"model": state}


def random_wav2lip_checkpoint(seed: int = 0) -> dict:
    """A Wav2Lip-generator-like checkpoint: random audio-encoder tensors plus unrelated generator keys."""
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for k, v in Wav2LipAudioEncoder().state_dict().items():
        leaf = k.rsplit(".", 1)[-1]
        if leaf == "num_batches_tracked":
            t = torch.tensor(1000)
        elif leaf == "running_var":
            t = 0.5 + torch.rand(v.shape, generator=g)
        elif leaf == "running_mean":
            t = 0.1 * torch.randn(v.shape, generator=g)
        elif leaf == "weight" and v.dim() == 4:
            t = torch.randn(v.shape, generator=g) * (2.0 / v[0].numel()) ** 0.5
        elif leaf == "weight":
            t = 1 + 0.1 * torch.randn(v.shape, generator=g)
        else:
            t = 0.05 * torch.randn(v.shape, generator=g)
        state["module.audio_encoder." + k] = t
    state["module.face_encoder_blocks.0.0.conv_block.0.weight"] = torch.randn(16, 6, 7, 7, generator=g)
    state["module.output_block.1.weight"] = torch.randn(3, 32, 1, 1, generator=g)
    return {"state_dict": state, "global_step": 1, "global_epoch": 1}


def write_random_checkpoints(folder: str | os.PathLike, seed: int = 0) -> dict[str, Path]:
    """Write random ``KDTalker.pth``, ``wav2lip.pth`` and the four LivePortrait files into ``folder``.

    Returns ``{weights entry: path}`` for :class:`kdbench.weights.WeightsManager` overrides
    (``norm.npz`` and the dlib predictor are real files and not written here).
    """
    from .liveportrait import OFFICIAL_FILES, WEIGHT_ENTRIES, random_state_dicts

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {"kdtalker": folder / "KDTalker.pth", "wav2lip": folder / "wav2lip.pth"}
    torch.save(random_denoiser_checkpoint(seed), out["kdtalker"])
    torch.save(random_wav2lip_checkpoint(seed), out["wav2lip"])
    names = ("appearance", "motion", "warping", "spade")
    for name, state in zip(names, random_state_dicts(seed), strict=True):
        out[WEIGHT_ENTRIES[name]] = folder / OFFICIAL_FILES[name]
        torch.save(state, out[WEIGHT_ENTRIES[name]])
    return out


def random_weights_manager(folder: str | os.PathLike, seed: int = 0, norm: str | os.PathLike | None = None):
    """A :class:`kdbench.weights.WeightsManager` (home ``folder``) serving :func:`write_random_checkpoints`' files.

    Random values cannot match the published checksums (LivePortrait's are pinned), so in this manager's manifest
    those entries are unpinned: trusted on first use and recorded as ``trust: tofu``, never as verified. ``norm``:
    a real ``norm.npz`` (keeps its pin).
    """
    import dataclasses

    from kdbench.weights import WeightsManager, load_manifest

    overrides: dict[str, Path] = dict(write_random_checkpoints(folder, seed))
    manifest = {n: dataclasses.replace(e, sha256=None, sha256_prefix=None, git_sha1=None, size=None, pin_strength="")
                if n in overrides else e for n, e in load_manifest().items()}
    if norm is not None:
        overrides["kdtalker_norm"] = Path(norm)
    return WeightsManager(home=folder, overrides=overrides, manifest=manifest)
