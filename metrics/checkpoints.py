"""Loading the metric networks' official checkpoints: plain state dicts, strict key matching.

This module imports torch; the metric modules import it lazily.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

Net = TypeVar("Net", bound=nn.Module)


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The checkpoint's ``state_dict`` (tensors only, loaded on CPU); ValueError if the file holds something else."""
    from kdbench.checkpoint import load_checkpoint

    sd = load_checkpoint(Path(path))
    if not isinstance(sd, dict):
        raise ValueError(f"{path} does not hold a state_dict (got {type(sd).__name__})")
    return sd


def load_strict(net: Net, path: str | os.PathLike, device: str = "cpu") -> Net:
    """``net`` with the weights of ``path`` (strict: same keys and shapes), on ``device``, in eval mode."""
    net.load_state_dict(load_state_dict(path), strict=True)
    return net.to(device).eval()
