"""A random-weight I3D in the format of StyleGAN-V's ``i3d_torchscript.pt``, for FVD's equality tests and benchmark.

StyleGAN-V's FVD loads ``i3d_torchscript.pt`` (Kinetics-400 I3D, a TorchScript archive whose class is
``src.i3dpt_jit.I3D``) and calls ``detector(x, rescale=True, resize=True, return_features=True)`` on
``uint8[B, 3, T, H, W]`` clips; ``return_features=True`` gives the 400 logits before the softmax. This module builds
an I3D with that interface from the published Inception-v1-inflated architecture (Carreira & Zisserman 2017: the
layer list and channel counts of DeepMind's kinetics-i3d, TensorFlow "SAME" padding, as the PyTorch port
hassony2/kinetics_i3d_pytorch ``i3dpt.py`` that the torchscript is named after), fills it with random weights,
scripts it with ``torch.jit.script`` and saves it with ``torch.jit.save``: the file loads with ``torch.jit.load``
exactly as the real one does. Its pre-processing follows the torchscript's documented behaviour: ``rescale``:
``x / 255 * 2 - 1``; ``resize``: trilinear to ``T x 224 x 224`` (``align_corners=False``).

``width`` scales every channel count and ``size`` is the side ``resize`` resizes to (1.0 and 224: the real
architecture, 12.7 M parameters; CI uses width 1/16 and size 64, a tiny I3D with the same interface and layer list
that runs in a fraction of a second per clip on a CPU).

    python scripts/i3d_random_weights.py OUT.pt [--width 0.0625] [--size 64] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

#: Inception blocks: (name, [branch0 1x1, branch1 1x1, branch1 3x3, branch2 1x1, branch2 3x3, branch3 1x1])
MIXED: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("mixed_3b", (64, 96, 128, 16, 32, 32)), ("mixed_3c", (128, 128, 192, 32, 96, 64)),
    ("mixed_4b", (192, 96, 208, 16, 48, 64)), ("mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("mixed_4d", (128, 128, 256, 24, 64, 64)), ("mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("mixed_4f", (256, 160, 320, 32, 128, 128)), ("mixed_5b", (256, 160, 320, 32, 128, 128)),
    ("mixed_5c", (384, 192, 384, 48, 128, 128)),
)


def same_pad(x: torch.Tensor, kernel: list[int], stride: list[int]) -> torch.Tensor:
    """TensorFlow "SAME" padding of ``x[B, C, T, H, W]`` for a kernel/stride over (T, H, W) (zeros)."""
    pads: list[int] = []
    for d in [4, 3, 2]:  # F.pad lists the last dimension first
        size, k, s = x.shape[d], kernel[d - 2], stride[d - 2]
        out = (size + s - 1) // s
        total = max((out - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class Unit3D(nn.Module):
    """Conv3d (SAME padding) + BatchNorm3d (eps 1e-3) + ReLU; the logits layer has a bias and neither BN nor ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int, int] = 1,
                 stride: int | tuple[int, int, int] = 1, logits: bool = False):
        super().__init__()
        k = [kernel] * 3 if isinstance(kernel, int) else list(kernel)
        s = [stride] * 3 if isinstance(stride, int) else list(stride)
        self.kernel: list[int] = k
        self.stride: list[int] = s
        self.logits = logits
        self.conv = nn.Conv3d(cin, cout, k, s, bias=logits)
        self.bn = nn.Identity() if logits else nn.BatchNorm3d(cout, eps=1e-3, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(same_pad(x, self.kernel, self.stride)))
        return x if self.logits else F.relu(x)


class MaxPool3dSame(nn.Module):
    """Max pooling with SAME padding (zeros: the inputs follow a ReLU, so they are >= 0)."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]):
        super().__init__()
        self.kernel: list[int] = list(kernel)
        self.stride: list[int] = list(stride)
        self.pool = nn.MaxPool3d(kernel, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(same_pad(x, self.kernel, self.stride))


class Mixed(nn.Module):
    """An inflated Inception block: 1x1 | 1x1 -> 3x3x3 | 1x1 -> 3x3x3 | 3x3x3 max-pool -> 1x1, concatenated."""

    def __init__(self, cin: int, c: tuple[int, ...]):
        super().__init__()
        self.b0 = Unit3D(cin, c[0])
        self.b1a, self.b1b = Unit3D(cin, c[1]), Unit3D(c[1], c[2], 3)
        self.b2a, self.b2b = Unit3D(cin, c[3]), Unit3D(c[3], c[4], 3)
        self.b3a, self.b3b = MaxPool3dSame((3, 3, 3), (1, 1, 1)), Unit3D(cin, c[5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


class I3D(nn.Module):
    """Kinetics-400 I3D (RGB stream) with the torchscript's call: ``forward(x, rescale, resize, return_features)``."""

    def __init__(self, width: float = 1.0, size: int = 224, num_classes: int = 400):
        super().__init__()
        self.size = size

        def ch(c: int) -> int:
            return max(1, round(c * width))

        self.stem = nn.Sequential(
            Unit3D(3, ch(64), 7, 2), MaxPool3dSame((1, 3, 3), (1, 2, 2)),
            Unit3D(ch(64), ch(64)), Unit3D(ch(64), ch(192), 3), MaxPool3dSame((1, 3, 3), (1, 2, 2)))
        blocks: list[nn.Module] = []
        cin = ch(192)
        for name, c in MIXED:
            if name == "mixed_4b":
                blocks.append(MaxPool3dSame((3, 3, 3), (2, 2, 2)))
            if name == "mixed_5b":
                blocks.append(MaxPool3dSame((2, 2, 2), (2, 2, 2)))
            cc = tuple(ch(v) for v in c)
            blocks.append(Mixed(cin, cc))
            cin = cc[0] + cc[2] + cc[4] + cc[5]
        self.blocks = nn.Sequential(*blocks)
        self.avg_pool = nn.AvgPool3d((2, size // 32, size // 32), (1, 1, 1))  # (2, 7, 7) at 224
        self.logits = Unit3D(cin, num_classes, logits=True)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        x = x.to(torch.float32)
        if rescale:
            x = x / 255.0 * 2.0 - 1.0
        if resize:
            x = F.interpolate(x, size=[x.shape[2], self.size, self.size], mode="trilinear", align_corners=False)
        x = self.logits(self.avg_pool(self.blocks(self.stem(x))))
        logits = x.mean(dim=2).squeeze(3).squeeze(2)  # [B, 400]: averaged over the remaining time steps
        return logits if return_features else F.softmax(logits, dim=1)


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """He-normal convolutions and random BatchNorm parameters/statistics: features stay O(1) through the net."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv3d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, nn.BatchNorm3d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
    return model.eval()


def save_random_i3d(path: str | Path, width: float = 1.0, seed: int = 0, size: int = 224) -> Path:
    """Script a random-weight :class:`I3D` and ``torch.jit.save`` it at ``path`` (the torchscript's container)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scripted = torch.jit.script(randomise(I3D(width, size), seed))
    torch.jit.save(scripted, str(path))
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--width", type=float, default=1.0, help="channel multiplier (1: the real architecture)")
    ap.add_argument("--size", type=int, default=224, help="side resize=True resizes to (224: the real network)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print(save_random_i3d(args.out, args.width, args.seed, args.size))


if __name__ == "__main__":
    main()
