"""IEEE fp32 for metric networks on GPUs: the flags, their restoration, and the Metric base class's wrapping."""

from __future__ import annotations

import torch

from kdbench.metric import Metric, MetricInfo, Output
from kdbench.numerics import PRECISION, ieee_fp32, on_gpu


def _flags() -> tuple[str, str]:
    return torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision


class _Probe(Metric):
    """Records the fp32 precision flags seen while scoring (no GPU needed: the flags are process settings)."""

    info = MetricInfo(name="probe", version="0", description="test probe", outputs={"x": Output(True)})

    def score_clip(self, clip):
        return {"x": 1.0, "flags": _flags()}


class _SubProbe(_Probe):
    def score_clip(self, clip):
        rec = super().score_clip(clip)
        return rec | {"outer": _flags()}


def test_ieee_fp32_sets_and_restores_flags():
    before = _flags()
    assert before[0] == "tf32"  # PyTorch's default lets cuDNN convolutions use TF32: the reason for this module
    with ieee_fp32():
        assert _flags() == (PRECISION, PRECISION) == ("ieee", "ieee")
    assert _flags() == before


def test_flags_restored_after_an_exception():
    before = _flags()
    try:
        with ieee_fp32():
            raise ValueError("boom")
    except ValueError:
        pass
    assert _flags() == before


def test_metric_scores_in_ieee_fp32_on_gpu_devices_only():
    before = _flags()
    assert _Probe(device="cuda").score_clip(None)["flags"] == ("ieee", "ieee")
    assert _Probe(device="cuda:1").score_clip(None)["flags"] == ("ieee", "ieee")
    assert _Probe(device="cpu").score_clip(None)["flags"] == before
    assert _flags() == before


def test_subclass_override_is_wrapped_and_nesting_restores():
    before = _flags()
    rec = _SubProbe(device="cuda").score_clip(None)
    assert rec["flags"] == rec["outer"] == ("ieee", "ieee")
    assert _flags() == before


def test_on_gpu():
    assert on_gpu("cuda") and on_gpu("cuda:0")
    assert not on_gpu("cpu") and not on_gpu("mps")
