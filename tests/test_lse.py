"""LSE-C / LSE-D against the syncnet-python reference (PyPI syncnet-python 0.2.3): same weights, real frames.

Real SyncNet/S3FD weights are not downloadable here: both implementations load the same random state_dicts
saved in the official formats (tests/lse_fixtures.py). Inputs are frames and audio of the real HDTF clip
in hdtf-mini.
"""

from __future__ import annotations

import types

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="LSE needs torch (kdbench[metrics])")
cv2 = pytest.importorskip("cv2", reason="LSE needs opencv (kdbench[metrics])")
syncnet_python = pytest.importorskip("syncnet_python", reason="reference package (kdbench[test])")

from syncnet_python.detectors.s3fd import S3FD as RefS3FD  # noqa: E402
from syncnet_python.detectors.s3fd.nets import S3FDNet as RefS3FDNet  # noqa: E402
from syncnet_python.SyncNetInstance import SyncNetInstance, calc_pdist  # noqa: E402
from syncnet_python.SyncNetModel import S as RefS  # noqa: E402

from kdbench.errors import ClipFailure, WeightsMissing  # noqa: E402
from kdbench.weights import WeightsManager  # noqa: E402
from metrics import face_tracks, lse, s3fd, syncnet_net  # noqa: E402
from tests import lse_fixtures as fx  # noqa: E402

TOL = 1e-4


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def syncnet_state():
    return fx.random_syncnet_state(seed=3)


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory, syncnet_state):
    d = tmp_path_factory.mktemp("lse_weights")
    return {
        "syncnet_v2": fx.save_state(syncnet_state, d / "syncnet_v2.model"),
        "sfd_face": fx.save_state(fx.random_s3fd_state(seed=0), d / "sfd_face.pth"),
    }


@pytest.fixture(scope="module")
def hdtf():
    """First 40 frames (RGB 512x512) and their 1.6 s of int16 audio from the real HDTF clip."""
    return fx.hdtf_frames_audio(40)


@pytest.fixture
def manager(weight_files, tmp_path, monkeypatch):
    monkeypatch.setenv("KDBENCH_ALLOW_UNVERIFIED", "1")  # random weights do not match the pinned blob ids
    return WeightsManager(home=tmp_path, overrides=weight_files)


def _ref_instance(state) -> SyncNetInstance:
    net = RefS()
    net.load_state_dict(state)
    return SyncNetInstance(net=net.eval(), device="cpu")


def _ref_evaluate(
    inst: SyncNetInstance,
    frames_bgr: list[np.ndarray],
    audio: np.ndarray,
    tmp_path,
    monkeypatch,
    batch_size: int = 20,
):
    """SyncNetInstance.evaluate on exactly these frames: its cv2.imread is pointed at the arrays."""
    import sys

    from scipy.io import wavfile

    ref_mod = sys.modules[
        "syncnet_python.SyncNetInstance"
    ]  # the package re-exports the class under this name

    names = []
    for i in range(len(frames_bgr)):
        p = tmp_path / f"{i + 1:06d}.jpg"
        p.write_bytes(b"")
        names.append(str(p))
    table = dict(zip(names, frames_bgr, strict=False))
    monkeypatch.setattr(ref_mod, "cv2", types.SimpleNamespace(imread=lambda f: table[f]))
    wavfile.write(str(tmp_path / "audio.wav"), 16000, audio)
    opt = types.SimpleNamespace(tmp_dir=str(tmp_path), batch_size=batch_size, vshift=15)
    return inst.evaluate(opt)  # (offset, conf, min dist)


# -------------------------------------------------------------------------------------------- audio + math
def test_mfcc_equals_python_speech_features(hdtf):
    import python_speech_features

    audio = hdtf[1]
    got = lse.audio_features(audio)
    # the reference: zip(*mfcc) stacked, then float64 -> float32 (SyncNetInstance.py:83-88)
    ref = np.stack([np.array(i) for i in zip(*python_speech_features.mfcc(audio, 16000), strict=False)])
    ref = torch.from_numpy(ref.astype(float)).float().numpy()
    assert got.shape == (13, 1 + int(np.ceil((len(audio) - 400) / 160)))
    np.testing.assert_array_equal(got, ref)
    with pytest.raises(ValueError, match="int16"):
        lse.audio_features(audio.astype(np.float32) / 32768)


