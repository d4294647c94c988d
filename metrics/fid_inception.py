"""pytorch-fid's Inception network loaded from a local checkpoint, and batched feature extraction.

This module imports torch and pytorch-fid; :mod:`metrics.fid` imports it lazily.

pytorch-fid builds its network with ``InceptionV3()``, whose ``fid_inception_v3()`` downloads
``pt_inception-2015-12-05-6726825d.pth`` with ``load_state_dict_from_url``. kdbench never downloads
there: :func:`load_fid_inception` reads the checkpoint given by the weights manager and hands that
state dict to pytorch-fid's own constructor (strict ``load_state_dict``), so the network - patched
Inception blocks, 299x299 bilinear resize, ``2x - 1`` input scaling, pool3 output - is pytorch-fid's
code, unchanged.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import torch

DIMS = 2048
"""Feature size: pytorch-fid's default pool3 block (index 3)."""

_BUILD_LOCK = threading.Lock()


def build_fid_inception(state_dict: dict[str, torch.Tensor]) -> torch.nn.Module:
    """pytorch-fid's ``InceptionV3([3])`` (pool3, resize + normalise input) with ``state_dict`` loaded.

    ``pytorch_fid.inception.fid_inception_v3`` is called as is, with its download function
    temporarily pointed at ``state_dict`` (the URL it asks for is checked).
    """
    import pytorch_fid.inception as pfi

    def _from_memory(url: str, *args: object, **kwargs: object) -> dict[str, torch.Tensor]:
        if url != pfi.FID_WEIGHTS_URL:
            raise RuntimeError(f"unexpected weights request {url!r}")
        return state_dict

    with _BUILD_LOCK:
        original = pfi.load_state_dict_from_url
        pfi.load_state_dict_from_url = _from_memory
        try:
            model = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[DIMS]])
        finally:
            pfi.load_state_dict_from_url = original
    return model.eval()


def load_fid_inception(path: str | os.PathLike, device: str = "cpu") -> torch.nn.Module:
    """Build pytorch-fid's Inception from the checkpoint at ``path``, in eval mode on ``device``."""
    from .checkpoints import load_state_dict

    model = build_fid_inception(load_state_dict(path)).to(device)
    if torch.device(device).type == "cpu":
        # oneDNN's channels-last convolutions: ~1.4x faster on CPU; pool3 features move by ~1e-6 (summation order)
        model = model.to(memory_format=torch.channels_last)
    return model


@torch.no_grad()
def inception_activations(frames: np.ndarray, model: torch.nn.Module, device: str = "cpu",
                          batch_size: int = 50) -> np.ndarray:
    """Pool3 activations ``float32[T, 2048]`` of ``frames`` (uint8[T,H,W,3] RGB), batched on ``device``.

    Same input path as pytorch-fid on PNG files: ``ToTensor`` (uint8 -> float32 / 255, CHW), the
    model's bilinear resize to 299x299 (align_corners=False, no antialias) and ``2x - 1``. The values are
    the model's float32 outputs (pytorch-fid stores these same values in a float64 array).
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8[T,H,W,3] RGB frames, got {frames.dtype}{list(frames.shape)}")
    model.eval()
    out = np.empty((len(frames), DIMS), dtype=np.float32)
    first_conv = next(model.parameters())
    channels_last = first_conv.is_contiguous(memory_format=torch.channels_last) and not first_conv.is_contiguous()
    for start in range(0, len(frames), max(1, int(batch_size))):
        chunk = torch.from_numpy(np.ascontiguousarray(frames[start:start + batch_size])).to(device)
        x = chunk.permute(0, 3, 1, 2).to(torch.float32).div(255)  # channels-last in memory, as decoded
        if not channels_last:
            x = x.contiguous()
        pred = model(x)[0]
        if pred.shape[2] != 1 or pred.shape[3] != 1:
            pred = torch.nn.functional.adaptive_avg_pool2d(pred, output_size=(1, 1))
        out[start:start + len(chunk)] = pred.squeeze(3).squeeze(2).cpu().numpy()
    return out
