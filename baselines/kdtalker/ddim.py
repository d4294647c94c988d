"""Deterministic DDIM sampling (eta = 0) with KDTalker's schedule, without diffusers.

The official sampler is diffusers' ``DDIMScheduler(beta_start=1e-5, beta_end=8e-3,
beta_schedule='linear', clip_sample=False)`` with its defaults: 1000 training steps,
``set_alpha_to_one=True``, ``steps_offset=0``, ``prediction_type='epsilon'``, "leading" timestep
spacing. This module computes the same float32 schedule and the same update, operation by operation:

    a_t  = alphas_cumprod[t],  a_prev = alphas_cumprod[t - 1000 // S]  (1.0 below 0)
    x0   = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t)
    x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

NUM_TRAIN_TIMESTEPS = 1000
BETA_START = 1e-5
BETA_END = 8e-3


def alphas_cumprod(
    num_train_timesteps: int = NUM_TRAIN_TIMESTEPS, beta_start: float = BETA_START, beta_end: float = BETA_END
) -> torch.Tensor:
    """``float32[num_train_timesteps]`` cumulative products of ``1 - beta`` (linear betas, float32)."""
    betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)
    return torch.cumprod(1.0 - betas, dim=0)


def ddim_timesteps(num_inference_steps: int, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> np.ndarray:
    """Descending ``int64`` timesteps, "leading" spacing: ``arange(S) * (1000 // S)`` reversed."""
    if not 1 <= num_inference_steps <= num_train_timesteps:
        raise ValueError(f"ddim_steps must be in 1..{num_train_timesteps}, got {num_inference_steps}")
    step_ratio = num_train_timesteps // num_inference_steps
    return (np.arange(0, num_inference_steps) * step_ratio).round()[::-1].copy().astype(np.int64)


@dataclass
class DDIMSchedule:
    """The timesteps and the per-step scalars (0-d float32 tensors on the CPU, as in diffusers)."""

    num_inference_steps: int = 50
    num_train_timesteps: int = NUM_TRAIN_TIMESTEPS

    def __post_init__(self) -> None:
        self.alphas_cumprod = alphas_cumprod(self.num_train_timesteps)
        self.final_alpha_cumprod = torch.tensor(1.0)
        self.timesteps = ddim_timesteps(self.num_inference_steps, self.num_train_timesteps)

    def prev_timestep(self, t: int) -> int:
        return int(t) - self.num_train_timesteps // self.num_inference_steps

    def step(self, eps: torch.Tensor, t: int, x_t: torch.Tensor) -> torch.Tensor:
        """One deterministic DDIM update ``x_t -> x_{t - 1000//S}`` given the epsilon prediction."""
        prev = self.prev_timestep(t)
        alpha_prod_t = self.alphas_cumprod[int(t)]
        alpha_prod_t_prev = self.alphas_cumprod[prev] if prev >= 0 else self.final_alpha_cumprod
        beta_prod_t = 1 - alpha_prod_t
        pred_original_sample = (x_t - beta_prod_t ** (0.5) * eps) / alpha_prod_t ** (0.5)
        pred_sample_direction = (1 - alpha_prod_t_prev) ** (0.5) * eps
        return alpha_prod_t_prev ** (0.5) * pred_original_sample + pred_sample_direction
