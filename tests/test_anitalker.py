"""AniTalker through the baseline runtime, offline, on a fake upstream tree (tests/fake_anitalker) that keeps the
real ``demo.py``'s order of operations: the worker's frames equal the fake ``demo.py``'s PNG frames for the same
seed (its seed is set inside ``LitModel``, after which module initialisation draws from the generator before the
noise), the same seed gives the same frames on every clip, HuBERT features are always extracted from the clip's
own audio, the lossless hand-over to the normaliser, and the option checks."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch (kdbench[metrics])")
pytest.importorskip("librosa", reason="the AniTalker hooks read audio with librosa (test extra)")
pytest.importorskip("imageio_ffmpeg", reason="the AniTalker hooks write FFV1 with imageio-ffmpeg (test extra)")

from baselines.anitalker.spec import SPEC  # noqa: E402
from kdbench.runtime.spec import env_for  # noqa: E402
from tests.baseline_fixtures import check_payload_never_runs, fake_manifest, run_one_clip, set_up_fake_method  # noqa: E402

FAKE = Path(__file__).with_name("fake_anitalker")


def _fake_weights(folder: Path) -> dict[str, Path]:
    """Random weights of the fake models, one file per AniTalker weights entry."""
    sys.path.insert(0, str(FAKE / "code"))
    try:
        import LIA_Model
        import templates
        import transformers as fake_transformers
    finally:
        sys.path.remove(str(FAKE / "code"))
    assert Path(fake_transformers.__file__).parent == FAKE / "code"
    torch.manual_seed(0)
    folder.mkdir(parents=True)
    files = {"anitalker_stage1": folder / "stage1.ckpt", "anitalker_stage2_audio_only_hubert": folder / "s2.ckpt",
             "anitalker_hubert_model": folder / "pytorch_model.bin", "anitalker_hubert_config": folder / "config.json",
             "anitalker_hubert_preprocessor": folder / "preprocessor_config.json"}
    torch.save(LIA_Model.LIA_Model(motion_dim=20).state_dict(), files["anitalker_stage1"])
    conf = templates.ffhq256_autoenc()
    conf.motion_dim = 20
    torch.save(templates.LitModel(conf).state_dict(), files["anitalker_stage2_audio_only_hubert"])
    torch.save(fake_transformers.HubertModel().state_dict(), files["anitalker_hubert_model"])
    files["anitalker_hubert_config"].write_text('{"model_type": "hubert"}\n')
    files["anitalker_hubert_preprocessor"].write_text('{"sampling_rate": 16000}\n')
    for name in ("LIA_Model", "templates", "transformers"):
        sys.modules.pop(name, None)
    return files


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Iterator[Path]:
    """KDBENCH_HOME with ``anitalker`` set up from a git repository of the fake tree (no requirements installed:
    the running interpreter's packages are shared), the fake weights linked where AniTalker expects them."""
    root = tmp_path_factory.mktemp("anitalker")
    repo = root / "upstream"
    (repo / "code").mkdir(parents=True)
    for f in (FAKE / "code").glob("*.py"):
        (repo / "code" / f.name).write_text(f.read_text())
    files = _fake_weights(root / "w")
    home = set_up_fake_method(SPEC, repo, root / "home", files,
                              file_names={name: Path(SPEC.weights[name]).name for name in files})
    with fake_manifest(home):  # the fake weights' sha256 pinned as if published
        yield home


def _inputs(folder: Path, seconds: float) -> tuple[Path, Path]:
    from PIL import Image

    from kdbench.audio import write_wav

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    img, wav = folder / "ref.png", folder / "drive.wav"
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(img)
    write_wav(wav, (rng.standard_normal(int(seconds * 16000)) * 3000).astype(np.int16))
    return img, wav


def _official_frames(env, img: Path, wav: Path, out: Path, seed: int) -> np.ndarray:
    """The fake demo.py as upstream is run: from the source tree, `python code/demo.py --seed S ...`."""
    from PIL import Image

    subprocess.run([str(env.python), "code/demo.py", "--infer_type", "hubert_audio_only", "--test_image_path",
                    str(img), "--test_audio_path", str(wav), "--result_path", str(out), "--seed", str(seed),
                    "--step_T", "50"], cwd=env.source, check=True, capture_output=True)
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted((out / "frames").glob("*.png"))])


def test_worker_frames_equal_demo_py_for_the_same_seed(home, tmp_path):
    from kdbench.runtime.client import WorkerClient
    from kdbench.video import read_video

    env = env_for("anitalker", home)
    img, wav = _inputs(tmp_path / "in", 1.0)
    client = WorkerClient(env.python, env.source, SPEC.hooks, options=SPEC.options, compat=SPEC.compat,
                          log_path=tmp_path / "w.log", scratch=tmp_path / "scratch")
    client.start()
    got = {}
    for i, seed in enumerate([7, 7, 8]):  # a second clip with the same seed: seeding is per clip, not per process
        reply = client.request(img, wav, tmp_path / f"out{i}.mp4", seed)
        assert reply["ok"], reply
        got[i] = read_video(reply["video"])[0]
        assert reply["n_frames"] == len(got[i]) == 25  # 50 Hz features + 1 padded, halved: 16000 samples -> 25
    client.close()
    official = _official_frames(env, img, wav, tmp_path / "official7", 7)
    assert official.shape == (25, 256, 256, 3)
    assert np.array_equal(got[0], official)  # lossless hand-over: exactly the PNG frames demo.py writes
    assert np.array_equal(got[1], official)
    assert not np.array_equal(got[2], official)
    assert np.array_equal(got[2], _official_frames(env, img, wav, tmp_path / "official8", 8))


