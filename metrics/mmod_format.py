"""Reader of dlib's serialization for the MMOD CNN face detector (``mmod_human_face_detector.dat``).

No dlib needed: the file is parsed here following ``dlib/serialize.h`` and the ``serialize``/``deserialize``
functions of ``dlib/dnn/{core,layers,loss,input}.h`` and ``dlib/cuda/tensor.h`` (dlib 19.x/20.x):

- integers: one control byte (low 4 bits = byte count, bit 0x80 = negative) then little-endian bytes;
- floating point: two such integers, mantissa and exponent (``value = mantissa * 2**exponent``);
- strings: length (integer) then bytes; bools: ASCII ``'1'``/``'0'``;
- tensors: version 2, four sizes, then raw little-endian float32; alias tensors: version 1 and four sizes;
- the network: ``add_loss_layer`` (version, loss, subnetwork) whose subnetwork is a chain of ``add_layer``
  records, each holding its subnetwork first (so layers come input-first), the layer's own record, and
  training state (flags, cached tensors) that is read and dropped.

``bn_con`` layers are folded into the per-channel affine transform dlib builds from them at load time
(``affine_(const bn_&)``: ``g = gamma / sqrt(running_var + eps)``, ``b = beta - g * running_mean``, in float32,
with the file's ``eps``).

This module needs only NumPy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class DlibFormatError(ValueError):
    """The file is not a dlib MMOD network this reader understands."""


class _Reader:
    def __init__(self, data: bytes):
        self.b = data
        self.i = 0

    def _take(self, n: int) -> bytes:
        if self.i + n > len(self.b):
            raise DlibFormatError(f"unexpected end of file at byte {self.i} (wanted {n} more)")
        out = self.b[self.i:self.i + n]
        self.i += n
        return out

    def int(self) -> int:
        ctrl = self._take(1)[0]
        n = ctrl & 0x0F
        if n == 0 or n > 8:
            raise DlibFormatError(f"bad integer control byte 0x{ctrl:02x} at byte {self.i - 1}")
        v = int.from_bytes(self._take(n), "little")
        return -v if ctrl & 0x80 else v

    def peek_int(self) -> int:
        i = self.i
        try:
            return self.int()
        finally:
            self.i = i

    def float(self) -> float:
        if self.b[self.i] & 0x70:
            raise DlibFormatError(f"old ASCII float encoding at byte {self.i} is not supported")
        mantissa, exponent = self.int(), self.int()
        if exponent == 32000:
            return float("inf")
        if exponent == 32001:
            return float("-inf")
        if exponent == 32002:
            return float("nan")
        return float(np.ldexp(np.float64(mantissa), exponent))

    def str(self) -> str:
        n = self.int()
        return self._take(n).decode("latin-1")

    def bool(self) -> bool:
        ch = self._take(1)
        if ch not in (b"0", b"1"):
            raise DlibFormatError(f"bad bool byte {ch!r} at byte {self.i - 1}")
        return ch == b"1"

    def tensor(self) -> np.ndarray:
        version = self.int()
        if version != 2:
            raise DlibFormatError(f"tensor version {version} at byte {self.i} (expected 2)")
        shape = tuple(self.int() for _ in range(4))
        n = int(np.prod(shape))
        return np.frombuffer(self._take(4 * n), dtype="<f4").astype(np.float32).reshape(shape)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        version = self.int()
        if version != 1:
            raise DlibFormatError(f"alias_tensor version {version} (expected 1)")
        return tuple(self.int() for _ in range(4))  # type: ignore[return-value]


@dataclass
class ConvLayer:
    """One ``con_`` layer (+ the affine and ReLU that follow it in the network, if any).

    ``weight: float32[O,I,kh,kw]``, ``bias: float32[O]``; ``scale``/``shift``: ``float32[O]`` of the folded
    ``bn_con`` (None when no affine follows); ``relu``: a ReLU follows (or is fused in the conv).
    """

    weight: np.ndarray
    bias: np.ndarray
    stride: tuple[int, int]
    padding: tuple[int, int]
    scale: np.ndarray | None = None
    shift: np.ndarray | None = None
    relu: bool = False
    bn_eps: float | None = None

    @property
    def kernel(self) -> tuple[int, int]:
        return int(self.weight.shape[2]), int(self.weight.shape[3])


@dataclass
class MmodNet:
    """Everything of ``mmod_human_face_detector.dat`` the detector needs, read from the file.

    ``layers``: convolutions input-first; ``means``: float32 R, G, B subtracted before dividing by 256;
    ``windows``: detector window (width, height) per output channel; NMS thresholds of ``overlaps_nms``.
    """

    layers: list[ConvLayer]
    means: np.ndarray
    pyramid_padding: int
    pyramid_outer_padding: int
    windows: list[tuple[int, int]]
    nms_iou: float
    nms_covered: float
    use_bbr: bool
    input_layer: str
    layer_names: list[str] = field(default_factory=list)


def _read_mmod_options(r: _Reader) -> dict:
    version = r.int()
    if not 1 <= version <= 4:
        raise DlibFormatError(f"mmod_options version {version}")
    if version == 1:
        windows = [(r.int(), r.int())]
    else:
        windows = []
        for _ in range(r.int()):
            v = r.int()
            if v not in (1, 2):
                raise DlibFormatError(f"detector_window_details version {v}")
            w, h = r.int(), r.int()
            if v == 2:
                r.str()
            windows.append((w, h))
    r.float()  # loss_per_false_alarm
    r.float()  # loss_per_missed_target
    r.float()  # truth_match_iou_threshold
    nms_iou, nms_covered = r.float(), r.float()
    r.float(), r.float()  # overlaps_ignore
    use_bbr = False
    if version >= 3:
        r._take(1)  # assume_image_pyramid (uint8)
    if version >= 4:
        use_bbr = r.bool()
        r.float()  # bbr_lambda
    return dict(windows=windows, nms_iou=nms_iou, nms_covered=nms_covered, use_bbr=use_bbr)


def _read_con(r: _Reader, version: str) -> ConvLayer:
    if version not in ("con_4", "con_5", "con_6"):
        raise DlibFormatError(f"unsupported convolution record {version!r}")
    params = r.tensor().reshape(-1)
    num_filters, nr, nc = r.int(), r.int(), r.int()
    stride_y, stride_x, pad_y, pad_x = r.int(), r.int(), r.int(), r.int()
    fshape = r.alias_tensor()
    bshape = r.alias_tensor()
    for _ in range(4):
        r.float()  # learning-rate / weight-decay multipliers
    use_bias = r.bool() if version in ("con_5", "con_6") else True
    use_relu = r.bool() if version == "con_6" else False
    nf = int(np.prod(fshape))
    weight = params[:nf].reshape(fshape)
    if weight.shape[0] != num_filters or weight.shape[2:] != (nr, nc):
        raise DlibFormatError(f"filter shape {fshape} does not match {num_filters}x{nr}x{nc}")
    bias = params[nf:nf + int(np.prod(bshape))].reshape(-1) if use_bias else np.zeros(num_filters, np.float32)
    return ConvLayer(weight=weight.copy(), bias=bias.astype(np.float32).copy(), stride=(stride_y, stride_x),
                     padding=(pad_y, pad_x), relu=use_relu)


def _read_bn_as_affine(r: _Reader) -> tuple[np.ndarray, np.ndarray, float]:
    params = r.tensor().reshape(-1)
    gshape, bshape = r.alias_tensor(), r.alias_tensor()
    r.tensor()  # means (batch statistics of the last training step)
    r.tensor()  # invstds
    running_means = r.tensor().reshape(-1)
    running_vars = r.tensor().reshape(-1)
    r.int()  # num_updates
    r.int()  # running_stats_window_size
    for _ in range(4):
        r.float()
    eps = r.float()
    k = int(np.prod(gshape))
    gamma, beta = params[:k], params[k:k + int(np.prod(bshape))]
    # affine_(const bn_&): float32 matrix arithmetic (the double eps is converted to float first)
    g = gamma / np.sqrt(running_vars + np.float32(eps))
    b = beta - g * running_means
    return g.astype(np.float32), b.astype(np.float32), eps


def _read_affine(r: _Reader, version: str) -> tuple[np.ndarray, np.ndarray]:
    params = r.tensor().reshape(-1)
    gshape, bshape = r.alias_tensor(), r.alias_tensor()
    r.int()  # mode
    if version == "affine_2":
        r.bool()  # disabled
    k = int(np.prod(gshape))
    return params[:k].copy(), params[k:k + int(np.prod(bshape))].copy()


def _read_input(r: _Reader) -> dict:
    name = r.str()
    if name not in ("input_rgb_image_pyramid", "input_rgb_image_pyramid2"):
        raise DlibFormatError(f"unsupported input layer {name!r} (expected input_rgb_image_pyramid)")
    means = np.array([r.float(), r.float(), r.float()], dtype=np.float32)
    pad, outer = (r.int(), r.int()) if name.endswith("2") else (10, 11)
    return dict(input_layer=name, means=means, pyramid_padding=pad, pyramid_outer_padding=outer)


def _read_layers(r: _Reader, out: list, info: dict) -> None:
    """One ``add_layer`` record (recursing into its subnetwork first): appends ``(name, payload)`` input-first."""
    version = r.int()
    # the innermost add_layer holds the input layer (a string starting with "input") before its details
    i = r.i
    nxt = r.peek_int()
    is_input = False
    if nxt >= 5:
        r.int()
        is_input = r.b[r.i:r.i + 5] == b"input"
        r.i = i
    if is_input:
        if version not in (2, 3):
            raise DlibFormatError(f"input add_layer version {version}")
        info.update(_read_input(r))
    else:
        if version not in (1, 2):
            raise DlibFormatError(f"add_layer version {version}")
        _read_layers(r, out, info)
    name = r.str()
    if name.startswith("con_"):
        out.append(("con", _read_con(r, name)))
    elif name == "bn_con2":
        out.append(("affine", _read_bn_as_affine(r)))
    elif name in ("affine_", "affine_2"):
        g, b = _read_affine(r, name)
        out.append(("affine", (g, b, None)))
    elif name in ("relu_", "relu_2"):
        disabled = r.bool() if name == "relu_2" else False
        out.append(("relu", not disabled))
    else:
        raise DlibFormatError(f"unsupported layer {name!r} in the network")
    r.bool(), r.bool(), r.bool()  # this_layer_setup_called, gradient_input_is_stale, ..._disabled
    r.tensor()  # x_grad
    r.tensor()  # cached_output
    if is_input:
        r.tensor()  # grad_final
        if version >= 3:
            r.int()  # _sample_expansion_factor
    elif version == 2:
        r.tensor()  # params_grad


def read_mmod(path: str | os.PathLike) -> MmodNet:
    """Parse ``mmod_human_face_detector.dat`` (or another MMOD net of convs, bn/affine and ReLUs)."""
    r = _Reader(Path(path).read_bytes())
    if r.int() != 1:
        raise DlibFormatError(f"{path}: not a dlib add_loss_layer (version != 1)")
    if r.str() != "loss_mmod_":
        raise DlibFormatError(f"{path}: the loss is not loss_mmod_")
    opts = _read_mmod_options(r)
    if opts["use_bbr"]:
        raise DlibFormatError(f"{path}: bounding-box regression is not supported")
    records: list = []
    info: dict = {}
    _read_layers(r, records, info)
    if r.i != len(r.b):
        raise DlibFormatError(f"{path}: {len(r.b) - r.i} trailing bytes after the network")
    layers: list[ConvLayer] = []
    for kind, payload in records:
        if kind == "con":
            layers.append(payload)
        elif not layers:
            raise DlibFormatError(f"{path}: {kind} layer before the first convolution")
        elif kind == "affine":
            if layers[-1].scale is not None or layers[-1].relu:
                raise DlibFormatError(f"{path}: affine layer in an unsupported position")
            layers[-1].scale, layers[-1].shift, layers[-1].bn_eps = payload
        elif kind == "relu" and payload:
            layers[-1].relu = True
    if len(opts["windows"]) != layers[-1].weight.shape[0]:
        raise DlibFormatError(f"{path}: {len(opts['windows'])} windows for {layers[-1].weight.shape[0]} outputs")
    return MmodNet(layers=layers, windows=opts["windows"], nms_iou=opts["nms_iou"],
                   nms_covered=opts["nms_covered"], use_bbr=False, layer_names=[k for k, _ in records], **info)
