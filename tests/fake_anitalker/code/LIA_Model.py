"""Fake AniTalker stage 1 (test double of code/LIA_Model.py): same interface, a few tensors instead of LIA."""

import torch


class LIA_Model(torch.nn.Module):
    def __init__(self, size=256, style_dim=512, motion_dim=20, channel_multiplier=1, blur_kernel=None, fusion_type=""):
        super().__init__()
        self.mix = torch.nn.Linear(motion_dim, 3)

    def get_start_direction_code(self, x_start, x_target, x_face, x_aug):
        return x_start.mean(dim=(2, 3)), self.mix.weight.sum(0, keepdim=True), x_start

    def render(self, start, direction, feats):
        return torch.tanh(feats * 2 + self.mix(direction)[:, :, None, None] + start[:, :, None, None])

    def load_lightning_model(self, path):
        self.load_state_dict(torch.load(path, map_location="cpu"))
