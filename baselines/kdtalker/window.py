"""One DDIM window of KDTalker's motion sampler, as upstream's inference loop runs it (the plain path).

:mod:`baselines.kdtalker.pipeline` drives it window by window; :mod:`baselines.kdtalker.fast` replays the same
operations through a static CUDA-graph loop and falls back to it.
"""

from __future__ import annotations

import torch

from .ddim import DDIMSchedule
from .denoiser import AUDIO_DIM, KDTalkerDenoiser


@torch.no_grad()
def sample_window(
    denoiser: KDTalkerDenoiser,
    schedule: DDIMSchedule,
    x_t: torch.Tensor,
    ori: torch.Tensor,
    ref: torch.Tensor,
    aud: torch.Tensor,
) -> torch.Tensor:
    """DDIM-sample one window.

    ``x_t [1, L, 70]`` initial noise, ``ori``/``ref [1, 70]`` clean conditioning tokens, ``aud [1, L, 512]``
    -> ``x_0 [1, L, 70]``. The two conditioning tokens get zero audio and are re-prepended every step.
    """
    device = x_t.device
    context = torch.cat([torch.zeros(1, 2, AUDIO_DIM, device=device, dtype=aud.dtype), aud], 1)
    positional = denoiser.positional_terms(x_t.shape[1] + 2, device, x_t.dtype)
    prefix = torch.cat([ori[:, None], ref[:, None]], 1)
    for t in schedule.timesteps:
        tt = torch.full((1,), int(t), dtype=torch.long, device=device)
        eps = denoiser(torch.cat([prefix, x_t], 1), tt, context, positional)[:, 2:]
        x_t = schedule.step(eps, int(t), x_t)
    return x_t