def test_sync_scores_equal_reference_calc_pdist():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(37, 1024)).astype(np.float32) * 3
    a = (v + rng.normal(size=v.shape).astype(np.float32)) * 0.7
    a = np.roll(a, 2, axis=0)  # a true offset of 2 windows
    d = lse.sync_distances(v, a)
    ref = torch.stack(calc_pdist(torch.from_numpy(v), torch.from_numpy(a), vshift=15), 0).numpy()
    np.testing.assert_allclose(d, ref, rtol=2e-6)
    s = lse.sync_scores(d)
    mdist = torch.from_numpy(ref).mean(0)
    minval, minidx = torch.min(mdist, 0)
    assert s["av_offset"] == 15 - int(minidx) == -2
    assert abs(s["lse_d"] - float(minval)) < TOL
    assert abs(s["lse_c"] - float(torch.median(mdist) - minval)) < TOL
    # zero padding: at offset +-15 only N-15 windows have audio, the rest are distances to the zero vector
    np.testing.assert_allclose(d[:15, 0], np.linalg.norm(v[:15].astype(np.float64) + 1e-6, axis=1))


def test_n_windows_and_combine_rules():
    assert lse.n_windows(200, 128000) == 195
    assert lse.n_windows(200, 127999) == 194  # audio covers 199 frames
    tracks = [
        {"lse_c": 2.0, "lse_d": 8.0, "av_offset": 1, "n_windows": 50},
        {"lse_c": 4.0, "lse_d": 9.0, "av_offset": -3, "n_windows": 90},
    ]
    assert lse.combine_tracks(tracks, "mean") == {
        "lse_c": 3.0,
        "lse_d": 8.5,
        "av_offset": -3,
        "n_frames_scored": 140,
    }
    assert lse.combine_tracks(tracks, "longest") == {
        "lse_c": 4.0,
        "lse_d": 9.0,
        "av_offset": -3,
        "n_frames_scored": 90,
    }
    assert lse.combine_tracks(tracks, "best") == {
        "lse_c": 4.0,
        "lse_d": 8.0,
        "av_offset": 1,
        "n_frames_scored": 140,
    }


# ------------------------------------------------------------------------------------------------ SyncNet
def test_syncnet_state_dict_format(syncnet_state, tmp_path):
    ref = RefS()
    assert list(ref.state_dict()) == list(syncnet_state)  # the official key order and names
    ref.load_state_dict(syncnet_state)  # strict
    p = fx.save_state(syncnet_state, tmp_path / "syncnet_v2.model")
    net = syncnet_net.load_syncnet(p)
    assert not net.training


def test_embeddings_equal_reference(syncnet_state, hdtf):
    frames = lse.full_frame_input(hdtf[0][:8])  # BGR 224
    ref = RefS()
    ref.load_state_dict(syncnet_state)
    ref.eval()
    net = syncnet_net.SyncNetS()
    net.load_state_dict(syncnet_state)
    net.eval()
    n = 4
    v = syncnet_net.embed_video(net, frames, n, batch_size=3)
    im = torch.from_numpy(frames.astype(np.float32)).permute(3, 0, 1, 2)[None]  # 1x3xTxHxW
    with torch.no_grad():
        v_ref = ref.forward_lip(torch.cat([im[:, :, i : i + 5] for i in range(n)])).numpy()
    scale = np.abs(v_ref).max()
    assert np.abs(v - v_ref).max() <= 1e-5 * scale
    mf = lse.audio_features(hdtf[1][: 9 * 640])
    a = syncnet_net.embed_audio(net, mf, n, batch_size=5)
    cc = torch.from_numpy(mf)[None, None]
    with torch.no_grad():
        a_ref = ref.forward_aud(torch.cat([cc[:, :, :, 4 * i : 4 * i + 20] for i in range(n)])).numpy()
    assert np.abs(a - a_ref).max() <= 1e-5 * np.abs(a_ref).max()


