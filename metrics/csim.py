"""CSIM: identity cosine similarity between the reference image and the generated frames (ArcFace).

Protocol (insightface 0.7.3 ``buffalo_l`` pack, as talking-head papers use it)::

    e_ref = ArcFace(norm_crop(ref_image, kps(largest face)))                # w600k_r50, 512-d
    e_t   = ArcFace(norm_crop(frame_t,   kps(largest face in frame_t)))
    CSIM(clip) = mean over frames t with a face of cos(e_ref, e_t)
    CSIM       = mean over clips

* Reference: ``clip.ref_image`` (for GT-video datasets, the GT video's first frame).
* Detection: SCRFD ``det_10g`` at ``det_size`` (640x640), score >= ``det_thresh`` (0.5), NMS IoU 0.4.
* Face choice: the **largest** detected box (area in px); ties go to the higher detection score.
* Frames without a face are **skipped and counted**: the per-clip record has
  ``n_frames_no_face`` and the output ``no_face_rate`` (fraction of the scored frames without a
  face). A reference image without a face, or a clip where no frame has a face, is a per-clip
  failure (``ClipFailure``), never a number.
* Frames: every ``frame_stride``-th frame from the first, at most ``max_frames`` (0 = all).

The network code (detector decoding, alignment, ONNX sessions) is in :mod:`metrics.arcface`; the
scoring maths below works on arrays and is shared with the offline metric :mod:`metrics.csim_dlib`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from kdbench.errors import ClipFailure
from kdbench.metric import Metric, MetricInfo, Output
from kdbench.options import Range, Text
from kdbench.registry import register_metric

if TYPE_CHECKING:
    from kdbench.clip import EvalClip

# --------------------------------------------------------------------------------------------------
# scoring maths (pure functions)


def frame_indices(n_frames: int, frame_stride: int = 1, max_frames: int = 0) -> np.ndarray:
    """Frames to score: ``0, s, 2s, ...`` (``s = frame_stride``), at most ``max_frames`` (0 = all)."""
    if frame_stride < 1:
        raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
    idx = np.arange(0, n_frames, frame_stride)
    return idx[:max_frames] if max_frames and max_frames > 0 else idx


def largest_face(boxes: np.ndarray) -> int:
    """Index of the box with the largest area among ``boxes float[F,>=4]`` (x1, y1, x2, y2).

    Boxes are expected best-score first, so a tie goes to the higher-scoring face.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    if len(boxes) == 0:
        raise ValueError("no boxes")
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return int(np.argmax(area))


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows of ``x float[N,D]`` (or one vector ``float[D]``) divided by their L2 norm, in float64."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def cosine_similarities(ref: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
    """``cos(ref, e_t)`` for each row of ``embeddings float[N,D]``: ``float64[N]`` in [-1, 1]."""
    return l2_normalise(embeddings) @ l2_normalise(np.asarray(ref).ravel())


def identity_record(ref: np.ndarray, embeddings: list[np.ndarray | None], output: str = "csim",
                    distance: str | None = None) -> dict[str, Any]:
    """Per-clip record from the reference embedding and one embedding (or None: no face) per scored frame.

    ``output`` is the mean cosine over the frames with a face; ``distance`` (optional) names the mean
    Euclidean distance of the raw embeddings. Raises ``ClipFailure`` when no frame has a face.
    """
    found = [e for e in embeddings if e is not None]
    n, n_found = len(embeddings), len(found)
    if n_found == 0:
        raise ClipFailure(f"no face detected in any of the {n} scored frames")
    emb = np.stack([np.asarray(e, dtype=np.float64).ravel() for e in found])
    sims = cosine_similarities(ref, emb)
    record: dict[str, Any] = {output: float(sims.mean())}
    if distance is not None:
        record[distance] = float(np.linalg.norm(emb - np.asarray(ref, np.float64).ravel(), axis=1).mean())
    record.update({"no_face_rate": (n - n_found) / n, "n_frames_scored": n, "n_frames_no_face": n - n_found,
                   f"{output}_min": float(sims.min())})
    return record


def score_identity(ref_image: np.ndarray, frames: np.ndarray, indices: np.ndarray,
                   embed_face: Callable[[np.ndarray], np.ndarray | None], output: str = "csim",
                   distance: str | None = None) -> dict[str, Any]:
    """Identity record of ``frames uint8[T,H,W,3]`` (at ``indices``) against ``ref_image uint8[H,W,3]``.

    ``embed_face(image)`` returns the embedding of the chosen face, or None when there is none.
    """
    ref = embed_face(ref_image)
    if ref is None:
        raise ClipFailure("no face detected in the reference image")
    return identity_record(ref, [embed_face(frames[i]) for i in indices], output=output, distance=distance)


