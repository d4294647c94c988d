"""CSIM (metrics/csim.py, metrics/arcface.py) against insightface 0.7.3 on the same models and real frames.

The buffalo_l pack cannot be downloaded here, so random-weight ONNX models with the official
interfaces stand in for it (tests/csim_fakes.py): a recogniser shaped like w600k_r50 and an
SCRFD-shaped detector whose random weights do fire on images. Each stage is compared with
insightface's own classes on real hdtf-mini frames: detector decoding + NMS (bit-equal), the 5-point
``norm_crop`` (byte-equal), embeddings (ArcFaceONNX), and the whole CSIM of a clip (FaceAnalysis).
"""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kdbench.clip import EvalClip
from kdbench.dataset import ClipSpec
from kdbench.errors import ClipFailure
from kdbench.hdtf_mini import hdtf_mini_root
from kdbench.weights import WeightsManager
from metrics.csim import (
    CSIMMetric,
    cosine_similarities,
    frame_indices,
    identity_record,
    largest_face,
    score_identity,
)

sys.path.insert(0, str(Path(__file__).parent))
import csim_fakes  # noqa: E402

GT = "gt/WDA_KatieHill_000.mp4"
OTHERS = ["WDA_BenCardin1_000", "WRA_MarkwayneMullin_000", "WRA_MikeJohanns1_000"]


# --------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def pack(tmp_path_factory) -> Path:
    return csim_fakes.fake_pack(tmp_path_factory.mktemp("buffalo_l_fake") / "pack")


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    from kdbench.video import read_video

    return read_video(hdtf_mini_root() / GT, max_frames=61)[0]


@pytest.fixture(scope="module")
def ref_images() -> list[np.ndarray]:
    from PIL import Image

    return [np.asarray(Image.open(hdtf_mini_root() / "ref" / f"{n}.png").convert("RGB")) for n in OTHERS]


@pytest.fixture(scope="module")
def images(frames, ref_images) -> list[np.ndarray]:
    """Real images of several shapes: 512x512 frames, 256x256 references, tall and wide crops."""
    return [frames[0], frames[30], frames[60], *ref_images, np.ascontiguousarray(frames[10][:, 40:340]),
            np.ascontiguousarray(frames[20][60:360])]


def _bgr(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image[..., ::-1])


@functools.cache
def _dlib_models():
    import dlib

    shape_68 = WeightsManager().path("shape_predictor_68")
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(shape_68))


def _dlib_five_points(image: np.ndarray) -> np.ndarray:
    """ArcFace-order 5 points (eye centres, nose tip, mouth corners) from dlib's 68-landmark model."""
    detector, predictor = _dlib_models()
    rect = detector(image, 0)[0]
    pts = np.array([(p.x, p.y) for p in predictor(image, rect).parts()], np.float32)
    return np.stack([pts[36:42].mean(0), pts[42:48].mean(0), pts[30], pts[48], pts[54]]).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# scoring maths


def test_metric_modules_import_without_heavy_dependencies():
    code = ("import sys, metrics.csim, metrics.csim_dlib; "
            "heavy = ('torch', 'cv2', 'onnxruntime', 'onnx', 'insightface', 'dlib'); "
            "bad = [m for m in heavy if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)


def test_frame_indices():
    assert frame_indices(10).tolist() == list(range(10))
    assert frame_indices(10, 3).tolist() == [0, 3, 6, 9]
    assert frame_indices(10, 3, 2).tolist() == [0, 3]
    assert frame_indices(10, 1, 0).tolist() == list(range(10))
    with pytest.raises(ValueError):
        frame_indices(10, 0)


def test_largest_face_picks_area_and_breaks_ties_by_order():
    boxes = np.array([[0, 0, 10, 10, 0.9], [5, 5, 30, 20, 0.6], [0, 0, 20, 20, 0.7], [50, 50, 75, 65, 0.5]])
    assert largest_face(boxes) == 2  # 400 px² beats 375 px² (twice: the tie goes to the earlier row)
    assert largest_face(boxes[[1, 3]]) == 0


def test_cosine_and_identity_record():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=512)
    embs = [rng.normal(size=512), None, 3.0 * ref, None, -ref]
    sims = cosine_similarities(ref, np.stack([embs[0], embs[2], embs[4]]))
    want0 = float(np.dot(ref, embs[0]) / (np.linalg.norm(ref) * np.linalg.norm(embs[0])))
    np.testing.assert_allclose(sims, [want0, 1.0, -1.0], rtol=0, atol=1e-12)
    rec = identity_record(ref, embs, distance="dist")
    assert rec["csim"] == pytest.approx((want0 + 1.0 - 1.0) / 3, abs=1e-12)
    assert rec["n_frames_scored"] == 5 and rec["n_frames_no_face"] == 2 and rec["no_face_rate"] == 0.4
    assert rec["csim_min"] == pytest.approx(-1.0)
    assert rec["dist"] == pytest.approx(np.mean([np.linalg.norm(embs[0] - ref), 2 * np.linalg.norm(ref),
                                                 2 * np.linalg.norm(ref)]))
    with pytest.raises(ClipFailure, match="no face detected in any of the 3 scored frames"):
        identity_record(ref, [None, None, None])