def test_full_protocol_equals_syncnet_instance(syncnet_state, hdtf, manager, tmp_path, monkeypatch):
    """Wav2Lip LRS protocol: whole frames at 224. kdbench's LSEMetric vs SyncNetInstance.evaluate."""
    frames_rgb, audio = hdtf[0][:26], hdtf[1][: 26 * 640]
    frames224 = np.stack([cv2.resize(f, (224, 224)) for f in frames_rgb])
    off, conf, dist = _ref_evaluate(
        _ref_instance(syncnet_state), list(frames224[..., ::-1]), audio, tmp_path, monkeypatch
    )
    metric = lse.LSEMetric(options={"protocol": "full", "batch_size": 7}, weights=manager)
    rec = metric.score_clip(fx.make_clip(frames224, audio))
    assert rec["protocol"] == "full" and rec["n_tracks"] == 1
    assert rec["n_frames_scored"] == 21
    assert abs(rec["lse_d"] - dist) <= TOL, (rec, dist)
    assert abs(rec["lse_c"] - conf) <= TOL, (rec, conf)
    assert rec["av_offset"] == off
    # full_frame_input on the 512x512 frames is the same resize (Wav2Lip's cv2.resize to 224)
    np.testing.assert_array_equal(lse.full_frame_input(frames_rgb[:3]), frames224[:3, :, :, ::-1])


# ------------------------------------------------------------------------------------------------ S3FD
def _s3fd_pair(state: dict) -> tuple[RefS3FD, s3fd.S3FDNet]:
    """The reference S3FD (syncnet-python) and kdbench's network, both with ``state``."""
    ref_net = RefS3FDNet(device="cpu")
    ref_net.load_state_dict(state)
    net = s3fd.S3FDNet()
    net.load_state_dict(state)
    return RefS3FD(ref_net, device="cpu"), net.eval()


@pytest.mark.parametrize(
    "planted, frame_ids, thresholds",
    [({}, [0], (0.9,)), ({"face_level": 2, "face_logit": 2.5, "head_scale": 2.0}, [39], (0.9, 0.5))],
    ids=["one-face", "dense"],
)
def test_s3fd_detections_equal_reference(planted, frame_ids, thresholds, hdtf):
    ref, net = _s3fd_pair(fx.random_s3fd_state(seed=0, **planted))
    frames = hdtf[0][frame_ids]
    for conf_th in thresholds:
        got = s3fd.detect_faces(net, frames, 0.25, conf_th, batch_size=2)
        n = 0
        for f, g in zip(frames, got, strict=False):
            r = ref.detect_faces(f, conf_th=conf_th, scales=[0.25])
            assert g.shape == r.shape
            np.testing.assert_allclose(g[:, :4], r[:, :4], atol=1e-3)  # pixels
            np.testing.assert_allclose(g[:, 4], r[:, 4], atol=1e-6)
            n += len(g)
        assert n >= len(frames)  # the planted heads do fire: the comparison is not vacuous
    if len(thresholds) > 1:
        assert len(got[0]) >= 2  # several faces: both NMS stages are exercised


