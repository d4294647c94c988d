"""dlib's MMOD CNN face detector (``mmod_human_face_detector.dat``) in PyTorch, no dlib at run time.

Reproduces ``dlib.cnn_face_detection_model_v1(path)(img, upsample_num_times)`` step by step (dlib sources:
``tools/python/src/cnn_face_detector.cpp``, ``dlib/image_transforms/{interpolation,image_pyramid}.h``,
``dlib/dnn/{input,layers,loss}.h``, ``dlib/cuda/cpu_dlib.cpp``):

1. ``pyramid_up`` ``upsample_num_times`` times on the uint8 RGB frame: output size from
   ``pyramid_down<2>::rect_up`` (H x W -> 2H+1 x 2W+2), bilinear ``resize_image`` with aligned corners as dlib's
   SSE code computes it (float32 weights, column positions accumulated in float32, the last columns in double,
   results truncated to uint8);
2. the tiled pyramid of ``input_rgb_image_pyramid<pyramid_down<6>>``: level sizes ``floor(5/6 * n)`` down to
   5 rows, packed by ``compute_tiled_image_pyramid_details`` (padding and outer padding from the file) on a
   zero canvas; level 0 = ``(pixel - mean) / 256`` (float32, means from the file); each further level a
   bilinear resize of the previous one (``tt::resize_bilinear`` = ``resize_image`` on float planes, emulated
   to the float32 operation);
3. the network read from the file (:mod:`metrics.mmod_format`): convolutions, each ``bn_con`` as the
   per-channel affine dlib folds it into at load time (here folded further into the convolution's weights and
   bias), ReLUs;
4. ``loss_mmod_::to_label``: every output cell with score > 0 mapped back through the layers
   (``x * stride - pad + k // 2``), the detector window centred there, mapped to image coordinates through
   the pyramid level nearest to its centre (``tiled_pyramid_to_image``: ``p * 6/5 + 0.3`` per level) and
   rounded with ``lround``; sorted by score (descending); greedy NMS with the file's ``test_box_overlap``
   thresholds on those integer boxes; then ``rect_down`` once per upsampling (``p / 2 - (1.25, 0.75)``) and
   ``lround`` again. Box arithmetic is float64, as dlib's.

Detections are ``(left, top, right, bottom, confidence)`` tuples (dlib's inclusive corners), as
:mod:`metrics.dlib_faces` returns them. Frames of one size are batched; runs on CPU and CUDA (fp32 convolutions
in IEEE mode there, see :mod:`kdbench.numerics`). Confidences match dlib's to ~1e-6 (summation order of
the convolutions); boxes are identical except where two scores tie within that noise.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from .mmod_format import MmodNet, read_mmod
from .mmod_geometry import (  # noqa: F401 (re-exported: the detector's geometry)
    MIN_LEVEL_ROWS,
    PYRAMID_N,
    axis_plan,
    box_overlaps,
    lround,
    nearest_rect,
    pyramid_up_size,
    tiled_pyramid_rects,
)

Detection = tuple[int, int, int, int, float]
MIN_CONV_FILTERS = 16  # convolutions with fewer filters are zero-padded to this many (speed only, same sums)


class _Plan:
    """Gather indices and weights of one ``resize_image(in[Hi,Wi] -> out[Ho,Wo])`` on a device.

    The four corner samples are gathered with flat indices into each ``Hi*Wi`` plane (one ``index_select``
    per corner, much faster on CPU than gathering rows then columns).
    """

    def __init__(self, hin: int, win: int, hout: int, wout: int, device: torch.device):
        top, bottom, tb = axis_plan(hin, hout, False)
        left, right, lr32, lr64, self.n_simd = axis_plan(win, wout, True)
        self.shape = (hout, wout)

        def t(a):
            return torch.from_numpy(np.ascontiguousarray(a)).to(device)

        def flat(rows, cols):
            return t((rows[:, None] * win + cols[None, :]).reshape(-1))

        ns = self.n_simd
        self.simd_idx = [flat(top, left[:ns]), flat(top, right[:ns]), flat(bottom, left[:ns]), flat(bottom, right[:ns])]
        self.tail_idx = [flat(top, left[ns:]), flat(top, right[ns:]), flat(bottom, left[ns:]), flat(bottom, right[ns:])]
        tb32 = tb.astype(np.float32)[:, None]
        inv_tb32 = (1.0 - tb).astype(np.float32)[:, None]
        lr = lr32[None, :ns]
        inv_lr = (np.float32(1) - lr).astype(np.float32)
        # the SSE loop's four float32 weights, each a float32 product
        self.w = [t(inv_tb32 * inv_lr), t(inv_tb32 * lr), t(tb32 * inv_lr), t(tb32 * lr)]
        # the scalar tail: gray uses float32 fractions inside, rgb doubles throughout
        self.tail_lr32 = t(lr32[None, ns:])
        self.tail_lr64 = t(lr64[None, ns:])
        self.tb64 = t(tb[:, None])


@lru_cache(maxsize=64)
def _plan(hin: int, win: int, hout: int, wout: int, device: str) -> _Plan:
    return _Plan(hin, win, hout, wout, torch.device(device))


def _gather(planes: torch.Tensor, idx: list[torch.Tensor], rows: int) -> list[torch.Tensor]:
    """The four corners ``[P,rows,n]`` of ``planes: [P,Hi*Wi]`` at the flat indices ``idx``."""
    return [planes.index_select(1, i).view(planes.shape[0], rows, -1) for i in idx]


def _simd_part(planes32: torch.Tensor, p: _Plan) -> torch.Tensor:
    tl, tr, bl, br = _gather(planes32, p.simd_idx, p.shape[0])
    w = p.w
    # ((tlf*tl + trf*tr) + blf*bl) + brf*br, each operation rounded to float32 as in SSE (no FMA)
    out = tl.mul_(w[0])
    out.add_(tr.mul_(w[1]))
    out.add_(bl.mul_(w[2]))
    return out.add_(br.mul_(w[3]))


def _planes(img: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    lead = tuple(img.shape[:-2])
    return img.reshape(-1, img.shape[-2] * img.shape[-1]), lead


def resize_float(img: torch.Tensor, hout: int, wout: int) -> torch.Tensor:
    """dlib ``resize_image`` of float32 planes ``[...,Hi,Wi]`` -> ``[...,Hout,Wout]``.

    (``tt::resize_bilinear`` on CPU, which builds the pyramid levels, is this function per plane.)
    """
    p = _plan(img.shape[-2], img.shape[-1], hout, wout, str(img.device))
    planes, lead = _planes(img)
    parts = [_simd_part(planes, p)] if p.n_simd else []
    if p.n_simd < wout:
        tl, tr, bl, br = _gather(planes, p.tail_idx, hout)
        lr = p.tail_lr32
        top = (1 - lr) * tl + lr * tr  # float32
        bot = (1 - lr) * bl + lr * br
        parts.append(((1 - p.tb64) * top.double() + p.tb64 * bot.double()).float())
    out = torch.cat(parts, -1) if len(parts) > 1 else parts[0]
    return out.view(*lead, hout, wout)


def resize_rgb_u8(img: torch.Tensor, hout: int, wout: int) -> torch.Tensor:
    """dlib ``resize_image`` of ``uint8[...,Hi,Wi]`` planes (the rgb_pixel SSE specialisation, truncating)."""
    p = _plan(img.shape[-2], img.shape[-1], hout, wout, str(img.device))
    planes, lead = _planes(img)
    parts = [_simd_part(planes.float(), p).to(torch.int32)] if p.n_simd else []  # cvttps: truncation
    if p.n_simd < wout:
        tl, tr, bl, br = (c.double() for c in _gather(planes, p.tail_idx, hout))
        lr = p.tail_lr64
        v = (1 - p.tb64) * ((1 - lr) * tl + lr * tr) + p.tb64 * ((1 - lr) * bl + lr * br)
        parts.append(v.to(torch.int32))
    out = torch.cat(parts, -1) if len(parts) > 1 else parts[0]
    return out.to(torch.uint8).view(*lead, hout, wout)


def pyramid_up(img: torch.Tensor) -> torch.Tensor:
    """dlib ``pyramid_up(img)`` (``pyramid_down<2>``) of ``uint8[B,3,H,W]`` -> ``uint8[B,3,2H+1,2W+2]``."""
    ho, wo = pyramid_up_size(img.shape[-2], img.shape[-1])
    return resize_rgb_u8(img, ho, wo)


# ------------------------------------------------------------------------------------------------
# The detector
# ------------------------------------------------------------------------------------------------
def _folded(layer) -> tuple[np.ndarray, np.ndarray]:
    """A layer's convolution with its ``bn_con`` affine ``y * g + b`` folded in: ``w * g``, ``bias * g + b``.

    Products in float64, rounded once to float32: the scores move by ~1e-7 (the convolutions' own summation order
    moves them by ~1e-6 against dlib), and the network saves one pass over every activation.
    """
    weight, bias = np.asarray(layer.weight, np.float64), np.asarray(layer.bias, np.float64)
    if layer.scale is not None:
        g, b = np.asarray(layer.scale, np.float64), np.asarray(layer.shift, np.float64)
        weight, bias = weight * g[:, None, None, None], bias * g + b
    return weight.astype(np.float32), bias.astype(np.float32)


class RowSplitConv(nn.Module):
    """A stride-1 convolution with ONE ``kh x kw`` filter as ``kh`` filters of ``1 x kw`` (one per kernel row),
    whose outputs are summed shifted by their row, plus the bias: the same products, summed row by row.

    The detector's last layer (one 9x9 filter over 45 channels) is ~6x faster this way on CPU than as a padded
    16-filter convolution: oneDNN runs few-filter convolutions poorly, and this does 1/16 of the padded work.
    ``weight: float32[1,C,kh,kw]``, ``bias: float32[1]``, ``padding: (ph, pw)``.
    """

    def __init__(self, weight: np.ndarray, bias: np.ndarray, padding: tuple[int, int]):
        super().__init__()
        _, c, kh, kw = weight.shape
        width = max(kh, MIN_CONV_FILTERS)
        rows = np.zeros((width, c, 1, kw), np.float32)
        rows[:kh, :, 0, :] = weight[0].transpose(1, 0, 2)  # filter dy = kernel row dy
        self.register_buffer("rows", torch.from_numpy(rows).contiguous(memory_format=torch.channels_last))
        self.register_buffer("bias", torch.from_numpy(np.asarray(bias, np.float32).reshape(1)))
        self.kh, self.padding = kh, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: float32[B,C,H,W]`` -> ``float32[B,1,H + 2ph - kh + 1, W + 2pw - kw + 1]``."""
        ph, pw = self.padding
        y = torch.nn.functional.conv2d(x, self.rows, padding=(0, pw))[:, :self.kh]
        y = torch.nn.functional.pad(y, (0, 0, ph, ph))  # rows outside the input contribute zeros
        h_out = y.shape[2] - self.kh + 1
        out = self.bias.view(1, 1, 1).expand(y.shape[0], h_out, y.shape[3]).clone()
        for dy in range(self.kh):
            out += y[:, dy, dy:dy + h_out]
        return out.unsqueeze(1)


