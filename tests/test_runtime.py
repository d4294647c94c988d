"""The baseline runtime with a fake upstream (a tiny git repository), offline: setup, worker protocol, seeding,
a crashing worker, scratch clean-up, output discovery and normalisation, and equality with the upstream CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from kdbench.errors import KdbenchError
from kdbench.registry import METHODS
from kdbench.runtime.spec import UpstreamSpec, env_for
from kdbench.weights import WeightEntry, WeightsManager
from tests.baseline_fixtures import fake_manifest, write_manifest

FAKE = Path(__file__).with_name("fake_upstream")
SITE = sysconfig.get_paths()["purelib"]  # the running interpreter's packages (numpy, av, PIL), shared offline
SIZE = 48


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def fake_repo(tmp_path_factory) -> tuple[Path, str]:
    """A git repository with the fake upstream; a second commit after the pinned one changes the model."""
    repo = tmp_path_factory.mktemp("upstream") / "fake"
    repo.mkdir()
    _git(repo, "init", "-q")
    for name in ("fake_talker.py", "infer.py"):
        (repo / name).write_text((FAKE / name).read_text())
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "pinned")
    commit = _git(repo, "rev-parse", "HEAD")
    (repo / "fake_talker.py").write_text("raise ImportError('not the pinned commit')\n")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "later")
    return repo, commit


def fake_spec(commit: str) -> UpstreamSpec:
    return UpstreamSpec(name="fakeup", description="fake upstream for tests", repo="example/fake", commit=commit,
                        python=sys.executable, requirements=(), hooks="tests.fake_upstream.hooks:FakeHooks",
                        weights={"fake_ckpt": "ckpt/model.npy"},
                        options={"crash_below_frames": 0, "hang_below_frames": 0})


@pytest.fixture(scope="module")
def home(tmp_path_factory, fake_repo) -> Iterator[Path]:
    """KDBENCH_HOME with the fake method set up from the git repository (venv from the running interpreter)."""
    from kdbench.files import sha256_file
    from kdbench.runtime.setup import setup_method

    home = tmp_path_factory.mktemp("home")
    ckpt = home / "weights" / "fake_ckpt" / "model.npy"
    ckpt.parent.mkdir(parents=True)
    np.save(ckpt, np.array([10.0, 20.0, 30.0]))
    manifest = {"fake_ckpt": WeightEntry(name="fake_ckpt", file="model.npy", url="https://example.invalid/m.npy",
                                         sha256=sha256_file(ckpt))}
    repo, commit = fake_repo
    rec = setup_method(fake_spec(commit), source=str(repo), python=sys.executable, share=SITE, installer="pip",
                       weights=WeightsManager(home=home, manifest=manifest), home=home, progress=False)
    assert rec["source"] == {"from": str(repo.resolve()), "kind": "git", "commit": commit, "verified": True}
    write_manifest(home / "weights.toml", manifest)
    with fake_manifest(home):  # runs verify the linked weight against this manifest (its sha256 as if published)
        yield home


@pytest.fixture(scope="module")
def fake_method(fake_repo):
    from kdbench.runtime.method import upstream_method

    cls = upstream_method(fake_spec(fake_repo[1]))
    METHODS.register("fakeup")(cls)
    return cls


def test_setup_checks_out_the_pinned_commit_and_links_weights(home, fake_repo):
    env = env_for("fakeup", home)
    assert env.status() == "ready"
    assert "ImportError" not in (env.source / "fake_talker.py").read_text()  # pinned commit, not the later one
    assert not (env.source / ".git").exists()
    link = env.source / "ckpt" / "model.npy"
    assert link.is_symlink() and link.resolve() == (home / "weights" / "fake_ckpt" / "model.npy").resolve()
    rec = env.record()
    assert rec["commit"] == fake_repo[1]
    assert rec["python"] == ".".join(map(str, sys.version_info[:3]))
    assert rec["weights"]["fake_ckpt"]["verified"] is True
    assert rec["packages"]["numpy"] == np.__version__  # importable through the shared site
    out = subprocess.run([str(env.python), "-c", "import sys, numpy; print(sys.prefix)"], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert Path(out) == env.venv


def test_setup_refuses_a_commit_missing_from_the_source(tmp_path, fake_repo):
    from kdbench.runtime.setup import fetch_source

    with pytest.raises(KdbenchError, match="checking out the pinned commit"):
        fetch_source(fake_spec("0" * 40), tmp_path / "src", str(fake_repo[0]), progress=False)
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "a.py").write_text("x = 1\n")
    origin = fetch_source(fake_spec("abc"), tmp_path / "src2", str(plain), progress=False)
    assert origin["verified"] is False and origin["kind"] == "folder" and len(origin["tree_sha256"]) == 64


def _inputs(folder: Path, n_samples: int, seed: int = 0) -> tuple[Path, Path]:
    from PIL import Image

    from kdbench.audio import write_wav

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    img, wav = folder / "ref.png", folder / "a.wav"
    Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)).save(img)
    write_wav(wav, (rng.standard_normal(n_samples) * 3000).astype(np.int16))
    return img, wav


def test_worker_protocol_seeding_discovery_and_scratch_cleanup(home, tmp_path):
    from kdbench.runtime.client import WorkerClient
    from kdbench.video import read_video

    env = env_for("fakeup", home)
    scratch = tmp_path / "scratch"
    client = WorkerClient(env.python, env.source, "tests.fake_upstream.hooks:FakeHooks", log_path=tmp_path / "w.log",
                          scratch=scratch)
    ready = client.start()
    assert ready["event"] == "ready" and ready["load_seconds"] >= 0 and ready["packages"]["numpy"] == np.__version__
    img, wav = _inputs(tmp_path / "in", 16000)
    videos = {}
    for i, seed in enumerate([5, 5, 6]):
        reply = client.request(img, wav, tmp_path / f"out{i}.mp4", seed)
        assert reply["ok"] and reply["seconds"] > 0 and reply["n_frames"] is None
        videos[i], fps = read_video(reply["video"])
        assert fps == 25 and videos[i].shape == (25, SIZE, SIZE, 3)  # 16000 samples / 640
        assert list(scratch.iterdir()) == []  # the per-clip scratch folder (cwd) is gone, side file included
    assert client.starts == 1  # one worker served every clip
    client.close()
    assert np.array_equal(videos[0], videos[1])
    assert not np.array_equal(videos[0], videos[2])
    assert not (env.source / "side_effect.txt").exists()


def _dataset(root: Path) -> Path:
    """Three ref/audio clips of 1.2 s, 1.04 s and 1.2 s (30, 26, 30 frames)."""
    from PIL import Image

    from kdbench.audio import write_wav

    rng = np.random.default_rng(1)
    (root / "ref").mkdir(parents=True)
    (root / "audio").mkdir()
    for cid, n in [("a", 19200), ("b", 16640), ("c", 19200)]:
        Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)).save(root / "ref" / f"{cid}.png")
        write_wav(root / "audio" / f"{cid}.wav", (rng.standard_normal(n) * 3000).astype(np.int16))
    return root


def test_run_equals_the_upstream_cli_with_the_same_seeds(home, fake_method, tmp_path, monkeypatch):
    from kdbench.dataset import load_dataset
    from kdbench.runner import run_method
    from kdbench.video import probe_video, read_video

    monkeypatch.setenv("KDBENCH_HOME", str(home))
    ds = load_dataset(_dataset(tmp_path / "ds"))
    runs = {}
    for name, seed in [("r1", 3), ("r2", 3), ("r3", 4)]:
        s = run_method("fakeup", ds, tmp_path / name, seed=seed, frame_size=(SIZE, SIZE), limit=1, progress=False)
        assert s.ok == ["a"] and not s.failed
        runs[name] = read_video(tmp_path / name / "videos" / "a.mp4")[0]
    assert np.array_equal(runs["r1"], runs["r2"]) and not np.array_equal(runs["r1"], runs["r3"])

    # the official CLI in the method's environment, seeds set the same way, from the source tree
    env = env_for("fakeup", home)
    out = tmp_path / "official"
    code = ("import random, sys, runpy, numpy; random.seed(3); numpy.random.seed(3); "
            f"sys.argv = ['infer.py', '--image', {str(ds.clips[0].ref_image)!r}, '--audio', "
            f"{str(ds.clips[0].audio)!r}, '--result_dir', {str(out)!r}]; "
            "runpy.run_path('infer.py', run_name='__main__')")
    subprocess.run([str(env.python), "-c", code], cwd=env.source, check=True, capture_output=True)
    official = read_video(next(out.glob("*.mp4")))[0]
    assert official.shape == (30, SIZE, SIZE, 3)
    assert np.array_equal(runs["r1"], official)  # conforming output: stream-copied by the normaliser

    info = probe_video(tmp_path / "r1" / "videos" / "a.mp4")
    assert (info.fps, info.n_frames, info.width, info.height) == (25, 30, SIZE, SIZE)
    env_json = json.loads((tmp_path / "r1" / "env.json").read_text())
    assert env_json["method_env"]["commit"] == env.record()["commit"]
    assert env_json["method_env"]["worker"]["packages"]["numpy"] == np.__version__
    events = [json.loads(x) for x in (tmp_path / "r1" / "events.jsonl").read_text().splitlines()]
    clip = next(e for e in events if e.get("clip_id") == "a")
    assert clip["seconds"] == clip["extra"]["worker_seconds"]  # FPS from the worker's own clock


def test_keep_generated_keeps_what_the_worker_handed_over_and_changes_no_video(home, fake_method, tmp_path,
                                                                               monkeypatch):
    """``run --keep-generated``: each clip's worker video is kept as it reached the normaliser (lossless FFV1,
    recorded with its sha256), with --overlap-writes too (the worker's scratch of clip i outlives clip i+1's
    generation), and the scored videos are byte-identical to a run without it. Ray refuses the flag up front."""
    from kdbench.dataset import load_dataset
    from kdbench.errors import KdbenchError
    from kdbench.files import sha256_file
    from kdbench.runner import run_method
    from kdbench.video import read_video

    monkeypatch.setenv("KDBENCH_HOME", str(home))
    ds = load_dataset(_dataset(tmp_path / "ds"))
    plain = tmp_path / "plain"
    assert run_method("fakeup", ds, plain, seed=3, frame_size=(SIZE, SIZE), progress=False).ok == ["a", "b", "c"]
    for name, overlap in (("kept", False), ("kept_overlap", True)):
        out = tmp_path / name
        s = run_method("fakeup", ds, out, seed=3, frame_size=(SIZE, SIZE), progress=False, keep_generated=True,
                       overlap_writes=overlap)
        assert s.ok == ["a", "b", "c"] and not s.failed
        events = {e["clip_id"]: e for e in map(json.loads, (out / "events.jsonl").read_text().splitlines())
                  if "clip_id" in e}
        for cid, n in (("a", 30), ("b", 26), ("c", 30)):
            kept = events[cid]["generated"]
            assert kept["file"].startswith(f"generated/{cid}.") and kept["fps"] == 25
            assert kept["sha256"] == sha256_file(out / kept["file"])
            frames = read_video(out / kept["file"])[0]
            assert frames.shape == (n, SIZE, SIZE, 3) and frames.std() > 10
            scored = read_video(out / "videos" / f"{cid}.mp4")[0]
            assert np.array_equal(frames, scored)  # conforming: the normaliser kept these very frames
            assert events[cid]["video_sha256"] == sha256_file(plain / "videos" / f"{cid}.mp4")
    with pytest.raises(KdbenchError, match="--keep-generated runs with --executor local"):
        run_method("fakeup", ds, tmp_path / "ray", keep_generated=True, executor="ray", progress=False)
    assert not (tmp_path / "ray").exists()


def test_a_clips_worker_video_outlives_the_next_clips_generation(home, fake_method, tmp_path, monkeypatch):
    """With --overlap-writes the writer thread normalises clip i while clip i+1 generates: the worker's video of
    clip i must still be there after clip i+1's generation, and is removed by clip i+2's."""
    from kdbench.dataset import load_dataset
    from kdbench.weights import WeightsManager

    monkeypatch.setenv("KDBENCH_HOME", str(home))
    ds = load_dataset(_dataset(tmp_path / "ds"))
    m = fake_method(options=dict(fake_method.default_options), device="cpu", weights=WeightsManager(home=home),
                    seed=0)
    m.load()
    try:
        videos = []
        for spec in ds.clips:
            videos.append(m.generate(spec, spec.load_ref_image(), spec.load_audio()).video_path)
            assert videos[-1].is_file()
            if len(videos) >= 2:
                assert videos[-2].is_file()  # the writer thread may still be reading it
            if len(videos) >= 3:
                assert not videos[-3].exists()  # scratch does not grow with the run
    finally:
        m.close()


def test_keep_generated_of_a_native_method_keeps_its_frames_as_npy(tmp_path):
    """A native method's frames (``uint8[T,H,W,3]``) are kept as ``.npy``: here ``static``'s reference image,
    held for the audio's 30 frames, before any resize or encode."""
    from PIL import Image

    from kdbench.dataset import load_dataset
    from kdbench.runner import run_method

    ds = load_dataset(_dataset(tmp_path / "ds"))
    s = run_method("static", ds, tmp_path / "run", frame_size=(SIZE * 2, SIZE * 2), limit=1, progress=False,
                   keep_generated=True)
    assert s.ok == ["a"]
    kept = np.load(tmp_path / "run" / "generated" / "a.npy")
    ref = np.asarray(Image.open(tmp_path / "ds" / "ref" / "a.png").convert("RGB"))
    assert kept.shape == (30, SIZE, SIZE, 3) and kept.dtype == np.uint8
    assert all(np.array_equal(f, ref) for f in kept)