def test_s3fd_several_faces_and_tracks_equal_reference(hdtf):
    """Several candidate boxes per frame (both NMS stages), several tracks, and a face that appears at frame 5
    and disappears after frame 11: kdbench's detector + tracker vs the reference's S3FD.detect_faces + _track."""
    ref, net = _s3fd_pair(fx.random_s3fd_state(seed=0, face_level=2, face_logit=2.5, head_scale=2.0))
    n = 16
    frames = np.full((n, 512, 512, 3), 90, np.uint8)  # a grey studio, one person, a second from frame 5 to 11
    for t in range(n):
        face = cv2.resize(hdtf[0][t], (240, 240))
        frames[t, 20:260, 10:250] = face
        if 5 <= t < 12:
            frames[t, 250:490, 262:502] = face[:, ::-1]
    got = s3fd.detect_faces(net, frames, 0.25, 0.9, batch_size=5)
    dets = [ref.detect_faces(f, conf_th=0.9, scales=[0.25]) for f in frames]
    for g, r in zip(got, dets, strict=True):
        assert g.shape == r.shape
        np.testing.assert_allclose(g[:, :4], r[:, :4], atol=1e-3)
        np.testing.assert_allclose(g[:, 4], r[:, 4], atol=1e-6)
    assert min(len(d) for d in dets) >= 3  # several faces in every frame
    ref_tracks = _ref_track([d.copy() for d in dets], min_track=4)
    tracks = face_tracks.track_faces(got, min_track=4, variant="syncnet-python")
    assert len(tracks) == len(ref_tracks) >= 4
    for t, r in zip(tracks, ref_tracks, strict=True):
        np.testing.assert_array_equal(t.frames, r["frame"])
        np.testing.assert_allclose(t.boxes, r["bbox"], atol=1e-3)
    spans = sorted((int(t.frames[0]), int(t.frames[-1])) for t in tracks)
    assert (0, n - 1) in spans and (5, 11) in spans  # whole-clip tracks, and the face that comes and goes


def test_s3fd_device_input_is_the_reference_arithmetic(hdtf):
    small = s3fd.resize_frames(hdtf[0][:3], 0.25)
    assert small.shape == (3, 128, 128, 3) and small.dtype == np.uint8
    x = s3fd.to_device_input(small, "cpu")
    assert x.shape == (3, 3, 128, 128) and x.is_contiguous(memory_format=torch.channels_last)
    # the reference: BGR float32 image minus (104, 117, 123), back to RGB order
    expected = (small[..., ::-1].astype(np.float32) - np.array([104.0, 117.0, 123.0]))[..., ::-1]
    np.testing.assert_array_equal(x.numpy(), expected.transpose(0, 3, 1, 2).astype(np.float32))


def test_s3fd_batches_equal_one_frame_at_a_time(hdtf):
    """Batched decoding + per-image NMS gives the detections of single-frame batches (bit-identical here; the
    tolerance allows for a convolution library that sums in another order at another batch size)."""
    net = s3fd.S3FDNet()
    net.load_state_dict(fx.random_s3fd_state(seed=0, face_level=2, face_logit=2.5, head_scale=2.0))
    net.eval()
    frames = hdtf[0][[0, 13, 26, 39]]
    one = s3fd.detect_faces(net, frames, 0.25, 0.5, batch_size=1)
    batched = s3fd.detect_faces(net, frames, 0.25, 0.5, batch_size=3)  # a full batch and a partial one
    assert sum(len(d) for d in one) >= 4
    for a, b in zip(one, batched, strict=True):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-4)


def _ref_track(dets: list[np.ndarray], min_track: int, num_failed_det: int = 25, min_face_size: float = 100):
    from syncnet_python.syncnet_pipeline import PipelineConfig, SyncNetPipeline

    cfg = PipelineConfig(min_track=min_track, num_failed_det=num_failed_det, min_face_size=min_face_size)
    fake = types.SimpleNamespace(cfg=cfg, _iou=SyncNetPipeline._iou)
    faces = [
        [{"frame": i, "bbox": b[:4].tolist(), "conf": float(b[4])} for b in d] for i, d in enumerate(dets)
    ]
    return SyncNetPipeline._track(fake, faces)


def _box_sequences(seed: int, n: int = 140):
    """Two faces moving slowly, with missed detections (short and > 25-frame gaps) and a spurious box."""
    rng = np.random.default_rng(seed)
    a0, b0 = np.array([40.0, 60, 200, 240]), np.array([300.0, 50, 470, 230])
    dets = []
    for t in range(n):
        faces = []
        a = a0 + np.array([1, 0.5, 1, 0.5]) * t * 0.3 + rng.normal(0, 1.5, 4)
        b = b0 + rng.normal(0, 1.5, 4)
        if not (20 <= t < 24 or 60 <= t < 90):  # face A: a 4-frame gap and a 30-frame gap
            faces.append(np.r_[a, 0.99])
        if t % 7 != 3:
            faces.append(np.r_[b, 0.97])
        if t % 31 == 5:
            faces.append(np.r_[rng.uniform(0, 300, 2), rng.uniform(320, 500, 2), 0.95])
        dets.append(np.array(faces).reshape(-1, 5))
    return dets


