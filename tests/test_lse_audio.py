"""``lse.audio``: which track SyncNet hears, the submitted file's own (``file``, default) or the dataset's.

A submission whose audio was shifted by 300 ms (and re-encoded as AAC) is imported as a run
(``kdbench eval --videos``): its normalised copy carries the dataset's track, the submitted file its own. Protocol
``files`` is checked against syncnet-python 0.2.3's pipeline run on each file (same random weights in the official
formats, same ffmpeg binary): ``file`` equals the package on the submitted file, ``dataset`` the package on a file
with the dataset's audio. The other protocols hear the same tracks, decoded as the package's ffmpeg extracts them.
"""

from __future__ import annotations

import contextlib
import io
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="LSE needs torch (kdbench[metrics])")
pytest.importorskip("cv2", reason="LSE needs opencv (kdbench[metrics])")
imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="ffmpeg binary (kdbench[lse-files])")

from kdbench.audio import read_audio  # noqa: E402
from kdbench.clip import EvalClip  # noqa: E402
from kdbench.dataset import load_dataset  # noqa: E402
from kdbench.errors import ClipFailure, KdbenchError  # noqa: E402
from kdbench.evaluate import evaluate_run, import_videos  # noqa: E402
from kdbench.runstore import RunStore  # noqa: E402
from kdbench.video import audio_codec, read_video, write_video  # noqa: E402
from kdbench.weights import WeightsManager  # noqa: E402
from metrics import lse  # noqa: E402
from tests import lse_fixtures as fx  # noqa: E402

TOL = 1e-4
N_FRAMES = 40  # 1.6 s
MIN_TRACK = 25
SHIFT = 4800  # samples: the submitted audio starts 300 ms late
CLIP = "cut_000"


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """``(dataset, run store, submitted file, weights)``: a one-clip dataset (the real clip's first 1.6 s, FLAC),
    and a run imported from a submission with the same frames and the audio shifted by 300 ms (AAC)."""
    d = tmp_path_factory.mktemp("lse_audio")
    gt = fx.hdtf_clip_path()
    frames, _ = read_video(gt, max_frames=N_FRAMES)
    canonical = read_audio(gt)[: N_FRAMES * 640]
    (d / "ds" / "gt").mkdir(parents=True)
    write_video(d / "ds" / "gt" / f"{CLIP}.mp4", frames, 25, audio=canonical, audio_codec="flac")
    shifted = np.concatenate([np.zeros(SHIFT, np.int16), canonical])[: len(canonical)]
    (d / "videos").mkdir()
    submitted = write_video(d / "videos" / f"{CLIP}.mp4", frames, 25, audio=shifted, audio_codec="aac")
    ds = load_dataset(d / "ds")
    store = import_videos(d / "videos", ds, d / "run", frame_size=(512, 512), progress=False)
    weights = {
        "syncnet_v2": fx.save_state(fx.random_syncnet_state(seed=3), d / "syncnet_v2.model"),
        "sfd_face": fx.save_state(fx.random_s3fd_state(seed=0), d / "sfd_face.pth"),
    }
    return ds, store, submitted, weights


def _metric(imported, tmp_path, monkeypatch, **options):
    _, store, _, weights = imported
    monkeypatch.setenv("KDBENCH_ALLOW_UNVERIFIED", "1")
    wm = WeightsManager(home=tmp_path, overrides=dict(weights))
    metric = lse.LSEMetric(options=options, weights=wm)
    metric.context = {"run_dir": str(store.root)}
    return metric


def _clip(imported) -> EvalClip:
    ds, store, _, _ = imported
    return EvalClip(spec=ds.get(CLIP), video_path=store.video_path(CLIP), event=store.clip_events()[CLIP])


