"""FVD: kdbench equals StyleGAN-V's FVD path, re-stated here independently of :mod:`metrics.fvd`.

The re-statement below follows StyleGAN-V (universome/stylegan-v, ``src/metrics/frechet_video_distance.py``,
``src/metrics/metric_utils.py``, ``src/training/dataset.py``) step by step: videos as folders of lossless PNG frames
sorted by name, ``np.array(PIL.Image.open(f))`` transposed to CHW, one window of ``num_frames`` frames every
``subsample``-th from offset 0 (``load_n_consecutive_random_offset=False``, the generated side's setting), batches of
``[B, T, C, H, W]`` permuted to ``[B, C, T, H, W]`` uint8 and given to
``detector(x, rescale=True, resize=True, return_features=True)``, ``FeatureStats`` float64 sums, ``get_mean_cov``
(ddof 0) and ``compute_fvd``'s ``sqrtm(disp=False)`` distance. The detector is a random-weight TorchScript I3D with
the torchscript's interface (``scripts/i3d_random_weights.py``; tiny here so CI runs it in seconds). The comparison
with StyleGAN-V's own code is ``tests/test_fvd_stylegan_v.py`` (opt-in: it needs that code fetched).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from kdbench.dataset import ClipSpec
from kdbench.errors import ClipFailure, KdbenchError
from kdbench.weights import WeightsManager
from metrics import fvd as kv

torch = pytest.importorskip("torch", reason="FVD's I3D needs torch (a metrics dependency)")
scipy_linalg = pytest.importorskip("scipy.linalg", reason="FVD's distance needs scipy")

REPO = Path(__file__).resolve().parents[1]


def i3d_module():
    """``scripts/i3d_random_weights.py`` imported by path (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("i3d_random_weights", REPO / "scripts" / "i3d_random_weights.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("i3d_random_weights", mod)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def tiny_i3d(tmp_path_factory) -> Path:
    """A tiny random I3D saved with torch.jit.save (width 1/16, resized to 64x64)."""
    return i3d_module().save_random_i3d(tmp_path_factory.mktemp("i3d") / "i3d_torchscript.pt", 1 / 16, 0, 64)


@pytest.fixture
def one_torch_thread():
    """One intra-op thread: on a small shared CPU, OpenMP's spinning threads make 3-D convolutions much slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def hdtf_frames() -> np.ndarray:
    """The first 60 frames of the real HDTF clip, every 4th pixel (``uint8[60, 128, 128, 3]``: small PNGs)."""
    from kdbench.hdtf_mini import hdtf_mini_root
    from kdbench.video import read_video

    frames, _ = read_video(hdtf_mini_root(download=False) / "gt" / "WDA_KatieHill_000.mp4", max_frames=60)
    return np.ascontiguousarray(frames[:, ::4, ::4])


def make_clip(clip_id: str, gen: np.ndarray, gt: np.ndarray | None) -> SimpleNamespace:
    """An EvalClip stand-in: decoded generated and GT frames given directly."""
    spec = ClipSpec(clip_id=clip_id, gt_video=Path(f"{clip_id}.mp4") if gt is not None else None)
    return SimpleNamespace(spec=spec, clip_id=clip_id, frames=gen, gt_frames=gt)


# ------------------------------------------------------------------------------------------------
# The re-statement of StyleGAN-V's path (no kdbench code)
# ------------------------------------------------------------------------------------------------
def write_video_dir(root: Path, name: str, frames: np.ndarray) -> None:
    """A StyleGAN-V video: ``root/name/000000.png ...`` (lossless)."""
    from PIL import Image

    (root / name).mkdir(parents=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(root / name / f"{i:06d}.png")


def ref_load_windows(root: Path, num_frames: int = 16, subsample: int = 1) -> list[np.ndarray]:
    """VideoFramesFolderDataset with load_n_consecutive=num_frames, no random offset: ``uint8[T, C, H, W]`` per video,
    videos in sorted order; videos shorter than ``num_frames * subsample`` discarded."""
    from PIL import Image

    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(d.iterdir())
        if len(files) < num_frames * subsample:
            continue
        idx = np.arange(0, num_frames * subsample, subsample)  # + 0: load_n_consecutive_random_offset=False
        out.append(np.array([np.array(Image.open(files[i])).transpose(2, 0, 1) for i in idx]))
    return out


def ref_features(videos: list[np.ndarray], detector, batch_size: int) -> np.ndarray:
    """compute_feature_stats_for_dataset's loop with temporal_detector=True; the features (float32) in order."""
    feats = []
    for s in range(0, len(videos), batch_size):
        images = torch.from_numpy(np.stack(videos[s:s + batch_size]))  # [B, T, C, H, W] uint8
        images = images.permute(0, 2, 1, 3, 4).contiguous()
        with torch.no_grad():
            f = detector(images, rescale=True, resize=True, return_features=True)
        feats.append(np.asarray(f.cpu().numpy(), dtype=np.float32))
    return np.concatenate(feats)


def ref_mean_cov(feats: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """FeatureStats(capture_mean_cov=True): float64 sums appended batch by batch, then get_mean_cov (ddof 0)."""
    raw_mean = np.zeros(feats.shape[1], np.float64)
    raw_cov = np.zeros((feats.shape[1], feats.shape[1]), np.float64)
    for s in range(0, len(feats), batch_size):
        x64 = feats[s:s + batch_size].astype(np.float32).astype(np.float64)
        raw_mean += x64.sum(axis=0)
        raw_cov += x64.T @ x64
    mean = raw_mean / len(feats)
    return mean, raw_cov / len(feats) - np.outer(mean, mean)


def ref_fvd(mu_gen, sigma_gen, mu_real, sigma_real) -> float:
    """compute_fvd's last lines."""
    m = np.square(mu_gen - mu_real).sum()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        s, _ = scipy_linalg.sqrtm(np.dot(sigma_gen, sigma_real), disp=False)
    return float(np.real(m + np.trace(sigma_gen + sigma_real - s * 2)))


# ------------------------------------------------------------------------------------------------
# Pure parts (fast)
# ------------------------------------------------------------------------------------------------
def test_windows_of_a_200_frame_clip():
    assert kv.window_starts(200) == [0]  # fvd2048_16f: frames 0-15
    assert kv.window_starts(200, count=None) == list(range(0, 177, 16))  # 12 windows, frames 0-191
    assert kv.window_starts(200, count=3, stride=8) == [0, 8, 16]
    assert kv.window_starts(200, count=None, stride=90, offset=4) == [4, 94, 184]  # 184 + 15 = 199: fits
    assert kv.window_starts(200, count=None, stride=92, offset=4) == [4, 96]  # 188 + 15 > 199
    assert kv.window_starts(200, subsample=8) == [0]  # fvd2048_128f_subsample8f: frames 0, 8, ..., 120
    assert kv.window_starts(200, num_frames=128) == [0]
    assert kv.window_starts(200, count=None, subsample=8) == [0]  # the next would start at 128: 128 + 120 > 199
    assert kv.window_starts(16) == [0] and kv.window_starts(15) == []  # shorter than a window: none
    assert kv.window_starts(127, subsample=8) == []  # StyleGAN-V discards videos with < 16 * 8 frames
    assert kv.window_starts(20, offset=5) == [] and kv.window_starts(21, offset=5) == [5]


def test_windows_are_the_reference_layout(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (40, 6, 8, 3), dtype=np.uint8)
    write_video_dir(tmp_path / "v", "a", frames)
    for sub in (1, 2):
        want = np.stack(ref_load_windows(tmp_path / "v", 16, sub))
        want = torch.from_numpy(want).permute(0, 2, 1, 3, 4).contiguous().numpy()
        got = kv.clip_windows(frames, [0], 16, sub)
        assert got.shape == (1, 3, 16, 6, 8) and got.flags.c_contiguous and np.array_equal(got, want)
    two = kv.clip_windows(frames, [0, 20], 16, 1)
    assert np.array_equal(two[1], frames[20:36].transpose(3, 0, 1, 2))
    with pytest.raises(ValueError, match="uint8"):
        kv.clip_windows(frames.astype(np.float32), [0])


def test_statistics_and_distance_are_stylegan_vs():
    rng = np.random.default_rng(1)
    a = (rng.normal(size=(900, 24)) * rng.uniform(0.5, 2, 24)).astype(np.float32)
    b = (rng.normal(size=(700, 24)) * 1.3 + 0.2).astype(np.float32)
    mu, sigma = kv.feature_statistics(a)
    rmu, rsigma = ref_mean_cov(a, 4)
    np.testing.assert_allclose(mu, rmu, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sigma, rsigma, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(a.astype(np.float64), rowvar=False, ddof=0), rtol=1e-9, atol=1e-12)
    want = ref_fvd(*ref_mean_cov(a, 4), *ref_mean_cov(b, 4))
    got = kv.fvd_from_features(a, b)
    assert want > 1.0 and abs(got - want) <= 1e-10 * want
    assert abs(kv.fvd_from_features(a, a)) < 1e-6  # FVD(X, X) = 0
    shift = np.full(24, 0.5)
    assert abs(kv.frechet_distance(mu, sigma, mu + shift, sigma) - float(shift @ shift)) < 1e-6
    # one window per side: covariance 0 (ddof 0), the distance is the squared mean difference
    assert kv.fvd_from_features(a[:1], b[:1]) == pytest.approx(float(np.square(a[0] - b[0]).sum()), rel=1e-6)


def test_options_are_declared_and_checked():
    from kdbench.options import check_option_types

    assert kv.FVDMetric.default_options["count"] == 1 and kv.FVDMetric.default_options["stride"] is None
    assert check_option_types("fvd", {"count": "null", "stride": "8"}, kv.FVDMetric.default_options,
                              kv.FVDMetric.option_types) == {"count": None, "stride": 8}
    with pytest.raises(KdbenchError, match=r"fvd.count='all' must be an integer or null"):
        check_option_types("fvd", {"count": "all"}, kv.FVDMetric.default_options, kv.FVDMetric.option_types)
    for key, bad in (("num_frames", 0), ("stride", 0), ("count", -1), ("offset", -2), ("batch_size", 0)):
        with pytest.raises(KdbenchError, match=rf"fvd\.{key}={bad} is out of range: it must be "):
            kv.FVDMetric(options={key: bad}, weights=WeightsManager(manifest={}))


def test_registered_and_light_import():
    code = ("import sys; from kdbench.registry import METRICS; from kdbench.evaluate import DEFAULT_METRICS; "
            "cls = METRICS.get('fvd'); assert cls.__name__ == 'FVDMetric', cls; assert 'fvd' in DEFAULT_METRICS; "
            "assert cls.info.weights == ('i3d_torchscript',) and not cls.info.paper_column; "
            "bad = [m for m in ('torch', 'scipy') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_manifest_entry():
    from kdbench.weights import load_manifest

    names = list(load_manifest())
    e = load_manifest()["i3d_torchscript"]
    assert names[-1] == "i3d_torchscript"  # appended at the end of weights.toml
    assert e.url == "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1"
    assert e.file == "i3d_torchscript.pt"
    assert e.pin_kind == "tofu" and "none published" in e.pin_source and e.used_by == ("fvd",)


# ------------------------------------------------------------------------------------------------
# Set level: failures, flags, and the Ray merge of sufficient statistics (stub features: fast)
# ------------------------------------------------------------------------------------------------
class _StubFVD(kv.FVDMetric):
    """FVDMetric whose 'I3D' is a fixed random projection of each window's pixel means (no torch)."""

    def _load(self) -> None:
        self._model, self._weights_sha256 = "stub", "f" * 64

    def embed(self, windows):
        pooled = windows.astype(np.float32).reshape(len(windows), -1, 16).mean(axis=1)
        return (pooled @ np.random.default_rng(0).normal(size=(16, 6))).astype(np.float32)


def test_failures_flags_and_records():
    m = _StubFVD()
    rng = np.random.default_rng(2)
    with pytest.raises(ClipFailure, match="needs the clip's GT video"):
        m.score_clip(make_clip("x", rng.integers(0, 256, (20, 8, 8, 3), dtype=np.uint8), None))
    short = rng.integers(0, 256, (15, 8, 8, 3), dtype=np.uint8)
    ok = rng.integers(0, 256, (20, 8, 8, 3), dtype=np.uint8)
    with pytest.raises(ClipFailure, match="the GT video has 15 frames; an FVD window needs 16"):
        m.score_clip(make_clip("y", ok, short))
    with pytest.raises(ClipFailure, match="the generated video has 15 frames"):
        m.score_clip(make_clip("y", short, ok))
    rec = m.score_clip(make_clip("z", ok, ok))
    assert rec == {"n_windows": 1, "n_gt_windows": 1, "window_starts": [0], "n_frames": 20, "n_gt_frames": 20,
                   "frame_size": [8, 8], "gt_frame_size": [8, 8]}
    agg = m.aggregate({"z": rec})["fvd"]
    assert abs(agg["mean"]) < 1e-9 and agg["n"] == 1 and agg["n_windows_gen"] == agg["n_windows_gt"] == 1
    assert "rank-deficient" in agg["flags"][0] and "2048" in agg["flags"][1]
    assert agg["protocol"]["windows"]["starts_in_a_200_frame_clip"] == [0]
    assert agg["protocol"]["weights"] == {"name": "i3d_torchscript", "sha256": "f" * 64}
    assert m.aggregate({})["fvd"]["mean"] is None


def test_merge_of_workers_statistics_equals_pooled():
    """FVDMetric.export_state/merge_states (what the Ray driver does) vs one metric over all clips."""
    rng = np.random.default_rng(5)
    clips = [make_clip(f"c{i}", rng.integers(0, 256, (50, 8, 8, 3), dtype=np.uint8),
                       rng.integers(0, 256, (50, 8, 8, 3), dtype=np.uint8)) for i in range(6)]
    opts = {"count": None, "stride": 8}
    pooled = _StubFVD(options=opts)
    records = {c.clip_id: pooled.score_clip(c) for c in clips}
    assert records["c0"]["window_starts"] == [0, 8, 16, 24, 32]
    workers = [_StubFVD(options=opts) for _ in range(2)]
    for i, c in enumerate(clips):
        workers[i % 2].score_clip(c)
    driver = _StubFVD(options=opts)
    driver.merge_states([w.export_state() for w in workers])
    want, got = pooled.aggregate(records)["fvd"], driver.aggregate(records)["fvd"]
    assert want["mean"] > 0 and abs(got["mean"] - want["mean"]) <= 1e-9 * want["mean"]
    assert got["n_windows_gen"] == want["n_windows_gen"] == 30 and got["n"] == 6
    lost = _StubFVD(options=opts)
    lost.merge_states([workers[0].export_state()])
    with pytest.raises(KdbenchError, match="missing: c1, c3, c5"):
        lost.aggregate(records)
    twice = _StubFVD(options=opts)
    with pytest.raises(KdbenchError, match="scored by two workers"):
        twice.merge_states([workers[0].export_state(), workers[0].export_state()])


# ------------------------------------------------------------------------------------------------
# kdbench vs the re-stated reference, real HDTF frames, a tiny scripted I3D (seconds)
# ------------------------------------------------------------------------------------------------
def _clip_sets(frames: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """4 GT videos of 20 frames cut from the real clip; generated: the static method's repeated first frame for
    two, the GT shifted by 2 frames for the other two."""
    gts = {f"clip{k}": frames[10 * k:10 * k + 20] for k in range(4)}
    gens = {cid: (np.repeat(g[:1], len(g), 0) if k % 2 == 0 else frames[10 * k + 2:10 * k + 22])
            for k, (cid, g) in enumerate(gts.items())}
    return gens, gts


@pytest.mark.slow
def test_fvd_equals_the_restated_reference_on_hdtf_frames(tiny_i3d, hdtf_frames, tmp_path, monkeypatch,
                                                          one_torch_thread):
    monkeypatch.setenv("KDBENCH_HOME", str(tmp_path / "home"))
    gens, gts = _clip_sets(hdtf_frames)
    wm = WeightsManager(home=tmp_path / "home", overrides={"i3d_torchscript": tiny_i3d})

    # the reference: PNG folders, its dataset rules, its batches of 4 videos (512x512: 64 frames // 16)
    detector = torch.jit.load(str(tiny_i3d)).eval()
    for side, vids in (("real", gts), ("fake", gens)):
        for cid, f in vids.items():
            write_video_dir(tmp_path / side, cid, f)
    ref_real = ref_features(ref_load_windows(tmp_path / "real"), detector, 4)
    ref_fake = ref_features(ref_load_windows(tmp_path / "fake"), detector, 4)
    want = ref_fvd(*ref_mean_cov(ref_fake, 4), *ref_mean_cov(ref_real, 4))

    metric = kv.FVDMetric(weights=wm)
    records = {cid: metric.score_clip(make_clip(cid, gens[cid], gts[cid])) for cid in sorted(gts)}
    agg = metric.aggregate(records)["fvd"]
    got_fake = np.concatenate([metric._gen[c] for c in sorted(gts)])
    got_real = np.concatenate([metric._gt[c] for c in sorted(gts)])
    np.testing.assert_allclose(got_real, ref_real, rtol=1e-5, atol=1e-5 * np.abs(ref_real).max())
    np.testing.assert_allclose(got_fake, ref_fake, rtol=1e-5, atol=1e-5 * np.abs(ref_fake).max())
    assert want > 1.0 and abs(agg["mean"] - want) <= 1e-5 * want
    assert agg["n"] == 4 and agg["n_windows_gen"] == agg["n_windows_gt"] == 4
    assert agg["protocol"]["weights"]["sha256"] == wm.record()["i3d_torchscript"]["sha256"]
    # the GT scored against itself: 0 up to sqrtm's error on a rank-3 covariance
    same = kv.FVDMetric(weights=wm)
    srec = {cid: same.score_clip(make_clip(cid, gts[cid], gts[cid])) for cid in sorted(gts)}
    assert abs(same.aggregate(srec)["fvd"]["mean"]) <= 1e-5 * want


@pytest.mark.slow
def test_more_windows_per_clip_equal_the_reference_on_the_cut_videos(tiny_i3d, hdtf_frames, tmp_path,
                                                                    one_torch_thread):
    """count/stride/subsample: kdbench's windows equal StyleGAN-V's one window per video (its subsample_factor) on
    videos cut at those starts."""
    gts = {"clip0": hdtf_frames[0:40], "clip1": hdtf_frames[12:52]}
    gens = {"clip0": np.repeat(hdtf_frames[:1], 40, 0), "clip1": hdtf_frames[14:54]}
    wm = WeightsManager(home=tmp_path / "home", overrides={"i3d_torchscript": tiny_i3d})
    metric = kv.FVDMetric(options={"count": None, "stride": 4, "subsample": 2, "batch_size": 2}, weights=wm)
    records = {cid: metric.score_clip(make_clip(cid, gens[cid], gts[cid])) for cid in gts}
    assert records["clip0"]["window_starts"] == [0, 4, 8]  # 40 frames: the last window is 8, 10, ..., 38
    detector = torch.jit.load(str(tiny_i3d)).eval()
    for side, vids in (("real", gts), ("fake", gens)):
        for cid in gts:
            for s in (0, 4, 8):
                write_video_dir(tmp_path / side, f"{cid}_{s:02d}", vids[cid][s:])
    ref_real = ref_features(ref_load_windows(tmp_path / "real", 16, 2), detector, 4)
    ref_fake = ref_features(ref_load_windows(tmp_path / "fake", 16, 2), detector, 4)
    np.testing.assert_allclose(np.concatenate([metric._gt["clip0"], metric._gt["clip1"]]), ref_real,
                               rtol=1e-5, atol=1e-5 * np.abs(ref_real).max())
    want = ref_fvd(*ref_mean_cov(ref_fake, 4), *ref_mean_cov(ref_real, 4))
    got = metric.aggregate(records)["fvd"]
    assert got["n_windows_gen"] == 6 and want > 1.0 and abs(got["mean"] - want) <= 1e-5 * want


def test_missing_weights_name_the_fetch_command(tmp_path, monkeypatch):
    from kdbench.errors import WeightsMissing

    monkeypatch.setenv("KDBENCH_HOME", str(tmp_path))
    monkeypatch.delenv("KDBENCH_WEIGHT_I3D_TORCHSCRIPT", raising=False)
    m = kv.FVDMetric(weights=WeightsManager(home=tmp_path))
    ok = np.zeros((16, 8, 8, 3), np.uint8)
    with pytest.raises(WeightsMissing, match="kdbench weights fetch i3d_torchscript"):
        m.score_clip(make_clip("a", ok, ok))