@pytest.mark.parametrize("seed", [0, 1])
def test_tracking_equals_reference(seed):
    dets = _box_sequences(seed)
    swapped = [d[::-1] if i % 5 == 0 else d for i, d in enumerate(dets)]  # face order reversed in some frames
    for seq in (dets, swapped):
        for min_track in (10, 40):
            ref = _ref_track([d.copy() for d in seq], min_track)
            got = face_tracks.track_faces(seq, min_track, variant="syncnet-python")
            assert len(got) == len(ref) >= 2
            for g, r in zip(got, ref, strict=False):
                np.testing.assert_array_equal(g.frames, r["frame"])
                np.testing.assert_array_equal(g.boxes, r["bbox"])
    # joonson's track_shot (the Wav2Lip protocol) skips a face that does not continue the track and tries the
    # next one in the frame (syncnet-python stops at it): its tracks do not depend on the order of the faces
    # in a frame (only the order of the tracks may change). Face A: frames 0-59 (the 4-frame gap is
    # interpolated), then lost for 30 > 25 frames, back
    # from 90; face B: all 140 frames (1-frame gaps interpolated); the spurious boxes make no track.
    for seq in (dets, swapped):
        joon = face_tracks.track_faces(seq, 10, variant="joonson")
        assert sorted((t.frames[0], t.frames[-1]) for t in joon) == [(0, 59), (0, 139), (90, 139)]
        assert all(np.array_equal(t.frames, np.arange(t.frames[0], t.frames[-1] + 1)) for t in joon)
    pypi = face_tracks.track_faces(dets, 10, variant="syncnet-python")
    assert sorted((t.frames[0], t.frames[-1]) for t in pypi) != [(0, 59), (0, 139), (90, 139)]


def test_tracking_rules():
    box = np.array([[100.0, 100, 250, 260, 0.99]])
    dets = [box.copy() for _ in range(30)]
    assert face_tracks.track_faces(dets, min_track=30) == []  # needs MORE than min_track detections
    (t,) = face_tracks.track_faces(dets, min_track=29)
    assert len(t) == 30
    small = [np.array([[0.0, 0, 90, 95, 0.99]]) for _ in range(30)]
    assert face_tracks.track_faces(small, min_track=10) == []  # mean size must exceed min_face_size
    gap = [box if i not in range(5, 31) else np.empty((0, 5)) for i in range(40)]
    assert [len(t) for t in face_tracks.track_faces(gap, min_track=3, num_failed_det=25)] == [5, 9]


def test_crop_equals_reference(hdtf, tmp_path, monkeypatch):
    """Crops of syncnet-python's SyncNetPipeline._crop (its VideoWriter captured before XVID encoding)."""
    import syncnet_python.syncnet_pipeline as pipe

    frames_rgb = hdtf[0][:30]
    bgr = np.ascontiguousarray(frames_rgb[..., ::-1])
    paths = []
    for i, f in enumerate(bgr):
        p = tmp_path / f"{i:06d}.png"
        cv2.imwrite(str(p), f)
        paths.append(str(p))
    # a track that runs off the frame edges (pad 110 is used) and grows, with interpolated frames
    fr = np.array([2, 3, 9, 15, 16, 29])
    bb = np.array(
        [
            [-30.0, 10, 200, 230],
            [-25, 12, 205, 236],
            [100, 120, 330, 360],
            [300, 280, 520, 530],
            [310, 290, 530, 545],
            [150, 160, 420, 440],
        ]
    )
    full = np.arange(2, 30)
    boxes = np.stack([np.interp(full, fr, bb[:, k]) for k in range(4)], 1)
    written = []

    class Writer:
        def __init__(self, *a, **k):
            pass

        def write(self, img):
            written.append(img.copy())

        def release(self):
            pass

    monkeypatch.setattr(pipe.cv2, "VideoWriter", Writer)
    monkeypatch.setattr(pipe.subprocess, "run", lambda *a, **k: None)
    monkeypatch.setattr(pipe.os, "remove", lambda *a, **k: None)
    fake = types.SimpleNamespace(cfg=pipe.PipelineConfig())
    pipe.SyncNetPipeline._crop(
        fake, {"frame": full, "bbox": boxes}, paths, "a.wav", tmp_path / "crop" / "00000"
    )
    got = face_tracks.crop_track(bgr, face_tracks.FaceTrack(full, boxes), 0.4)
    assert len(written) == len(got) == len(full)
    np.testing.assert_array_equal(got, np.stack(written))
    assert (got == 110).all(axis=-1).any()  # the padding is exercised


