"""Offline head pose (dlib 68 landmarks + solvePnP): geometry on synthetic projections, real-clip behaviour.

The real-clip tests use the whole 200-frame HDTF clip with dlib's HOG detector (the metric's default,
~0.05 s a frame) — that is also where the "face in >= 195 of 200 frames" check runs: the protocol's
CNN detector costs ~15 s a frame here (see tests/test_diversity.py for what runs with it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kdbench.clip import EvalClip
from kdbench.dataset import ClipSpec
from kdbench.errors import ClipFailure, KdbenchError
from metrics import pose_offline as P


def make_clip(frames: np.ndarray, clip_id: str = "c") -> EvalClip:
    clip = EvalClip(spec=ClipSpec(clip_id=clip_id), video_path=Path(f"/nonexistent/{clip_id}.mp4"))
    clip.__dict__["_decoded"] = (np.asarray(frames), 25.0)
    return clip


def project(yaw: float, pitch: float, roll: float, t=(15.0, -25.0, 2600.0), size=(512, 512)) -> np.ndarray:
    k = P.camera_matrix(*size)
    cam = P.MODEL_POINTS @ P.euler_to_rotation(yaw, pitch, roll).T + np.asarray(t)
    uv = cam @ k.T
    return uv[:, :2] / uv[:, 2:]


def test_euler_round_trip_and_axes():
    for ypr in [(0, 0, 0), (30, -20, 10), (-45, 15, -60), (5, 80, 3)]:
        np.testing.assert_allclose(P.rotation_to_euler(P.euler_to_rotation(*ypr)), ypr, atol=1e-9)
    # roll is a rotation in the image plane: the eye-corner line tilts by exactly the roll angle
    pts = project(0, 0, 20, t=(0, 0, 1e6))
    d = pts[3] - pts[2]
    assert np.degrees(np.arctan2(d[1], d[0])) == pytest.approx(20, abs=1e-3)
    # yaw turns about the vertical axis: the eye corners stay on one image row
    pts = project(25, 0, 0, t=(0, 0, 1e6))
    assert pts[2, 1] == pytest.approx(pts[3, 1], abs=1e-3)


@pytest.mark.parametrize("ypr", [(0, 0, 0), (20, -10, 5), (-30, 15, -8), (5, 25, 12), (-12, -18, 20)])
def test_solvepnp_recovers_known_pose(ypr):
    np.testing.assert_allclose(P.head_pose_from_points(project(*ypr), 512, 512), ypr, atol=1e-3)


def test_pose_std_hand_computed():
    a = np.array([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0]])
    np.testing.assert_allclose(P.pose_std(a), [1.0, 0.0, 0.0])
    rec = P.clip_record(a, np.array([0, 2]), 3)
    assert rec["pose_std_deg"] == pytest.approx(1 / 3)
    assert rec["n_faces"] == 2 and rec["n_frames_no_face"] == 1 and rec["yaw_deg"] == [1.0, 3.0]


def test_registered_and_options_checked():
    from kdbench.registry import METRICS

    assert METRICS.get("pose_offline") is P.OfflinePose
    assert "diversity" not in P.OfflinePose.info.outputs     # never mixed with Hopenet's numbers
    with pytest.raises(KdbenchError, match="hog"):
        P.OfflinePose(options={"detector": "mtcnn"})


def test_no_face_is_a_clip_failure():
    blank = np.full((3, 64, 64, 3), 90, np.uint8)
    with pytest.raises(ClipFailure, match="hog detector.* in only 0 of 3 frames"):
        P.OfflinePose().score_clip(make_clip(blank))
    # the CNN path fills the detection memo that `diversity` reads (same cache key)
    from kdbench.weights import WeightsManager
    from metrics.dlib_faces import cnn_cache_key

    clip = make_clip(blank)
    with pytest.raises(ClipFailure, match="cnn detector.* in only 0 of 3 frames"):
        P.OfflinePose(options={"detector": "cnn"}).score_clip(clip)
    memo = clip.cache[cnn_cache_key(WeightsManager().path("mmod_human_face_detector"), 1)]
    assert len(memo) == 1 and list(memo.values()) == [[]]             # one distinct frame, no face


@pytest.fixture(scope="module")
def gt_frames() -> np.ndarray:
    from kdbench.hdtf_mini import hdtf_mini_root
    from kdbench.video import read_video

    return read_video(hdtf_mini_root() / "gt" / "WDA_KatieHill_000.mp4")[0]


@pytest.mark.slow
def test_real_clip_moves_static_does_not(gt_frames):
    assert gt_frames.shape == (200, 512, 512, 3)
    metric = P.OfflinePose()
    real = metric.score_clip(make_clip(gt_frames, "real"))
    # detector coverage on the full clip (HOG path): a face in at least 195 of the 200 frames
    assert real["n_frames"] == 200 and real["n_faces"] >= 195
    assert len(real["yaw_deg"]) == real["n_faces"]
    # the speaker clearly moves her head: several degrees of spread, mostly in yaw
    assert real["pose_std_deg"] > 3.0 and real["pose_std_yaw_deg"] > 5.0
    assert all(abs(v) < 60 for v in real["yaw_deg"] + real["pitch_deg"] + real["roll_deg"])
    static = metric.score_clip(make_clip(np.repeat(gt_frames[:1], 200, axis=0), "static"))
    assert static["n_faces"] == 200
    for k in ("pose_std_deg", "pose_std_yaw_deg", "pose_std_pitch_deg", "pose_std_roll_deg"):
        assert static[k] == 0.0
    # the static clip's pose is the real clip's first-frame pose
    assert static["yaw_deg"][0] == real["yaw_deg"][0]
