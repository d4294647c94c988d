"""Motion heatmaps: histogram arrays on hand-made angles, file outputs, extraction from metrics.json."""

from __future__ import annotations

import numpy as np
import pytest

from reports import heatmap as H


def test_histogram_bins_relative_and_gt_first():
    clip = np.array([[10.0, 5.0, 1.0], [12.0, 5.0, 0.0], [10.0, -3.0, 0.0], [50.0, 0.0, 0.0]])
    # relative to frame 0: (0,0) (2,0) (0,-8) (40,-5); 1-degree bins centred on -30..30: bin = value + 30
    hist = H.pose_histograms({"kdtalker": [clip], "real": [clip[:2]]}, range_deg=30.0, bin_deg=1.0)
    assert hist["methods"].tolist() == ["real", "kdtalker"]
    c = hist["counts"][1]
    assert c[30, 30] == 1 and c[32, 30] == 1 and c[30, 22] == 1 and c.sum() == 3
    assert hist["n_frames"].tolist() == [2, 4] and hist["n_outside"].tolist() == [0, 1]
    assert hist["density"][1].sum() == pytest.approx(3 / 4)
    np.testing.assert_allclose(hist["yaw_edges"], np.arange(-30, 32) - 0.5)
    absolute = H.pose_histograms({"m": [clip]}, range_deg=30.0, bin_deg=1.0, relative=False)["counts"][0]
    assert absolute[40, 35] == 1 and absolute[42, 35] == 1 and absolute[40, 27] == 1 and absolute.sum() == 3


def test_order_methods():
    assert H.order_methods(["a", "gt", "b"]) == ["gt", "a", "b"]
    assert H.order_methods(["a", "b"], gt="b") == ["b", "a"]
    assert H.order_methods(["a", "b"]) == ["a", "b"]


def test_write_png_and_npz(tmp_path):
    rng = np.random.default_rng(0)
    data = {"real": [rng.normal(0, 8, (200, 3))], "static": [np.zeros((200, 3))],
            "kdtalker": [rng.normal(0, 4, (100, 3)), rng.normal(0, 4, (100, 3))]}
    out = tmp_path / "sub" / "motion.png"
    hist = H.write_pose_heatmaps(data, out, title="test")
    assert out.is_file() and out.stat().st_size > 5000
    from PIL import Image

    assert Image.open(out).size[0] > Image.open(out).size[1]          # one row of panels
    saved = np.load(out.with_suffix(".npz"))
    assert saved["methods"].tolist() == ["real", "static", "kdtalker"]
    np.testing.assert_array_equal(saved["counts"], hist["counts"])
    assert saved["counts"].shape == (3, 41, 41)                        # default: 2-degree bins over +-40
    assert saved["counts"][1, 20, 20] == 200                           # static: every frame in the centre bin


def test_angles_from_metrics_json():
    rec_a = {"yaw_deg": [1.0, 2.0, 2.5, 3.0], "pitch_deg": [0.0, 1.0, 9.0, 2.0],
             "roll_deg": [0.0, 0.0, 0.0, 0.0], "frame_index": [0, 1, 1, 3]}  # frame 1: two faces, first kept
    rec_b = {"yaw_deg": [5.0], "pitch_deg": [6.0], "roll_deg": [7.0], "frame_index": [0]}
    doc = {"metrics": {"diversity": {"per_clip": {"b": rec_b, "a": rec_a}, "failures": {"c": "no face"}}}}
    got = H.angles_from_metrics(doc, "diversity")
    np.testing.assert_array_equal(got[0], [[1, 0, 0], [2, 1, 0], [3, 2, 0]])
    np.testing.assert_array_equal(got[1], [[5, 6, 7]])
    with pytest.raises(KeyError, match="pose_offline"):
        H.angles_from_metrics(doc, "pose_offline")


def test_cli_from_metrics_files(tmp_path):
    import json

    rec = {"yaw_deg": [0.0, 4.0, -4.0], "pitch_deg": [0.0, 2.0, 2.0], "roll_deg": [0.0, 0.0, 0.0],
           "frame_index": [0, 1, 2]}
    for m in ("kdtalker", "real"):
        doc = {"metrics": {"pose_offline": {"per_clip": {"a": rec}}}}
        (tmp_path / f"{m}.json").write_text(json.dumps(doc))
    out = tmp_path / "h.png"
    H.main([str(out), f"kdtalker={tmp_path / 'kdtalker.json'}", f"real={tmp_path / 'real.json'}",
            "--metric", "pose_offline"])
    saved = np.load(out.with_suffix(".npz"))
    assert saved["methods"].tolist() == ["real", "kdtalker"]
    c = saved["counts"][0]                                             # bin = value / 2 + 20
    assert c[20, 20] == 1 and c[22, 21] == 1 and c[18, 21] == 1 and c.sum() == 3