def test_crop_window_matches_np_pad():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    for _ in range(50):
        pad = int(rng.integers(0, 30))
        padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), "constant", constant_values=(110, 110))
        r = sorted(rng.integers(-10, 40 + 2 * pad + 10, 2))
        c = sorted(rng.integers(-10, 50 + 2 * pad + 10, 2))
        np.testing.assert_array_equal(
            face_tracks.crop_window(img, tuple(r), tuple(c), pad), padded[r[0] : r[1], c[0] : c[1]]
        )


# ------------------------------------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_s3fd_protocol_equals_reference_pipeline(syncnet_state, hdtf, manager, tmp_path, monkeypatch):
    """Detect -> track -> crop -> SyncNet: kdbench LSEMetric vs syncnet-python's functions, same frames."""
    import syncnet_python.syncnet_pipeline as pipe

    frames_rgb, audio = hdtf[0][:18], hdtf[1][: 18 * 640]
    bgr = np.ascontiguousarray(frames_rgb[..., ::-1])
    min_track = 12
    # reference chain: S3FD.detect_faces per frame (RGB in) -> _track -> _crop (captured) -> evaluate
    ref_det_net = RefS3FDNet(device="cpu")
    ref_det_net.load_state_dict(torch.load(str(manager.path("sfd_face")), weights_only=True))
    ref_det = RefS3FD(ref_det_net, device="cpu")
    dets = [ref_det.detect_faces(f, conf_th=0.9, scales=[0.25]) for f in frames_rgb]
    ref_tracks = _ref_track(dets, min_track)
    assert len(ref_tracks) == 1
    paths = []
    for i, f in enumerate(bgr):
        p = tmp_path / f"f{i:06d}.png"
        cv2.imwrite(str(p), f)
        paths.append(str(p))
    written = []
    monkeypatch.setattr(
        pipe.cv2,
        "VideoWriter",
        lambda *a, **k: types.SimpleNamespace(
            write=lambda img: written.append(img.copy()), release=lambda: None
        ),
    )
    monkeypatch.setattr(pipe.subprocess, "run", lambda *a, **k: None)
    monkeypatch.setattr(pipe.os, "remove", lambda *a, **k: None)
    t = ref_tracks[0]
    pipe.SyncNetPipeline._crop(
        types.SimpleNamespace(cfg=pipe.PipelineConfig()), t, paths, "a.wav", tmp_path / "c"
    )
    a_slice = audio[t["frame"][0] * 640 : (t["frame"][-1] + 1) * 640]
    ev = tmp_path / "ev"
    ev.mkdir()
    off, conf, dist = _ref_evaluate(_ref_instance(syncnet_state), written, a_slice, ev, monkeypatch)

    metric = lse.LSEMetric(options={"min_track": min_track, "det_batch_size": 8}, weights=manager)
    clip = fx.make_clip(frames_rgb, audio)
    rec = metric.score_clip(clip)
    assert rec["protocol"] == "s3fd" and rec["n_tracks"] == 1
    assert (
        rec["tracks"][0]["first_frame"] == t["frame"][0] and rec["tracks"][0]["last_frame"] == t["frame"][-1]
    )
    assert abs(rec["lse_d"] - dist) <= TOL, (rec, dist)
    assert abs(rec["lse_c"] - conf) <= TOL, (rec, conf)
    assert rec["av_offset"] == off
    assert any(k.startswith("s3fd_detections:") for k in clip.cache)  # detections shared with other metrics