class MmodDetector(nn.Module):
    """The MMOD network of an ``MmodNet`` (as read from the .dat file) with dlib's pre- and post-processing.

    ``detect(frames, upsample)`` is the drop-in for ``cnn_face_detection_model_v1(path)(frame, upsample)``.
    """

    def __init__(self, net: MmodNet):
        super().__init__()
        self.spec = net
        self.convs = nn.ModuleList()
        self._relu: list[bool] = []
        self._n_out: list[int] = []
        for layer in net.layers:
            weight, bias = _folded(layer)
            n_out = weight.shape[0]
            if n_out == 1 and tuple(layer.stride) == (1, 1):
                conv: nn.Module = RowSplitConv(weight, bias, tuple(layer.padding))
            else:
                # oneDNN is slow on convolutions with few filters: pad with zero filters, sliced off in forward()
                width = max(n_out, MIN_CONV_FILTERS)
                conv = nn.Conv2d(weight.shape[1], width, layer.kernel, stride=layer.stride, padding=layer.padding)
                w_pad, b_pad = np.zeros((width, *weight.shape[1:]), np.float32), np.zeros(width, np.float32)
                w_pad[:n_out], b_pad[:n_out] = weight, bias
                conv.weight.data, conv.bias.data = torch.from_numpy(w_pad), torch.from_numpy(b_pad)
                conv = conv.to(memory_format=torch.channels_last)
            self.convs.append(conv)
            self._n_out.append(n_out)
            self._relu.append(layer.relu)
        self.register_buffer("means", torch.from_numpy(net.means.astype(np.float32).reshape(1, 3, 1, 1)))
        self.eval()

    # -------------------------------------------------------------------------------- network
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores ``float32[B,windows,h,w]`` of the tiled pyramid tensor ``x: float32[B,3,H,W]``.

        Channels-last layout (~1.5x faster convolutions on CPU); ReLU in place.
        """
        x = x.contiguous(memory_format=torch.channels_last)
        for conv, n_out, relu in zip(self.convs, self._n_out, self._relu, strict=True):
            x = conv(x)
            if x.shape[1] != n_out:
                x = x[:, :n_out]
            if relu:
                x.relu_()
        return x.contiguous()

    # -------------------------------------------------------------------------------- input
    def pyramid_rects(self, h: int, w: int) -> tuple[list[tuple[int, int, int, int]], int, int]:
        """Level rectangles and canvas size of the tiled pyramid for an (upsampled) ``h x w`` image."""
        return tiled_pyramid_rects(h, w, self.spec.pyramid_padding, self.spec.pyramid_outer_padding)

    def to_tensor(self, img: torch.Tensor) -> tuple[torch.Tensor, list[tuple[int, int, int, int]]]:
        """``input_rgb_image_pyramid::to_tensor``: ``uint8[B,3,h,w]`` -> ``float32[B,3,H,W]`` tiled pyramid."""
        b, _, h, w = img.shape
        rects, nr, nc = self.pyramid_rects(h, w)
        canvas = torch.empty(b, 3, nr, nc, dtype=torch.float32, device=img.device,
                             memory_format=torch.channels_last).zero_()  # the convolutions' layout
        level = (img.float() - self.means) / 256.0
        for i, (l, t, r, bt) in enumerate(rects):
            if i:
                level = resize_float(level, bt - t + 1, r - l + 1)
            canvas[:, :, t:bt + 1, l:r + 1] = level
        return canvas, rects

    def _to_tensor_cpu(self, frames: np.ndarray, upsample: int) -> tuple[torch.Tensor, list[tuple[int, int, int, int]]]:
        """``pyramid_up`` x ``upsample`` + :meth:`to_tensor` of ``frames: uint8[B,H,W,3]`` with the compiled CPU
        kernels of :mod:`metrics.mmod_cpu` (the same bits, ~6x less time than the torch gathers)."""
        h, w = frames.shape[1:3]
        for _ in range(upsample):
            h, w = pyramid_up_size(h, w)
        rects, nr, nc = self.pyramid_rects(h, w)
        if not rects:
            return torch.empty(0), rects
        canvas = _cpu_kernels().pyramid_canvas(frames, upsample, rects, nr, nc, self.means.numpy())
        return torch.from_numpy(canvas).permute(0, 3, 1, 2), rects  # channels-last, no copy

    # -------------------------------------------------------------------------------- output
    def _output_to_input(self, c: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x, y = c.astype(np.float64), r.astype(np.float64)
        for layer in reversed(self.spec.layers):  # con_::map_output_to_input, output layer first
            kh, kw = layer.kernel
            x = x * layer.stride[1] - layer.padding[1] + kw // 2
            y = y * layer.stride[0] - layer.padding[0] + kh // 2
        return x, y

    def decode(self, scores: np.ndarray, rects: list[tuple[int, int, int, int]],
               upsample: int) -> list[Detection]:
        """``loss_mmod_::to_label`` + the binding's ``rect_down`` for one sample's ``scores: float32[K,h,w]``."""
        spec = self.spec
        ks, rs, cs = np.nonzero(scores > 0)
        if len(ks) == 0:
            return []
        conf = scores[ks, rs, cs].astype(np.float64)
        px, py = self._output_to_input(cs, rs)
        win = np.array(spec.windows, dtype=np.float64)[ks]
        hw, hh = (win[:, 0] - 1) / 2, (win[:, 1] - 1) / 2
        box = np.stack([px - hw, py - hh, px + hw, py + hh], 1)  # centered_drect
        rect_arr = np.array(rects, dtype=np.int64)
        cx, cy = (box[:, 0] + box[:, 2]) / 2.0, (box[:, 1] + box[:, 3]) / 2.0  # dcenter
        lvl = nearest_rect(rect_arr, np.floor(cx + 0.5).astype(np.int64), np.floor(cy + 0.5).astype(np.int64))
        origin = rect_arr[lvl][:, :2].astype(np.float64)
        box = box - np.concatenate([origin, origin], 1)
        ratio = PYRAMID_N / (PYRAMID_N - 1.0)
        for k in range(int(lvl.max()) + 1):  # pyramid_down<6>::point_up, once per level
            m = lvl > k
            box[m] = box[m] * ratio + 0.3
        ibox = lround(box)
        order = np.argsort(-conf, kind="stable")  # std::sort descending (ties: dlib's order is unspecified)
        kept: list[int] = []
        for j in order:
            if not box_overlaps(ibox[kept], ibox[j], spec.nms_iou, spec.nms_covered):
                kept.append(int(j))
        out = ibox[kept].astype(np.float64)
        for _ in range(upsample):  # pyramid_down<2>::rect_down
            out = out / 2.0 - np.array([1.25, 0.75, 1.25, 0.75])
        out = lround(out)
        return [(int(a), int(b), int(c), int(d), float(conf[j])) for (a, b, c, d), j in zip(out, kept, strict=True)]

    # -------------------------------------------------------------------------------- API
    @torch.no_grad()
    def detect_batch(self, frames: np.ndarray | torch.Tensor, upsample: int = 1) -> list[list[Detection]]:
        """Detections of ``frames: uint8[B,H,W,3]`` RGB (one size), one list per frame, as dlib's detector."""
        dev = next(self.parameters()).device
        x = torch.as_tensor(np.ascontiguousarray(frames) if isinstance(frames, np.ndarray) else frames)
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"expected uint8 frames [B,H,W,3] RGB, got {tuple(x.shape)} {x.dtype}")
        if dev.type == "cpu" and _cpu_kernels() is not None:
            tensor, rects = self._to_tensor_cpu(x.cpu().numpy(), upsample)
        else:
            img = x.to(dev).permute(0, 3, 1, 2).contiguous()
            for _ in range(upsample):
                img = pyramid_up(img)
            tensor, rects = self.to_tensor(img)
        if not rects:
            return [[] for _ in range(len(x))]
        scores = self(tensor).float().cpu().numpy()
        return [self.decode(s, rects, upsample) for s in scores]

    def detect(self, frames: Sequence[np.ndarray], upsample: int = 1, batch_size: int = 4) -> list[list[Detection]]:
        """Detections for every frame (``uint8[H,W,3]`` RGB each); frames of equal size run in batches."""
        out: list[list[Detection] | None] = [None] * len(frames)
        by_shape: dict[tuple, list[int]] = {}
        for i, f in enumerate(frames):
            by_shape.setdefault(tuple(np.shape(f)), []).append(i)
        for idx in by_shape.values():
            for s in range(0, len(idx), max(1, batch_size)):
                chunk = idx[s:s + max(1, batch_size)]
                for i, d in zip(chunk, self.detect_batch(np.stack([frames[i] for i in chunk]), upsample),
                                strict=True):
                    out[i] = d
        return out  # type: ignore[return-value]


@lru_cache(maxsize=1)
def _cpu_kernels():
    """:mod:`metrics.mmod_cpu` when Numba is installed (it comes with librosa), else None: the torch path."""
    try:
        from . import mmod_cpu
    except ImportError:
        return None
    return mmod_cpu


@lru_cache(maxsize=4)
def _load_cpu(path: str) -> MmodDetector:
    return MmodDetector(read_mmod(path))


def load_mmod(path: str | os.PathLike, device: str = "cpu") -> MmodDetector:
    """The detector of ``mmod_human_face_detector.dat`` on ``device`` (parsed once per path)."""
    det = _load_cpu(os.fspath(path))
    return det if str(device) == "cpu" else MmodDetector(det.spec).to(device)
