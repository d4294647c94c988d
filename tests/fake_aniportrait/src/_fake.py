"""Loading of the fake networks: a folder with config.json + a torch state dict, like diffusers/transformers."""
import json
import os

import torch


def load_folder(cls, path, weights, subfolder=None):
    path = os.path.join(path, subfolder) if subfolder else path
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    model = cls(**config)
    model.load_state_dict(torch.load(os.path.join(path, weights), map_location="cpu"))
    return model


class Net(torch.nn.Module):
    """A 1x1 convolution over RGB-like channels."""

    def __init__(self, channels=3, **_):
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        return self.conv(x)