# ------------------------------------------------------------------------------------------------ failures
def test_clip_failures(hdtf, manager):
    frames, audio = hdtf[0][:20], hdtf[1][: 20 * 640]
    full = lse.LSEMetric(options={"protocol": "full"}, weights=manager)
    with pytest.raises(ClipFailure, match="silent"):
        full.score_clip(fx.make_clip(frames, np.zeros_like(audio)))
    with pytest.raises(ClipFailure, match="audio shorter than the video"):
        full.score_clip(fx.make_clip(frames, audio[: 18 * 640 - 1]))
    with pytest.raises(ClipFailure, match="25 fps"):
        full.score_clip(fx.make_clip(frames, audio, fps=30.0))
    with pytest.raises(ClipFailure, match="too short"):
        full.score_clip(fx.make_clip(frames[:5], audio[: 5 * 640]))
    # default protocol: 20 frames can never make a track of more than min_track=100 detections
    with pytest.raises(ClipFailure, match="no usable face track"):
        lse.LSEMetric(weights=manager).score_clip(fx.make_clip(frames, audio))


def test_no_face_is_a_failure(hdtf, weight_files, tmp_path, monkeypatch):
    monkeypatch.setenv("KDBENCH_ALLOW_UNVERIFIED", "1")
    blind = fx.save_state(fx.random_s3fd_state(seed=0, face_level=-1), tmp_path / "blind.pth")
    wm = WeightsManager(
        home=tmp_path, overrides={"syncnet_v2": weight_files["syncnet_v2"], "sfd_face": blind}
    )
    frames, audio = hdtf[0][:6], hdtf[1][: 6 * 640]
    with pytest.raises(ClipFailure, match="faces detected in 0 of 6 frames"):
        lse.LSEMetric(options={"min_track": 3}, weights=wm).score_clip(fx.make_clip(frames, audio))


def test_missing_weights_raise(tmp_path, monkeypatch):
    monkeypatch.delenv("KDBENCH_WEIGHT_SYNCNET_V2", raising=False)
    monkeypatch.delenv("KDBENCH_WEIGHT_SFD_FACE", raising=False)
    with pytest.raises(WeightsMissing, match="syncnet_v2"):
        lse.LSEMetric(weights=WeightsManager(home=tmp_path))


def test_options_and_aggregate(manager):
    from kdbench.registry import METRICS

    assert METRICS.get("lse") is lse.LSEMetric
    assert lse.LSEMetric.info.paper_column == {"lse_c": "LSE-C", "lse_d": "LSE-D"}
    with pytest.raises(Exception, match="protocol"):
        lse.LSEMetric(options={"protocol": "mouth"}, weights=manager)
    with pytest.raises(Exception, match="no option"):
        lse.LSEMetric(options={"vshfit": 3}, weights=manager)
    m = lse.LSEMetric(options={"protocol": "full"}, weights=manager)
    agg = m.aggregate(
        {
            "a": {"lse_c": 2.0, "lse_d": 8.0, "av_offset": 1},
            "b": {"lse_c": 4.0, "lse_d": 6.0, "av_offset": -1},
        }
    )
    assert agg["lse_c"]["mean"] == 3.0 and agg["lse_d"]["mean"] == 7.0
    assert agg["lse_c"]["n_clips"] == 2 and agg["lse_c"]["protocol"] == "full"


def test_import_is_light():
    import subprocess
    import sys

    code = "import sys, metrics.lse; bad = {'torch', 'cv2'} & set(sys.modules); print(sorted(bad))"
    root = str(__import__("pathlib").Path(__file__).resolve().parent.parent)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "[]"
