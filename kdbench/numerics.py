"""IEEE fp32 for metric networks on GPUs.

The reference tools' numbers (and kdbench's equivalence tests, run on CPUs) come from IEEE fp32 convolutions and
matrix products. On Ampere and later GPUs PyTorch lets cuDNN convolutions use TF32 (a 10-bit mantissa) unless told
otherwise; on an H200 that moved LSE-D of the real hdtf-mini clip by 7e-4 against the CPU value. Every metric's
``score_clip`` therefore runs inside :func:`ieee_fp32` when its device is a GPU (see
:class:`kdbench.metric.Metric`). Generation (``kdbench run``) keeps PyTorch's defaults, as the methods' official
code does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

PRECISION = "ieee"
"""What metrics.json records as ``env.metrics_fp32_precision`` for a GPU evaluation."""


@contextlib.contextmanager
def ieee_fp32() -> Iterator[None]:
    """Within the block, fp32 convolutions (cuDNN) and matrix products (cuBLAS) use full IEEE fp32, no TF32.

    The previous settings are restored on exit. Imports torch.
    """
    import torch

    conv = torch.backends.cudnn.conv
    matmul = torch.backends.cuda.matmul
    saved = (conv.fp32_precision, matmul.fp32_precision)
    conv.fp32_precision = PRECISION
    matmul.fp32_precision = PRECISION
    try:
        yield
    finally:
        conv.fp32_precision, matmul.fp32_precision = saved


def on_gpu(device: str) -> bool:
    """True for ``cuda``/``cuda:N`` devices (where TF32 could be used)."""
    return str(device).startswith("cuda")
