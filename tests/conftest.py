"""Shared fixtures: synthetic videos whose frames encode their own index, and the real hdtf-mini data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def level_frames(n: int, size: tuple[int, int] = (64, 48), step: int = 4) -> np.ndarray:
    """``uint8[n,H,W,3]``: frame i is a flat grey of level ``(i * step) % 256`` (survives lossy coding)."""
    w, h = size
    levels = (np.arange(n) * step) % 256
    return np.broadcast_to(levels[:, None, None, None].astype(np.uint8), (n, h, w, 3)).copy()


def tone(seconds: float, freq: float = 440.0, sr: int = 16000) -> np.ndarray:
    """``int16[seconds*sr]`` sine at a quarter of full scale."""
    t = np.arange(int(round(seconds * sr))) / sr
    return (8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def frame_levels(frames: np.ndarray) -> np.ndarray:
    """Recover each frame's grey level (mean over pixels), ``float[T]``."""
    return frames.reshape(len(frames), -1).mean(axis=1)


@pytest.fixture
def make_video(tmp_path):
    from kdbench.video import write_video

    def _make(name: str, n: int, fps: float = 25, size=(64, 48), audio_s: float | None = None, step: int = 4):
        audio = tone(audio_s) if audio_s else None
        return write_video(tmp_path / name, level_frames(n, size, step), fps, audio=audio, crf=0)

    return _make


@pytest.fixture(scope="session")
def hdtf_mini() -> Path:
    from kdbench.hdtf_mini import hdtf_mini_root

    return hdtf_mini_root(download=False)


@pytest.fixture
def tiny_dataset(tmp_path, make_video):
    """A 3-clip dataset folder laid out like hdtf-mini: 2 GT videos (2 s, 25 fps, with audio) + 1 ref/audio pair."""
    from PIL import Image

    from kdbench.audio import write_wav

    root = tmp_path / "tiny"
    (root / "gt").mkdir(parents=True)
    for i, name in enumerate(["A_clip_000", "B_clip_000"]):
        p = make_video(name + ".mp4", 50, 25, (64, 64), audio_s=2.0, step=3 + i)
        p.rename(root / "gt" / p.name)
    (root / "ref").mkdir()
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(root / "ref" / "C_clip_000.png")
    write_wav(root / "audio" / "C_clip_000.wav", tone(2.0))
    return root