def test_a_crashing_worker_fails_its_clip_and_is_restarted(home, fake_method, tmp_path, monkeypatch):
    from kdbench.dataset import load_dataset
    from kdbench.runner import run_method

    monkeypatch.setenv("KDBENCH_HOME", str(home))
    ds = load_dataset(_dataset(tmp_path / "ds"))
    s = run_method("fakeup", ds, tmp_path / "run", seed=0, frame_size=(32, 32), options={"crash_below_frames": 28},
                   progress=False)
    assert s.ok == ["a", "c"] and list(s.failed) == ["b"]
    assert "worker died (exit code 3)" in s.failed["b"] and "crashing on purpose" in s.failed["b"]
    assert "crashing on purpose" in (tmp_path / "run" / "worker-fakeup.log").read_text()
    env_json = json.loads((tmp_path / "run" / "env.json").read_text())
    assert env_json["method_env"]["worker"]["starts"] == 2
    from kdbench.video import probe_video

    info = probe_video(tmp_path / "run" / "videos" / "c.mp4")  # resized to the requested frame size
    assert (info.n_frames, info.width, info.height) == (30, 32, 32)


def test_a_hung_worker_is_killed_after_clip_timeout_and_the_run_goes_on(home, fake_method, tmp_path, monkeypatch):
    from kdbench.dataset import load_dataset
    from kdbench.runner import run_method

    monkeypatch.setenv("KDBENCH_HOME", str(home))
    ds = load_dataset(_dataset(tmp_path / "ds"))
    s = run_method("fakeup", ds, tmp_path / "run", seed=0, frame_size=(SIZE, SIZE),
                   options={"hang_below_frames": 28, "clip_timeout": 4}, progress=False)
    assert s.ok == ["a", "c"] and list(s.failed) == ["b"]  # clip b (26 frames) hangs
    assert "longer than clip_timeout=4 s" in s.failed["b"] and "--set clip_timeout=SECONDS" in s.failed["b"]
    env_json = json.loads((tmp_path / "run" / "env.json").read_text())
    assert env_json["method_env"]["worker"]["starts"] == 2  # killed, a fresh worker for clip c