def test_the_run_copy_carries_the_dataset_track_and_the_submission_its_own(imported):
    ds, store, submitted, _ = imported
    event = store.clip_events()[CLIP]
    assert event["normalizer"]["reencoded"] is False  # the submitted video stream, copied
    canonical = ds.get(CLIP).load_audio()
    np.testing.assert_array_equal(read_audio(store.video_path(CLIP)), canonical)
    own = read_audio(submitted)
    assert audio_codec(submitted) == "aac" and len(own) == len(canonical)
    # 300 ms of silence, then the dataset's speech (AAC-coded: close, not equal)
    assert not own[: SHIFT - 1100].any() and not np.array_equal(own, canonical)
    err = np.abs(own[SHIFT + 2000:].astype(int) - canonical[2000: len(canonical) - SHIFT]).mean()
    assert err < 0.05 * np.abs(canonical).mean()


def test_default_is_file_and_options_are_checked(imported, tmp_path, monkeypatch):
    assert lse.LSEMetric.default_options["audio"] == "file"
    with pytest.raises(KdbenchError) as e:
        _metric(imported, tmp_path, monkeypatch, protocol="full", audio="wav")
    assert str(e.value) == ("option out of range: lse.audio='wav' is not one of 'file', 'dataset'. "
                            "Nothing was run or written.")


def _extracted(submitted) -> np.ndarray:
    """The package's step 1 on the submitted file: ``ffmpeg -i VIDEO -ac 1 -ar 16000 -acodec pcm_s16le``."""
    import subprocess

    return np.frombuffer(subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(submitted), "-ac", "1", "-ar", "16000",
         "-acodec", "pcm_s16le", "-f", "s16le", "-"], capture_output=True, check=True).stdout, "<i2")


@pytest.mark.slow
def test_full_protocol_hears_the_chosen_track(imported, tmp_path, monkeypatch):
    """``file``: the submitted file's track as ffmpeg extracts it (the package's step 1); ``dataset``: the
    dataset's; each scored on the same frames."""
    _, _, submitted, _ = imported
    extracted = _extracted(submitted)
    clip = _clip(imported)  # shared: frames decoded once
    recs = {}
    for audio in ("file", "dataset"):
        metric = _metric(imported, tmp_path, monkeypatch, protocol="full", audio=audio)
        recs[audio] = metric.score_clip(clip)
        assert recs[audio]["audio"] == audio
        np.testing.assert_array_equal(metric.clip_audio(clip)[0],
                                      extracted if audio == "file" else clip.spec.load_audio())
    ref = metric.score_windows(lse.full_frame_input(clip.frames), extracted)
    assert (recs["file"]["lse_c"], recs["file"]["lse_d"]) == (ref["lse_c"], ref["lse_d"])
    assert recs["file"]["audio_source"].startswith(f"submitted file {submitted}")
    assert recs["dataset"]["audio_source"] == "video (flac)"
    assert recs["file"]["lse_d"] != recs["dataset"]["lse_d"]


@pytest.mark.slow
def test_s3fd_protocol_hears_the_submitted_track(imported, tmp_path, monkeypatch):
    _, _, submitted, _ = imported
    clip = _clip(imported)
    metric = _metric(imported, tmp_path, monkeypatch, protocol="s3fd", min_track=MIN_TRACK)
    rec = metric.score_clip(clip)
    ref = metric.score_face_tracks(clip, _extracted(submitted))  # detections cached in the clip
    assert rec["n_tracks"] >= 1 and (rec["lse_c"], rec["lse_d"]) == (ref["lse_c"], ref["lse_d"])
    assert rec["audio"] == "file"


def test_file_without_a_submission_is_the_run_videos_track(imported, tmp_path, monkeypatch):
    """A run made by `kdbench run` has no submitted file: its video carries the dataset's track."""
    clip = _clip(imported)
    metric = _metric(imported, tmp_path, monkeypatch, protocol="full")
    metric.context = {}
    audio, source = metric.clip_audio(clip)
    np.testing.assert_array_equal(audio, clip.spec.load_audio())
    assert source == "run video, which carries the dataset's track: video (flac)"