def test_run_normalises_to_the_audio_and_records_the_environment(home, tmp_path, monkeypatch):
    monkeypatch.setenv("KDBENCH_HOME", str(home))
    img, wav = _inputs(tmp_path / "ds" / "tmp", 1.2)
    info, clip, env_json = run_one_clip("anitalker", tmp_path / "ds", img, wav, tmp_path / "run", seed=3,
                                        frame_size=(64, 64))
    assert (info.fps, info.n_frames, info.width, info.height) == (25, 30, 64, 64)  # 1.2 s of audio
    assert clip["extra"]["worker_n_frames"] == 30 and clip["seconds"] == clip["extra"]["worker_seconds"]
    assert env_json["method_env"]["method"] == "anitalker"
    # pinned random-weight checkpoints still load: fully unpickled only where kdbench verified the pin just before
    loads = {Path(x["file"]).name: x["mode"] for x in env_json["method_env"]["worker"]["loads"]}
    assert loads["stage1.ckpt"] == "full pickle (pinned)" and loads["pytorch_model.bin"] == "full pickle (pinned)"
    assert loads["stage2_audio_only_hubert.ckpt"] == "weights_only"  # the hooks ask for weights_only themselves
    assert env_json["method_env"]["weights"]["anitalker_stage1"]["trust"] == "pinned"
    assert env_json["method_env"]["unpinned_weights"] == [] and env_json["method_env"]["trust_unpinned"] is False


def test_options_outside_what_kdbench_installs_are_refused(home, tmp_path):
    from kdbench.runtime.client import WorkerClient

    env = env_for("anitalker", home)
    for opts, why in (({"face_sr": True}, "face_sr needs GFPGAN"), ({"infer_type": "mfcc_pose_only"}, "infer_type")):
        client = WorkerClient(env.python, env.source, SPEC.hooks, options={**SPEC.options, **opts},
                              compat=SPEC.compat, log_path=tmp_path / "w.log", scratch=tmp_path / "s")
        with pytest.raises(Exception, match=why):
            client.start()
        client.close()


def test_spec_links_every_weight_the_manifest_knows():
    from kdbench.weights import MANIFEST, load_manifest

    manifest = load_manifest(MANIFEST)  # the built-in one, whatever the module fixture set
    assert set(SPEC.weights) <= set(manifest)
    assert all(manifest[n].hf_repo == "taocode/anitalker_ckpts" for n in SPEC.weights)
    assert SPEC.options == {"step_t": 50, "infer_type": "hubert_audio_only", "face_sr": False}
    assert len(SPEC.commit) == 40
    from kdbench.runtime import compat

    assert set(SPEC.compat) <= set(compat.FIXES)


def test_a_payload_in_an_unpinned_weight_never_runs_in_the_worker_without_the_flag(home, tmp_path):
    check_payload_never_runs(env_for(SPEC.name, home), SPEC, "ckpts/stage1.ckpt", tmp_path)


def test_a_tofu_weight_with_a_payload_is_refused_by_run_unless_trust_unpinned(tmp_path, monkeypatch):
    """The whole chain as a user meets it: `kdbench setup` with a weight that has no published pin (tofu) whose
    file carries a pickle payload; `kdbench run` verifies it (first-use pin), the worker refuses to unpickle it."""
    from kdbench.errors import KdbenchError
    from kdbench.runner import run_method
    from tests.baseline_fixtures import Payload, one_clip_dataset

    repo = tmp_path / "upstream"
    (repo / "code").mkdir(parents=True)
    for f in (FAKE / "code").glob("*.py"):
        (repo / "code" / f.name).write_text(f.read_text())
    files = _fake_weights(tmp_path / "w")
    marker = tmp_path / "marker"
    torch.save({"state_dict": {}, "payload": Payload(marker)}, files["anitalker_stage1"])
    home = set_up_fake_method(SPEC, repo, tmp_path / "home", files, tofu=("anitalker_stage1",),
                              file_names={name: Path(SPEC.weights[name]).name for name in files})
    monkeypatch.setenv("KDBENCH_HOME", str(home))
    monkeypatch.setenv("KDBENCH_WEIGHTS_MANIFEST", str(home / "weights.toml"))
    img, wav = _inputs(tmp_path / "ds" / "tmp", 1.0)
    ds = one_clip_dataset(tmp_path / "ds", img, wav)
    with pytest.raises(KdbenchError, match="did not start") as ex:
        run_method("anitalker", ds, tmp_path / "run", warmup=0, progress=False)
    stage1 = (home / "weights" / "anitalker_stage1" / "stage1.ckpt").resolve()
    assert (f"{stage1}: not unpickled, because it matches no published pin: it is trusted on first use (no "
            "published checksum)") in str(ex.value)
    assert "--trust-unpinned (or KDBENCH_TRUST_UNPINNED=1)" in str(ex.value) and not marker.exists()
    monkeypatch.setenv("KDBENCH_TRUST_UNPINNED", "1")
    with pytest.raises(KdbenchError):  # the payload is no LIA state dict: the load fails after it ran
        run_method("anitalker", ds, tmp_path / "run2", warmup=0, progress=False)
    assert marker.read_text() == "ran"