def test_a_method_not_set_up_says_what_to_run(tmp_path, monkeypatch, capsys):
    from kdbench.cli import main
    from kdbench.dataset import load_dataset
    from kdbench.runner import run_method

    monkeypatch.setenv("KDBENCH_HOME", str(tmp_path / "empty"))
    monkeypatch.delenv("KDBENCH_WEIGHTS_MANIFEST", raising=False)  # the built-in manifest, not the module's fake one
    ds = load_dataset(_dataset(tmp_path / "ds"))
    with pytest.raises(KdbenchError) as e:
        run_method("sadtalker", ds, tmp_path / "run", progress=False)
    assert str(e.value) == ("method 'sadtalker' is not ready: not set up. Run `kdbench setup sadtalker` (offline: "
                            "`kdbench setup sadtalker --source DIR`), then `kdbench ls methods` shows it ready.")
    assert not (tmp_path / "run").exists()  # refused before its run folder is created
    capsys.readouterr()
    assert main(["ls", "methods"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert next(r for r in out if r.startswith("sadtalker")).split()[1:3] == ["not", "set"]
    assert next(r for r in out if r.startswith("kdtalker")).split()[1:3] == ["weights", "missing"]  # native too
    assert next(r for r in out if r.startswith("real ")).split()[1] == "ready"
    blocked = out[out.index("not ready:"):]
    assert blocked[blocked.index("  sadtalker: not set up") + 1] == "      fix: kdbench setup sadtalker"
    assert "      fix: kdbench weights fetch kdtalker kdtalker_norm wav2lip" in "\n".join(blocked)
    assert main(["ls", "methods", "--long"]) == 0
    long = capsys.readouterr().out
    sad = long[long.index("\nsadtalker\n"):]
    assert "  status: not set up\n  fix: kdbench setup sadtalker\n" in sad
    assert "  runs: upstream code OpenTalker/SadTalker@" in sad and "  options: preprocess=crop" in sad
    assert "  licence: " in sad and "  runs: in this process (native)" in long
    monkeypatch.setenv("KDBENCH_OFFLINE", "1")
    assert main(["setup", "sadtalker", "-q"]) == 2
    err = capsys.readouterr().err
    assert "KDBENCH_OFFLINE=1: cannot download https://github.com/OpenTalker/SadTalker/archive/" in err
    assert "--source DIR" in err


def test_sadtalker_spec_links_every_weight_the_manifest_knows():
    from baselines.sadtalker.spec import SPEC
    from kdbench.weights import MANIFEST, load_manifest

    manifest = load_manifest(MANIFEST)
    assert set(SPEC.weights) <= set(manifest)
    assert set(SPEC.optional_weights) < set(SPEC.weights)
    assert SPEC.options == {"preprocess": "crop", "size": 256, "pose_style": 0, "still": False,
                            "expression_scale": 1.0, "enhancer": None, "batch_size": 2}
    assert len(SPEC.commit) == 40
    from kdbench.runtime import compat

    assert set(SPEC.compat) <= set(compat.FIXES)


def test_status_names_missing_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("KDBENCH_WEIGHTS_MANIFEST", str(write_manifest(tmp_path / "w.toml", {
        "a": WeightEntry(name="a", file="w.pth", url="https://example.invalid/w")})))
    env = env_for("x", tmp_path)
    assert env.status() == "not set up"
    env.python.parent.mkdir(parents=True)
    env.python.write_text("")
    env.source.mkdir()
    link = env.source / "w.pth"
    env.setup_json.write_text(json.dumps({"weights": {"a": {"link": str(link)}},
                                          "weights_missing": {"b": "run `kdbench weights fetch b`"}}))
    assert env.status() == "weights missing: a, b"
    link.write_text("")
    env.setup_json.write_text(json.dumps({"weights": {"a": {"link": str(link)}}, "weights_missing": {}}))
    assert env.status() == "ready"


def test_a_weight_the_spec_gained_after_setup_makes_the_method_not_ready(home, fake_repo, fake_method,
                                                                           monkeypatch):
    """A kdbench upgrade whose spec links one more required weight: ``ls methods`` and ``run`` say so (setup again
    links it) instead of calling the environment ready and letting upstream download or stop; an optional one is
    not required."""
    import dataclasses

    from kdbench.readiness import method_readiness
    from kdbench.runtime.method import upstream_method

    env = env_for("fakeup", home)
    spec = fake_spec(fake_repo[1])
    assert env.status(spec) == "ready" and env.weights_added_since_setup(spec) == []
    grown = dataclasses.replace(spec, weights={**spec.weights, "new_ckpt": "ckpt/new.npy"})
    assert env.weights_added_since_setup(grown) == ["new_ckpt"]
    assert env.status(grown) == "weights missing: new_ckpt"
    assert env.status(dataclasses.replace(grown, optional_weights=("new_ckpt",))) == "ready"
    monkeypatch.setenv("KDBENCH_HOME", str(home))
    cls = upstream_method(grown)
    assert cls.setup_problems(WeightsManager(home=home)) == [("weights missing: new_ckpt", "kdbench setup fakeup")]
    assert fake_method.setup_problems(WeightsManager(home=home)) == []
    assert method_readiness("fakeup").ready  # the registered class: its own spec


def test_recorded_versions_are_the_ones_that_import(home):
    """A package in the venv shadows the shared site's copy; setup.json must record the venv's version."""
    from kdbench.runtime.setup import installed_packages, site_packages

    env = env_for("fakeup", home)
    fake = site_packages(env.python) / "numpy-0.0.1.dist-info"
    fake.mkdir()
    try:
        (fake / "METADATA").write_text("Metadata-Version: 2.1\nName: numpy\nVersion: 0.0.1\n")
        assert installed_packages(env.python)["numpy"] == "0.0.1"
    finally:
        shutil.rmtree(fake)
    assert installed_packages(env.python)["numpy"] == np.__version__


def test_a_weight_changed_after_setup_is_reported_and_refused_at_run_time(home, fake_method, tmp_path, monkeypatch,
                                                                          capsys):
    """As a user would: overwrite the linked weight with another valid checkpoint after `kdbench setup`."""
    from kdbench.cli import main
    from kdbench.dataset import load_dataset

    monkeypatch.setenv("KDBENCH_HOME", str(home))
    monkeypatch.delenv("KDBENCH_ALLOW_UNVERIFIED", raising=False)
    env = env_for("fakeup", home)
    ckpt = Path(env.record()["weights"]["fake_ckpt"]["target"])
    original = ckpt.read_bytes()
    ds = load_dataset(_dataset(tmp_path / "ds"))
    try:
        np.save(ckpt, np.array([11.0, 20.0, 30.0]))  # a different valid checkpoint, same size
        assert env.status().startswith("weights changed since setup: fake_ckpt")
        from kdbench.runtime import spec as runtime_spec

        monkeypatch.setattr(sys.modules[__name__], "FAKE_SPEC", fake_method.spec, raising=False)
        monkeypatch.setitem(runtime_spec.SPECS, "fakeup", f"{__name__}:FAKE_SPEC")  # listed as a baseline
        assert main(["ls", "methods"]) == 0
        row = next(r for r in capsys.readouterr().out.splitlines() if r.startswith("fakeup"))
        assert "weights changed since setup" in row
        assert main(["ls", "methods", "--long"]) == 0  # the file named in the details
        assert "weights changed since setup: fake_ckpt" in capsys.readouterr().out
        assert main(["weights", "verify", "fake_ckpt"]) == 1
        assert main(["run", "--method", "fakeup", "--dataset", str(ds.root), "--out", str(tmp_path / "run"),
                     "--warmup", "0", "-q"]) == 2
        err = capsys.readouterr().err
        assert "method 'fakeup' is not ready: weights changed since setup: fake_ckpt" in err
        assert not list((tmp_path / "run").glob("videos/*.mp4"))
    finally:
        ckpt.write_bytes(original)
    assert env.status() == "ready"  # the same bytes again: re-hashed (new mtime), accepted


def test_env_json_records_the_sha256_verified_the_warmup_and_the_workers_memory(home, fake_method, tmp_path,
                                                                                 monkeypatch):
    from kdbench.dataset import load_dataset
    from kdbench.files import sha256_file
    from kdbench.runner import run_method

    monkeypatch.setenv("KDBENCH_HOME", str(home))
    env = env_for("fakeup", home)
    ckpt = Path(env.record()["weights"]["fake_ckpt"]["target"])
    s = run_method("fakeup", load_dataset(_dataset(tmp_path / "ds")), tmp_path / "run", seed=0,
                   frame_size=(SIZE, SIZE), limit=1, warmup=1, progress=False)
    assert s.ok == ["a"]
    env_json = json.loads((tmp_path / "run" / "env.json").read_text())
    events = [json.loads(x) for x in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    load = next(e for e in events if e.get("event") == "load")
    assert load["warmup"]["n"] == 1 and load["warmup"]["clip_id"] == "a" and load["warmup"]["seconds"] > 0
    assert env_json["warmup"] == load["warmup"]
    clip = next(e for e in events if e.get("clip_id") == "a")
    assert clip["peak_rss_mb"] == clip["extra"]["worker_peak_rss_mb"] > 0  # the worker's, not kdbench's
    rec = env_json["method_env"]
    assert rec["weights"]["fake_ckpt"]["sha256"] == sha256_file(ckpt)
    assert rec["weights"]["fake_ckpt"]["trust"] == "pinned" and rec["trust_unpinned"] is False
    assert rec["unpinned_weights"] == [] and rec["worker"]["peak_rss_mb"] > 0


def test_setup_source_with_missing_blobs_is_recorded_unverified(tmp_path):
    """A clone whose object store lacks a blob: git checks it out without that file and exits 0."""
    from kdbench.runtime.setup import fetch_source

    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.py").write_text("A = 1\n")
    (repo / "big.bin").write_bytes(b"segmenter model bytes")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    blob = _git(repo, "rev-parse", "HEAD:big.bin")
    (repo / ".git" / "objects" / blob[:2] / blob[2:]).unlink()  # the blob is gone from the repository
    spec = fake_spec(_git(repo, "rev-parse", "HEAD"))
    origin = fetch_source(spec, tmp_path / "src", str(repo), progress=False)
    assert origin["verified"] is False and origin["commit"] == spec.commit
    assert origin["problem"].startswith("the checkout differs from the commit in 1 file(s)")
    assert "big.bin" in origin["problem"] and not (tmp_path / "src" / "big.bin").exists()
