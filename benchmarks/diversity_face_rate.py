"""How many frames of the real HDTF clip the diversity protocol's detector finds a face in.

The protocol (KDTalker's deep-head-pose script): dlib CNN ``mmod_human_face_detector`` at upsample 1,
a face counts when its confidence is above 1.0, first 200 frames. This is a full-clip check (about
7 s per frame per core on a CPU), so it lives here rather than in the test suite:

    python benchmarks/diversity_face_rate.py [--frames 200] [--workers 2]
"""

from __future__ import annotations

import argparse
import time

from kdbench.hdtf_mini import hdtf_mini_root
from kdbench.video import read_video
from kdbench.weights import WeightsManager
from metrics.dlib_faces import cnn_detect_parallel, default_workers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--workers", type=int, default=0, help="detector processes (0 = one per CPU)")
    ap.add_argument("--conf", type=float, default=1.0, help="confidence threshold of the protocol")
    args = ap.parse_args()
    frames, _ = read_video(hdtf_mini_root() / "gt" / "WDA_KatieHill_000.mp4", max_frames=args.frames)
    path = WeightsManager().path("mmod_human_face_detector")
    t0 = time.perf_counter()
    dets = cnn_detect_parallel(path, frames, upsample=1, batch_size=2, workers=args.workers or default_workers())
    seconds = time.perf_counter() - t0
    found = [any(d[4] > args.conf for d in ds) for ds in dets]
    confs = [max((d[4] for d in ds), default=float("nan")) for ds in dets]
    missed = [i for i, f in enumerate(found) if not f]
    print(f"frames with a face (conf > {args.conf}): {sum(found)} / {len(frames)}   missed: {missed}")
    finite = sorted(c for c in confs if c == c)
    if finite:
        print(f"best confidence per frame: min {finite[0]:.4f}, median {finite[len(finite) // 2]:.4f}, "
              f"max {finite[-1]:.4f}")
    print(f"detection: {seconds:.1f} s ({len(frames) / seconds:.3f} frames/s)")


if __name__ == "__main__":
    main()
