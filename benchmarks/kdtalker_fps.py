"""KDTalker inference speed in kdbench: frames per second per stage and end to end.

    python benchmarks/kdtalker_fps.py --device cuda                 # official weights via the weights manager
    python benchmarks/kdtalker_fps.py --device cuda --random-weights # official formats, random values
    python benchmarks/kdtalker_fps.py --device cpu --random-weights --seconds 2 --no-render
    python benchmarks/kdtalker_fps.py --random-weights --save-source-crop crop.npz   # where dlib is installed
    python benchmarks/kdtalker_fps.py --device cuda --random-weights --source-crop crop.npz  # where it is not
    python benchmarks/kdtalker_fps.py --device cuda --random-weights --steps 50 --variants all  # fast paths

Measured on one NVIDIA H200 (2026-11-26, random weights, fp32, batch 16, source crop from a file): 41.8 FPS end
to end at 50 DDIM steps (diffusion 142 FPS, render 62.6 FPS), 60.4 FPS at 5 steps; the paper's figure is 21.7.

Input: one hdtf-mini reference image and the first ``--seconds`` of its driving audio. For each DDIM
step count (default 50 and 5) and each ``--variants`` entry (the fast paths of ``baselines/kdtalker/fast.py``:
CUDA-graph diffusion, on-device uint8, channels-last, torch.compile, larger render batches; ``plain`` is the
reference) it runs the whole clip once to warm up (graph capture, compilation, cuDNN plans), then ``--repeat``
timed runs with seed 0, and prints the median seconds and FPS of every stage (device synchronised), the largest
difference of the frames (uint8 grey levels) and of the motion from the first variant's, and, on a GPU, the
warping and decoder milliseconds per frame. Stages:
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


def save_source_crop(ref, weights, path: str, audio=None) -> int:
    """Crop ``ref`` with dlib as the pipeline does, print the crop's time, save its fields to ``path``.

    The reference image (``ref``, uint8 RGB) and the decoded driving audio (``audio``, int16 16 kHz) are saved
    with it, so that ``--source-crop`` needs neither dlib nor PyAV/Pillow nor the dataset files."""
    import numpy as np

    from baselines.kdtalker.crop import crop_source

    crop_source(ref, weights)  # load dlib's models outside the timing
    times = []
    for _ in range(5):
        t = time.perf_counter()
        crop = crop_source(ref, weights)
        times.append(time.perf_counter() - t)
    extra = {} if audio is None else {"ref": ref, "audio": audio}
    np.savez(path, img256=crop.img256, M_c2o=crop.M_c2o, box=np.asarray(crop.box), landmarks=crop.landmarks,
             **extra)
    print(f"dlib crop of the reference image: {statistics.median(times) * 1000:.1f} ms (median of 5, "
          f"{device_name('cpu')}); saved to {path}")
    return 0


def load_source_crop(path: str):
    import numpy as np

    from baselines.kdtalker.crop import SourceCrop

    z = np.load(path, allow_pickle=False)
    return SourceCrop(img256=z["img256"], M_c2o=z["M_c2o"], box=tuple(float(v) for v in z["box"]),
                      landmarks=z["landmarks"])


VARIANTS = {
    # name: (FastOptions keyword arguments, render batch size or None for --batch-size)
    "plain": ({}, None),
    "graphs": ({"diffusion_graph": True}, None),
    "exact": ({"diffusion_graph": True, "device_uint8": True}, None),
    "exact-b32": ({"diffusion_graph": True, "device_uint8": True}, 32),
    "channels-last": ({"diffusion_graph": True, "device_uint8": True, "channels_last": True}, None),
    "channels-last-b32": ({"diffusion_graph": True, "device_uint8": True, "channels_last": True}, 32),
    "channels-last-b64": ({"diffusion_graph": True, "device_uint8": True, "channels_last": True}, 64),
    "compile": ({"diffusion_graph": True, "device_uint8": True, "channels_last": True, "compile": "default",
                 "pad_batches": True}, None),
    "compile-b32": ({"diffusion_graph": True, "device_uint8": True, "channels_last": True, "compile": "default",
                     "pad_batches": True}, 32),
    "compile-max-autotune": ({"diffusion_graph": True, "device_uint8": True, "channels_last": True,
                              "compile": "max-autotune-no-cudagraphs", "pad_batches": True}, None),
}
"""Fast-path variants (``baselines/kdtalker/fast.py``); ``plain`` is the reference the others are compared with."""
ALL = ["plain", "graphs", "exact", "exact-b32", "channels-last", "channels-last-b32", "channels-last-b64", "compile"]
"""``--variants all``: every variant but the slow-to-compile ones (``compile-b32``, ``compile-max-autotune``)."""
STAGES = ["t_source", "t_audio", "t_diffusion", "t_smooth", "t_render"]


def frame_diff(frames, ref) -> tuple[int, float]:
    """(max |difference| in grey levels, fraction of values that differ) of two uint8 frame stacks."""
    import numpy as np

    if frames.shape != ref.shape:
        return -1, 1.0
    d = np.abs(frames.astype(np.int16) - ref.astype(np.int16))
    return int(d.max()), float((d > 0).mean())


def motion_diff(motion, ref) -> float:
    import numpy as np

    return max(float(np.max(np.abs(np.asarray(motion[k], np.float64) - np.asarray(ref[k], np.float64))))
               for k in ref)


def render_split(pipe, crop_img256, batch: int, repeat: int = 3) -> tuple[float, float]:
    """Milliseconds per frame of the warping network and of the SPADE decoder alone (one batch, eager modules
    of the current variant: channels-last copies where chosen), device synchronised, median of ``repeat``."""
    import torch

    from baselines.kdtalker.fast import FastRenderer

    lp = pipe.renderer
    fr = pipe._fast_renderer or FastRenderer(lp, pipe.fast.with_(compile=None))
    src = lp.extract_source(crop_img256)
    kp = src.x_s.expand(batch, -1, -1) + 0.01
    f_s = src.f_s.expand(batch, *src.f_s.shape[1:])
    if fr.options.channels_last:
        f_s = f_s.contiguous(memory_format=torch.channels_last_3d)
    x_s = src.x_s.expand(batch, -1, -1)
    warp_t, dec_t = [], []
    with torch.no_grad():
        for _ in range(repeat + 1):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            warped = fr.warping(f_s, kp_driving=kp, kp_source=x_s)["out"]
            if fr.options.channels_last:
                warped = warped.contiguous(memory_format=torch.channels_last)
            torch.cuda.synchronize()
            t1 = time.perf_counter()
            fr.spade(warped)
            torch.cuda.synchronize()
            warp_t.append(t1 - t0)
            dec_t.append(time.perf_counter() - t1)
    return (statistics.median(warp_t[1:]) * 1000 / batch, statistics.median(dec_t[1:]) * 1000 / batch)


def load_saved_inputs(path: str):
    """``(ref uint8[H,W,3], audio int16[N])`` saved by ``--save-source-crop``, or None for an older file."""
    import numpy as np

    z = np.load(path)
    return (z["ref"], z["audio"]) if "ref" in z and "audio" in z else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, nargs="+", default=[50, 5])
    ap.add_argument("--seconds", type=float, default=8.0, help="audio length (8 s = 200 frames)")
    ap.add_argument("--clip", default="WDA_BenCardin1_000", help="hdtf-mini clip (reference image + audio)")
    ap.add_argument("--batch-size", type=int, default=16, help="frames per render batch")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"], help="renderer precision")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs of the whole clip before timing")
    ap.add_argument("--variants", nargs="+", default=["plain"], metavar="NAME",
                    help=f"fast-path variants to time on the same inputs, 'all' = {' '.join(ALL)}; also "
                         f"{', '.join(v for v in VARIANTS if v not in ALL)}. The first is the reference for the "
                         "frame differences (put plain first)")
    ap.add_argument("--no-cudnn-benchmark", action="store_true",
                    help="keep cuDNN's heuristic algorithm choice (as `kdbench run` does) instead of autotuning")
    ap.add_argument("--budget-s", type=float, default=0,
                    help="skip the remaining variants once this many seconds have passed (0: no limit)")
    ap.add_argument("--random-weights", action="store_true", help="random weights in the official formats")
    ap.add_argument("--norm", metavar="NPZ", help="KDTalker's norm.npz for --random-weights (default: next to "
                                                  "hdtf-mini, <data>/kdtalker/norm.npz)")
    ap.add_argument("--no-render", action="store_true", help="skip LivePortrait rendering (CPU smoke runs)")
    ap.add_argument("--save-source-crop", metavar="NPZ", help="run the dlib crop once, time it, save it and exit")
    ap.add_argument("--source-crop", metavar="NPZ",
                    help="use a crop saved by --save-source-crop instead of dlib (for machines without dlib or "
                         "its 68-landmark model); the 'source' stage then times LivePortrait's M and F only")
    args = ap.parse_args(argv)
    variants = [v for name in args.variants for v in (ALL if name == "all" else [name])]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}, all")

    import numpy as np
    import torch

    from baselines.kdtalker.fast import FastOptions
    from baselines.kdtalker.pipeline import KDTalkerPipeline
    from kdbench.dataset import load_dataset
    from kdbench.weights import WeightsManager

    torch.backends.cudnn.benchmark = not args.no_cudnn_benchmark
    t_start = time.perf_counter()
    saved = load_saved_inputs(args.source_crop) if args.source_crop else None
    if saved is not None:   # no dataset, PyAV or Pillow needed (GPU machines)
        ref, audio = saved
        print(f"reference image and audio: {args.source_crop} (saved with --save-source-crop)")
    else:
        spec = load_dataset("hdtf-mini").get(args.clip)
        ref, audio = spec.load_ref_image(), spec.load_audio()
    if args.save_source_crop:
        full_audio = audio
    audio = audio[: int(args.seconds * 16000)]
    n = len(audio) // 640
    tmp = tempfile.TemporaryDirectory()
    if args.random_weights:
        from baselines.kdtalker.random_weights import random_weights_manager
        from kdbench.hdtf_mini import hdtf_mini_root

        norm = Path(args.norm) if args.norm else hdtf_mini_root().parent / "kdtalker" / "norm.npz"
        weights = random_weights_manager(tmp.name, norm=norm if norm.is_file() else None)
    else:
        weights = WeightsManager()
    if args.save_source_crop:
        return save_source_crop(ref, weights, args.save_source_crop, full_audio)
    t0 = time.perf_counter()
    pipe = KDTalkerPipeline.from_weights(weights, device=args.device, dtype=args.dtype)
    print(f"device: {device_name(args.device)}; torch {torch.__version__}; load {time.perf_counter() - t0:.1f} s; "
          f"clip {args.clip}, {n} frames ({n / 25:.2f} s); renderer {args.dtype}; "
          f"{'random' if args.random_weights else 'official'} weights; cuDNN benchmark "
          f"{torch.backends.cudnn.benchmark}, fp32 precision "
          f"{getattr(torch.backends.cudnn.conv, 'fp32_precision', '?')}, matmul "
          f"{getattr(torch.backends.cuda.matmul, 'fp32_precision', '?')}")
    if args.source_crop:
        crop = load_source_crop(args.source_crop)
        pipe.crop_fn = lambda image: crop
        print(f"source crop: {args.source_crop} (dlib crop not run, not timed)")
    if args.no_render:
        def no_render(source, motion, batch_size=16):
            return np.zeros((len(motion["exp"]), 512, 512, 3), np.uint8)

        pipe.render = no_render

    def sync() -> float:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter()

    rows = []  # (steps, variant, batch, median timings, extra)
    for steps in args.steps:
        reference = None
        for name in variants:
            if args.budget_s and time.perf_counter() - t_start > args.budget_s:
                print(f"[{name}, {steps} steps] skipped: past the {args.budget_s:g} s budget", flush=True)
                continue
            kw, batch = VARIANTS[name]
            batch = batch or args.batch_size
            try:
                t = sync()
                pipe.set_fast(FastOptions(**kw))
                for _ in range(args.warmup):    # the whole clip: graphs, compiled code and cuDNN plans for its shapes
                    pipe(ref, audio, seed=0, ddim_steps=steps, batch_size=batch)
                setup = sync() - t
                runs, first = [], None
                for _ in range(args.repeat):
                    t = sync()
                    res = pipe(ref, audio, seed=0, ddim_steps=steps, batch_size=batch)
                    runs.append({**res.timings, "total": sync() - t})
                    first = first or res
                if args.device.startswith("cuda"):
                    peak = torch.cuda.max_memory_allocated() / 2**30
                    torch.cuda.reset_peak_memory_stats()
                else:
                    peak = float("nan")
            except Exception as e:  # noqa: BLE001 - report the variant and go on with the others
                print(f"[{name}, {steps} steps] FAILED: {type(e).__name__}: {str(e)[:400]}", flush=True)
                del e
                pipe.set_fast(FastOptions())
                if args.device.startswith("cuda"):
                    torch.cuda.empty_cache()    # e.g. after running out of memory at a large batch
                continue
            med = {k: statistics.median(run[k] for run in runs) for k in runs[0]}
            if reference is None:
                reference = (name, first)
                dmax, dfrac, dmot = 0, 0.0, 0.0
            else:
                dmax, dfrac = frame_diff(first.frames, reference[1].frames)
                dmot = motion_diff(first.motion, reference[1].motion)
            split = ""
            if args.device.startswith("cuda") and not args.no_render:
                try:
                    warp_ms, dec_ms = render_split(pipe, pipe.crop_fn(ref).img256, batch)
                    split = f"; warp {warp_ms:.2f} + decode {dec_ms:.2f} ms/frame (eager modules)"
                except Exception as e:  # noqa: BLE001 - a diagnostic only
                    split = f"; warp/decode split failed: {type(e).__name__}: {str(e)[:200]}"
            extra = {"setup": setup, "dmax": dmax, "dfrac": dfrac, "dmot": dmot, "peak": peak, "ref": reference[0]}
            rows.append((steps, name, batch, med, extra))
            print(f"[{name}, {steps} steps, batch {batch}] {n / med['total']:.1f} FPS; "
                  + ", ".join(f"{k.removeprefix('t_')} {v:.3f} s" for k, v in med.items())
                  + f"; warm-up {setup:.1f} s; peak {peak:.1f} GiB; vs {reference[0]}: frames max |diff| {dmax} "
                  f"grey levels ({dfrac:.2e} of values), motion max |diff| {dmot:.2e}{split}", flush=True)
        del reference
    pipe.set_fast(FastOptions())

    print(f"\nFPS (frames per second, median of {args.repeat}; higher is better); seconds per stage; frame and "
          "motion differences from the first variant (same inputs, seed 0)")
    head = ["steps", "variant", "batch", "source", "audio", "diffusion", "smooth", "render", "total s",
            "end-to-end", "vs paper", "max|d| grey", "frac diff", "motion |d|"]
    widths = [5, 20, 5, 7, 7, 9, 7, 7, 8, 10, 8, 11, 9, 10]
    print(" | ".join(f"{h:>{w}}" for h, w in zip(head, widths, strict=True)))
    for steps, name, batch, med, ex in rows:
        total = n / med["total"]
        render = "skipped" if args.no_render else f"{med['t_render']:.3f}"
        cells = [str(steps), name, str(batch), f"{med['t_source']:.3f}", f"{med['t_audio']:.3f}",
                 f"{med['t_diffusion']:.3f}", f"{med['t_smooth']:.3f}", render, f"{med['total']:.3f}",
                 f"{total:.1f}" + ("*" if args.no_render else ""), f"{total / PAPER_FPS:.2f}x",
                 str(ex["dmax"]), f"{ex['dfrac']:.1e}", f"{ex['dmot']:.1e}"]
        print(" | ".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True)))
    if args.no_render:
        print("* without rendering")
    print(f"stage FPS = {n} frames / stage seconds; paper: {PAPER_FPS} FPS on an RTX 4090 at 50 steps")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
