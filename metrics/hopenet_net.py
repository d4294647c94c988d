"""Hopenet (Ruiz et al., CVPR-W 2018) as used by KDTalker's diversity metric: network, loading, crops.

Imports torch/torchvision at top level: import this module lazily (``metrics/diversity.py`` does).

Network (deep-head-pose ``code/hopenet.py``): a torchvision ResNet-50 trunk (``conv1 .. layer4``,
``AvgPool2d(7)`` on the 7x7 map of a 224x224 input -> 2048-d), then three ``Linear(2048, 66)`` heads
``fc_yaw``, ``fc_pitch``, ``fc_roll`` giving raw 66-bin logits (3-degree bins over [-99, 99)). The
vestigial ``fc_finetune = Linear(2051, 3)`` is never used but is kept so the official
``hopenet_robust_alpha1.pkl`` state dict loads with ``strict=True``.

Crops (deep-head-pose ``test_on_video_dlib.py``; KDTalker's Python-3 copy lines 100-134): the dlib box is
expanded (left/right by w/2, up by 3h/4, down by h/4), truncated to ints and clipped to the frame, then
PIL ``Resize(224)`` (shorter side, bilinear) -> ``CenterCrop(224)`` -> ``ToTensor`` -> ImageNet
``Normalize``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torchvision.models.resnet import Bottleneck

NUM_BINS = 66
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Hopenet(nn.Module):
    """ResNet-50 trunk + yaw/pitch/roll 66-bin classifiers, parameter names as the official checkpoint.

    ``forward(x: float[N,3,224,224])`` -> ``(yaw, pitch, roll)``, each raw logits ``float[N,66]``.
    """

    def __init__(self, layers: Sequence[int] = (3, 4, 6, 3), num_bins: int = NUM_BINS):
        super().__init__()
        self._inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.avgpool = nn.AvgPool2d(7)
        width = 512 * Bottleneck.expansion
        self.fc_yaw = nn.Linear(width, num_bins)
        self.fc_pitch = nn.Linear(width, num_bins)
        self.fc_roll = nn.Linear(width, num_bins)
        self.fc_finetune = nn.Linear(width + 3, 3)  # vestigial in the official code; kept for strict loading

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self._inplanes, planes * Bottleneck.expansion, kernel_size=1, stride=stride,
                          bias=False),
                nn.BatchNorm2d(planes * Bottleneck.expansion),
            )
        mods = [Bottleneck(self._inplanes, planes, stride, downsample)]
        self._inplanes = planes * Bottleneck.expansion
        mods += [Bottleneck(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Trunk: ``float[N,3,224,224]`` normalised images -> pooled ``float[N,2048]``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f = self.features(x)
        return self.fc_yaw(f), self.fc_pitch(f), self.fc_roll(f)


def load_hopenet(path: str | os.PathLike, device: str = "cpu") -> Hopenet:
    """Hopenet in eval mode with the weights of ``path`` (an official-format state dict), strictly.

    The official file is a PyTorch-0.x legacy pickle without BatchNorm ``num_batches_tracked``
    buffers; BatchNorm's versioned state-dict loading fills them, so ``strict=True`` still holds.
    """
    from .checkpoints import load_strict

    return load_strict(Hopenet(), path, device)


def expand_box(left: int, top: int, right: int, bottom: int, width: int,
               height: int) -> tuple[int, int, int, int]:
    """KDTalker's box expansion of a dlib face rectangle, in pixels: ``(x_min, y_min, x_max, y_max)``.

    ``w = |right-left|``, ``h = |bottom-top|``; ``x -= w/2``, ``x_max += w/2``, ``y_min -= 3h/4``,
    ``y_max += h/4`` (float), then ``int(max(., 0))`` / ``int(min(size, .))`` (truncation, as in
    KDTalker's ``test_on_video_dlib.py``). Crop = ``rgb[y_min:y_max, x_min:x_max]``.
    """
    bw, bh = abs(right - left), abs(bottom - top)
    x_min = left - 2 * bw / 4
    x_max = right + 2 * bw / 4
    y_min = top - 3 * bh / 4
    y_max = bottom + bh / 4
    return int(max(x_min, 0)), int(max(y_min, 0)), int(min(width, x_max)), int(min(height, y_max))


def preprocess_crop(rgb: np.ndarray, box: tuple[int, int, int, int]) -> torch.Tensor:
    """``rgb: uint8[H,W,3]`` + expanded box -> normalised ``float32[3,224,224]`` (reference transforms)."""
    from PIL import Image
    from torchvision import transforms

    x0, y0, x1, y1 = box
    crop = np.ascontiguousarray(rgb[y0:y1, x0:x1])
    if crop.shape[0] == 0 or crop.shape[1] == 0:
        raise ValueError(f"empty crop for box {box} in a {rgb.shape} frame")
    tf = transforms.Compose([
        transforms.Resize(224),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
    ])
    return tf(Image.fromarray(crop))


@torch.no_grad()
def hopenet_logits(model: Hopenet, crops: torch.Tensor, batch_size: int = 32) -> np.ndarray:
    """``crops: float32[N,3,224,224]`` -> raw logits ``float32[N,3,66]`` (axis 1: yaw, pitch, roll).

    Runs channels-last (~1.35x faster convolutions on CPU; the logits move by float rounding only).
    """
    device = next(model.parameters()).device
    model = model.to(memory_format=torch.channels_last)
    out = []
    for i in range(0, len(crops), batch_size):
        x = crops[i:i + batch_size].to(device).contiguous(memory_format=torch.channels_last)
        yaw, pitch, roll = model(x)
        out.append(torch.stack([yaw, pitch, roll], dim=1).float().cpu().numpy())
    if not out:
        return np.zeros((0, 3, NUM_BINS), np.float32)
    return np.concatenate(out, 0)