def test_gone_submission_is_a_clip_failure(imported, tmp_path, monkeypatch):
    _, store, submitted, _ = imported
    moved = tmp_path / "moved.mp4"
    os.replace(submitted, moved)
    try:
        with pytest.raises(ClipFailure) as e:
            _metric(imported, tmp_path, monkeypatch, protocol="full").score_clip(_clip(imported))
        assert str(e.value) == (f"lse.audio=file hears the submitted video {submitted}, which is gone: put it back, "
                                "or score the dataset's audio with --set lse.audio=dataset")
    finally:
        os.replace(moved, submitted)


def test_metrics_json_records_the_audio_option(imported, tmp_path, monkeypatch):
    _, store, _, weights = imported
    monkeypatch.setenv("KDBENCH_ALLOW_UNVERIFIED", "1")
    doc = evaluate_run(store.root, ["lse"], sets={"lse.protocol": "full", "lse.audio": "dataset",
                                                 "lse.syncnet_weights": str(weights["syncnet_v2"])},
                       out=tmp_path / "metrics.json", progress=False)
    m = doc["metrics"]["lse"]
    assert m["status"] == "ok" and m["options"]["audio"] == "dataset"
    assert m["per_clip"][CLIP]["audio"] == "dataset" and m["per_clip"][CLIP]["audio_source"] == "video (flac)"
    assert RunStore(store.root).config()["videos"].endswith("videos")


def _package(video, weights, tmp_path, monkeypatch):
    """syncnet-python 0.2.3's ``SyncNetPipeline.inference`` on ``video``: per-track (offsets, confs, dists)."""
    pytest.importorskip("syncnet_python", reason="reference package (kdbench[test])")
    from syncnet_python import SyncNetPipeline

    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    if not (bindir / "ffmpeg").exists():
        (bindir / "ffmpeg").symlink_to(imageio_ffmpeg.get_ffmpeg_exe())
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    pipe = SyncNetPipeline(
        {"s3fd_weights": str(weights["sfd_face"]), "syncnet_weights": str(weights["syncnet_v2"]),
         "min_track": MIN_TRACK, "ffmpeg_bin": str(bindir / "ffmpeg")},
        device="cpu",
    )
    work = tmp_path / f"ref_{video.parent.name}"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        offsets, confs, dists, *_ = pipe.inference(str(video), None, cache_dir=str(work))
    return offsets, confs, dists


@pytest.mark.slow
def test_files_protocol_equals_the_package_on_the_submitted_file(imported, tmp_path, monkeypatch):
    """``file``: the package on the submitted file. ``dataset``: the pipeline on the run's copy (the same frames,
    the dataset's track), which ``tests/test_lse_files.py`` checks against the package on such a file."""
    pytest.importorskip("scenedetect", reason="PySceneDetect (kdbench[lse-files])")
    _, store, submitted, weights = imported
    recs = {}
    for audio, video in (("file", submitted), ("dataset", store.video_path(CLIP))):
        metric = _metric(imported, tmp_path, monkeypatch, protocol="files", min_track=MIN_TRACK, track_rule="best",
                         audio=audio)
        rec = recs[audio] = metric.score_clip(_clip(imported))
        assert rec["audio"] == audio and rec["n_tracks"] >= 1
        assert rec["files"]["video_file"] == rec["files"]["audio_file"] == str(video)
    offsets, confs, dists = _package(submitted, weights, tmp_path, monkeypatch)
    assert len(confs) == recs["file"]["n_tracks"]
    for t, off, conf, dist in zip(recs["file"]["tracks"], offsets, confs, dists, strict=True):
        assert abs(t["lse_c"] - conf) <= TOL and abs(t["lse_d"] - dist) <= TOL and t["av_offset"] == int(off)
    assert recs["file"]["lse_d"] != recs["dataset"]["lse_d"]