def test_score_identity_fails_without_reference_face():
    with pytest.raises(ClipFailure, match="reference image"):
        score_identity(np.zeros((8, 8, 3), np.uint8), np.zeros((2, 8, 8, 3), np.uint8), np.arange(2),
                       lambda im: None if not im.any() else np.ones(4))


# --------------------------------------------------------------------------------------------------
# stages vs insightface


@pytest.mark.parametrize("mxnet_style", [False, True])
def test_input_normalisation_rule_matches_arcface_onnx(tmp_path, mxnet_style):
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX

    from metrics.arcface import input_normalisation

    path = csim_fakes.export_recognizer(tmp_path / "rec.onnx", mxnet_style=mxnet_style)
    ref = ArcFaceONNX(model_file=str(path))
    assert input_normalisation(path) == (ref.input_mean, ref.input_std)
    assert input_normalisation(path) == ((0.0, 1.0) if mxnet_style else (127.5, 127.5))


def test_nms_matches_insightface(pack):
    from insightface.model_zoo.retinaface import RetinaFace

    from metrics.arcface import nms

    ref = RetinaFace(model_file=str(pack / "det_10g.onnx"))
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 200, (300, 2))
    wh = rng.uniform(5, 80, (300, 2))
    dets = np.hstack([xy, xy + wh, rng.uniform(0.5, 1, (300, 1))]).astype(np.float32)
    for thresh in (0.2, 0.4, 0.7):
        ref.nms_thresh = thresh
        keep = nms(dets, thresh)
        assert keep == [int(k) for k in ref.nms(dets)]
        assert 10 < len(keep) < 300


@pytest.mark.parametrize("batched", [False, True])
def test_detector_matches_insightface(tmp_path, pack, images, batched):
    """Boxes, scores and keypoints bit-equal to insightface's SCRFD / RetinaFace on real images."""
    from insightface.model_zoo.retinaface import RetinaFace
    from insightface.model_zoo.scrfd import SCRFD

    from metrics.arcface import ScrfdDetector

    path = pack / "det_10g.onnx"
    if batched:
        path = csim_fakes.export_detector(tmp_path / "det_batched.onnx", batched=True)
    n_faces = []
    for det_size in [(640, 640), (320, 256)]:
        ours = ScrfdDetector(path, det_size=det_size)
        # insightface fixes the input size at the first prepare(): fresh instances per size
        refs = [SCRFD(model_file=str(path))] + ([] if batched else [RetinaFace(model_file=str(path))])
        for ref in refs:
            ref.prepare(-1, input_size=det_size, det_thresh=0.5)
        for image in images:
            dets, kps = ours.detect(image)
            n_faces.append(len(dets))
            for ref in refs:
                ref_dets, ref_kps = ref.detect(_bgr(image), max_num=0)
                np.testing.assert_array_equal(dets, ref_dets)
                np.testing.assert_array_equal(kps, ref_kps)
    assert max(n_faces) > 3, "the random detector should fire on real faces"


def test_norm_crop_byte_equal(images, frames, pack):
    from insightface.utils import face_align

    from metrics.arcface import ScrfdDetector, estimate_norm, norm_crop

    landmark_sets = [(frames[0], _dlib_five_points(frames[0])), (frames[60], _dlib_five_points(frames[60]))]
    detector = ScrfdDetector(pack / "det_10g.onnx")
    for image in images:
        _, kps = detector.detect(image)
        landmark_sets += [(image, k) for k in kps[:3]]
    rng = np.random.default_rng(2)
    landmark_sets += [(frames[5], csim_fakes.TEMPLATE * rng.uniform(1.5, 4) + rng.normal(0, 4, (5, 2))
                       + rng.uniform(0, 200, 2)) for _ in range(5)]
    for image, lmk in landmark_sets:
        lmk = np.asarray(lmk, np.float32)
        for size in (112, 128, 224):
            np.testing.assert_array_equal(estimate_norm(lmk, size), face_align.estimate_norm(lmk, size))
            crop = norm_crop(image, lmk, size)
            assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
            np.testing.assert_array_equal(crop, face_align.norm_crop(image, lmk, size))
            np.testing.assert_array_equal(crop[..., ::-1], face_align.norm_crop(_bgr(image), lmk, size))
    # dlib's landmarks put the real face's eyes on the template: the crop is a centred face
    crop = norm_crop(frames[0], landmark_sets[0][1])
    assert crop.mean() > 60 and (crop == 0).all(axis=-1).mean() < 0.05


