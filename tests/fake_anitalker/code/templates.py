"""Fake AniTalker stage 2 (test double of code/templates.py + experiment.py): LitModel seeds, then draws its
initialisation and x_T, as the real one does; sampling draws more noise."""

import random
from types import SimpleNamespace

import numpy as np
import torch


def ffhq256_autoenc():
    return SimpleNamespace(seed=None, sample_size=2, img_size=4)


class LitModel(torch.nn.Module):
    def __init__(self, conf):
        super().__init__()
        if conf.seed is not None:  # pl.seed_everything
            random.seed(conf.seed)
            np.random.seed(conf.seed)
            torch.manual_seed(conf.seed)
        self.ema_model = torch.nn.Linear(8, conf.motion_dim)
        self.register_buffer("x_T", torch.randn(conf.sample_size, 3, conf.img_size, conf.img_size))

    def render(self, start, direction, audio_driven, face_location, face_scale, ypr, noisy_t, step_t, control_flag):
        x = noisy_t
        for _ in range(step_t):
            x = 0.9 * x + 0.1 * self.ema_model(audio_driven.mean(1)[:, ::2]) + 0.01 * torch.randn_like(x)
        return x
