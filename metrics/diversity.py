"""Head-motion diversity with Hopenet, exactly as KDTalker's evaluation computes it (Table 1 "Diversity").

Protocol (KDTalker ``evaluation/deep-head-pose/code/test_on_video_dlib.py`` + ``cal_std.py``):

1. the first ``max_frames`` = 200 frames of the video;
2. dlib CNN face detector (``mmod_human_face_detector.dat``) with 1x upsampling; every face with
   confidence > 1.0 is kept (frames without one are skipped and counted). By default the detector is
   kdbench's PyTorch port (:mod:`metrics.mmod`: same boxes as dlib, confidences within 1e-4, a tenth
   of dlib's CPU time, runs on GPUs); ``detector="dlib"`` runs dlib itself (cross-checks);
3. each face box expanded (see :func:`metrics.hopenet_net.expand_box`), resized/centre-cropped to 224,
   ImageNet-normalised, through Hopenet (``hopenet_robust_alpha1.pkl``) -> raw logits ``Z[N,3,66]``
   (yaw, pitch, roll; N = number of faces);
4. per clip and axis ``sigma_a = mean_b std_j Z[j,a,b]`` (population std over faces, mean over the 66
   bins) — :func:`logit_std`; the clip's ``diversity`` is ``mean_a sigma_a`` and the dataset's
   Overall is the mean over clips (= ``(Y+P+R)/3`` of cal_std.py, since both are means).

Besides the Table 1 number (unitless, logit scale), the record has ``pose_std_deg``: the std over
faces of the angles ``3 * sum_b softmax(z)_b * b - 99`` in degrees (:func:`angles_from_logits`), the
physically meaningful head-motion spread, and the per-face angles for the motion heatmaps.

Speed-ups that change no number: frames with identical content are detected and scored once, the CNN
detector runs on batches of frames (with dlib: spread over worker processes, ``detect_workers``; dlib's
CPU detector is single-threaded), and Hopenet runs on batches of crops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from kdbench.errors import ClipFailure, KdbenchError
from kdbench.metric import Metric, MetricInfo, Output
from kdbench.options import Range
from kdbench.registry import register_metric

if TYPE_CHECKING:
    from kdbench.clip import EvalClip

AXES = ("yaw", "pitch", "roll")
DETECTORS = ("torch", "dlib")  # the "detector" option: metrics/mmod.py (PyTorch port) or dlib itself
NUM_BINS = 66


# ------------------------------------------------------------------------------------------------
# Pure math on arrays
# ------------------------------------------------------------------------------------------------
def logit_std(logits: np.ndarray) -> np.ndarray:
    """KDTalker's per-axis diversity of one clip: ``logits: float[N,3,66]`` -> ``float64[3]``.

    ``out[a] = mean_b std_j logits[j,a,b]`` with the population std (``np.std``, ddof=0) over the N
    faces — cal_std.py lines 14-20. Computed on deviations from the first face (std is shift-invariant;
    differs from ``np.std`` on the raw logits by rounding only), so identical faces give exactly 0.
    """
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 3 or z.shape[1] != 3:
        raise ValueError(f"expected logits [N,3,bins], got {z.shape}")
    return (z - z[:1]).std(axis=0).mean(axis=-1)


def angles_from_logits(logits: np.ndarray) -> np.ndarray:
    """Degrees from Hopenet logits: ``float[...,66]`` -> ``float64[...]``, ``3 * E_softmax[bin] - 99``.

    The 66 bins are 3 degrees wide over [-99, 99); the expectation of the bin index under the
    softmax, times 3, minus 99 (deep-head-pose test_on_video_dlib.py lines 146-152).
    """
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    return 3.0 * (p @ np.arange(z.shape[-1], dtype=np.float64)) - 99.0


def angle_std(angles: np.ndarray) -> np.ndarray:
    """Per-axis population std over frames of ``angles: float[N,3]`` (degrees) -> ``float64[3]``
    (on deviations from the first frame, as :func:`logit_std`)."""
    a = np.asarray(angles, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"expected angles [N,3], got {a.shape}")
    return (a - a[:1]).std(axis=0)


def overall(per_axis: np.ndarray) -> float:
    """Mean of the yaw/pitch/roll values (cal_std.py's "Overall")."""
    return float(np.mean(per_axis))


def dataset_diversity(per_clip_logits: list[np.ndarray]) -> dict[str, float]:
    """cal_std.py end to end: per-axis means over clips of :func:`logit_std`, and their mean (Overall)."""
    per_axis = np.mean([logit_std(z) for z in per_clip_logits], axis=0)
    return {**{a: float(v) for a, v in zip(AXES, per_axis, strict=True)}, "overall": overall(per_axis)}


# ------------------------------------------------------------------------------------------------
# Extraction: frames -> faces -> logits
# ------------------------------------------------------------------------------------------------
@dataclass
class FaceLogits:
    """Hopenet output for one clip.

    ``logits``: ``float32[N,3,66]`` per detected face (in frame order); ``frame_index``: ``int[N]``
    frame of each face; ``n_frames``: frames looked at; ``n_frames_no_face``: frames without a face
    above the confidence threshold.
    """

    logits: np.ndarray
    frame_index: np.ndarray
    n_frames: int
    n_frames_no_face: int


def extract_face_logits(frames: np.ndarray, *, model: Any, detections: list[list[tuple]],
                        conf_threshold: float = 1.0, batch_size: int = 32) -> FaceLogits:
    """Hopenet logits of every face with ``score > conf_threshold`` in ``frames: uint8[T,H,W,3]`` RGB.

    ``detections[t]`` are frame t's ``(left, top, right, bottom, score)`` boxes (dlib CNN). Identical
    crops (same frame content, same box) go through the network once.
    """
    import torch

    from .dlib_faces import frame_digest
    from .hopenet_net import expand_box, hopenet_logits, preprocess_crop

    if len(detections) != len(frames):
        raise ValueError(f"{len(detections)} detection lists for {len(frames)} frames")
    keys: list[tuple] = []
    unique: dict[tuple, int] = {}
    crops: list[Any] = []
    frame_index: list[int] = []
    no_face = 0
    for t, (frame, dets) in enumerate(zip(frames, detections, strict=True)):
        faces = [d for d in dets if d[4] > conf_threshold]
        if not faces:
            no_face += 1
            continue
        digest = frame_digest(frame)
        h, w = frame.shape[:2]
        for d in faces:
            box = expand_box(d[0], d[1], d[2], d[3], w, h)
            key = (digest, box)
            if key not in unique:
                unique[key] = len(crops)
                crops.append(preprocess_crop(frame, box))
            keys.append(key)
            frame_index.append(t)
    if crops:
        logits_u = hopenet_logits(model, torch.stack(crops), batch_size=batch_size)
        logits = logits_u[[unique[k] for k in keys]]
    else:
        logits = np.zeros((0, 3, NUM_BINS), np.float32)
    return FaceLogits(logits=logits, frame_index=np.asarray(frame_index, dtype=np.int64),
                      n_frames=len(frames), n_frames_no_face=no_face)


def reference_loop_logits(frames: np.ndarray, *, model: Any, detector: Any, upsample: int = 1,
                          conf_threshold: float = 1.0) -> np.ndarray:
    """The reference script's loop, for equivalence tests and the benchmark: ``float32[N,3,66]``.

    One frame at a time: ``detector(rgb, upsample)``, then each face with confidence > threshold is
    expanded, transformed and passed through Hopenet with batch size 1 (test_on_video_dlib.py).
    """
    import torch

    from .hopenet_net import expand_box, preprocess_crop

    poses = []
    with torch.no_grad():
        for rgb in frames:
            for det in detector(np.ascontiguousarray(rgb), upsample):
                if det.confidence > conf_threshold:
                    r = det.rect
                    box = expand_box(r.left(), r.top(), r.right(), r.bottom(), rgb.shape[1], rgb.shape[0])
                    x = preprocess_crop(rgb, box).unsqueeze(0)
                    yaw, pitch, roll = model(x)
                    poses.append(np.concatenate([yaw.numpy(), pitch.numpy(), roll.numpy()], 0))
    return np.stack(poses, 0) if poses else np.zeros((0, 3, NUM_BINS), np.float32)


def clip_record(face: FaceLogits) -> dict[str, Any]:
    """Per-clip record from the logits: Table 1 diversity, degree std, counts, per-face angles."""
    div = logit_std(face.logits)
    ang = angles_from_logits(face.logits)
    deg = angle_std(ang)
    rec: dict[str, Any] = {"diversity": overall(div)}
    rec.update({f"diversity_{a}": float(v) for a, v in zip(AXES, div, strict=True)})
    rec["pose_std_deg"] = overall(deg)
    rec.update({f"pose_std_{a}_deg": float(v) for a, v in zip(AXES, deg, strict=True)})
    rec.update(n_frames=face.n_frames, n_faces=int(len(face.logits)), n_frames_no_face=face.n_frames_no_face,
               frame_index=face.frame_index.tolist())
    rec.update({f"{a}_deg": [round(float(v), 4) for v in ang[:, i]] for i, a in enumerate(AXES)})
    return rec


# ------------------------------------------------------------------------------------------------
# The metric
# ------------------------------------------------------------------------------------------------
_OUT_NOTE = "population std over the faces of the first max_frames frames, mean over clips"


@register_metric("diversity")
class HopenetDiversity(Metric):
    """KDTalker's Hopenet head-motion diversity (Table 1) plus the head-pose std in degrees."""

    info = MetricInfo(
        name="diversity",
        version="1",
        description="Head-motion diversity: std over frames of Hopenet's 66-bin yaw/pitch/roll logits "
                    "(KDTalker's definition, Table 1), and the head-pose std in degrees.",
        outputs={
            "diversity": Output(True, "", (0.0, None),
                                "Table 1 Diversity: mean over yaw/pitch/roll of the logit std "
                                "(mean over 66 bins); " + _OUT_NOTE),
            "diversity_yaw": Output(True, "", (0.0, None), "yaw logit std (cal_std.py 'Yaw')"),
            "diversity_pitch": Output(True, "", (0.0, None), "pitch logit std (cal_std.py 'Pitch')"),
            "diversity_roll": Output(True, "", (0.0, None), "roll logit std (cal_std.py 'Roll')"),
            "pose_std_deg": Output(None, "deg", (0.0, None),
                                   "mean over yaw/pitch/roll of the std of Hopenet's angles in degrees; "
                                   "compare with GT"),
            "pose_std_yaw_deg": Output(None, "deg", (0.0, None), "std of Hopenet yaw"),
            "pose_std_pitch_deg": Output(None, "deg", (0.0, None), "std of Hopenet pitch"),
            "pose_std_roll_deg": Output(None, "deg", (0.0, None), "std of Hopenet roll"),
        },
        weights=("hopenet_robust_alpha1", "mmod_human_face_detector"),
        reference="chaolongy/KDTalker evaluation/deep-head-pose/code/test_on_video_dlib.py + cal_std.py "
                  "(natanielruiz/deep-head-pose, hopenet_robust_alpha1.pkl)",
        paper_column={"diversity": "Diversity"},
    )
    option_ranges = {
        "max_frames": Range(1),
        "upsample": Range(0, 8),
        "conf_threshold": Range(),
        "min_faces": Range(1),
        "detector": DETECTORS,
        "detect_batch_size": Range(1, 4096),
        "detect_workers": Range(0, 256),  # 0 = one per available CPU
        "batch_size": Range(1, 4096),
    }
    default_options = {
        "max_frames": 200,          # test_on_video_dlib.py --n_frames default
        "upsample": 1,              # dlib CNN detector upsampling, as the reference
        "conf_threshold": 1.0,      # faces kept when confidence > this
        "min_faces": 2,             # fewer faces than this -> per-clip failure (std undefined)
        "detector": "torch",        # "torch" (metrics/mmod.py, the PyTorch port) or "dlib" (dlib itself)
        "detect_batch_size": 4,     # frames per batched CNN detector call (1 = reference one-at-a-time)
        "detect_workers": 0,        # dlib only: processes running it; 0 = one per available CPU
        "batch_size": 32,           # crops per Hopenet forward
    }

    def __init__(self, **kw: Any):
        super().__init__(**kw)
        self._model: Any = None
        self._detector: Any = None
        self._detector_path = ""

    def _load(self) -> None:
        if self._model is not None:
            return
        from .hopenet_net import load_hopenet

        kind = self.options["detector"]
        if kind not in DETECTORS:
            raise KdbenchError(f"diversity: unknown detector {kind!r}; use one of {', '.join(DETECTORS)} "
                               "(e.g. --set diversity.detector=dlib)")
        det_path = self.weights.path("mmod_human_face_detector")
        hop_path = self.weights.path("hopenet_robust_alpha1")
        self._detector_path = str(det_path)
        if kind == "torch":
            from .mmod import load_mmod

            self._detector = load_mmod(self._detector_path, device=self.device)
        self._model = load_hopenet(hop_path, device=self.device)

    def _detect_many(self, frames: list[np.ndarray]) -> list[list[tuple]]:
        o = self.options
        upsample, bs = int(o["upsample"]), int(o["detect_batch_size"])
        if o["detector"] == "torch":
            return self._detector.detect(frames, upsample, batch_size=bs)
        from .dlib_faces import cnn_detect_parallel, default_workers

        workers = int(o["detect_workers"]) or default_workers()
        return cnn_detect_parallel(self._detector_path, frames, upsample, bs, workers)

    def face_logits(self, clip: EvalClip) -> FaceLogits:
        """Detect faces in the clip's first ``max_frames`` frames and run Hopenet on them."""
        from .dlib_faces import cnn_cache_key, detect_frames

        self._load()
        o = self.options
        frames = clip.frames[: int(o["max_frames"])]
        key = cnn_cache_key(self._detector_path, int(o["upsample"]))
        if o["detector"] == "torch":
            key = key.replace("dlib_cnn:", "torch_mmod:", 1)
        memo = clip.cache.setdefault(key, {})
        dets = detect_frames(frames, self._detect_many, memo)
        return extract_face_logits(frames, model=self._model, detections=dets,
                                   conf_threshold=float(o["conf_threshold"]), batch_size=int(o["batch_size"]))

    def score_clip(self, clip: EvalClip) -> dict[str, Any]:
        face = self.face_logits(clip)
        need = int(self.options["min_faces"])
        if len(face.logits) < need:
            raise ClipFailure(
                f"diversity: a face (MMOD CNN confidence > {self.options['conf_threshold']}) in only "
                f"{face.n_frames - face.n_frames_no_face} of {face.n_frames} frames; need {need} faces"
            )
        return {**clip_record(face), "detector": self.options["detector"]}