# --------------------------------------------------------------------------------------------------
# the metric


@register_metric("csim")
class CSIMMetric(Metric):
    """ArcFace (insightface buffalo_l w600k_r50) cosine similarity to the reference image."""

    info = MetricInfo(
        name="csim",
        version="1",
        description="Identity similarity: cosine between ArcFace embeddings (insightface buffalo_l: SCRFD "
                    "det_10g, 5-point norm_crop 112x112, w600k_r50) of the reference image and of each "
                    "frame's largest face; mean over frames with a face, then over clips.",
        outputs={
            "csim": Output(True, "cosine", (-1.0, 1.0), "mean cosine similarity to the reference identity"),
            "no_face_rate": Output(False, "fraction", (0.0, 1.0), "share of scored frames without a detected "
                                   "face (skipped by csim)"),
        },
        weights=("buffalo_l",),
        reference="insightface 0.7.3 FaceAnalysis('buffalo_l'): model_zoo/scrfd.py, utils/face_align.py, "
                  "model_zoo/arcface_onnx.py",
        paper_column={"csim": "CSIM"},
    )
    option_types: dict[str, tuple] = {"det_size": (int, list)}
    option_ranges = {
        "det_size": Range(32, 4096),  # int, or each of [W, H]
        "det_thresh": Range(0, 1),
        "nms_thresh": Range(0, 1),
        "frame_stride": Range(1),
        "max_frames": Range(0),  # 0 = all
        "batch_size": Range(1, 4096),
        "detector": Text("an .onnx file name in the buffalo_l pack"),
        "recognizer": Text("an .onnx file name in the buffalo_l pack"),
    }
    default_options: dict[str, Any] = {
        "det_size": 640,          # detector canvas, px (int = square, or [W, H])
        "det_thresh": 0.5,
        "nms_thresh": 0.4,
        "frame_stride": 1,        # score every n-th frame
        "max_frames": 0,          # 0 = all (after the stride)
        "batch_size": 32,         # recognition batch
        "detector": "det_10g.onnx",
        "recognizer": "w600k_r50.onnx",
    }

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._models: tuple[Any, Any] | None = None

    @property
    def device_used(self) -> str:
        """The device onnxruntime actually runs on (a CPU-only onnxruntime serves cuda requests on the CPU)."""
        if self._models is None:
            return self.device
        providers = self._models[1].session.get_providers()
        return self.device if providers and providers[0] == "CUDAExecutionProvider" else "cpu"

    def models(self):
        """``(ScrfdDetector, ArcFaceRecognizer)`` from the buffalo_l pack, loaded once."""
        if self._models is None:
            from .arcface import ArcFaceRecognizer, ScrfdDetector, pack_files

            det_path, rec_path = pack_files(self.weights.path("buffalo_l"), self.options["detector"],
                                            self.options["recognizer"])
            size = self.options["det_size"]
            det_size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
            o = self.options
            detector = ScrfdDetector(det_path, det_size=det_size, det_thresh=float(o["det_thresh"]),
                                     nms_thresh=float(o["nms_thresh"]), device=self.device)
            recognizer = ArcFaceRecognizer(rec_path, device=self.device, batch_size=int(o["batch_size"]))
            self._models = (detector, recognizer)
        return self._models

    def aligned_face(self, image: np.ndarray) -> np.ndarray | None:
        """``uint8[112,112,3]`` RGB crop of the largest face in ``image uint8[H,W,3]`` RGB, or None."""
        from .arcface import norm_crop

        detector, recognizer = self.models()
        dets, kps = detector.detect(image)
        if len(dets) == 0:
            return None
        return norm_crop(image, kps[largest_face(dets)], recognizer.input_size)

    def score_clip(self, clip: EvalClip) -> dict[str, Any]:
        _, recognizer = self.models()
        ref_crop = self.aligned_face(clip.ref_image)
        if ref_crop is None:
            raise ClipFailure("no face detected in the reference image")
        frames = clip.frames
        o = self.options
        indices = frame_indices(len(frames), int(o["frame_stride"]), int(o["max_frames"]))
        crops = [self.aligned_face(frames[i]) for i in indices]
        present = [c for c in crops if c is not None]
        embeddings = recognizer.embed(np.stack([ref_crop, *present]))
        it = iter(embeddings[1:])
        record = identity_record(embeddings[0], [None if c is None else next(it) for c in crops])
        record["providers"] = recognizer.session.get_providers()[0]
        return record
