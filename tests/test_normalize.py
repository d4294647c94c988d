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


def _make_grid_frames(panels: list[np.ndarray], nrow: int, padding: int) -> np.ndarray:
    """``uint8[T,H,W,3]`` panels laid out by torchvision's own make_grid, per frame, as AniPortrait's
    save_videos_grid does (float in [0, 1], pad_value 0, then * 255 -> uint8)."""
    torch = pytest.importorskip("torch", reason="needs torch (kdbench[metrics])")
    from torchvision.utils import make_grid

    out = []
    for t in range(panels[0].shape[0]):
        x = torch.stack([torch.from_numpy(p[t]).permute(2, 0, 1).float() / 255 for p in panels])
        g = make_grid(x, nrow=nrow, padding=padding)
        out.append((g.permute(1, 2, 0) * 255).round().byte().numpy())
    return np.stack(out)


def test_grid_crop_with_padding_is_exactly_torchvision_make_grid_panel():
    rng = np.random.default_rng(0)
    # AniPortrait's layout at 512: 3 panels of 512x512 in one row with make_grid's default 2-pixel padding
    panels = [rng.integers(1, 256, (1, 512, 512, 3), dtype=np.uint8) for _ in range(3)]
    frame = _make_grid_frames(panels, nrow=3, padding=2)
    assert frame.shape == (1, 516, 1544, 3)
    crop = GridCrop.parse("3:2,pad=2")
    assert crop == GridCrop(cols=3, index=2, rows=1, padding=2) and crop.spec() == "3x1:2,pad=2"
    assert crop.panel_box(1544, 516) == (1030, 2, 512, 512)
    for i in range(3):
        np.testing.assert_array_equal(GridCrop(3, i, padding=2).apply(frame), panels[i])
    # non-square panels, several rows, odd padding; make_grid pads the unused 6th cell too
    panels = [rng.integers(1, 256, (2, 6, 10, 3), dtype=np.uint8) for _ in range(5)]
    frame = _make_grid_frames(panels, nrow=3, padding=3)
    assert frame.shape == (2, 2 * (6 + 3) + 3, 3 * (10 + 3) + 3, 3)
    for i in range(5):
        np.testing.assert_array_equal(GridCrop.parse(f"3x2:{i},pad=3").apply(frame), panels[i])


def test_grid_crop_bad_specs_and_sizes_say_what_to_do():
    with pytest.raises(KdbenchError, match="pad=2"):
        GridCrop.parse("3:2").apply(np.zeros((1, 516, 1544, 3), np.uint8))  # 1544 is not 3 equal panels
    with pytest.raises(KdbenchError, match="expected COLS"):
        GridCrop.parse("3:2;pad=2")
    with pytest.raises(KdbenchError, match="out of range"):
        GridCrop.parse("3:3,pad=2").apply(np.zeros((1, 516, 1544, 3), np.uint8))
    with pytest.raises(KdbenchError, match="too small"):
        GridCrop(cols=2, index=0, padding=4).apply(np.zeros((1, 8, 12, 3), np.uint8))
    assert GridCrop.parse("") is None and GridCrop.parse("2") == GridCrop(2, 0)


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


def _timestamp_frames(n: int, size: tuple[int, int] = (16, 8)) -> np.ndarray:
    """Frames that encode their own index exactly: pixel (0, 0) holds ``k // 256, k % 256, 0``."""
    frames = np.zeros((n, size[1], size[0], 3), np.uint8)
    k = np.arange(n)
    frames[:, :, :, 0], frames[:, :, :, 1] = (k // 256)[:, None, None], (k % 256)[:, None, None]
    return frames


def test_30fps_to_25fps_every_output_frame_is_the_source_frame_at_its_timestamp():
    audio_s = 9.98  # not a whole number of 30 fps frames: ceil(9.98 * 30) = 300 frames, like AniPortrait's output
    n_out = int(audio_s * 16000) * 25 // 16000
    src = _timestamp_frames(300)
    out, info = normalize_frames(src, 30.0, n_out, (16, 8))
    shown = out[:, 0, 0, 0].astype(int) * 256 + out[:, 0, 0, 1]
    i = np.arange(n_out)
    # nearest source timestamp: |k/30 - i/25| <= 1/60 s, and exactly k = round(6 i / 5) (integer arithmetic)
    assert shown.tolist() == ((12 * i + 5) // 10).tolist()
    assert np.abs(shown / 30 - i / 25).max() <= 1 / 60 + 1e-12
    # the output lasts as long as the audio (to the frame), no frame was invented past the source's end
    assert len(out) == n_out == 249 and abs(len(out) / 25 - audio_s) < 1 / 25
    assert info["resampled"] and info["padded"] == 0 and info["trimmed"] == 1  # 300 frames cover 250 at 25 fps
    # 29.97 fps (30000/1001) stays exact over an hour: no float drift in the frame choice
    idx = resample_indices(10**6, 30000 / 1001, 90000)
    assert idx[-1] == (2 * 89999 * 30000 + 25 * 1001) // (2 * 25 * 1001)


def test_real_gt_clip_at_30fps_comes_back_frame_exact_and_in_sync(hdtf_mini, tmp_path):
    """The hdtf-mini GT clip re-timed to 30 fps (as AniPortrait writes) and normalised returns the GT frames.

    In memory the round trip is bit-exact, so every lip position is on the same audio instant as in the GT
    (any LSE offset equals the GT's). Through real 30 fps and 25 fps H.264 files, each output frame is still
    closest to the GT frame with the same index (no frame shift anywhere).
    """
    from PIL import Image

    gt, fps = read_video(hdtf_mini / "gt" / "WDA_KatieHill_000.mp4")
    assert fps == 25 and len(gt) == 200
    up = gt[resample_indices(len(gt), 25.0, 240, dst_fps=30.0)]  # the inverse resampling: 8 s at 30 fps
    back, info = normalize_frames(up, 30.0, len(gt), (512, 512))
    assert info["resampled"] and not info["padded"] and not info["trimmed"]
    np.testing.assert_array_equal(back, gt)

    small = np.stack([np.asarray(Image.fromarray(f).resize((128, 128), Image.BILINEAR)) for f in gt])
    from kdbench.video import write_video
    src = write_video(tmp_path / "gt30.mp4", small[resample_indices(200, 25.0, 240, dst_fps=30.0)], fps=30, crf=10)
    audio = read_audio(hdtf_mini / "gt" / "WDA_KatieHill_000.mp4")
    rep = normalize_to_file(tmp_path / "out.mp4", audio, (128, 128), video_path=src)
    got, fps = read_video(tmp_path / "out.mp4")
    assert rep.resampled and rep.orig_fps == 30 and rep.orig_n_frames == 240 and fps == 25 and len(got) == 200
    g, sm = got.astype(np.float32), small.astype(np.float32)
    distinct = ((sm[1:] - sm[:-1]) ** 2).mean(axis=(1, 2, 3)) > 2.0
    moving = np.concatenate([[False], distinct])  # frames that differ from their predecessor identify their time
    assert moving.sum() > 100
    for i in np.flatnonzero(moving):  # the closest GT frame among the neighbours within +-3 frames is frame i
        lo, hi = max(0, i - 3), min(200, i + 4)
        err = ((sm[lo:hi] - g[i]) ** 2).mean(axis=(1, 2, 3))
        assert lo + int(err.argmin()) == i, (i, err)
