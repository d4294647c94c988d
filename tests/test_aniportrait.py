"""AniPortrait through the baseline runtime, offline, on a fake upstream tree (tests/fake_aniportrait) that keeps
the real ``scripts/audio2vid.py``'s flags and order of operations: the worker's grid frames equal the fake script's
for the same seed (torch seeded after model construction, the Audio2Pose id from Python's ``random``, seeded here so
that the script can be reproduced at all), the same seed gives the same frames on every clip, and a run keeps panel
2 of the padded ``make_grid`` output resampled from 30 to 25 fps by timestamp; plus the option checks."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch (kdbench[metrics])")
pytest.importorskip("imageio_ffmpeg", reason="the AniPortrait hooks write FFV1 with imageio-ffmpeg (test extra)")
pytest.importorskip("cv2", reason="AniPortrait's per-clip code uses OpenCV")

from baselines.aniportrait.spec import SPEC  # noqa: E402
from kdbench.runtime.spec import env_for  # noqa: E402
from tests.baseline_fixtures import check_payload_never_runs, fake_manifest, one_clip_dataset, set_up_fake_method  # noqa: E402

FAKE = Path(__file__).with_name("fake_aniportrait")
SIZE, STEPS = 16, 3
OPTIONS = {**SPEC.options, "size": SIZE, "steps": STEPS}


def _fake_weights(folder: Path) -> dict[str, Path]:
    """Random weights of the fake networks, one file per AniPortrait weights entry (FILM left out: optional)."""
    def src_modules() -> list[str]:  # another fake upstream's `src` package (SadTalker's) may be loaded already
        return [k for k in sys.modules if k == "src" or k.startswith("src.")]

    other = {k: sys.modules.pop(k) for k in src_modules()}
    sys.path.insert(0, str(FAKE))
    try:
        from src._fake import Net
        from src.audio_models.model import Audio2MeshModel
        from src.audio_models.pose_model import Audio2PoseModel
    finally:
        sys.path.remove(str(FAKE))
        for k in src_modules():
            del sys.modules[k]
        sys.modules.update(other)
    torch.manual_seed(0)
    folder.mkdir(parents=True)
    files = {name: folder / name / Path(rel).name for name, rel in SPEC.weights.items()
             if name != "aniportrait_film_net"}
    for p in files.values():
        p.parent.mkdir()
    for name in ("sd15_unet_config", "sd_vae_ft_mse_config", "sd_image_variations_encoder_config"):
        files[name].write_text('{"channels": 3}\n')
    files["wav2vec2_base_960h_config"].write_text('{"hidden_size": 8}\n')
    files["wav2vec2_base_960h_preprocessor"].write_text('{"sampling_rate": 16000}\n')
    for name in ("sd15_unet", "sd_vae_ft_mse", "sd_image_variations_encoder", "aniportrait_denoising_unet",
                 "aniportrait_reference_unet", "aniportrait_pose_guider", "wav2vec2_base_960h"):
        torch.save(Net(3).state_dict(), files[name])
    torch.save({"motion": torch.randn(3, 1, 1) * 0.1}, files["aniportrait_motion_module"])
    cfg = {"model_path": str(files["wav2vec2_base_960h_config"].parent), "out_dim": 12}
    torch.save(Audio2MeshModel(cfg).state_dict(), files["aniportrait_audio2mesh"])
    torch.save(Audio2PoseModel({**cfg, "out_dim": 6}).state_dict(), files["aniportrait_audio2pose"])
    for name in [m for m in sys.modules if m == "src" or m.startswith("src.")]:
        sys.modules.pop(name)
    return files


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Iterator[Path]:
    """KDBENCH_HOME with ``aniportrait`` set up from a git repository of the fake tree (the running interpreter's
    packages shared), the fake weights linked into ``pretrained_model/`` by ``kdbench setup``."""
    import shutil

    root = tmp_path_factory.mktemp("aniportrait")
    repo = root / "upstream"
    shutil.copytree(FAKE, repo, ignore=shutil.ignore_patterns("__pycache__"))
    home = set_up_fake_method(SPEC, repo, root / "home", _fake_weights(root / "w"))
    with fake_manifest(home):  # the fake weights' sha256 pinned as if published
        yield home


def _inputs(folder: Path, seconds: float) -> tuple[Path, Path]:
    from PIL import Image

    from kdbench.audio import write_wav

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    img, wav = folder / "ref.png", folder / "drive.wav"
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(img)
    t = np.arange(int(seconds * 16000)) / 16000
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 1.3 * t)  # loudness that changes over time: moving mesh and pose
    write_wav(wav, (rng.standard_normal(len(t)) * 3000 * envelope).astype(np.int16))
    return img, wav


_OFFICIAL: dict[int, np.ndarray] = {}


def _official_grid(env, img: Path, wav: Path, tmp: Path, seed: int) -> np.ndarray:
    """The fake audio2vid.py as upstream is run (``python -m scripts.audio2vid --config CLIP.yaml``, from the source
    tree) with a per-clip YAML; Python's ``random`` (unseeded upstream) is seeded where upstream seeds torch, after
    the module-level imports, as ``scripts/aniportrait_official.py`` does for the real script."""
    import yaml

    if seed in _OFFICIAL:  # the inputs of every call are the same 5.5 s clip (_inputs is deterministic)
        return _OFFICIAL[seed]
    cfg = yaml.safe_load((env.source / "configs/prompts/animation_audio.yaml").read_text())
    cfg["test_cases"] = {str(img): [str(wav)]}
    clip_cfg = tmp / f"clip{seed}.yaml"
    clip_cfg.write_text(yaml.safe_dump(cfg))
    argv = ["audio2vid", "--config", str(clip_cfg), "-W", str(SIZE), "-H", str(SIZE), "--steps", str(STEPS),
            "--seed", str(seed)]
    code = ("import random, runpy, sys, torch; manual_seed = torch.manual_seed; "
            "torch.manual_seed = lambda s: (random.seed(s), manual_seed(s))[1]; "
            f"sys.argv = {argv!r}; runpy.run_module('scripts.audio2vid', run_name='__main__')")
    before = set((env.source / "output").rglob("*.npy")) if (env.source / "output").exists() else set()
    subprocess.run([str(env.python), "-c", code], cwd=env.source, check=True, capture_output=True)
    (new,) = set((env.source / "output").rglob("*.npy")) - before
    assert new.with_suffix(".fps").read_text() == "30"
    _OFFICIAL[seed] = np.load(new)
    new.unlink()
    return _OFFICIAL[seed]


def test_worker_grid_frames_equal_audio2vid_for_the_same_seed(home, tmp_path):
    from kdbench.errors import ClipFailure
    from kdbench.runtime.client import WorkerClient
    from kdbench.video import read_video

    env = env_for("aniportrait", home)
    img, wav = _inputs(tmp_path / "in", 5.5)
    client = WorkerClient(env.python, env.source, SPEC.hooks, options=OPTIONS, compat=SPEC.compat,
                          log_path=tmp_path / "w.log", scratch=tmp_path / "scratch")
    client.start()
    got = {}
    for i, seed in enumerate([7, 7, 8]):  # the same seed on a later clip: seeding is per clip, not per process
        reply = client.request(img, wav, tmp_path / f"out{i}.mp4", seed)
        got[i], fps = read_video(reply["video"])
        assert fps == 30 and reply["n_frames"] == len(got[i]) == 165  # ceil(5.5 s * 30 fps)
    short_img, short_wav = _inputs(tmp_path / "short", 4.0)
    with pytest.raises(ClipFailure, match="more than 5 s of audio"):
        client.request(short_img, short_wav, tmp_path / "o.mp4", 1)
    client.close()
    official = _official_grid(env, img, wav, tmp_path, 7)
    assert official.shape == (165, SIZE + 4, 3 * (SIZE + 2) + 2, 3)  # make_grid(nrow=3), padding 2
    assert np.array_equal(got[0], official)  # lossless hand-over of exactly the grid save_videos_grid encodes
    assert np.array_equal(got[1], official)
    assert not np.array_equal(got[2], official)
    assert np.array_equal(got[2], _official_grid(env, img, wav, tmp_path, 8))


def test_run_keeps_the_video_panel_at_25fps_in_sync(home, tmp_path, monkeypatch):
    from kdbench.normalize import resample_indices
    from kdbench.runner import run_method
    from kdbench.video import probe_video, read_video

    monkeypatch.setenv("KDBENCH_HOME", str(home))
    root = tmp_path / "ds"
    img, wav = _inputs(root / "tmp", 5.5)
    s = run_method("aniportrait", one_clip_dataset(root, img, wav), tmp_path / "run", seed=7, frame_size=(SIZE, SIZE),
                   options={"size": SIZE, "steps": STEPS}, warmup=0, progress=False)
    assert s.ok == ["clip_a"] and not s.failed
    info = probe_video(tmp_path / "run" / "videos" / "clip_a.mp4")
    assert (info.fps, info.n_frames, info.width, info.height) == (25, 137, SIZE, SIZE)  # 5.5 s of audio
    ev = [json.loads(x) for x in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    norm = next(e for e in ev if e.get("clip_id") == "clip_a")["normalizer"]
    assert norm["grid"] == "3x1:2,pad=2" and norm["orig_fps"] == 30 and norm["orig_n_frames"] == 165
    assert norm["resampled"] and not norm["resized"] and norm["padded"] == 0

    official = _official_grid(env_for("aniportrait", home), root / "ref" / "clip_a.png",
                              root / "audio" / "clip_a.wav", tmp_path, 7)
    panel = official[:, 2:2 + SIZE, 2 * (SIZE + 2) + 2:3 * (SIZE + 2)].astype(np.float32)  # the generated video
    expected = panel[resample_indices(165, 30.0, 137)]
    got = read_video(tmp_path / "run" / "videos" / "clip_a.mp4")[0].astype(np.float32)
    luma = np.array([0.299, 0.587, 0.114], np.float32)  # yuv420p keeps luma per pixel, chroma per 2x2 block
    err = np.abs((got - expected) @ luma).mean(axis=(1, 2))
    shifted = np.abs((got[1:] - expected[:-1]) @ luma).mean(axis=(1, 2))  # one output frame (40 ms) late
    assert err.max() < 5  # libx264 at crf 15 (measured 2.7)
    assert err.max() < shifted.min() / 3  # every frame is the one at its timestamp, none a neighbour (measured 18.4)


def test_options_outside_what_runs_are_refused(home, tmp_path):
    from kdbench.runtime.client import WorkerClient

    env = env_for("aniportrait", home)
    for opts, why in (({"acc": True}, "acc .FILM frame interpolation. is hard-wired to CUDA"),
                      ({"size": 12}, "multiple of 8")):
        client = WorkerClient(env.python, env.source, SPEC.hooks, options={**OPTIONS, **opts},
                              compat=SPEC.compat, log_path=tmp_path / "w.log", scratch=tmp_path / "s")
        with pytest.raises(Exception, match=why):
            client.start()
        client.close()


def test_spec_links_every_weight_the_manifest_knows():
    from kdbench.normalize import GridCrop
    from kdbench.runtime import compat
    from kdbench.weights import MANIFEST, load_manifest

    manifest = load_manifest(MANIFEST)  # the built-in one, whatever the module fixture set
    assert set(SPEC.weights) <= set(manifest)
    repos = {manifest[n].hf_repo for n in SPEC.weights}
    assert repos == {"ZJYang/AniPortrait", "stable-diffusion-v1-5/stable-diffusion-v1-5", "stabilityai/sd-vae-ft-mse",
                     "lambdalabs/sd-image-variations-diffusers", "facebook/wav2vec2-base-960h"}
    assert all(rel.startswith("pretrained_model/") for rel in SPEC.weights.values())  # what the configs read
    assert SPEC.options == {"steps": 25, "cfg": 3.5, "size": 512, "acc": False, "fi_step": 3}
    assert GridCrop.parse(SPEC.grid).panel_box(1544, 516) == (1030, 2, 512, 512)
    assert len(SPEC.commit) == 40 and SPEC.commit.startswith("7f6593f")
    assert set(SPEC.compat) <= set(compat.FIXES)


def test_cuda_to_cpu_keeps_upstreams_hard_coded_cuda_calls_on_the_cpu(monkeypatch):
    """The compat fix that lets the official audio2vid.py (``.cuda()``, ``.to("cuda")``) run without a GPU."""
    from kdbench.runtime import compat

    if torch.cuda.is_available():
        pytest.skip("the fix only acts where CUDA is unavailable")
    for owner in (torch.Tensor, torch.nn.Module):  # restored after the test
        monkeypatch.setattr(owner, "cuda", owner.cuda)
        monkeypatch.setattr(owner, "to", owner.to)
    assert "no-op" in compat.apply(["cuda_to_cpu"])["cuda_to_cpu"]
    assert compat.apply(["cuda_to_cpu"])["cuda_to_cpu"] == "already applied"
    x = torch.LongTensor([7]).cuda()  # audio2vid.py: torch.LongTensor([id_seed]).cuda()
    assert x.device.type == "cpu" and x.item() == 7
    lin = torch.nn.Linear(2, 2).cuda().eval()
    y = lin.to(device="cuda", dtype=torch.float64)(torch.ones(1, 2, dtype=torch.float64).to("cuda:0"))
    assert y.device.type == "cpu" and y.dtype == torch.float64 and lin.weight.dtype == torch.float64
    assert torch.ones(1).to(torch.device("cuda")).device.type == "cpu"


def test_a_payload_in_an_unpinned_weight_never_runs_in_the_worker_without_the_flag(home, tmp_path):
    check_payload_never_runs(env_for(SPEC.name, home), SPEC, "pretrained_model/audio2mesh.pt", tmp_path)
