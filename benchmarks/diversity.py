"""Benchmark: the whole Hopenet diversity metric, kdbench vs the reference's one-frame-at-a-time loop.

Both run in this process on the same real HDTF frames with the same detector (dlib MMOD CNN,
upsample 1, confidence > 1.0) and the same Hopenet weights, and must give the same logits:

* reference — KDTalker ``test_on_video_dlib.py``'s loop: per frame ``detector(rgb, 1)``, then each face
  cropped/transformed and passed through Hopenet with batch size 1 (:func:`reference_loop_logits`);
* kdbench — ``HopenetDiversity.score_clip``: the PyTorch port of the same detector (``metrics/mmod.py``,
  same boxes as dlib; ``--dlib`` runs dlib instead, batched over ``--workers`` processes), identical frames
  detected once, batched Hopenet forward, plus the statistics.

Two clips: ``real`` (``--frames`` frames of the GT clip, every ``--stride``-th, so they differ) and
``static`` (the first frame repeated ``--static-frames`` times: the ``static`` baseline). Without the
official ``hopenet_robust_alpha1.pkl`` in the weights cache a randomly initialised Hopenet is used
(timings do not depend on the weights; the protocol's detector is the real one).

    python benchmarks/diversity.py --frames 6 --stride 33 --static-frames 4
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kdbench.clip import EvalClip  # noqa: E402
from kdbench.dataset import ClipSpec  # noqa: E402
from kdbench.hdtf_mini import hdtf_mini_root  # noqa: E402
from kdbench.video import read_video  # noqa: E402
from kdbench.weights import WeightsManager  # noqa: E402


def make_clip(frames: np.ndarray, clip_id: str) -> EvalClip:
    clip = EvalClip(spec=ClipSpec(clip_id=clip_id), video_path=Path(f"/nonexistent/{clip_id}.mp4"))
    clip.__dict__["_decoded"] = (frames, 25.0)
    return clip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=6, help="real frames (CNN detection ~15 s each here)")
    ap.add_argument("--stride", type=int, default=33, help="take every stride-th frame of the GT clip")
    ap.add_argument("--static-frames", type=int, default=4)
    ap.add_argument("--detect-batch", type=int, default=2)
    ap.add_argument("--workers", type=int, default=0, help="dlib detector processes (0 = one per available CPU)")
    ap.add_argument("--dlib", action="store_true", help="kdbench side uses dlib's detector, not the port")
    args = ap.parse_args()

    import torch

    from metrics.diversity import HopenetDiversity, logit_std, reference_loop_logits
    from metrics.dlib_faces import cnn_detector
    from metrics.hopenet_net import Hopenet

    wm = WeightsManager()
    tmp = tempfile.TemporaryDirectory()
    if wm.available("hopenet_robust_alpha1"):
        weights_note = "official hopenet_robust_alpha1.pkl"
    else:
        torch.manual_seed(0)
        sd = OrderedDict((k, v) for k, v in Hopenet().state_dict().items() if "num_batches_tracked" not in k)
        ckpt = Path(tmp.name) / "hopenet_random.pkl"
        torch.save(sd, ckpt, _use_new_zipfile_serialization=False)
        wm = WeightsManager(home=tmp.name, overrides={"hopenet_robust_alpha1": ckpt})
        weights_note = "RANDOM Hopenet weights (official file not in the cache; timings unaffected)"
    opts = {"detect_batch_size": args.detect_batch, "detect_workers": args.workers, "max_frames": 200,
            "detector": "dlib" if args.dlib else "torch"}
    metric = HopenetDiversity(options=opts, weights=wm)
    metric._load()
    detector = cnn_detector(str(wm.path("mmod_human_face_detector")))

    gt = read_video(hdtf_mini_root() / "gt" / "WDA_KatieHill_000.mp4")[0]
    clips = {
        "real": gt[:: args.stride][: args.frames],
        "static": np.repeat(gt[:1], args.static_frames, axis=0),
    }
    import os

    from metrics.dlib_faces import default_workers

    workers = args.workers or default_workers()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {os.cpu_count()} CPUs "
          f"(load {os.getloadavg()[0]:.1f}); detector workers {workers}, batch {args.detect_batch}; "
          f"{weights_note}")
    print(f"{'clip':8s} {'frames':>6s} {'faces':>5s} {'ref s':>8s} {'ref fps':>8s} {'kdb s':>8s} "
          f"{'kdb fps':>8s} {'speed-up':>8s} {'max|dlogit|':>11s} {'div ref':>9s} {'div kdb':>9s}")
    for name, frames in clips.items():
        t0 = time.perf_counter()
        ref = reference_loop_logits(frames, model=metric._model, detector=detector, upsample=1)
        t_ref = time.perf_counter() - t0
        clip = make_clip(frames, name)
        t0 = time.perf_counter()
        rec = metric.score_clip(clip)
        t_kdb = time.perf_counter() - t0
        # the clip's detection memo answers again: only Hopenet reruns, to compare the logits
        kdb_logits = metric.face_logits(clip).logits
        diff = float(np.abs(kdb_logits - ref).max()) if kdb_logits.shape == ref.shape else float("nan")
        div_ref = float(np.mean(logit_std(ref))) if len(ref) > 1 else float("nan")
        n = len(frames)
        print(f"{name:8s} {n:6d} {rec['n_faces']:5d} {t_ref:8.1f} {n / t_ref:8.3f} {t_kdb:8.1f} "
              f"{n / t_kdb:8.3f} {t_ref / t_kdb:7.2f}x {diff:11.2e} {div_ref:9.5f} {rec['diversity']:9.5f}")
        if name == "real":
            idx = list(range(0, len(gt), args.stride))[: args.frames]
            print(f"         protocol detector (conf > 1.0): a face in {n - rec['n_frames_no_face']} of {n} "
                  f"frames (GT frame indices {idx})")


if __name__ == "__main__":
    main()
