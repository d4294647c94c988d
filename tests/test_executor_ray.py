"""``--executor ray``: the same videos, events and metric values as the local executor; a crashed actor is
restarted and its clip retried; a killed driver's run resumes; FID and FVD merged from sufficient statistics equal
FID and FVD pooled. Ray runs embedded on this machine's CPUs (one instance for the module)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the Ray executor's tests need ray (pip install 'kdbench[ray]')")

from kdbench.dataset import load_dataset  # noqa: E402
from kdbench.evaluate import evaluate_run  # noqa: E402
from kdbench.runner import run_method  # noqa: E402
from kdbench.runstore import RunStore  # noqa: E402
from metrics import fid as kf  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PLUGIN = "tests.ray_plugin"


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory):
    """An embedded 2-CPU Ray instance whose workers see the test plugin and a private KDBENCH_HOME."""
    home = tmp_path_factory.mktemp("home")
    env = {"KDBENCH_PLUGINS": PLUGIN, "KDBENCH_HOME": str(home), "KDBENCH_ALLOW_UNVERIFIED": "1",
           "KDBENCH_OFFLINE": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    from kdbench.executors.ray_cluster import init_ray

    init_ray(None, num_cpus=2)
    yield home
    ray.shutdown()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _clip_view(store: RunStore) -> dict[str, tuple]:
    return {cid: (e["status"], e.get("n_frames"), e.get("error")) for cid, e in store.clip_events().items()}


@pytest.mark.slow
def test_run_and_eval_on_ray_equal_local(ray_local, hdtf_mini, tmp_path):
    ds = load_dataset(hdtf_mini)
    sets = {"cpbd.max_frames": 4}
    docs = {}
    for method, limit in (("real", None), ("static", 2)):
        for ex in ("local", "ray"):
            out = tmp_path / f"{method}-{ex}"
            run_method(method, ds, out, executor=ex, workers=2, progress=False, warmup=0, frame_size=(512, 512),
                       limit=limit)
            docs[method, ex] = evaluate_run(out, ["cpbd"], sets, executor=ex, workers=2, progress=False)
        a, b = RunStore(tmp_path / f"{method}-local"), RunStore(tmp_path / f"{method}-ray")
        assert _clip_view(a) == _clip_view(b)
        for cid, (status, _, _) in _clip_view(a).items():
            if status == "ok":
                assert _md5(a.video_path(cid)) == _md5(b.video_path(cid)), (method, cid)
        la, lb = docs[method, "local"]["metrics"]["cpbd"], docs[method, "ray"]["metrics"]["cpbd"]
        assert la["per_clip"] == lb["per_clip"] and la["failures"] == lb["failures"]
        assert la["aggregate"] == lb["aggregate"]
        assert docs[method, "ray"]["env"]["executor"]["name"] == "ray"
        assert docs[method, "ray"]["env"]["executor"]["workers"] == 2
    assert len(docs["static", "local"]["metrics"]["cpbd"]["per_clip"]) == 2
    assert len(docs["real", "ray"]["metrics"]["cpbd"]["not_applicable"]) == 3  # no GT video: not applicable
    env = json.loads((tmp_path / "static-ray" / "env.json").read_text())
    assert env["executor"]["name"] == "ray" and len(env["executor"]["actors"]) == 2
    workers = {e["worker"]["pid"] for e in RunStore(tmp_path / "static-ray").clip_events().values()}
    assert 1 <= len(workers) <= 2


def test_crashed_actor_is_restarted_and_its_clip_retried(ray_local, tiny_dataset, tmp_path):
    ds = load_dataset(tiny_dataset)
    marker = tmp_path / "crashed"
    out = tmp_path / "run"
    s = run_method("_ray_crashy", ds, out, options={"crash_clip": "B_clip_000", "marker": str(marker)},
                   executor="ray", workers=1, progress=False, warmup=0, frame_size=(32, 32))
    assert marker.is_file()  # the actor really died on B_clip_000
    assert sorted(s.ok) == ["A_clip_000", "B_clip_000", "C_clip_000"] and not s.failed
    oks = [e["clip_id"] for e in RunStore(out).events() if e.get("status") == "ok"]
    assert sorted(oks) == sorted(set(oks)) == sorted(s.ok)  # every clip once


def test_killed_driver_resumes(ray_local, tiny_dataset, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "kdbench.cli", "run", "--method", "_ray_slow", "--dataset", str(tiny_dataset),
           "--out", str(out), "--executor", "ray", "--workers", "1", "--warmup", "0", "--frame-size", "32x32",
           "--set", "delay=2", "-q"]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    store = RunStore(out)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and not any(e.get("status") == "ok" for e in store.events()):
            assert proc.poll() is None, "the driver ended before it was killed"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    first = {e["clip_id"] for e in store.events() if e.get("status") == "ok"}
    assert 1 <= len(first) < 3
    s = run_method("_ray_slow", load_dataset(tiny_dataset), out, options={"delay": 2}, executor="ray", workers=2,
                   progress=False, warmup=0, frame_size=(32, 32))
    assert set(s.resumed) == first and not s.failed
    oks = [e["clip_id"] for e in store.events() if e.get("status") == "ok"]
    assert sorted(oks) == ["A_clip_000", "B_clip_000", "C_clip_000"]  # each exactly once


def test_sufficient_statistics_merge_equals_pooled():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(700, 48)) * rng.uniform(0.5, 3, 48) + rng.normal(size=48)
    b = rng.normal(size=(500, 48)) + 0.3
    parts = np.array_split(a, 5)
    merged = kf.merge_sufficient_statistics([kf.sufficient_statistics(p) for p in parts])
    mu, sigma = kf.statistics_from_sufficient(*merged)
    mu_ref, sigma_ref = kf.activation_statistics(a)
    np.testing.assert_allclose(mu, mu_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sigma, sigma_ref, rtol=1e-9, atol=1e-12)
    pooled = kf.fid_from_activations(a, b)
    merged_fid = kf.frechet_distance(mu, sigma, *kf.activation_statistics(b))
    assert abs(merged_fid - pooled) <= 1e-9 * pooled


def test_fid_on_ray_equals_local_with_random_inception(ray_local, tiny_dataset, tmp_path):
    """Pooled FID (local) vs FID merged from two actors' sufficient statistics (ray): relative diff <= 1e-9."""
    torch = pytest.importorskip("torch", reason="needs torch (kdbench[metrics])")
    from test_fid import random_fid_state_dict

    from kdbench.weights import WeightsManager

    wm = WeightsManager()
    dest = wm.cache_path(kf.WEIGHTS_NAME)
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save(random_fid_state_dict(), dest)
    ds = load_dataset(tiny_dataset)
    docs = {}
    for ex in ("local", "ray"):
        out = tmp_path / ex
        run_method("_ray_slow", ds, out, options={"delay": 0}, executor="local", progress=False, warmup=0,
                   frame_size=(64, 64))
        sets = {"fid.max_frames": 3, "fid.cache": False, "fid.batch_size": 6}
        docs[ex] = evaluate_run(out, ["fid"], sets, executor=ex, workers=2, progress=False)
    loc, ray_ = docs["local"]["metrics"]["fid"], docs["ray"]["metrics"]["fid"]
    assert loc["status"] == ray_["status"] == "ok", (loc.get("skip_reason"), ray_.get("skip_reason"))
    assert loc["per_clip"] == ray_["per_clip"] and len(loc["per_clip"]) == 2  # the clips with a GT video
    workers = {a["pid"] for a in docs["ray"]["env"]["executor"]["actors"]}
    assert len(workers) == 2
    # 6 frames for 2048 features: both covariances are singular, where sqrtm amplifies the last-bit differences
    # between np.cov and the merged sums (test_fid_merge_in_the_metric_equals_pooled shows <= 1e-9 at full rank)
    f_loc, f_ray = loc["aggregate"]["fid"]["mean"], ray_["aggregate"]["fid"]["mean"]
    assert f_loc > 0 and abs(f_ray - f_loc) <= 1e-5 * f_loc
    assert ray_["aggregate"]["fid"]["n_frames_gen"] == loc["aggregate"]["fid"]["n_frames_gen"] == 6
    assert ray_["aggregate"]["fid"]["n_frames_gt"] == loc["aggregate"]["fid"]["n_frames_gt"] == 6