def test_embeddings_and_cosines_match_arcface_onnx(pack, frames, ref_images):
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX

    from metrics.arcface import ArcFaceRecognizer, norm_crop

    faces = [frames[0], frames[20], frames[40], frames[60], *ref_images]
    crops = np.stack([norm_crop(im, _dlib_five_points(im)) for im in faces])
    ours = ArcFaceRecognizer(pack / "w600k_r50.onnx", batch_size=3)
    ref = ArcFaceONNX(model_file=str(pack / "w600k_r50.onnx"))
    emb = ours.embed(crops)
    ref_emb = ref.get_feat([_bgr(c) for c in crops])
    assert emb.shape == (len(faces), 512)
    np.testing.assert_allclose(emb, ref_emb, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours.embed(crops[2]), emb[2:3], rtol=1e-5, atol=1e-5)  # batching is neutral
    sims = cosine_similarities(emb[0], emb[1:])
    ref_sims = [ref.compute_sim(ref_emb[0], e) for e in ref_emb[1:]]
    np.testing.assert_allclose(sims, ref_sims, rtol=0, atol=1e-6)
    assert np.ptp(sims) > 1e-3  # different faces give different similarities


# --------------------------------------------------------------------------------------------------
# the whole metric vs insightface FaceAnalysis


@pytest.fixture(scope="module")
def csim_clip(tmp_path_factory, frames) -> EvalClip:
    """A short clip: 6 real frames and 2 flat grey frames (no face), reference = another person."""
    from kdbench.video import read_video, write_video

    d = tmp_path_factory.mktemp("csim_clip")
    grey = np.full_like(frames[0], 128)
    video = write_video(d / "clip.mp4", [frames[0], frames[10], grey, frames[20], frames[30], grey,
                                         frames[40], frames[50]])
    spec = ClipSpec(clip_id="clip", ref_image=hdtf_mini_root() / "ref" / f"{OTHERS[0]}.png")
    clip = EvalClip(spec=spec, video_path=video)
    assert len(read_video(video)[0]) == 8
    return clip


def _metric(pack: Path, tmp_path: Path, **options) -> CSIMMetric:
    tmp_path.mkdir(parents=True, exist_ok=True)
    zip_path = csim_fakes.fake_pack_zip(pack, tmp_path / "buffalo_l.zip")
    return CSIMMetric(options=options, weights=WeightsManager(home=tmp_path / "home",
                                                              overrides={"buffalo_l": zip_path}))


def _faceanalysis_csim(pack: Path, root: Path, ref_image: np.ndarray,
                       frames: np.ndarray) -> tuple[float, int]:
    """insightface's own pipeline: FaceAnalysis.get on BGR images, largest face, normed embeddings."""
    from insightface.app import FaceAnalysis

    csim_fakes.insightface_root(pack, root)
    app = FaceAnalysis(name="fakepack", root=str(root), allowed_modules=["detection", "recognition"],
                       providers=["CPUExecutionProvider"])
    app.prepare(ctx_id=-1, det_size=(640, 640))

    def embedding(image):
        faces = app.get(_bgr(image))
        if not faces:
            return None
        return max(faces, key=lambda f: (f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1])).normed_embedding

    ref = embedding(ref_image)
    sims = [float(np.dot(ref, e)) for e in map(embedding, frames) if e is not None]
    return float(np.mean(sims)), len(frames) - len(sims)


def test_csim_metric_equals_faceanalysis(pack, csim_clip, tmp_path):
    metric = _metric(pack, tmp_path)
    record = metric.score_clip(csim_clip)
    want, want_missing = _faceanalysis_csim(pack, tmp_path / "insightface", csim_clip.ref_image,
                                            csim_clip.frames)
    assert record["csim"] == pytest.approx(want, abs=1e-6)
    assert record["n_frames_no_face"] == want_missing == 2
    assert record["n_frames_scored"] == 8 and record["no_face_rate"] == 0.25
    assert -1.0 <= record["csim_min"] <= record["csim"] <= 1.0
    # sampling options: every 3rd frame -> frames 0, 3, 6 (grey frame 2 and 5 skipped by the stride)
    sampled = _metric(pack, tmp_path / "s", frame_stride=3).score_clip(csim_clip)
    want_sampled, _ = _faceanalysis_csim(pack, tmp_path / "insightface", csim_clip.ref_image,
                                         csim_clip.frames[[0, 3, 6]])
    assert sampled["n_frames_scored"] == 3 and sampled["n_frames_no_face"] == 0
    assert sampled["csim"] == pytest.approx(want_sampled, abs=1e-6)
    agg = metric.aggregate({"a": record, "b": sampled})
    assert agg["csim"]["n"] == 2
    assert agg["csim"]["mean"] == pytest.approx((record["csim"] + sampled["csim"]) / 2)
    assert agg["no_face_rate"]["mean"] == pytest.approx(0.125)


def test_csim_metric_failures(pack, csim_clip, tmp_path):
    from kdbench.errors import KdbenchError

    with pytest.raises(ClipFailure, match="reference image"):
        _metric(pack, tmp_path, det_thresh=1.0).score_clip(csim_clip)
    with pytest.raises(KdbenchError, match="no option"):
        CSIMMetric(options={"det_sizes": 320})
    with pytest.raises(FileNotFoundError, match="w600k_r50.onnx"):
        _metric(pack, tmp_path / "m", recognizer="missing.onnx").models()
    assert CSIMMetric.info.weights == ("buffalo_l",) and CSIMMetric.info.paper_column == {"csim": "CSIM"}
    from kdbench.registry import METRICS

    assert METRICS.get("csim") is CSIMMetric
