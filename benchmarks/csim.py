"""Benchmark: kdbench CSIM vs insightface 0.7.3 ``FaceAnalysis`` on the same frames and models.

Scores the first N frames of a video (default: the real hdtf-mini clip) against a reference image
(default: the clip's first frame) with both pipelines in this process: kdbench's ``CSIMMetric``
(SCRFD decoding, norm_crop, ArcFace on onnxruntime, largest face) and insightface's
``FaceAnalysis(allowed_modules=["detection", "recognition"]).get`` + largest face +
``normed_embedding``. Prints frames/s of each, the speed ratio and the CSIM difference.

Models: the real buffalo_l pack when the weights manager has it (``kdbench weights fetch buffalo_l``),
otherwise random-weight stand-ins with the same interfaces (tests/csim_fakes.py; values are then
meaningless as identity scores but must still agree). ``--dlib`` also times the offline metric.

    python benchmarks/csim.py [--frames 25] [--video PATH] [--ref IMAGE] [--device cpu|cuda] [--dlib]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _pack(tmp: Path) -> tuple[Path, str]:
    """(folder with det_10g.onnx + w600k_r50.onnx, description)."""
    from kdbench.errors import KdbenchError
    from kdbench.weights import WeightsManager

    try:
        return WeightsManager().path("buffalo_l"), "buffalo_l (real weights)"
    except KdbenchError:
        sys.path.insert(0, str(ROOT / "tests"))
        import csim_fakes

        return csim_fakes.fake_pack(tmp / "fake"), "random-weight stand-ins (buffalo_l not available)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path, default=None, help="video to score (default: hdtf-mini GT clip)")
    ap.add_argument("--ref", type=Path, default=None, help="reference image (default: first frame)")
    ap.add_argument("--frames", type=int, default=25, help="number of frames (from the start)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (onnxruntime CUDA provider when installed)")
    ap.add_argument("--dlib", action="store_true", help="also time csim_dlib on the same frames")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))

    import numpy as np

    from kdbench.clip import EvalClip
    from kdbench.dataset import ClipSpec
    from kdbench.weights import WeightsManager
    from metrics.csim import CSIMMetric, largest_face

    video = args.video
    if video is None:
        from kdbench.hdtf_mini import hdtf_mini_root

        video = hdtf_mini_root() / "gt" / "WDA_KatieHill_000.mp4"
    clip = EvalClip(spec=ClipSpec(clip_id=video.stem, gt_video=video, ref_image=args.ref), video_path=video)
    frames = clip.frames[: args.frames]
    ref_image = clip.ref_image
    n = len(frames)

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        folder, what = _pack(tmp)
        print(f"video: {video} ({n} frames {frames.shape[2]}x{frames.shape[1]}), models: {what}, "
              f"device: {args.device}")

        # kdbench: the metric's own code path (frames already decoded)
        metric = CSIMMetric(options={"max_frames": n}, device=args.device,
                            weights=WeightsManager(overrides={"buffalo_l": folder}))
        metric.weights.path = lambda name: folder  # a folder, not the zip: bypass extraction
        metric.aligned_face(frames[0])  # warm-up: sessions, first inference
        t0 = time.perf_counter()
        ours = metric.score_clip(clip)
        t_ours = time.perf_counter() - t0

        # insightface FaceAnalysis on the same two ONNX files
        from insightface.app import FaceAnalysis

        models = tmp / "insightface" / "models" / "pack"
        models.mkdir(parents=True)
        for name in ("det_10g.onnx", "w600k_r50.onnx"):
            (models / name).symlink_to(folder / name)
        providers = metric.models()[1].session.get_providers()
        app = FaceAnalysis(name="pack", root=str(tmp / "insightface"),
                           allowed_modules=["detection", "recognition"], providers=providers)
        app.prepare(ctx_id=0 if args.device.startswith("cuda") else -1, det_size=(640, 640))

        def embedding(image):
            faces = app.get(np.ascontiguousarray(image[..., ::-1]))
            if not faces:
                return None
            return faces[largest_face(np.stack([f.bbox for f in faces]))].normed_embedding

        embedding(frames[0])  # warm-up
        t0 = time.perf_counter()
        ref = embedding(ref_image)
        sims = [float(np.dot(ref, e)) for e in map(embedding, frames) if e is not None]
        t_ref = time.perf_counter() - t0
        theirs = float(np.mean(sims))

    print(f"kdbench    : {n / t_ours:8.2f} frames/s ({1000 * t_ours / n:7.1f} ms/frame)  "
          f"CSIM = {ours['csim']:.6f}  "
          f"no-face frames: {ours['n_frames_no_face']}  provider: {ours['providers']}")
    print(f"insightface: {n / t_ref:8.2f} frames/s ({1000 * t_ref / n:7.1f} ms/frame)  CSIM = {theirs:.6f}  "
          f"no-face frames: {n - len(sims)}")
    print(f"speed ratio (kdbench / insightface): {t_ref / t_ours:.2f}x   "
          f"|CSIM diff| = {abs(ours['csim'] - theirs):.3g}")

    if args.dlib:
        from metrics.csim_dlib import DlibIdentity

        dl = DlibIdentity(options={"frame_stride": 1, "max_frames": n})
        dl.embedder()(frames[0])  # warm-up (model load)
        t0 = time.perf_counter()
        rec = dl.score_clip(clip)
        t_dl = time.perf_counter() - t0
        print(f"csim_dlib  : {n / t_dl:8.2f} frames/s ({1000 * t_dl / n:7.1f} ms/frame)  csim_dlib = "
              f"{rec['csim_dlib']:.6f}  dlib_distance = {rec['dlib_distance']:.4f}")


if __name__ == "__main__":
    main()