def test_fvd_on_ray_equals_local_with_random_i3d(ray_local, tiny_dataset, tmp_path):
    """FVD over the windows of all clips (local) vs FVD from two actors' sufficient statistics (ray)."""
    pytest.importorskip("torch", reason="needs torch (kdbench[metrics])")
    from test_fvd import i3d_module

    from kdbench.weights import WeightsManager

    i3d_module().save_random_i3d(WeightsManager().cache_path("i3d_torchscript"), 1 / 16, 0, 64)
    ds = load_dataset(tiny_dataset)
    docs = {}
    for ex in ("local", "ray"):
        out = tmp_path / ex
        run_method("_ray_slow", ds, out, options={"delay": 0}, executor="local", progress=False, warmup=0,
                   frame_size=(64, 64))
        docs[ex] = evaluate_run(out, ["fvd"], {"fvd.count": None}, executor=ex, workers=2, progress=False)
    loc, ray_ = docs["local"]["metrics"]["fvd"], docs["ray"]["metrics"]["fvd"]
    assert loc["status"] == ray_["status"] == "ok", (loc.get("skip_reason"), ray_.get("skip_reason"))
    assert loc["per_clip"] == ray_["per_clip"] and len(loc["per_clip"]) == 2  # the clips with a GT video
    assert len({a["pid"] for a in docs["ray"]["env"]["executor"]["actors"]}) == 2
    f_loc, f_ray = loc["aggregate"]["fvd"]["mean"], ray_["aggregate"]["fvd"]["mean"]
    assert f_loc > 0 and abs(f_ray - f_loc) <= 1e-6 * f_loc  # rank 5 of 400: sqrtm's error, not the merge's
    assert ray_["aggregate"]["fvd"]["n_windows_gen"] == loc["aggregate"]["fvd"]["n_windows_gen"] == 6


