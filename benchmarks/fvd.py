"""Benchmark: kdbench's FVD vs StyleGAN-V's ``compute_fvd`` on the same clips (value and speed).

Clips: ``--videos`` pairs cut from a video (default: the real hdtf-mini clip, 512x512): GT video k is frames
``30k .. 30k+19``, generated video k the same frames shifted by 2 (``--gen shifted``) or its first frame repeated
(``--gen static``). Both paths take the first 16 frames of each video (``fvd2048_16f``).

* kdbench: decoded frames in memory -> :class:`metrics.fvd.FVDMetric` (windows -> TorchScript I3D -> sufficient
  statistics -> distance).
* StyleGAN-V (when ``--stylegan-v`` / ``$KDBENCH_STYLEGANV_SRC`` names a folder with its ``src/``, see
  ``tests/test_fvd_stylegan_v.py``): the same frames as PNG folders -> ``compute_fvd`` as ``calc_metrics_for_dataset``
  runs it (its DataLoader with 3 workers, its batch size for the resolution), the real side at offset 0. PNG writing
  is not timed. Without it only kdbench is timed.

Weights: the manifest's ``i3d_torchscript`` if present, else ``--weights PATH``, else a random-weight I3D of the real
architecture (``scripts/i3d_random_weights.py``; the values then only compare the two paths).

    python benchmarks/fvd.py [--videos 6] [--gen shifted|static] [--device cpu|cuda] [--stylegan-v DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
import time
import types
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))
URL = "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1"


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="kdbench-fvd-bench-"))
    try:
        run(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _stylegan_v_fvd(src: Path, real: Path, fake: Path, resolution: int, device, weights: Path) -> tuple[float, float]:
    """(FVD, seconds) of StyleGAN-V's compute_fvd on two folders of PNG-frame videos."""
    import torch

    sys.path.insert(0, str(src))
    try:
        import omegaconf  # noqa: F401
    except ImportError:  # only its names are imported; the config is passed as a dnnlib.EasyDict
        shim = types.ModuleType("omegaconf")
        shim.DictConfig = dict
        shim.OmegaConf = type("OmegaConf", (), {"create": staticmethod(lambda d: d)})
        sys.modules["omegaconf"] = shim
    from src import dnnlib
    from src.metrics import frechet_video_distance, metric_utils

    metric_utils._feature_detector_cache[(URL, device)] = torch.jit.load(str(weights), map_location=device).eval()
    common = dict(class_name="src.training.dataset.VideoFramesFolderDataset",
                  cfg=dnnlib.EasyDict(max_num_frames=10000), resolution=resolution, use_labels=False, xflip=False)
    opts = metric_utils.MetricOptions(
        dataset_kwargs=dnnlib.EasyDict(path=str(real), load_n_consecutive_random_offset=False, **common),
        gen_dataset_kwargs=dnnlib.EasyDict(path=str(fake), **common), generator_as_dataset=True, num_gpus=1,
        rank=0, device=device, cache=False)
    t0 = time.perf_counter()
    value = frechet_video_distance.compute_fvd(opts, max_real=2048, num_gen=2048, num_frames=16)
    return value, time.perf_counter() - t0


