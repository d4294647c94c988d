"""FID: kdbench's in-memory pooled FID equals pytorch-fid's own path on the same frames as PNG files.

The Inception checkpoint is randomly initialised but saved in pytorch-fid's format (the key names and
shapes of ``pt_inception-2015-12-05-6726825d.pth``), so both paths load it the way they load the real one.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from kdbench.dataset import ClipSpec
from kdbench.errors import ClipFailure, KdbenchError
from kdbench.weights import WeightsManager
from metrics import fid as kf

torch = pytest.importorskip("torch", reason="FID's network needs torch (a metrics dependency)")
pfi = pytest.importorskip("pytorch_fid.inception", reason="pytorch-fid is FID's reference and dependency")
import pytorch_fid.fid_score as pfs  # noqa: E402

HDTF_CLIP = "WDA_KatieHill_000"


def random_fid_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict for pytorch-fid's FID Inception (same keys/shapes as the official file).

    He-normal convolutions and randomised BatchNorm parameters/statistics keep activations O(1)
    through the 94 layers (PyTorch's default init would make them vanish).
    """
    inc = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    inc.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    inc.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    inc.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    inc.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    inc.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    inc.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    inc.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    inc.Mixed_7b = pfi.FIDInceptionE_1(1280)
    inc.Mixed_7c = pfi.FIDInceptionE_2(2048)
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in inc.state_dict().items():
        if k.endswith("num_batches_tracked"):
            out[k] = v
        elif v.ndim == 4:
            out[k] = torch.randn(v.shape, generator=g) * (2.0 / (v.shape[1] * v.shape[2] * v.shape[3])) ** 0.5
        elif k.endswith("running_mean"):
            out[k] = torch.randn(v.shape, generator=g) * 0.1
        elif k.endswith("running_var"):
            out[k] = torch.rand(v.shape, generator=g) * 1.5 + 0.5
        elif k.endswith("bn.weight"):
            out[k] = torch.rand(v.shape, generator=g) + 0.5
        elif k.endswith("bn.bias"):
            out[k] = torch.randn(v.shape, generator=g) * 0.1
        else:  # fc (unused by FID, present in the official file)
            out[k] = torch.randn(v.shape, generator=g) * 0.01
    return out


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fidw") / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(random_fid_state_dict(), path)
    return path


@pytest.fixture(scope="module")
def hdtf() -> tuple[Path, np.ndarray]:
    """The real HDTF clip's path and its frames 0, 1, 100, 101 (uint8[4,512,512,3])."""
    from kdbench.hdtf_mini import hdtf_mini_root
    from kdbench.video import read_video

    path = hdtf_mini_root() / "gt" / f"{HDTF_CLIP}.mp4"
    frames, _ = read_video(path, max_frames=102)
    return path, frames[[0, 1, 100, 101]]


def make_clip(clip_id: str, gt_video: Path, gt_frames: np.ndarray | None, frames: np.ndarray,
              sha: str | None = "0" * 64) -> SimpleNamespace:
    """An EvalClip stand-in: the frames are given directly (as the evaluator's decoded arrays)."""
    spec = ClipSpec(clip_id=clip_id, gt_video=gt_video, sha256={"gt_video": sha} if sha else {})
    return SimpleNamespace(spec=spec, clip_id=clip_id, frames=frames, gt_frames=gt_frames)


def write_pngs(folder: Path, frames: np.ndarray) -> Path:
    from PIL import Image

    folder.mkdir(parents=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:05d}.png")
    return folder


# ------------------------------------------------------------------------------------------------
# Pure maths (fast)
# ------------------------------------------------------------------------------------------------
def test_statistics_and_distance_are_pytorch_fid():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 16)).astype(np.float32)
    b = (rng.normal(size=(250, 16)) * 1.3 + 0.2).astype(np.float32)
    mu, sigma = kf.activation_statistics(a)
    assert np.array_equal(mu, np.mean(a.astype(np.float64), axis=0))
    assert np.array_equal(sigma, np.cov(a.astype(np.float64), rowvar=False))
    mb, sb = kf.activation_statistics(b)
    want = pfs.calculate_frechet_distance(mu, sigma, mb, sb)
    assert kf.fid_from_activations(a, b) == want > 1.0
    # FID(X, X) = 0; equal covariances -> squared mean distance (pytorch-fid's own tests)
    assert abs(kf.fid_from_activations(a, a)) < 1e-6
    shift = np.full(16, 0.5)
    assert abs(kf.frechet_distance(mu, sigma, mu + shift, sigma) - float(shift @ shift)) < 1e-6


