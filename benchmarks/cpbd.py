"""Benchmark: kdbench's vectorised CPBD vs the reference ``cpbd-py312`` on the same frames.

Decodes the first N frames of a video (default: the real hdtf-mini clip), converts them to grey with
the metric's rule (Pillow ``convert("L")``), runs both implementations in this process, single-threaded,
checks the values are identical and prints frames/s and the speed-up. Timings are interleaved frame by
frame (kdbench: mean of ``--repeat`` runs; reference: one run) so both see the same machine load.

    python benchmarks/cpbd.py [--frames 20] [--video PATH] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# This file is named like the reference package: import from the repository root, not from here.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path, default=None, help="video to read (default: hdtf-mini GT clip)")
    ap.add_argument("--frames", type=int, default=20, help="number of frames (from the start)")
    ap.add_argument("--repeat", type=int, default=3, help="kdbench runs per frame (mean time)")
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")

    import cpbd as reference
    import numpy as np

    from kdbench.video import read_video
    from metrics.cpbd import cpbd, rgb_to_grey

    video = args.video
    if video is None:
        from kdbench.hdtf_mini import hdtf_mini_root

        video = hdtf_mini_root() / "gt" / "WDA_KatieHill_000.mp4"
    frames, _ = read_video(video, max_frames=args.frames)
    grey = rgb_to_grey(frames)
    n = len(grey)
    print(f"video: {video} ({n} frames, {grey.shape[2]}x{grey.shape[1]} grey uint8)")

    cpbd(grey[0])  # warm-up (imports, cached Canny renormaliser)
    reference.compute(grey[0])
    # Interleaved frame by frame, so both see the same machine load (shared CPUs are noisy).
    ours, ref = np.empty(n), np.empty(n)
    t_ours, t_ref = 0.0, 0.0
    for i, g in enumerate(grey):
        t0 = time.perf_counter()
        for _ in range(max(1, args.repeat)):
            ours[i] = cpbd(g)
        t_ours += (time.perf_counter() - t0) / max(1, args.repeat)
        t0 = time.perf_counter()
        ref[i] = reference.compute(g)
        t_ref += time.perf_counter() - t0
    best = t_ours

    diff = float(np.max(np.abs(ours - ref)))
    print(f"kdbench  : {n / best:8.2f} frames/s ({1000 * best / n:7.1f} ms/frame, "
          f"mean of {args.repeat} runs per frame)")
    print(f"cpbd-py312: {n / t_ref:8.2f} frames/s ({1000 * t_ref / n:7.1f} ms/frame)")
    print(f"speed-up : {t_ref / best:8.1f}x   max |diff| = {diff:.3g}   "
          f"identical: {bool(np.array_equal(ours, ref))}   mean CPBD = {ours.mean():.6f}")


if __name__ == "__main__":
    main()