def test_fid_merge_in_the_metric_equals_pooled(tmp_path, monkeypatch):
    """FIDMetric.export_state/merge_states (what the Ray driver does) vs one metric pooling all activations."""
    from test_fid import _StubFID, make_clip

    monkeypatch.setenv("KDBENCH_HOME", str(tmp_path))
    rng = np.random.default_rng(5)
    video = tmp_path / "gt.mp4"  # never opened: frames are given
    clips = [make_clip(f"c{i}", video, rng.integers(0, 256, (30, 16, 16, 3), dtype=np.uint8),
                       rng.integers(0, 256, (30, 16, 16, 3), dtype=np.uint8), f"{i}" * 64) for i in range(4)]
    pooled = _StubFID(options={"cache": False})
    records = {c.clip_id: pooled.score_clip(c) for c in clips}
    workers = [_StubFID(options={"cache": False}) for _ in range(2)]
    for i, c in enumerate(clips):
        workers[i % 2].score_clip(c)
    driver = _StubFID(options={"cache": False})
    driver.merge_states([w.export_state() for w in workers])
    want, got = pooled.aggregate(records)["fid"], driver.aggregate(records)["fid"]
    assert want["mean"] > 0 and abs(got["mean"] - want["mean"]) <= 1e-9 * want["mean"]
    assert got["n_frames_gen"] == want["n_frames_gen"] == 120 and got["n"] == 4
    # a worker's statistics lost (crashed actor): refused, never a FID over fewer clips than were scored
    lost = _StubFID(options={"cache": False})
    lost.merge_states([workers[0].export_state()])
    with pytest.raises(Exception, match="missing: c1"):
        lost.aggregate(records)


def test_a_local_run_resumes_on_ray_and_back(ray_local, tiny_dataset, tmp_path):
    """The executor is not part of the config: clips done by one executor are not redone by the other."""
    ds = load_dataset(tiny_dataset)
    out = tmp_path / "run"
    kw = {"options": {"delay": 0}, "progress": False, "warmup": 0, "frame_size": (32, 32)}
    first = run_method("_ray_slow", ds, out, limit=1, executor="local", **kw)
    second = run_method("_ray_slow", ds, out, limit=2, executor="ray", workers=1, **kw)
    third = run_method("_ray_slow", ds, out, executor="local", **kw)
    assert first.ok == ["A_clip_000"] and second.resumed == ["A_clip_000"] and second.ok == ["B_clip_000"]
    assert third.resumed == ["A_clip_000", "B_clip_000"] and third.ok == ["C_clip_000"]
    oks = [e["clip_id"] for e in RunStore(out).events() if e.get("status") == "ok"]
    assert sorted(oks) == ["A_clip_000", "B_clip_000", "C_clip_000"]  # each exactly once