def test_scipy_range_check(monkeypatch):
    import scipy

    assert kf.check_scipy() == scipy.__version__
    for bad in ("1.18.0", "1.12.0", "1.11.4"):
        monkeypatch.setattr(scipy, "__version__", bad)
        with pytest.raises(KdbenchError, match="scipy"):
            kf.check_scipy()
    monkeypatch.setattr(scipy, "__version__", "1.17.1")
    assert kf.check_scipy() == "1.17.1"


def test_sample_and_resize():
    assert kf.sample_indices(10, 3, None).tolist() == [0, 3, 6, 9]
    assert kf.sample_indices(10, 1, 4).tolist() == [0, 1, 2, 3]
    frames = np.zeros((2, 8, 6, 3), np.uint8)
    assert kf.resize_frames(frames, 8, 6) is frames
    assert kf.resize_frames(frames, 16, 12).shape == (2, 16, 12, 3)


# ------------------------------------------------------------------------------------------------
# Network loading (no download, pytorch-fid's own model code)
# ------------------------------------------------------------------------------------------------
def test_checkpoint_loads_into_pytorch_fid_model(ckpt, monkeypatch):
    from metrics.fid_inception import load_fid_inception

    def no_download(*a, **k):
        raise AssertionError("pytorch-fid must not download")

    model = load_fid_inception(ckpt)
    assert isinstance(model, pfi.InceptionV3) and not model.training
    assert len(model.blocks) == 4
    sd = torch.load(ckpt, weights_only=True)
    got = model.blocks[3][2].branch_pool.conv.weight  # Mixed_7c
    assert torch.equal(got, sd["Mixed_7c.branch_pool.conv.weight"])
    # the temporary hook is removed: pytorch-fid's download function is back in place
    monkeypatch.setattr(pfi, "load_state_dict_from_url", no_download)
    with pytest.raises(AssertionError, match="must not download"):
        pfi.fid_inception_v3()


