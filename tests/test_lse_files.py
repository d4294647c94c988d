"""LSE protocol ``files`` = syncnet-python 0.2.3's ``SyncNetPipeline.inference`` run end to end on a video file.

Both sides get the same file (a 1.6 s cut of the real HDTF clip, H.264 + FLAC as the normaliser writes it), the same
random weights in the official formats and the same ffmpeg binary (imageio-ffmpeg's); each runs its own ffmpeg
conversions, JPEG/XVID round trips, scene detection, tracking and SyncNet. The per-track LSE-C / LSE-D must agree
within 1e-4 and the offsets exactly.
"""

from __future__ import annotations

import contextlib
import io
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="LSE needs torch (kdbench[metrics])")
pytest.importorskip("cv2", reason="LSE needs opencv (kdbench[metrics])")
pytest.importorskip("syncnet_python", reason="reference package (kdbench[test])")
imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="ffmpeg binary (kdbench[lse-files])")
pytest.importorskip("scenedetect", reason="PySceneDetect (kdbench[lse-files])")

from kdbench.audio import read_audio  # noqa: E402
from kdbench.clip import EvalClip  # noqa: E402
from kdbench.dataset import ClipSpec  # noqa: E402
from kdbench.video import read_video, write_video  # noqa: E402
from kdbench.weights import WeightsManager  # noqa: E402
from metrics import lse  # noqa: E402
from tests import lse_fixtures as fx  # noqa: E402

TOL = 1e-4
N_FRAMES = 40  # 1.6 s
MIN_TRACK = 25


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("lse_files")
    gt = fx.hdtf_clip_path()
    frames, _ = read_video(gt, max_frames=N_FRAMES)
    video = write_video(d / "cut.mp4", frames, 25, audio=read_audio(gt)[: N_FRAMES * 640], audio_codec="flac")
    weights = {
        "syncnet_v2": fx.save_state(fx.random_syncnet_state(seed=3), d / "syncnet_v2.model"),
        "sfd_face": fx.save_state(fx.random_s3fd_state(seed=0), d / "sfd_face.pth"),
    }
    return video, weights, d


def _reference(video, weights, tmp_path, monkeypatch):
    from syncnet_python import SyncNetPipeline

    # the package runs ffmpeg-python's commands with the `ffmpeg` found on PATH: the same binary as kdbench's
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "ffmpeg").symlink_to(imageio_ffmpeg.get_ffmpeg_exe())
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    pipe = SyncNetPipeline(
        {"s3fd_weights": str(weights["sfd_face"]), "syncnet_weights": str(weights["syncnet_v2"]),
         "min_track": MIN_TRACK, "ffmpeg_bin": str(bindir / "ffmpeg")},
        device="cpu",
    )
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        offsets, confs, dists, best_conf, best_dist, _, has_face = pipe.inference(
            str(video), None, cache_dir=str(tmp_path / "ref_work"))
    return offsets, confs, dists, best_conf, best_dist


@pytest.mark.slow
def test_files_protocol_equals_syncnet_python_pipeline(setup, tmp_path, monkeypatch):
    video, weights, _ = setup
    monkeypatch.setenv("KDBENCH_ALLOW_UNVERIFIED", "1")
    wm = WeightsManager(home=tmp_path, overrides=weights)
    metric = lse.LSEMetric(options={"protocol": "files", "min_track": MIN_TRACK, "track_rule": "best"}, weights=wm)
    clip = EvalClip(spec=ClipSpec(clip_id="cut"), video_path=video)
    rec = metric.score_clip(clip)

    offsets, confs, dists, best_conf, best_dist = _reference(video, weights, tmp_path, monkeypatch)
    assert len(confs) == rec["n_tracks"] >= 1  # the planted detector fires: the comparison is not vacuous
    for t, off, conf, dist in zip(rec["tracks"], offsets, confs, dists, strict=True):
        assert abs(t["lse_c"] - conf) <= TOL, (t, conf)
        assert abs(t["lse_d"] - dist) <= TOL, (t, dist)
        assert t["av_offset"] == int(off)
    assert abs(rec["lse_c"] - best_conf) <= TOL and abs(rec["lse_d"] - best_dist) <= TOL
    # the re-encode to a 25 fps AVI adds frames to an H.264 clip; the record says so, and names the tools
    assert rec["files"]["n_frames_after_reencode"] >= N_FRAMES
    assert rec["tools"]["ffmpeg"].startswith("ffmpeg version") and rec["tools"]["opencv"]
    assert rec["protocol"] == "files" and rec["tracker"] == "syncnet-python"


def test_files_protocol_without_ffmpeg_is_skipped(setup, tmp_path, monkeypatch):
    _, weights, _ = setup
    monkeypatch.setenv("KDBENCH_ALLOW_UNVERIFIED", "1")
    wm = WeightsManager(home=tmp_path, overrides=weights)
    metric = lse.LSEMetric(options={"protocol": "files", "ffmpeg": str(tmp_path / "no-ffmpeg")}, weights=wm)
    assert metric.skip_reason() == (
        f"lse.protocol=files: ffmpeg not found at {str(tmp_path / 'no-ffmpeg')!r}; "
        "set --set lse.ffmpeg=/path/to/ffmpeg"
    )
    assert lse.LSEMetric(options={"protocol": "files"}, weights=wm).skip_reason() is None


def test_reencode_duplicates_frames(setup, tmp_path):
    """The reference's `-async 1 -r 25` AVI conversion of the 40-frame H.264 cut, with the pinned ffmpeg 9.0.2:
    42 frames, the first two source frames twice each (what the reference, and protocol files, detect on)."""
    from metrics.lse_files import prepare

    video, _, _ = setup
    (tmp_path / "w").mkdir()
    frames, avi, speech = prepare(video, tmp_path / "w", imageio_ffmpeg.get_ffmpeg_exe())
    assert avi.is_file() and speech.is_file()
    assert len(frames) == N_FRAMES + 2 and frames[0].shape == (512, 512, 3)
    np.testing.assert_array_equal(frames[0], frames[1])
    np.testing.assert_array_equal(frames[2], frames[3])
    src = read_video(video, 3)[0][..., ::-1].astype(int)  # BGR, as cv2.imread
    err = [[np.abs(f.astype(int) - s).mean() for s in src] for f in frames[:5]]
    assert [int(np.argmin(e)) for e in err] == [0, 0, 1, 1, 2]  # lossy copies of source frames 0, 0, 1, 1, 2
