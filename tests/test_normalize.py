"""The normaliser: fps change, trim, pad, grid crop and audio remux, on generated videos."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import frame_levels, level_frames, tone

from kdbench.audio import read_audio
from kdbench.errors import ClipFailure, KdbenchError
from kdbench.normalize import GridCrop, normalize_frames, normalize_to_file, resample_indices
from kdbench.video import probe_video, read_video


def test_resample_indices_30_to_25_is_nearest_frame():
    # output frame i is shown at i/25 s; the source frame on screen then is round(i * 30/25)
    idx = resample_indices(30, 30.0, 25)
    assert idx.tolist() == [int(np.floor(i * 1.2 + 0.5)) for i in range(25)]
    assert idx[-1] == 29


def test_resample_indices_pad_repeats_last_frame():
    assert resample_indices(3, 25.0, 6).tolist() == [0, 1, 2, 2, 2, 2]


def test_normalize_frames_trim_pad_and_resize_report():
    frames = level_frames(10, (8, 6))
    out, info = normalize_frames(frames, 25.0, 7, (8, 6))
    assert out.shape == (7, 6, 8, 3) and info["trimmed"] == 3 and info["padded"] == 0
    np.testing.assert_array_equal(out, frames[:7])
    out, info = normalize_frames(frames, 25.0, 12, (16, 12))
    assert out.shape == (12, 12, 16, 3) and info["padded"] == 2 and info["resized"]
    assert frame_levels(out)[-1] == frame_levels(out)[-2] == frame_levels(frames)[-1]


def test_grid_crop_takes_the_requested_panel():
    panels = [np.full((2, 4, 5, 3), v, np.uint8) for v in (10, 20, 30)]
    grid = np.concatenate(panels, axis=2)  # 3 panels side by side: [2, 4, 15, 3]
    np.testing.assert_array_equal(GridCrop.parse("3:1").apply(grid), panels[1])
    two_rows = np.concatenate([grid, grid + 1], axis=1)
    np.testing.assert_array_equal(GridCrop.parse("3x2:5").apply(two_rows), panels[2] + 1)
    with pytest.raises(KdbenchError):
        GridCrop(cols=4, index=0).apply(grid)


def test_video_at_30fps_becomes_25fps_with_audio_frame_count(make_video, tmp_path):
    src = make_video("src30.mp4", 90, fps=30, size=(64, 48))  # 3 s at 30 fps
    audio = tone(2.0)  # 2 s of audio -> exactly 50 frames
    rep = normalize_to_file(tmp_path / "out.mp4", audio, (64, 48), video_path=src)
    info = probe_video(tmp_path / "out.mp4")
    assert (info.fps, info.n_frames, info.width, info.height) == (25.0, 50, 64, 48)
    assert rep.resampled and rep.trimmed == 25 and rep.orig_fps == 30 and rep.orig_n_frames == 90
    frames, _ = read_video(tmp_path / "out.mp4")
    expected = (resample_indices(90, 30.0, 50) * 4) % 256
    np.testing.assert_allclose(frame_levels(frames), expected, atol=2.5)


def test_short_video_is_padded_with_its_last_frame(make_video, tmp_path):
    src = make_video("short.mp4", 20, fps=25)
    with pytest.raises(ClipFailure, match="10 frames .* shorter than its audio.*5-frame padding tolerance"):
        normalize_to_file(tmp_path / "out.mp4", tone(1.2), (32, 24), video_path=src)  # default tolerance: 5
    assert not (tmp_path / "out.mp4").exists()
    rep = normalize_to_file(tmp_path / "out.mp4", tone(1.2), (32, 24), video_path=src, max_pad_frames=10)
    frames, fps = read_video(tmp_path / "out.mp4")
    assert fps == 25 and len(frames) == 30 and frames.shape[1:3] == (24, 32)
    assert rep.padded == 10 and rep.resized
    levels = frame_levels(frames)
    np.testing.assert_allclose(levels[19:], levels[19], atol=1.0)


def test_audio_is_remuxed_as_canonical_16k_mono(make_video, tmp_path):
    src = make_video("v.mp4", 50, fps=25, audio_s=2.0)
    canonical = tone(2.0, freq=300.0)  # different from the video's own 440 Hz track
    normalize_to_file(tmp_path / "out.mp4", canonical, (64, 48), video_path=src)
    got = read_audio(tmp_path / "out.mp4")
    assert len(got) == len(canonical)
    corr = np.corrcoef(got.astype(float), canonical.astype(float))[0, 1]
    assert corr > 0.99  # the canonical 300 Hz tone, not the source's 440 Hz one


def test_conforming_video_is_stream_copied_bit_exact(make_video, tmp_path):
    src = make_video("ok.mp4", 50, fps=25, size=(64, 48), audio_s=2.0)
    rep = normalize_to_file(tmp_path / "out.mp4", tone(2.0), (64, 48), video_path=src)
    assert not rep.reencoded
    np.testing.assert_array_equal(read_video(tmp_path / "out.mp4")[0], read_video(src)[0])


def test_frames_input_with_grid_hook(tmp_path):
    frames = np.concatenate([level_frames(25, (32, 32), 2), np.zeros((25, 32, 32, 3), np.uint8) + 200], axis=2)
    rep = normalize_to_file(tmp_path / "g.mp4", tone(1.0), (32, 32), frames=frames, fps=25, grid=GridCrop(2, 1))
    out, _ = read_video(tmp_path / "g.mp4")
    assert rep.grid == "2x1:1" and out.shape == (25, 32, 32, 3)
    np.testing.assert_allclose(frame_levels(out), 200, atol=1.5)
