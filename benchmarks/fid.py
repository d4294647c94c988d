"""Benchmark: kdbench's in-memory FID vs pytorch-fid's PNG-folder path on the same frames.

Takes N frames of a video (default: the real hdtf-mini clip) as the "GT" set and, as the "generated"
set, the first frame repeated (the ``static`` method) or the following N frames (``--gen shifted``).
kdbench: decoded frames -> Inception on the device -> pooled statistics -> pytorch-fid's distance.
pytorch-fid: the same frames written as PNG -> ``compute_statistics_of_path`` -> distance. Prints
frames/s of both feature paths (PNG writing not counted) and the relative difference of the values.

Weights: the manifest's ``pt_inception`` if present (checksum-verified), else ``--weights PATH``, else
a random-weight checkpoint in pytorch-fid's format (values are then only meaningful as a comparison).

    python benchmarks/fid.py [--frames 16] [--gen static|shifted] [--device cpu|cuda] [--weights PATH]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))


def _random_checkpoint(path: Path) -> None:
    """Random He-normal weights with pytorch-fid's key names and shapes (like the tests)."""
    import pytorch_fid.inception as pfi
    import torch

    inc = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    for name, block in (("Mixed_5b", pfi.FIDInceptionA(192, pool_features=32)),
                        ("Mixed_5c", pfi.FIDInceptionA(256, pool_features=64)),
                        ("Mixed_5d", pfi.FIDInceptionA(288, pool_features=64)),
                        ("Mixed_6b", pfi.FIDInceptionC(768, channels_7x7=128)),
                        ("Mixed_6c", pfi.FIDInceptionC(768, channels_7x7=160)),
                        ("Mixed_6d", pfi.FIDInceptionC(768, channels_7x7=160)),
                        ("Mixed_6e", pfi.FIDInceptionC(768, channels_7x7=192)),
                        ("Mixed_7b", pfi.FIDInceptionE_1(1280)),
                        ("Mixed_7c", pfi.FIDInceptionE_2(2048))):
        setattr(inc, name, block)
    g = torch.Generator().manual_seed(0)
    sd = {}
    for k, v in inc.state_dict().items():
        if v.ndim == 4:
            sd[k] = torch.randn(v.shape, generator=g) * (2.0 / (v.shape[1] * v.shape[2] * v.shape[3])) ** 0.5
        elif k.endswith("running_var"):
            sd[k] = torch.rand(v.shape, generator=g) + 0.5
        elif k.endswith("bn.weight"):
            sd[k] = torch.rand(v.shape, generator=g) + 0.5
        elif v.is_floating_point():
            sd[k] = torch.randn(v.shape, generator=g) * 0.05
        else:
            sd[k] = v
    torch.save(sd, path)


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="kdbench-fid-bench-"))
    try:
        run(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp: Path) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path, default=None)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--gen", choices=["static", "shifted"], default="static")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--weights", type=Path, default=None, help="a pt_inception checkpoint to use")
    args = ap.parse_args()

    import numpy as np
    import pytorch_fid.fid_score as pfs
    import pytorch_fid.inception as pfi
    import torch
    from PIL import Image

    from kdbench.errors import KdbenchError
    from kdbench.video import read_video
    from kdbench.weights import WeightsManager
    from metrics.checkpoints import load_state_dict
    from metrics.fid import fid_from_activations
    from metrics.fid_inception import inception_activations, load_fid_inception

    ckpt, kind = args.weights, "given"
    if ckpt is None:
        try:
            ckpt, kind = WeightsManager().path("pt_inception"), "official (verified)"
        except KdbenchError:
            ckpt, kind = tmp / "random_pt_inception.pth", "RANDOM (official weights not available)"
            _random_checkpoint(ckpt)
    print(f"weights: {ckpt} [{kind}]   device: {args.device}")

    video = args.video
    if video is None:
        from kdbench.hdtf_mini import hdtf_mini_root

        video = hdtf_mini_root() / "gt" / "WDA_KatieHill_000.mp4"
    n = args.frames
    frames, _ = read_video(video, max_frames=2 * n if args.gen == "shifted" else n)
    gt = frames[:n]
    gen = frames[n:2 * n] if args.gen == "shifted" else np.repeat(frames[:1], n, axis=0)
    print(f"video: {video}  GT {len(gt)} frames vs generated ({args.gen}) {len(gen)} frames, "
          f"{gt.shape[2]}x{gt.shape[1]}")

    model = load_fid_inception(ckpt, args.device)
    inception_activations(gt[:1], model, args.device, args.batch_size)  # warm-up
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    sync()
    t0 = time.perf_counter()
    a_gt = inception_activations(gt, model, args.device, args.batch_size)
    a_gen = inception_activations(gen, model, args.device, args.batch_size)
    sync()
    t_ours = time.perf_counter() - t0
    ours = fid_from_activations(a_gen, a_gt)

    for name, arr in (("gt", gt), ("gen", gen)):
        (tmp / name).mkdir()
        for i, f in enumerate(arr):
            Image.fromarray(f).save(tmp / name / f"{i:05d}.png")
    state = load_state_dict(ckpt)
    original = pfi.load_state_dict_from_url
    pfi.load_state_dict_from_url = lambda url, *a, **k: state
    try:
        ref_model = pfi.InceptionV3([3]).to(args.device)
    finally:
        pfi.load_state_dict_from_url = original
    sync()
    t0 = time.perf_counter()
    m_gt, s_gt = pfs.compute_statistics_of_path(str(tmp / "gt"), ref_model, args.batch_size, 2048,
                                                args.device, 0)
    m_gen, s_gen = pfs.compute_statistics_of_path(str(tmp / "gen"), ref_model, args.batch_size, 2048,
                                                  args.device, 0)
    sync()
    t_ref = time.perf_counter() - t0
    ref = float(pfs.calculate_frechet_distance(m_gen, s_gen, m_gt, s_gt))

    total = len(gt) + len(gen)
    rel = abs(ours - ref) / max(abs(ref), 1e-30)
    print(f"kdbench (in memory)   : FID {ours:.10g}   {total / t_ours:7.2f} frames/s")
    print(f"pytorch-fid (PNG path): FID {ref:.10g}   {total / t_ref:7.2f} frames/s")
    print(f"relative diff {rel:.3g}   speed ratio {t_ref / t_ours:.2f}x   "
          f"(flag: {total // 2} < 2048 frames per side, FID biased)")


if __name__ == "__main__":
    main()
