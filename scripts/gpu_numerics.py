"""Do the metric networks give their CPU numbers on a GPU? Run on a machine with CUDA.

    KDBENCH_ALLOW_UNVERIFIED=1 python scripts/gpu_numerics.py [--frames 200]

Same real hdtf-mini frames, same random weights in the official formats, three ways: CPU, GPU as kdbench runs
metrics (IEEE fp32, ``kdbench.numerics``), and GPU with PyTorch's default TF32 convolutions. Prints the largest
differences from the CPU for LSE (whole pipeline: S3FD, tracking, crops, SyncNet), the FID Inception pool3 features
and Hopenet's logits; and whether KDTalker's seeded GPU noise is the official code's draw after ``manual_seed``. The
CPU equivalence tests prove the CPU numbers equal the reference tools'.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@contextlib.contextmanager
def tf32():
    """PyTorch's default on Ampere and later: cuDNN convolutions may use TF32."""
    import torch

    conv = torch.backends.cudnn.conv
    saved = conv.fp32_precision
    conv.fp32_precision = "tf32"
    try:
        yield
    finally:
        conv.fp32_precision = saved


def lse_rows(frames, audio, tmp: Path, gpu: str) -> list[tuple[str, str, float, float]]:
    from kdbench.weights import WeightsManager
    from metrics.lse import LSEMetric
    from tests import lse_fixtures as fx

    weights = WeightsManager(
        home=tmp,
        overrides={
            "syncnet_v2": fx.save_state(fx.random_syncnet_state(0), tmp / "syncnet_v2.model"),
            "sfd_face": fx.save_state(fx.random_s3fd_state(0), tmp / "sfd_face.pth"),
        },
    )

    def score(device: str, raw: bool = False) -> dict:
        metric = LSEMetric(device=device, weights=weights)
        clip = fx.make_clip(frames, audio)
        if raw:  # bypass the IEEE wrapper of Metric.score_clip
            with tf32():
                return LSEMetric.score_clip.__wrapped__(metric, clip)
        return metric.score_clip(clip)

    cpu, on_gpu, gpu_tf32 = score("cpu"), score(gpu), score(gpu, raw=True)
    rows = []
    for name, rec in (("GPU, IEEE fp32 (kdbench)", on_gpu), ("GPU, TF32 (PyTorch default)", gpu_tf32)):
        for key in ("lse_c", "lse_d", "av_offset"):
            rows.append((f"LSE {key}", name, float(rec[key]), abs(float(rec[key]) - float(cpu[key]))))
    print(f"CPU LSE: {cpu['lse_c']!r} / {cpu['lse_d']!r} / {cpu['av_offset']}")
    return rows


def feature_rows(frames, gpu: str) -> list[tuple[str, str, float, float]]:
    import numpy as np
    import torch

    from kdbench.numerics import ieee_fp32
    from metrics.fid_inception import build_fid_inception, inception_activations
    from metrics.hopenet_net import Hopenet, hopenet_logits, preprocess_crop
    from tests.test_fid import random_fid_state_dict

    rows = []
    state = random_fid_state_dict(0)
    models = {d: build_fid_inception(state).to(d).eval() for d in ("cpu", gpu)}
    ref = inception_activations(frames, models["cpu"], "cpu")
    for name, ctx in (("GPU, IEEE fp32 (kdbench)", ieee_fp32), ("GPU, TF32 (PyTorch default)", tf32)):
        with ctx():
            act = inception_activations(frames, models[gpu], gpu)
        rows.append(("FID pool3 features", name, float(np.abs(ref).max()), float(np.abs(act - ref).max())))

    torch.manual_seed(0)
    net = Hopenet().eval()
    h, w = frames.shape[1:3]
    crops = torch.stack([preprocess_crop(f, (w // 4, h // 8, 3 * w // 4, 5 * h // 8)) for f in frames])
    ref = hopenet_logits(net, crops)
    net = net.to(gpu)
    for name, ctx in (("GPU, IEEE fp32 (kdbench)", ieee_fp32), ("GPU, TF32 (PyTorch default)", tf32)):
        with ctx():
            logits = hopenet_logits(net, crops)
        rows.append(("Hopenet logits", name, float(np.abs(ref).max()), float(np.abs(logits - ref).max())))
    return rows


def noise_rows(gpu: str) -> list[tuple[str, str, float, float]]:
    """KDTalker's seeded initial noise on the GPU vs the official draw: ``torch.manual_seed(S)`` then
    ``torch.randn(1, 64, 70, 3, device=cuda)[..., 0]`` window after window (diff 0 means the same stream)."""
    import torch

    from baselines.kdtalker.pipeline import initial_noise

    torch.manual_seed(7)
    official = [torch.randn(1, 64, 70, 3, device=gpu)[..., 0] for _ in range(3)]
    g = torch.Generator(device=gpu).manual_seed(7)
    ours = [initial_noise(g, 64, gpu) for _ in range(3)]
    diff = max(float((a - b).abs().max()) for a, b in zip(official, ours, strict=True))
    return [("KDTalker initial noise", "GPU generator (kdbench)", float(official[0].abs().max()), diff)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=200, help="frames of the real clip for LSE (features: 16)")
    ap.add_argument("--gpu", default="cuda", help="the GPU device (cpu: a dry run of this script)")
    args = ap.parse_args()
    import torch

    from tests import lse_fixtures as fx

    if args.gpu != "cpu" and not torch.cuda.is_available():
        sys.exit("no CUDA device: run this on a GPU machine")
    name = torch.cuda.get_device_name(args.gpu) if args.gpu != "cpu" else "CPU (dry run)"
    print(f"device: {name}, torch {torch.__version__}")
    frames, audio = fx.hdtf_frames_audio(args.frames)
    with tempfile.TemporaryDirectory() as td:
        rows = lse_rows(frames, audio, Path(td), args.gpu) + feature_rows(frames[:16], args.gpu)
        rows += noise_rows(args.gpu)
    print(f"{'what':28s} {'run':30s} {'value / max |x|':>18s} {'max |diff| vs CPU':>18s}")
    for what, run, value, diff in rows:
        print(f"{what:28s} {run:30s} {value:18.10g} {diff:18.3g}")


if __name__ == "__main__":
    main()