# ------------------------------------------------------------------------------------------------
# Cache and protocol logic with a stub feature extractor (fast)
# ------------------------------------------------------------------------------------------------
class _StubFID(kf.FIDMetric):
    """FIDMetric whose 'network' is a fixed random projection of 4x4-pooled pixels (counts calls)."""

    calls: list[int]

    def _load(self) -> None:
        self._model = "stub"
        self._weights_sha256 = getattr(self, "stub_sha", "f" * 64)
        if not hasattr(self, "calls"):
            self.calls = []

    def activations(self, frames: np.ndarray) -> np.ndarray:
        self._load()
        idx = kf.sample_indices(len(frames), self.options["stride"], self.options["max_frames"])
        f = frames[idx].astype(np.float32)
        t, h, w, _ = f.shape
        pooled = f.reshape(t, 4, h // 4, 4, w // 4, 3).mean(axis=(2, 4)).reshape(t, 48)
        proj = np.random.default_rng(0).normal(size=(pooled.shape[1], 8)).astype(np.float32)
        self.calls.append(len(f))
        return pooled @ proj


def test_gt_cache_protocol_and_flags(tmp_path, monkeypatch):
    monkeypatch.setenv("KDBENCH_HOME", str(tmp_path / "home"))
    rng = np.random.default_rng(1)
    gt1 = rng.integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
    gt2 = rng.integers(0, 256, (10, 16, 16, 3), dtype=np.uint8)
    video = tmp_path / "gt.mp4"  # never opened: frames are given
    clips = [make_clip("c1", video, gt1, gt1, "a" * 64), make_clip("c2", video, gt2, gt2, "b" * 64)]

    real = _StubFID()
    real.context = {"manifest_id": "m1", "dataset": "toy"}
    recs = {c.clip_id: real.score_clip(c) for c in clips}
    assert real.calls == [12, 12, 10, 10]  # GT and generated of each clip
    assert recs["c1"] == {"n_frames": 12, "n_gt_frames": 12, "gt_cached": False, "frame_size": [16, 16],
                          "gt_frame_size": [16, 16], "resized": False}
    agg = real.aggregate(recs)["fid"]
    assert abs(agg["mean"]) < 1e-6  # FID(X, X)
    assert agg["n"] == 2 and agg["n_frames_gen"] == 22 and agg["n_frames_gt"] == 22
    assert agg["gt_stats_cached"] is False and "fewer than 2048" in agg["flags"][0]
    assert agg["protocol"]["weights"]["sha256"] == "f" * 64
    cache = tmp_path / "home" / "features" / "fid"
    assert len(list(cache.glob("*/m1/c1.aaaaaaaaaaaaaaaa.npz"))) == 1

    # a second method: GT features come from the cache, only its own frames are extracted
    static = _StubFID()
    static.context = {"manifest_id": "m1"}
    st_clips = [make_clip(c.clip_id, video, None, np.repeat(c.gt_frames[:1], len(c.gt_frames), 0),
                          c.spec.sha256["gt_video"]) for c in clips]
    srecs = {c.clip_id: static.score_clip(c) for c in st_clips}
    assert static.calls == [12, 10] and all(r["gt_cached"] for r in srecs.values())
    sagg = static.aggregate(srecs)["fid"]
    assert sagg["gt_stats_cached"] is True
    gen = np.concatenate([static.activations(c.frames) for c in st_clips])
    gt = np.concatenate([static.activations(c.gt_frames) for c in clips])
    assert sagg["mean"] == kf.fid_from_activations(gen, gt) > 0

    # pooled GT statistics follow the set of scored clips (a failed clip drops out of both sides)
    one = static.aggregate({"c1": srecs["c1"]})["fid"]
    assert one["gt_stats_cached"] is False and one["n_frames_gt"] == 12
    assert one["mean"] == kf.fid_from_activations(static.activations(st_clips[0].frames),
                                                  static.activations(gt1))

    # another GT file, manifest or checkpoint -> another cache entry (features recomputed)
    for changed, ctx, sha in (("gt file", "m1", "c" * 64), ("manifest", "m2", "a" * 64)):
        m = _StubFID()
        m.context = {"manifest_id": ctx}
        r = m.score_clip(make_clip("c1", video, gt1, gt1, sha))
        assert r["gt_cached"] is False, changed
    m = _StubFID()
    m.stub_sha = "e" * 64
    m.context = {"manifest_id": "m1"}
    assert m.score_clip(clips[0])["gt_cached"] is False
    assert kf.protocol_key(m.protocol) != kf.protocol_key(real.protocol)

    # no cache: nothing written, GT extracted again, same value
    nc = _StubFID(options={"cache": False})
    nc.context = {"manifest_id": "m9"}
    nrec = {"c1": nc.score_clip(clips[0])}
    assert nc.calls == [12, 12] and nrec["c1"]["gt_cached"] is False
    assert not list(cache.glob("*/m9"))
    assert abs(nc.aggregate(nrec)["fid"]["mean"]) < 1e-6


def test_vfr_gt_has_its_own_cache_entry(tmp_path, monkeypatch):
    """A variable-frame-rate GT video's frames are resampled by timestamp (EvalClip.gt_frames): features cached from
    the file's frames as decoded (before kdbench resampled it) must not stand in for them, nor the other way."""
    monkeypatch.setenv("KDBENCH_HOME", str(tmp_path / "home"))
    gt = np.random.default_rng(2).integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
    plain = make_clip("c1", tmp_path / "gt.mp4", gt, gt, "a" * 64)
    vfr = make_clip("c1", tmp_path / "gt.mp4", gt[::2], gt[::2], "a" * 64)
    vfr.gt_vfr = True
    m = _StubFID()
    m.context = {"manifest_id": "m1"}
    assert m.score_clip(plain)["gt_cached"] is False
    r = m.score_clip(vfr)
    assert r["gt_cached"] is False and r["n_gt_frames"] == 6
    cache = tmp_path / "home" / "features" / "fid"
    assert sorted(p.name for p in cache.glob("*/m1/*.npz")) == ["c1.aaaaaaaaaaaaaaaa-vfr.npz",
                                                               "c1.aaaaaaaaaaaaaaaa.npz"]
    assert m.score_clip(vfr)["gt_cached"] is True and m._gt_sha["c1"] == "a" * 64 + "-vfr"
    assert m.score_clip(plain)["n_gt_frames"] == 12


def test_failures_and_resize(tmp_path, monkeypatch):
    monkeypatch.setenv("KDBENCH_HOME", str(tmp_path))
    m = _StubFID()
    no_gt = SimpleNamespace(spec=ClipSpec(clip_id="x"), clip_id="x", frames=np.zeros((2, 8, 8, 3), np.uint8),
                            gt_frames=None)
    with pytest.raises(ClipFailure, match="GT video"):
        m.score_clip(no_gt)
    rng = np.random.default_rng(2)
    gt = rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    small = gt[:, ::2, ::2]
    rec = m.score_clip(make_clip("y", tmp_path / "y.mp4", gt, small))
    assert rec["resized"] is True and rec["frame_size"] == [8, 8] and rec["gt_frame_size"] == [16, 16]
    agg = m.aggregate({"y": rec})["fid"]
    assert any("resized" in f for f in agg["flags"])
    assert m.aggregate({})["fid"]["mean"] is None
    from kdbench.errors import KdbenchError

    with pytest.raises(KdbenchError, match="fid.max_frames=0 is out of range: it must be >= 1"):
        _StubFID(options={"max_frames": 0})


def test_registered_and_light_import():
    code = (
        "import sys; from kdbench.registry import METRICS; cls = METRICS.get('fid'); "
        "assert cls.__name__ == 'FIDMetric', cls; "
        "bad = [m for m in ('torch', 'cv2', 'insightface', 'dlib', 'pytorch_fid') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


# ------------------------------------------------------------------------------------------------
# End to end on the real HDTF clip vs pytorch-fid's own path (random-weight Inception, CPU)
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def one_torch_thread():
    """One intra-op thread: on a small shared CPU, OpenMP's spinning threads make Inception ~3x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.slow
def test_fid_equals_pytorch_fid_on_real_hdtf_frames(ckpt, hdtf, tmp_path, monkeypatch, one_torch_thread):
    """`real` and `static` methods on two clips (2 real frames each): kdbench vs pytorch-fid on PNGs."""
    monkeypatch.setenv("KDBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KDBENCH_ALLOW_UNVERIFIED", "1")  # random weights: the sha256 prefix cannot match
    torch.manual_seed(0)
    video, frames = hdtf
    gt_sets = {"a": frames[:2], "b": frames[2:]}
    wm = WeightsManager(home=tmp_path / "home", overrides={"pt_inception": ckpt})

    def run(method: str) -> tuple[dict, dict]:
        metric = kf.FIDMetric(weights=wm)
        metric.context = {"manifest_id": "hdtf-test", "dataset": "hdtf-mini"}
        recs = {}
        for cid, gt in gt_sets.items():
            gen = gt if method == "real" else np.repeat(gt[:1], len(gt), axis=0)
            recs[cid] = metric.score_clip(make_clip(cid, video, gt, gen, sha=None))
        return recs, metric.aggregate(recs)["fid"]

    real_recs, real = run("real")
    static_recs, static = run("static")
    assert [r["gt_cached"] for r in real_recs.values()] == [False, False]
    assert [r["gt_cached"] for r in static_recs.values()] == [True, True]
    assert real["n_frames_gen"] == real["n_frames_gt"] == 4 and real["flags"]
    assert real["protocol"]["weights"]["sha256"] == wm.record()["pt_inception"]["sha256"]

    # pytorch-fid's own path: same frames as PNG files, its own InceptionV3 with the same checkpoint
    state = torch.load(ckpt, weights_only=True)
    monkeypatch.setattr(pfi, "load_state_dict_from_url", lambda url, *a, **k: state)
    model = pfi.InceptionV3([3])
    gt_dir = write_pngs(tmp_path / "gt", np.concatenate(list(gt_sets.values())))
    static_frames = np.concatenate([np.repeat(g[:1], len(g), 0) for g in gt_sets.values()])
    st_dir = write_pngs(tmp_path / "static", static_frames)
    m_gt, s_gt = pfs.compute_statistics_of_path(str(gt_dir), model, 50, 2048, "cpu", 0)
    m_st, s_st = pfs.compute_statistics_of_path(str(st_dir), model, 50, 2048, "cpu", 0)
    ref_static = pfs.calculate_frechet_distance(m_st, s_st, m_gt, s_gt)

    assert ref_static > 1e-3  # a real distance, not a degenerate one
    assert abs(static["mean"] - ref_static) <= 1e-5 * abs(ref_static)
    assert abs(real["mean"]) <= 1e-6  # FID(X, X) = 0
    # (each Frechet distance is a 2048x2048 sqrtm: the reference's FID(X, X) is not recomputed here)
