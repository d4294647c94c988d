"""CPBD: kdbench's vectorised implementation equals python-cpbd (``cpbd-py312``) on the same images."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from metrics import cpbd as kc

reference = pytest.importorskip("cpbd", reason="cpbd-py312 (the reference) is a test dependency")
from cpbd.compute import marziliano_method  # noqa: E402
from cpbd.octave import sobel as reference_sobel  # noqa: E402


@pytest.fixture(scope="module")
def hdtf_frames() -> np.ndarray:
    """Three frames (0, 80, 160) of the real HDTF clip, uint8[3,512,512,3] RGB."""
    from kdbench.hdtf_mini import hdtf_mini_root
    from kdbench.video import read_video

    frames, _ = read_video(hdtf_mini_root() / "gt" / "WDA_KatieHill_000.mp4", max_frames=161)
    return frames[[0, 80, 160]]


def test_camera_golden_values():
    from skimage.data import camera

    im = camera()
    # published value of cpbd 1.0.7 on camera.png (uint8 0-255 grey)
    assert kc.cpbd(im) == 0.7481657466284677
    # the same image on the [0,1] scale scores differently (documented pitfall); reference value
    assert kc.cpbd(im / 255.0) == 0.8697478991596639
    assert kc.cpbd(im / 255.0) == reference.compute(im / 255.0)


def test_grey_rule_is_pillow_L(hdtf_frames):
    from PIL import Image

    grey = kc.rgb_to_grey(hdtf_frames)
    for rgb, g in zip(hdtf_frames, grey, strict=True):
        assert np.array_equal(np.asarray(Image.fromarray(rgb).convert("L")), g)
    rng = np.random.default_rng(0)
    rnd = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    assert np.array_equal(np.asarray(Image.fromarray(rnd).convert("L")), kc.rgb_to_grey(rnd))
    with pytest.raises(ValueError):
        kc.rgb_to_grey(rnd.astype(np.float32))


def test_equal_to_reference_on_hdtf_frames(hdtf_frames):
    """The issue's acceptance check: |kdbench - cpbd-py312| <= 1e-12 on real frames (here: identical)."""
    grey = kc.rgb_to_grey(hdtf_frames)
    for g in grey:
        ours, ref = kc.cpbd(g), float(reference.compute(g))
        assert abs(ours - ref) <= 1e-12
        assert ours == ref
        assert 0.2 < ours < 0.8


def test_intermediate_maps_bit_exact(hdtf_frames):
    g = kc.rgb_to_grey(hdtf_frames[:1])[0].astype(np.float64)
    from skimage.feature import canny

    assert np.array_equal(kc.canny_edges(g), canny(g))
    ref_sobel = reference_sobel(g)
    assert np.array_equal(kc.sobel_edges(g), ref_sobel)
    assert np.array_equal(kc.sobel_edges(g, integer_valued=True), ref_sobel)
    ours_w = kc.marziliano_widths(ref_sobel, g)
    ref_w = marziliano_method(ref_sobel, g)
    assert np.array_equal(ours_w, ref_w)
    assert np.count_nonzero(ref_w) > 1000  # a real edge map, not a trivial one
    from cpbd.compute import _calculate_sharpness_metric

    assert kc.sharpness_from_maps(g, canny(g), ref_w) == _calculate_sharpness_metric(g, canny(g), ref_w)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_to_reference_on_synthetic_images(seed):
    """Non-square sizes with remainder blocks, long monotone ramps (width cap 101), plateaus (equal
    neighbours stop both walks; seed 2 is posterised), float input."""
    rng = np.random.default_rng(seed)
    h, w = 150, 330
    yy, xx = np.mgrid[0:h, 0:w]
    ramp = (xx * 255.0 / (w - 1)) if seed == 0 else (255.0 - np.abs(xx - 160) * 1.5)
    img = np.clip(ramp + 40 * np.sin(yy / 7.0) * (xx % 97 < 50) + rng.normal(0, 3, (h, w)), 0, 255)
    if seed == 2:
        img = (img // 40) * 40.0
    u8 = img.astype(np.uint8)
    assert kc.cpbd(u8) == reference.compute(u8)
    assert kc.cpbd(img) == reference.compute(img)  # non-integer float64: general (3x3 convolve) path
    widths = marziliano_method(reference_sobel(u8.astype(float)), u8.astype(float))
    assert np.array_equal(kc.marziliano_widths(reference_sobel(u8.astype(float)), u8.astype(float)), widths)


def test_degenerate_images():
    flat = np.full((128, 128), 77, np.uint8)
    assert kc.cpbd(flat) == reference.compute(flat) == 0.0
    small = (np.arange(40 * 50).reshape(40, 50) % 256).astype(np.uint8)  # no full 64x64 block
    assert kc.cpbd(small) == reference.compute(small) == 0.0
    # gradient only along rows: gx == 0 everywhere -> all angles 0 (reference quirk) -> no widths
    vert = np.repeat(np.linspace(0, 255, 128)[:, None], 128, axis=1).astype(np.uint8)
    assert kc.cpbd(vert) == reference.compute(vert)
    with pytest.raises(ValueError):
        kc.cpbd(np.zeros((8, 8, 3)))


def test_edge_angles_match_reference_rule():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (20, 30)).astype(np.float64)
    img[:, 10] = img[:, 12]  # gx == 0 in column 11
    gy, gx = np.gradient(img)
    import math

    expected = np.zeros_like(img)
    for r in range(img.shape[0]):
        for c in range(img.shape[1]):
            if gx[r, c] != 0:
                expected[r, c] = math.atan2(gy[r, c], gx[r, c]) * (180 / math.pi)
    ours = kc.edge_angles(img)
    assert np.array_equal(45 * np.round(ours / 45), 45 * np.round(expected / 45))
    assert np.allclose(ours, expected, rtol=0, atol=1e-12)


