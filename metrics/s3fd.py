"""S3FD face detector as used by syncnet_python's pipeline, batched, in memory.

This module imports torch and cv2; ``metrics.lse`` imports it lazily.

Network: the VGG16-based S3FD of syncnet_python ``detectors/s3fd/nets.py`` (same parameter names, so
``sfd_face.pth`` loads unchanged). Post-processing follows ``box_utils.py`` and ``S3FD.detect_faces``:
softmax scores, priors (min sizes 16..512, steps 4..128), decoding with variances (0.1, 0.2), per-image
greedy NMS at IoU 0.3 (top 5000 candidates, at most 750 kept), keep score > ``conf_th``, boxes scaled to
pixels, then a second greedy NMS at IoU 0.1 (``nms_``).

Two changes that do not change the result:
- images are processed in batches (the reference runs one image at a time);
- the first NMS only looks at boxes with score > ``conf_th``. Greedy NMS keeps a box iff no kept box with a
  higher score overlaps it, so the kept boxes above ``conf_th`` depend only on boxes above ``conf_th``; the
  reference's extra candidates (score > 0.05) never change which of them survive.
The IoU arithmetic is the reference's, in the same dtypes (float32 for the first NMS, float64 for the
second), so borderline overlaps are decided identically.
"""

from __future__ import annotations

import os
from itertools import product

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

#: per-channel means subtracted from RGB input (the reference subtracts (104,117,123) from BGR).
RGB_MEAN = np.array([123.0, 117.0, 104.0], dtype=np.float32)
MIN_SIZES = (16, 32, 64, 128, 256, 512)
STEPS = (4, 8, 16, 32, 64, 128)
VARIANCES = (0.1, 0.2)
DETECT_CONF = 0.05
DETECT_NMS = 0.3
DETECT_NMS_TOP_K = 5000
DETECT_TOP_K = 750
FINAL_NMS = 0.1


