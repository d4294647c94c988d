"""KDTalker end to end on CPU from official-format checkpoints with random weights and real hdtf-mini inputs.

``test_method_end_to_end_mp4`` runs everything, LivePortrait rendering included, and writes the mp4.
LivePortrait's warp + SPADE decode costs seconds per 512x512 frame on a CPU, so that test renders the
shortest clip KDTalker accepts (1 s = 25 frames) and is marked slow. The other tests exercise the same
loaded method up to the driving keypoints and record what would be rendered.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from baselines.kdtalker import KDTalker
from baselines.kdtalker.liveportrait import LivePortrait
from baselines.kdtalker.random_weights import random_weights_manager
from kdbench.dataset import load_dataset
from kdbench.errors import ClipFailure
from kdbench.weights import WeightsManager

CLIP = "WDA_BenCardin1_000"


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> WeightsManager:
    from kdbench.hdtf_mini import hdtf_mini_root

    folder = tmp_path_factory.mktemp("kdtalker_weights")
    return random_weights_manager(folder, seed=0, norm=hdtf_mini_root().parent / "kdtalker" / "norm.npz")


@pytest.fixture(scope="module")
def clip(method):
    """The clip as `kdbench run` hands it to KDTalker: the driving audio is what the official code reads
    (``librosa.load(wav, sr=16000)``: float, exact channel average), not the canonical int16 mixdown."""
    spec = load_dataset("hdtf-mini").get(CLIP)
    audio = method.driving_audio(spec, spec.load_audio())
    assert audio.dtype == np.float32
    return spec, spec.load_ref_image(), audio


@pytest.fixture(scope="module")
def method(weights) -> KDTalker:
    m = KDTalker(options={"ddim_steps": 2, "batch_size": 4}, device="cpu", weights=weights, seed=3)
    m.load()
    return m


class RecordingRender:
    """Stands in for ``LivePortrait.render`` (seconds per frame on CPU): keeps the driving keypoints."""

    def __init__(self):
        self.kp: list[torch.Tensor] = []

    def __call__(self, source, kp, batch_size=None):
        self.kp.append(kp.clone())
        return np.zeros((len(kp), 512, 512, 3), np.uint8)


def test_all_modules_load_strictly(method):
    p = method.pipeline
    assert isinstance(p.renderer, LivePortrait)
    assert not p.denoiser.training and not p.audio_encoder.training


def test_generate_is_seeded(method, clip, monkeypatch):
    spec, ref, audio = clip
    audio = audio[: 2 * 16000 + 500]  # 2.03 s -> 50 frames
    runs = []
    for seed in (3, 3, 4):
        rec = RecordingRender()
        monkeypatch.setattr(method.pipeline.renderer, "render", rec)
        method.seed = seed
        gen = method.generate(spec, ref, audio)
        assert gen.fps == 25 and gen.frames.shape == (50, 512, 512, 3) and gen.frames.dtype == np.uint8
        assert {"t_audio", "t_diffusion", "t_render"} <= set(gen.extra)
        kp = torch.cat(rec.kp)
        assert kp.shape == (50, 21, 3) and torch.isfinite(kp).all()
        runs.append(kp)
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])
    # the motion varies over time (diffusion output, not a constant pose)
    assert (runs[0][1:] - runs[0][:-1]).abs().max() > 1e-4


def test_bad_inputs(method, clip):
    spec, ref, audio = clip
    with pytest.raises(ClipFailure, match="at least 1 s"):
        method.generate(spec, ref, audio[:12000])
    with pytest.raises(ClipFailure, match="no face"):
        method.generate(spec, np.full((256, 256, 3), 128, np.uint8), audio[:20000])


@pytest.mark.slow
def test_method_end_to_end_mp4(method, clip, tmp_path):
    from kdbench.video import probe_video, read_video, write_video

    spec, ref, audio = clip
    audio = audio[: 16000 + 100]  # 1.006 s -> 25 frames
    method.seed = 5
    gen = method.generate(spec, ref, audio)
    frames = gen.frames
    assert frames.shape == (25, 512, 512, 3) and frames.dtype == np.uint8
    assert frames.std() > 1 and (frames[1:].astype(int) - frames[:-1]).any()  # rendered, and moving
    path = write_video(tmp_path / "kdtalker.mp4", frames, fps=gen.fps, audio=spec.load_audio()[: len(audio)])
    info = probe_video(path)
    assert (info.width, info.height, info.n_frames, info.fps, info.has_audio) == (512, 512, 25, 25, True)
    assert read_video(path)[0].shape == (25, 512, 512, 3)
    # same seed, same frames: the driving keypoints are identical, and rendering is deterministic
    rec = RecordingRender()
    renderer = method.pipeline.renderer
    real_render = renderer.render
    renderer.render = rec
    try:
        method.generate(spec, ref, audio)
    finally:
        renderer.render = real_render
    source = renderer.extract_source(method.pipeline.crop_fn(ref).img256)
    again = renderer.render(source, rec.kp[0][-2:])
    np.testing.assert_array_equal(again, frames[-2:])
