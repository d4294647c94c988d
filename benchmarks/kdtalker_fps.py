"""KDTalker inference speed in kdbench: frames per second per stage and end to end.

    python benchmarks/kdtalker_fps.py --device cuda                 # official weights via the weights manager
    python benchmarks/kdtalker_fps.py --device cuda --random-weights # official formats, random values
    python benchmarks/kdtalker_fps.py --device cpu --random-weights --seconds 2 --no-render
    python benchmarks/kdtalker_fps.py --random-weights --save-source-crop crop.npz   # where dlib is installed
    python benchmarks/kdtalker_fps.py --device cuda --random-weights --source-crop crop.npz  # where it is not

Measured on one NVIDIA H200 (2026-11-26, random weights, fp32, batch 16, source crop from a file): 41.8 FPS end
to end at 50 DDIM steps (diffusion 142 FPS, render 62.6 FPS), 60.4 FPS at 5 steps; the paper's figure is 21.7.

Input: one hdtf-mini reference image and the first ``--seconds`` of its driving audio. For each DDIM
step count (default 50 and 5) it runs the whole method once to warm up, then ``--repeat`` timed runs,
and prints the median FPS of every stage (frames / stage seconds, device synchronised):
source (dlib crop + LivePortrait M, F), audio (mel + Wav2Lip encoder), diffusion (64-frame DDIM windows),
smoothing (Kalman), render (keypoints + warp + SPADE decode) and end to end (everything, one clip).
The paper reports 21.7 FPS on an RTX 4090 (50 steps); compute does not depend on the weight values,
so random weights give representative timings.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PAPER_FPS = 21.7  # KDTalker paper, RTX 4090, 50 DDIM steps


def device_name(device: str) -> str:
    import platform

    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def save_source_crop(ref, weights, path: str) -> int:
    """Crop ``ref`` with dlib as the pipeline does, print the crop's time, save its fields to ``path``."""
    import numpy as np

    from baselines.kdtalker.crop import crop_source

    crop_source(ref, weights)  # load dlib's models outside the timing
    times = []
    for _ in range(5):
        t = time.perf_counter()
        crop = crop_source(ref, weights)
        times.append(time.perf_counter() - t)
    np.savez(path, img256=crop.img256, M_c2o=crop.M_c2o, box=np.asarray(crop.box), landmarks=crop.landmarks)
    print(f"dlib crop of the reference image: {statistics.median(times) * 1000:.1f} ms (median of 5, "
          f"{device_name('cpu')}); saved to {path}")
    return 0


def load_source_crop(path: str):
    import numpy as np

    from baselines.kdtalker.crop import SourceCrop

    z = np.load(path, allow_pickle=False)
    return SourceCrop(img256=z["img256"], M_c2o=z["M_c2o"], box=tuple(float(v) for v in z["box"]),
                      landmarks=z["landmarks"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, nargs="+", default=[50, 5])
    ap.add_argument("--seconds", type=float, default=8.0, help="audio length (8 s = 200 frames)")
    ap.add_argument("--clip", default="WDA_BenCardin1_000", help="hdtf-mini clip (reference image + audio)")
    ap.add_argument("--batch-size", type=int, default=16, help="frames per render batch")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"], help="renderer precision")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1, help="untimed 1 s runs before timing each step count")
    ap.add_argument("--random-weights", action="store_true", help="random weights in the official formats")
    ap.add_argument("--no-render", action="store_true", help="skip LivePortrait rendering (CPU smoke runs)")
    ap.add_argument("--save-source-crop", metavar="NPZ", help="run the dlib crop once, time it, save it and exit")
    ap.add_argument("--source-crop", metavar="NPZ",
                    help="use a crop saved by --save-source-crop instead of dlib (for machines without dlib or "
                         "its 68-landmark model); the 'source' stage then times LivePortrait's M and F only")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from baselines.kdtalker.pipeline import KDTalkerPipeline
    from kdbench.dataset import load_dataset
    from kdbench.weights import WeightsManager

    torch.backends.cudnn.benchmark = True
    spec = load_dataset("hdtf-mini").get(args.clip)
    ref, audio = spec.load_ref_image(), spec.load_audio()[: int(args.seconds * 16000)]
    n = len(audio) // 640
    tmp = tempfile.TemporaryDirectory()
    if args.random_weights:
        from baselines.kdtalker.random_weights import write_random_checkpoints
        from kdbench.hdtf_mini import hdtf_mini_root

        overrides = write_random_checkpoints(tmp.name)
        norm = hdtf_mini_root().parent / "kdtalker" / "norm.npz"
        if norm.is_file():
            overrides["kdtalker_norm"] = norm
        weights = WeightsManager(home=tmp.name, overrides=overrides)
    else:
        weights = WeightsManager()
    if args.save_source_crop:
        return save_source_crop(ref, weights, args.save_source_crop)
    t0 = time.perf_counter()
    pipe = KDTalkerPipeline.from_weights(weights, device=args.device, dtype=args.dtype)
    print(f"device: {device_name(args.device)}; load {time.perf_counter() - t0:.1f} s; clip {args.clip}, "
          f"{n} frames ({n / 25:.2f} s); renderer {args.dtype}, batch {args.batch_size}; "
          f"{'random' if args.random_weights else 'official'} weights")
    if args.source_crop:
        crop = load_source_crop(args.source_crop)
        pipe.crop_fn = lambda image: crop
        print(f"source crop: {args.source_crop} (dlib crop not run, not timed)")
    if args.no_render:
        def no_render(source, motion, batch_size=16):
            return np.zeros((len(motion["exp"]), 512, 512, 3), np.uint8)

        pipe.render = no_render

    stages = ["t_source", "t_audio", "t_diffusion", "t_smooth", "t_render"]
    rows = []
    for steps in args.steps:
        for _ in range(args.warmup):
            pipe(ref, audio[:16000], seed=0, ddim_steps=steps, batch_size=args.batch_size)
        runs = []
        for r in range(args.repeat):
            t = time.perf_counter()
            res = pipe(ref, audio, seed=r, ddim_steps=steps, batch_size=args.batch_size)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            runs.append({**res.timings, "total": time.perf_counter() - t})
        med = {k: statistics.median(run[k] for run in runs) for k in runs[0]}
        rows.append((steps, med))
    print(f"\nFPS (frames per second, median of {args.repeat}; higher is better)")
    head = ["ddim_steps", "source", "audio", "diffusion", "smooth", "render", "end-to-end", "vs paper 21.7"]
    print(" | ".join(f"{h:>12}" for h in head))
    for steps, med in rows:
        fps = [n / med[s] if med[s] > 0 else float("inf") for s in stages]
        total = n / med["total"]
        render = "skipped" if args.no_render else f"{fps[4]:.3g}"
        cells = [str(steps), f"{fps[0]:.3g}", f"{fps[1]:.3g}", f"{fps[2]:.3g}", f"{fps[3]:.3g}", render,
                 f"{total:.3g}" + (" (no render)" if args.no_render else ""), f"{total / PAPER_FPS:.3g}x"]
        print(" | ".join(f"{c:>12}" for c in cells))
    print("\nseconds per stage (median):")
    for steps, med in rows:
        print(f"  {steps:>3} steps: " + ", ".join(f"{k.removeprefix('t_')} {v:.3f}" for k, v in med.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