class L2Norm(nn.Module):
    """Channel-wise L2 normalisation with a learned scale (eps 1e-10 added to the norm)."""

    def __init__(self, n_channels: int, scale: float):
        super().__init__()
        self.eps = 1e-10
        self.weight = nn.Parameter(torch.full((n_channels,), float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + self.eps
        return self.weight.view(1, -1, 1, 1) * torch.div(x, norm)


def _vgg() -> nn.ModuleList:
    cfg: list[int | str] = [
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        "C",
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        "M",
    ]
    layers: list[nn.Module] = []
    cin = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        elif v == "C":
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
        else:
            layers += [nn.Conv2d(cin, int(v), 3, 1, padding=1), nn.ReLU(inplace=True)]
            cin = int(v)
    layers += [
        nn.Conv2d(512, 1024, 3, 1, padding=6, dilation=6),
        nn.ReLU(inplace=True),
        nn.Conv2d(1024, 1024, 1, 1),
        nn.ReLU(inplace=True),
    ]
    return nn.ModuleList(layers)


class S3FDNet(nn.Module):
    """S3FD network; ``forward`` returns raw ``(loc float32[B,P,4], face_score float32[B,P])``."""

    def __init__(self):
        super().__init__()
        self.vgg = _vgg()
        self.L2Norm3_3 = L2Norm(256, 10)
        self.L2Norm4_3 = L2Norm(512, 8)
        self.L2Norm5_3 = L2Norm(512, 5)
        self.extras = nn.ModuleList(
            [
                nn.Conv2d(1024, 256, 1, 1),
                nn.Conv2d(256, 512, 3, 2, padding=1),
                nn.Conv2d(512, 128, 1, 1),
                nn.Conv2d(128, 256, 3, 2, padding=1),
            ]
        )
        src = (256, 512, 512, 1024, 512, 256)
        self.loc = nn.ModuleList([nn.Conv2d(c, 4, 3, 1, padding=1) for c in src])
        self.conf = nn.ModuleList(
            [nn.Conv2d(c, 4 if i == 0 else 2, 3, 1, padding=1) for i, c in enumerate(src)]
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
        sources = []
        for k in range(16):
            x = self.vgg[k](x)
        sources.append(self.L2Norm3_3(x))
        for k in range(16, 23):
            x = self.vgg[k](x)
        sources.append(self.L2Norm4_3(x))
        for k in range(23, 30):
            x = self.vgg[k](x)
        sources.append(self.L2Norm5_3(x))
        for k in range(30, len(self.vgg)):
            x = self.vgg[k](x)
        sources.append(x)
        for k, v in enumerate(self.extras):
            x = F.relu(v(x), inplace=True)
            if k % 2 == 1:
                sources.append(x)
        locs, confs, fmaps = [], [], []
        for i, s in enumerate(sources):
            c = self.conf[i](s)
            if i == 0:  # max-out background: 3 background channels, 1 face channel
                c = torch.cat((c[:, 0:3].max(dim=1, keepdim=True)[0], c[:, 3:]), dim=1)
            lc = self.loc[i](s)
            fmaps.append((lc.shape[2], lc.shape[3]))
            locs.append(lc.permute(0, 2, 3, 1).reshape(lc.shape[0], -1))
            confs.append(c.permute(0, 2, 3, 1).reshape(c.shape[0], -1))
        b = x.shape[0]
        loc = torch.cat(locs, 1).view(b, -1, 4)
        score = torch.softmax(torch.cat(confs, 1).view(b, -1, 2), dim=-1)[..., 1]
        return loc, score, fmaps


def load_s3fd(path: str | os.PathLike, device: str = "cpu") -> S3FDNet:
    """Load ``sfd_face.pth`` (a state_dict for syncnet_python's ``S3FDNet``) in eval mode."""
    from .checkpoints import load_strict

    return load_strict(S3FDNet(), path, device)


def prior_boxes(image_hw: tuple[int, int], fmaps: list[tuple[int, int]]) -> torch.Tensor:
    """Priors ``float32[P,4]`` (cx, cy, w, h; normalised), computed in float64 then cast like ``PriorBox``."""
    imh, imw = image_hw
    out = []
    for k, (fh, fw) in enumerate(fmaps):
        f_kw = imw / STEPS[k]
        f_kh = imh / STEPS[k]
        s_kw = MIN_SIZES[k] / imw
        s_kh = MIN_SIZES[k] / imh
        for i, j in product(range(fh), range(fw)):
            out.append(((j + 0.5) / f_kw, (i + 0.5) / f_kh, s_kw, s_kh))
    return torch.tensor(out, dtype=torch.float64).float()


def decode_boxes(loc: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """Regression ``float32[...,P,4]`` + priors ``[P,4]`` -> boxes ``float32[...,P,4]`` (x1,y1,x2,y2, normalised).

    Element-wise, so a batch ``[B,P,4]`` gives each image's boxes exactly as ``[P,4]`` does.
    """
    boxes = torch.cat(
        (
            priors[:, :2] + loc[..., :2] * VARIANCES[0] * priors[:, 2:],
            priors[:, 2:] * torch.exp(loc[..., 2:] * VARIANCES[1]),
        ),
        -1,
    )
    boxes[..., :2] -= boxes[..., 2:] / 2
    boxes[..., 2:] += boxes[..., :2]
    return boxes


def greedy_nms_torch(boxes: torch.Tensor, scores: torch.Tensor, overlap: float, top_k: int) -> torch.Tensor:
    """Indices kept by box_utils.nms (descending score, IoU <= overlap survives), float32 arithmetic."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    x1, y1, x2, y2 = boxes.unbind(1)
    area = torch.mul(x2 - x1, y2 - y1)
    _, idx = scores.sort(0)
    idx = idx[-top_k:]
    keep = []
    while idx.numel() > 0:
        i = idx[-1]
        keep.append(int(i))
        if idx.numel() == 1:
            break
        idx = idx[:-1]
        xx1 = torch.clamp(x1[idx], min=x1[i])
        yy1 = torch.clamp(y1[idx], min=y1[i])
        xx2 = torch.clamp(x2[idx], max=x2[i])
        yy2 = torch.clamp(y2[idx], max=y2[i])
        inter = torch.clamp(xx2 - xx1, min=0.0) * torch.clamp(yy2 - yy1, min=0.0)
        union = (area[idx] - inter) + area[i]
        idx = idx[(inter / union).le(overlap)]
    return torch.tensor(keep, dtype=torch.long)


def greedy_nms_np(dets: np.ndarray, thresh: float) -> np.ndarray:
    """Indices kept by box_utils.nms_ on ``float64[K,5]`` (x1,y1,x2,y2,score): IoU <= thresh survives."""
    x1, y1, x2, y2, scores = dets[:, 0], dets[:, 1], dets[:, 2], dets[:, 3], dets[:, 4]
    areas = (x2 - x1) * (y2 - y1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(int(i))
        xx1 = np.maximum(x1[i], x1[order[1:]])
        yy1 = np.maximum(y1[i], y1[order[1:]])
        xx2 = np.minimum(x2[i], x2[order[1:]])
        yy2 = np.minimum(y2[i], y2[order[1:]])
        inter = np.maximum(0.0, xx2 - xx1) * np.maximum(0.0, yy2 - yy1)
        ovr = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[np.where(ovr <= thresh)[0] + 1]
    return np.array(keep, dtype=int)


def postprocess_batch(
    loc: torch.Tensor, score: torch.Tensor, priors: torch.Tensor, image_wh: tuple[int, int], conf_th: float
) -> list[np.ndarray]:
    """Raw outputs ``loc float32[B,P,4]``, ``score float32[B,P]`` (CPU) -> B detections ``float64[K,5]``.

    Boxes are decoded for the whole batch at once; the greedy NMS runs per image on its boxes above the
    threshold (usually a handful), so images without a candidate cost nothing more.
    """
    boxes = decode_boxes(loc, priors)
    candidates = score > max(conf_th, DETECT_CONF)
    w, h = image_wh
    to_pixels = torch.tensor([w, h, w, h], dtype=torch.float32)
    out = []
    for b in range(loc.shape[0]):
        sel = torch.nonzero(candidates[b]).flatten()
        keep = greedy_nms_torch(boxes[b][sel], score[b][sel], DETECT_NMS, DETECT_NMS_TOP_K)[:DETECT_TOP_K]
        if keep.numel() == 0:
            out.append(np.empty((0, 5)))
            continue
        pts = (boxes[b][sel][keep] * to_pixels).numpy()
        dets = np.concatenate([pts.astype(np.float64), score[b][sel][keep].numpy().astype(np.float64)[:, None]], 1)
        out.append(dets[greedy_nms_np(dets, FINAL_NMS)])
    return out


def resize_frames(frames_rgb: np.ndarray, scale: float) -> np.ndarray:
    """``uint8[B,H,W,3]`` -> ``uint8[B,h,w,3]`` scaled by ``scale`` (cv2 bilinear, as ``S3FD.detect_faces``)."""
    import cv2

    return np.stack(
        [cv2.resize(f, dsize=(0, 0), fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR) for f in frames_rgb]
    )


def to_device_input(small: np.ndarray, device: str | torch.device) -> torch.Tensor:
    """``uint8[B,h,w,3]`` -> ``float32[B,3,h,w]`` channels-last on ``device``, mean removed.

    The reference's arithmetic (``img - [104, 117, 123]`` in float32 on the BGR image: an exact uint8 -> float32
    conversion and one float32 subtraction), done on the device so that only the uint8 pixels travel; ``permute``
    of the NHWC tensor is already channels-last.
    """
    x = torch.from_numpy(np.ascontiguousarray(small)).to(device)
    return (x.float() - torch.from_numpy(RGB_MEAN).to(device)).permute(0, 3, 1, 2)


@torch.inference_mode()
def detect_faces(
    net: S3FDNet,
    frames_rgb: np.ndarray,
    scale: float = 0.25,
    conf_th: float = 0.9,
    batch_size: int = 16,
    device: str = "cpu",
) -> list[np.ndarray]:
    """Faces in each frame, as ``S3FD.detect_faces(frame, conf_th, scales=[scale])`` finds them.

    Args:
        frames_rgb: ``uint8[T,H,W,3]`` RGB frames (all the same size).
    Returns: T arrays ``float64[K,5]``: x1, y1, x2, y2 in pixels of the full frame, score.
    """
    t, h, w = frames_rgb.shape[:3]
    net = net.to(device, memory_format=torch.channels_last)  # faster convolutions (oneDNN/cuDNN), same maths
    results: list[np.ndarray] = []
    priors = None
    for i in range(0, t, batch_size):
        x = to_device_input(resize_frames(frames_rgb[i : i + batch_size], scale), device)
        loc, score, fmaps = net(x)
        loc, score = loc.float().cpu(), score.float().cpu()
        if priors is None:
            priors = prior_boxes((x.shape[2], x.shape[3]), fmaps)
        results += postprocess_batch(loc, score, priors, (w, h), conf_th)
    return results