def test_metric_score_clip_and_aggregate(hdtf_frames):
    frames = hdtf_frames[:2]
    metric = kc.CPBDMetric(options={"size": None})
    rec = metric.score_clip(SimpleNamespace(frames=frames))
    grey = kc.rgb_to_grey(frames)
    expected = float(np.mean([reference.compute(g) for g in grey]))
    assert abs(rec["cpbd"] - expected) <= 1e-12
    assert rec["n_frames"] == 2 and rec["resized"] is False and rec["eval_size"] == [512, 512]

    # default size 512 leaves 512x512 frames untouched; stride/max_frames pick frames 0, 2
    metric = kc.CPBDMetric(options={"stride": 2, "max_frames": 2})
    rec3 = metric.score_clip(SimpleNamespace(frames=hdtf_frames))
    assert rec3["n_frames"] == 2
    assert rec3["cpbd"] == float(np.mean([kc.cpbd(g) for g in kc.rgb_to_grey(hdtf_frames[[0, 2]])]))

    # frames of another size are resized to the fixed evaluation size, and flagged
    small = hdtf_frames[:1, ::2, ::2]
    rec_small = kc.CPBDMetric().score_clip(SimpleNamespace(frames=small))
    assert rec_small["resized"] is True and rec_small["frame_size"] == [256, 256]
    assert rec_small["eval_size"] == [512, 512]
    from PIL import Image

    up = np.asarray(Image.fromarray(kc.rgb_to_grey(small)[0]).resize((512, 512), Image.BICUBIC))
    assert rec_small["cpbd"] == kc.cpbd(up)

    from kdbench.errors import ClipFailure, KdbenchError

    with pytest.raises(ClipFailure, match="no frame to score"):
        kc.CPBDMetric().score_clip(SimpleNamespace(frames=small[:0]))
    with pytest.raises(KdbenchError, match="cpbd.max_frames=0 is out of range: it must be >= 1"):
        kc.CPBDMetric(options={"max_frames": 0})

    agg = metric.aggregate({"a": {"cpbd": 0.2}, "b": {"cpbd": 0.4}})
    assert agg["cpbd"]["n"] == 2 and abs(agg["cpbd"]["mean"] - 0.3) < 1e-15


def test_registered_and_light_import():
    code = (
        "import sys; from kdbench.registry import METRICS; cls = METRICS.get('cpbd'); "
        "assert cls.__name__ == 'CPBDMetric', cls; "
        "bad = [m for m in ('torch', 'cv2', 'insightface', 'dlib') if m in sys.modules]; "
        "assert not bad, bad"
    )
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


def test_skimage_grey_option_equals_reference_on_that_input(hdtf_frames):
    """``grey=skimage`` (cpbd-py312 README: rgb2gray in [0,1]) equals the reference on that input, and gives a
    completely different value from Pillow L on the same real frame (the reason the option is recorded)."""
    from skimage.color import rgb2gray

    frame = hdtf_frames[:1]
    rec = kc.CPBDMetric(options={"grey": "skimage"}).score_clip(SimpleNamespace(frames=frame))
    ref = float(reference.compute(rgb2gray(frame[0])))
    assert rec["cpbd"] == ref and rec["grey"] == kc.GREY_RULES["skimage"]
    pil = kc.CPBDMetric().score_clip(SimpleNamespace(frames=frame))
    assert pil["grey"].startswith("pillow-L")
    assert ref > 0.8 and pil["cpbd"] < 0.5  # 0-1 scale: Canny/contrast thresholds mean something else
    from kdbench.errors import KdbenchError

    with pytest.raises(KdbenchError, match="grey"):
        kc.CPBDMetric(options={"grey": "cv2"})


def test_resizing_is_counted_and_reported():
    from reports.table import build_table
    from tests.report_fixtures import make_doc, metric_entry

    m = kc.CPBDMetric()
    recs = {"a": {"cpbd": 0.3, "resized": False, "frame_size": [512, 512]},
            "b": {"cpbd": 0.5, "resized": True, "frame_size": [256, 320]}}
    agg = m.aggregate(recs)["cpbd"]
    assert agg["n"] == 2 and agg["n_resized"] == 1 and abs(agg["mean"] - 0.4) < 1e-15
    assert agg["note"] == ("1 of 2 clip(s) resized from 320x256 to 512x512 (bicubic) before CPBD; the reference "
                           "scores frames at their own size")
    assert "note" not in m.aggregate({"a": recs["a"]})["cpbd"]
    # the report shows it as a footnote of the CPBD cell
    entry = metric_entry("cpbd", {"a": {"cpbd": 0.3}, "b": {"cpbd": 0.5}}, aggregate={"cpbd": agg})
    t = build_table([make_doc("kdtalker", {"cpbd": entry}, clips=["a", "b"])])
    marks, notes = t.footnotes()
    assert t.cell_text("KDTalker", "CPBD").endswith(f"[{marks[('KDTalker', 'CPBD')]}]")
    assert f"KDTalker, cpbd: {agg['note']}" in notes
