"""Benchmark: the PyTorch MMOD face detector (metrics/mmod.py) vs dlib's ``cnn_face_detection_model_v1``.

Same real frames (the hdtf-mini GT clip, every ``--stride``-th), the protocol's upsampling (1), in one
process: dlib one frame at a time as the reference script calls it, the port in batches of ``--batch``.
Prints the boxes' agreement, the largest |Δconfidence|, seconds per frame on each side and the ratio.

    python benchmarks/mmod.py --frames 6 --stride 33            # CPU, port vs dlib

On a machine without dlib or PyAV (the GPU machine), save frames here first, carry them with the .dat
file, and time the port alone; its detections are checked against ``tests/data/mmod_golden.json``
(dlib's output, computed once by scripts/mmod_golden.py):

    python benchmarks/mmod.py --save out/mmod_gpu --frames 40 --stride 5     # here
    python benchmarks/mmod.py --load out/mmod_gpu --device cuda --no-dlib    # there (seconds per frame
                                                                              # and per 200-frame clip)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
GOLDEN = REPO / "tests" / "data" / "mmod_golden.json"


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def compare(got: list, ref: list) -> tuple[bool, float]:
    """(same count and integer boxes, max |Δconfidence|) of two detection lists."""
    same = [tuple(d[:4]) for d in got] == [tuple(d[:4]) for d in ref]
    dc = max([abs(a[4] - b[4]) for a, b in zip(got, ref, strict=False)] or [0.0])
    return same, dc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=6, help="real frames (dlib: ~8 s each here at upsample 1)")
    ap.add_argument("--stride", type=int, default=33, help="every stride-th frame of the 200-frame GT clip")
    ap.add_argument("--upsample", type=int, default=1)
    ap.add_argument("--batch", type=int, default=4, help="frames per port forward")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-dlib", action="store_true", help="time the port alone (compare with the golden file)")
    ap.add_argument("--save", type=Path, help="write the frames + the .dat file to this folder and exit")
    ap.add_argument("--load", type=Path, help="read frames + .dat from a folder written by --save")
    args = ap.parse_args()

    if args.load:
        data = np.load(args.load / "frames.npz")
        frames, names = data["frames"], [str(n) for n in data["names"]]
        dat = str(args.load / "mmod_human_face_detector.dat")
    else:
        from kdbench.hdtf_mini import hdtf_mini_root
        from kdbench.video import read_video
        from kdbench.weights import WeightsManager

        gt = read_video(hdtf_mini_root() / "gt" / "WDA_KatieHill_000.mp4")[0]
        idx = list(range(0, len(gt), args.stride))[: args.frames]
        frames, names = gt[idx], [f"gt/{i:03d}" for i in idx]
        dat = str(WeightsManager().path("mmod_human_face_detector"))
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.save / "frames.npz", frames=frames, names=np.array(names))
        shutil.copy(dat, args.save / "mmod_human_face_detector.dat")
        print(f"wrote {len(frames)} frames and the .dat to {args.save} "
              f"({sum(p.stat().st_size for p in args.save.iterdir()) / 2**20:.1f} MiB)")
        return

    import torch

    from kdbench.memory import reuse_freed_memory
    from kdbench.numerics import ieee_fp32
    from metrics.mmod import load_mmod

    reused = reuse_freed_memory()  # as kdbench eval runs it (both sides of this process benefit)
    det = load_mmod(dat, device=args.device)
    n = len(frames)
    print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; {n} frames {frames.shape[1]}x{frames.shape[2]}, "
          f"upsample {args.upsample}, batch {args.batch}, freed memory re-used: {reused}")
    with ieee_fp32():
        det.detect(list(frames[: args.batch]), args.upsample, batch_size=args.batch)  # warm-up (plans, kernels)
        _sync(args.device)
        t0, c0 = time.perf_counter(), time.process_time()
        ours = det.detect(list(frames), args.upsample, batch_size=args.batch)
        _sync(args.device)
        t_port, c_port = (time.perf_counter() - t0) / n, (time.process_time() - c0) / n
    print(f"port:  {t_port:.3f} s/frame ({200 * t_port:.1f} s per 200-frame clip); CPU time {c_port:.3f} s/frame")

    refs: dict[str, list] = {}
    if not args.no_dlib:
        import dlib

        ref_det = dlib.cnn_face_detection_model_v1(dat)
        t0, c0 = time.perf_counter(), time.process_time()
        for name, f in zip(names, frames, strict=True):
            refs[name] = [[d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom(), d.confidence]
                          for d in ref_det(np.ascontiguousarray(f), args.upsample)]
        t_dlib, c_dlib = (time.perf_counter() - t0) / n, (time.process_time() - c0) / n
        print(f"dlib:  {t_dlib:.3f} s/frame ({200 * t_dlib:.1f} s per 200-frame clip); CPU time {c_dlib:.3f} s/frame")
        print(f"-> port is {t_dlib / t_port:.1f}x faster in wall time, {c_dlib / c_port:.1f}x in CPU time "
              f"(load now {os.getloadavg()[0]:.1f})")
        source = f"live dlib {dlib.__version__}"
    elif GOLDEN.is_file():
        gold = json.loads(GOLDEN.read_text())["frames"]
        key = f"upsample{args.upsample}"
        refs = {nm: gold[nm][key] for nm in names if nm in gold and key in gold[nm]}
        source = "golden file (dlib, CPU)"
    if refs:
        res = [compare(o, refs[nm]) for nm, o in zip(names, ours, strict=True) if nm in refs]
        bad = [nm for nm, (same, _) in zip([x for x in names if x in refs], res, strict=True) if not same]
        print(f"vs {source}: {len(res) - len(bad)}/{len(res)} frames with identical boxes, "
              f"max |Δconfidence| {max(dc for _, dc in res):.2e}" + (f"; differ: {bad}" if bad else ""))
    else:
        print("no reference detections to compare with")


if __name__ == "__main__":
    main()