def run(tmp: Path) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path, default=None)
    ap.add_argument("--videos", type=int, default=6, help="generated/GT video pairs (one 16-frame window each)")
    ap.add_argument("--gen", choices=["static", "shifted"], default="shifted")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--weights", type=Path, default=None, help="an i3d_torchscript.pt to use")
    ap.add_argument("--stylegan-v", type=Path, default=os.environ.get("KDBENCH_STYLEGANV_SRC"),
                    help="folder with StyleGAN-V's src/ (default $KDBENCH_STYLEGANV_SRC)")
    args = ap.parse_args()

    import numpy as np
    import torch
    from PIL import Image

    from kdbench.dataset import ClipSpec
    from kdbench.errors import KdbenchError
    from kdbench.video import read_video
    from kdbench.weights import WeightsManager
    from metrics.fvd import FVDMetric

    weights, kind = args.weights, "given"
    if weights is None:
        try:
            weights, kind = WeightsManager().path("i3d_torchscript"), "StyleGAN-V's i3d_torchscript.pt (tofu)"
        except KdbenchError:
            spec = importlib.util.spec_from_file_location("i3d_random_weights",
                                                          _HERE.parent / "scripts" / "i3d_random_weights.py")
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            weights = mod.save_random_i3d(tmp / "i3d_torchscript.pt", 1.0, 0, 224)
            kind = "RANDOM, real architecture (official weights not available)"
    print(f"weights: {weights} [{kind}]   device: {args.device}   torch threads: {torch.get_num_threads()}")

    video = args.video
    if video is None:
        from kdbench.hdtf_mini import hdtf_mini_root

        video = hdtf_mini_root() / "gt" / "WDA_KatieHill_000.mp4"
    n = args.videos
    frames, _ = read_video(video, max_frames=30 * (n - 1) + 22)
    gts = {f"v{k:03d}": frames[30 * k:30 * k + 20] for k in range(n)}
    gens = {cid: (np.repeat(g[:1], 20, 0) if args.gen == "static" else frames[30 * k + 2:30 * k + 22])
            for k, (cid, g) in enumerate(gts.items())}
    size = frames.shape[1]
    print(f"video: {video}  {n} GT videos vs {n} generated ({args.gen}), 20 frames each, {frames.shape[2]}x{size}; "
          "one 16-frame window per video")

    wm = WeightsManager(overrides={"i3d_torchscript": weights})
    os.environ.setdefault("KDBENCH_ALLOW_UNVERIFIED", "1")
    metric = FVDMetric(weights=wm, device=args.device)
    metric._load()
    warm = np.ascontiguousarray(frames[:16])  # TorchScript profiles its first calls per input shape
    for _ in range(2):
        metric.features(warm)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    sync()
    t0 = time.perf_counter()
    records = {}
    for cid in gts:
        clip = types.SimpleNamespace(spec=ClipSpec(clip_id=cid, gt_video=video), clip_id=cid,
                                     frames=np.ascontiguousarray(gens[cid]), gt_frames=gts[cid])
        records[cid] = metric.score_clip(clip)
    ours = metric.aggregate(records)["fvd"]["mean"]
    sync()
    t_ours = time.perf_counter() - t0
    print(f"kdbench:    FVD {ours:.6f}   {2 * n} windows in {t_ours:.2f} s ({2 * n / t_ours:.2f} windows/s)")

    if not args.stylegan_v or not (Path(args.stylegan_v) / "src" / "metrics" / "frechet_video_distance.py").is_file():
        print("StyleGAN-V: not run (give --stylegan-v DIR or set KDBENCH_STYLEGANV_SRC; "
              "see tests/test_fvd_stylegan_v.py)")
        return
    for side, vids in (("real", gts), ("fake", gens)):
        for cid, f in vids.items():
            (tmp / side / cid).mkdir(parents=True)
            for i, frame in enumerate(f):
                Image.fromarray(np.ascontiguousarray(frame)).save(tmp / side / cid / f"{i:06d}.png")
    resolution = size if size in (128, 256, 512, 1024) else 512
    with torch.no_grad():
        theirs, t_theirs = _stylegan_v_fvd(Path(args.stylegan_v), tmp / "real", tmp / "fake", resolution,
                                           torch.device(args.device), Path(weights))
    print(f"StyleGAN-V: FVD {theirs:.6f}   {2 * n} windows in {t_theirs:.2f} s ({2 * n / t_theirs:.2f} windows/s; "
          "PNG loading included, PNG writing not)")
    print(f"relative difference {abs(ours - theirs) / abs(theirs):.2e}   speed-up x{t_theirs / t_ours:.2f}")


if __name__ == "__main__":
    main()
