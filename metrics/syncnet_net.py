"""SyncNet ``S`` (syncnet_python ``SyncNetModel.S``) and batched embedding of video/audio windows.

This module imports torch; ``metrics.lse`` imports it lazily.

The module tree and parameter names equal those of syncnet_python's ``S`` (joonson SyncNetModel.py:16-117),
so the official ``syncnet_v2.model`` state_dict loads into :class:`SyncNetS` unchanged.

Speed: every lip-stream layer after the first has temporal kernel 1, and the first one (kernel 5 x 7 x 7,
no temporal padding) sees exactly the 5 frames of its window. :class:`LipNet2D` therefore runs the same
maths as 2-D convolutions: the 5 frames of a window become 15 input channels (the first kernel reshaped),
and the windows are strided views of one ``float32[T,3,224,224]`` tensor, so no window is ever copied
five times. Results equal ``S.forward_lip`` to float32 rounding (≈1e-6 relative).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn as nn

#: video frames and MFCC frames per SyncNet window: 5 video frames (0.2 s at 25 fps) = 20 MFCC frames.
WINDOW_FRAMES = 5
MFCC_PER_FRAME = 4
MFCC_WINDOW = 20


class SyncNetS(nn.Module):
    """The SyncNet network of syncnet_v2.model (same layers and parameter names as syncnet_python ``S``)."""

    def __init__(self, embed_dim: int = 1024):
        super().__init__()
        self.netcnnaud = nn.Sequential(
            nn.Conv2d(1, 64, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(1, 1), stride=(1, 1)),
            nn.Conv2d(64, 192, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)),
            nn.BatchNorm2d(192),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(3, 3), stride=(1, 2)),
            nn.Conv2d(192, 384, kernel_size=(3, 3), padding=(1, 1)),
            nn.BatchNorm2d(384),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=(3, 3), padding=(1, 1)),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=(3, 3), padding=(1, 1)),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(3, 3), stride=(2, 2)),
            nn.Conv2d(256, 512, kernel_size=(5, 4), padding=(0, 0)),
            nn.BatchNorm2d(512),
            nn.ReLU(),
        )
        self.netfcaud = nn.Sequential(
            nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embed_dim)
        )
        self.netfclip = nn.Sequential(
            nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embed_dim)
        )
        self.netcnnlip = nn.Sequential(
            nn.Conv3d(3, 96, kernel_size=(5, 7, 7), stride=(1, 2, 2), padding=0),
            nn.BatchNorm3d(96),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            nn.Conv3d(96, 256, kernel_size=(1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            nn.Conv3d(256, 512, kernel_size=(1, 6, 6), padding=0),
            nn.BatchNorm3d(512),
            nn.ReLU(inplace=True),
        )

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        """``float32[N,1,13,20]`` MFCC windows -> ``float32[N,1024]`` audio embeddings."""
        return self.netfcaud(self.netcnnaud(x).flatten(1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        """``float32[N,3,5,224,224]`` BGR 0-255 windows -> ``float32[N,1024]`` video embeddings."""
        return self.netfclip(self.netcnnlip(x).flatten(1))


def load_syncnet(path: str | os.PathLike, device: str = "cpu") -> SyncNetS:
    """Load ``syncnet_v2.model`` (a plain state_dict for ``S``) into an eval-mode :class:`SyncNetS`."""
    from .checkpoints import load_strict

    return load_strict(SyncNetS(), path, device)


class LipNet2D(nn.Module):
    """``netcnnlip`` + ``netfclip`` of :class:`SyncNetS` rewritten with 2-D layers (same numbers).

    Input: ``float32[N,15,H,W]`` where channel ``3*t + c`` is colour ``c`` (BGR) of frame ``t`` of the window,
    i.e. five consecutive ``[3,H,W]`` frames laid one after the other (a view of the frame tensor).
    """

    def __init__(self, net: SyncNetS):
        super().__init__()
        layers: list[nn.Module] = []
        for m in net.netcnnlip:
            if isinstance(m, nn.Conv3d):
                w = m.weight.detach()
                kt = w.shape[2]
                conv = nn.Conv2d(
                    m.in_channels * kt,
                    m.out_channels,
                    tuple(m.kernel_size[1:]),
                    tuple(m.stride[1:]),
                    tuple(m.padding[1:]),
                )
                # [out, c, t, kh, kw] -> [out, t, c, kh, kw] -> [out, t*3+c, kh, kw]
                conv.weight.data.copy_(w.permute(0, 2, 1, 3, 4).reshape(w.shape[0], -1, *w.shape[3:]))
                conv.bias.data.copy_(m.bias.detach())
                layers.append(conv)
            elif isinstance(m, nn.BatchNorm3d):
                bn = nn.BatchNorm2d(m.num_features, eps=m.eps)
                bn.load_state_dict(m.state_dict())
                layers.append(bn)
            elif isinstance(m, nn.MaxPool3d):
                pad = m.padding[1:] if isinstance(m.padding, tuple) else m.padding
                layers.append(nn.MaxPool2d(tuple(m.kernel_size[1:]), tuple(m.stride[1:]), pad))
            else:
                layers.append(m)
        self.cnn = nn.Sequential(*layers)
        self.fc = net.netfclip
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.cnn(x).flatten(1))


def _batches(n: int, batch_size: int) -> Iterator[tuple[int, int]]:
    for i in range(0, n, batch_size):
        yield i, min(n, i + batch_size)


@torch.inference_mode()
def embed_video(
    net: SyncNetS | LipNet2D,
    frames_bgr: np.ndarray,
    n_windows: int,
    batch_size: int = 32,
    device: str = "cpu",
) -> np.ndarray:
    """Video embeddings of windows ``frames[i:i+5]`` for ``i < n_windows``.

    Args:
        frames_bgr: ``uint8[T,224,224,3]`` BGR (0-255, not normalised, as SyncNetInstance feeds them).
        n_windows: number of windows N (``T >= N + 4``).
    Returns: ``float32[N,1024]``.
    """
    lip = net if isinstance(net, LipNet2D) else LipNet2D(net)
    lip = lip.to(device, memory_format=torch.channels_last)  # faster convolutions, same maths
    t, h, w, _ = frames_bgr.shape
    if n_windows <= 0:
        return np.zeros((0, 1024), np.float32)
    if t < n_windows + WINDOW_FRAMES - 1:
        raise ValueError(f"{t} frames cannot make {n_windows} windows of {WINDOW_FRAMES}")
    out = []
    for i, j in _batches(n_windows, batch_size):
        chunk = torch.from_numpy(np.ascontiguousarray(frames_bgr[i : j + WINDOW_FRAMES - 1])).to(device)
        chunk = chunk.permute(0, 3, 1, 2).float().contiguous()  # [j-i+4, 3, H, W]
        hw = h * w
        windows = chunk.as_strided((j - i, 3 * WINDOW_FRAMES, h, w), (3 * hw, hw, w, 1))
        windows = windows.contiguous(memory_format=torch.channels_last)
        out.append(lip(windows).float().cpu())
    return torch.cat(out).numpy()


@torch.inference_mode()
def embed_audio(
    net: SyncNetS, mfcc: np.ndarray, n_windows: int, batch_size: int = 256, device: str = "cpu"
) -> np.ndarray:
    """Audio embeddings of MFCC windows ``mfcc[:, 4i : 4i+20]`` for ``i < n_windows``.

    Args:
        mfcc: ``float32[13, M]`` (python_speech_features.mfcc, transposed), 100 frames per second.
    Returns: ``float32[N,1024]``.
    """
    if n_windows <= 0:
        return np.zeros((0, 1024), np.float32)
    m = torch.from_numpy(np.ascontiguousarray(mfcc, dtype=np.float32))
    starts = np.arange(n_windows) * MFCC_PER_FRAME
    if starts[-1] + MFCC_WINDOW > m.shape[1]:
        raise ValueError(f"{m.shape[1]} MFCC frames cannot make {n_windows} windows")
    windows = m.unfold(1, MFCC_WINDOW, MFCC_PER_FRAME)[:, :n_windows]  # [13, N, 20]
    windows = windows.permute(1, 0, 2).unsqueeze(1).contiguous()  # [N, 1, 13, 20]
    net = net.to(device)
    out = [net.forward_aud(windows[i:j].to(device)).float().cpu() for i, j in _batches(n_windows, batch_size)]
    return torch.cat(out).numpy()
