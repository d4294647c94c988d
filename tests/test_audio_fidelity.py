"""The audio every metric hears is the dataset's canonical track, sample for sample.

The normaliser used to re-encode the canonical int16 track as AAC into every output video, so even ``real``
(whose frames are stream-copied) carried altered samples. It now stores the track losslessly (FLAC), or
stream-copies a track that already holds exactly those samples.
"""

from __future__ import annotations

import numpy as np
import pytest

from kdbench.audio import read_audio
from kdbench.clip import EvalClip
from kdbench.dataset import load_dataset
from kdbench.normalize import normalize_to_file
from kdbench.video import audio_codec, probe_video, read_video, remux_with_audio, write_video
from tests.conftest import level_frames, tone

GT_CLIP = "WDA_KatieHill_000"


@pytest.fixture(scope="module")
def gt_spec():
    return load_dataset("hdtf-mini").get(GT_CLIP)


@pytest.fixture(scope="module")
def real_run_video(gt_spec, tmp_path_factory):
    """The `real` method's normalised video of the GT clip, made as `kdbench run` makes it."""
    from baselines.real import RealVideo

    canonical = gt_spec.load_audio()
    gen = RealVideo().generate(gt_spec, gt_spec.load_ref_image(), canonical)
    out = tmp_path_factory.mktemp("real") / f"{GT_CLIP}.mp4"
    rep = normalize_to_file(out, canonical, (512, 512), video_path=gen.video_path)
    assert not rep.reencoded
    return out


def test_real_keeps_the_gt_samples_exactly(gt_spec, real_run_video):
    gt_samples = read_audio(gt_spec.gt_video)  # the GT's decoded track = the canonical audio
    assert audio_codec(gt_spec.gt_video) == "aac" and audio_codec(real_run_video) == "flac"
    got = read_audio(real_run_video)
    assert got.dtype == np.int16 and len(got) == len(gt_samples) == 128000
    np.testing.assert_array_equal(got, gt_samples)
    clip = EvalClip(spec=gt_spec, video_path=real_run_video)
    np.testing.assert_array_equal(clip.audio, gt_samples)
    assert clip.audio_source == "video (flac)"
    # and the frames are still the GT's, bit for bit
    np.testing.assert_array_equal(read_video(real_run_video, max_frames=3)[0], read_video(gt_spec.gt_video, 3)[0])


def test_lse_of_real_equals_lse_on_the_gt_samples(gt_spec, real_run_video, tmp_path, monkeypatch):
    pytest.importorskip("torch", reason="needs torch (kdbench[metrics])")
    pytest.importorskip("cv2", reason="needs OpenCV (kdbench[metrics])")
    from kdbench.weights import WeightsManager
    from metrics.lse import LSEMetric
    from tests import lse_fixtures as fx

    monkeypatch.setenv("KDBENCH_ALLOW_UNVERIFIED", "1")
    wm = WeightsManager(home=tmp_path, overrides={
        "syncnet_v2": fx.save_state(fx.random_syncnet_state(3), tmp_path / "syncnet_v2.model")})
    metric = LSEMetric(options={"protocol": "full"}, weights=wm)
    # 22 frames of speech (the clip starts silent): 17 SyncNet windows, so that every one of the 31 offsets
    # compares some video windows with real audio windows (not only with the zero padding)
    a, b = 88, 110
    seg = slice(a * 640, b * 640)
    frames = read_video(real_run_video, max_frames=b)[0][a:]
    run_audio = EvalClip(spec=gt_spec, video_path=real_run_video).audio[seg]
    gt_audio = read_audio(gt_spec.gt_video)[seg]
    on_run = metric.score_clip(fx.make_clip(frames, run_audio))
    on_gt = metric.score_clip(fx.make_clip(frames, gt_audio))
    assert on_run == on_gt
    # what the old AAC remux did to the same samples moves the score
    aac = tmp_path / "aac.mp4"
    remux_with_audio(real_run_video, aac, read_audio(gt_spec.gt_video), audio_codec="aac")
    on_aac = metric.score_clip(fx.make_clip(frames, read_audio(aac)[seg]))
    assert on_aac["lse_d"] != on_gt["lse_d"]


def test_lossy_track_falls_back_to_the_dataset_samples(gt_spec, real_run_video, tmp_path):
    aac = tmp_path / "old_run.mp4"
    remux_with_audio(real_run_video, aac, read_audio(gt_spec.gt_video), audio_codec="aac")
    decoded = read_audio(aac)
    canonical = read_audio(gt_spec.gt_video)
    assert len(decoded) == len(canonical) and not np.array_equal(decoded, canonical)  # AAC altered them
    clip = EvalClip(spec=gt_spec, video_path=aac)
    np.testing.assert_array_equal(clip.audio, canonical)
    assert clip.audio_source.startswith("dataset")


def test_exact_lossless_track_is_stream_copied(tmp_path):
    audio = tone(2.0, freq=300.0)
    src = write_video(tmp_path / "src.mp4", level_frames(50), 25, audio=audio, crf=0, audio_codec="flac")
    out = normalize_to_file(tmp_path / "out.mp4", audio, (64, 48), video_path=src)
    assert not out.reencoded
    np.testing.assert_array_equal(read_audio(tmp_path / "out.mp4"), audio)
    # the audio packets are the source's (copied, not encoded again)
    import av

    def packets(p):
        with av.open(str(p)) as c:
            return [bytes(k) for k in c.demux(c.streams.audio[0]) if k.size]

    assert packets(tmp_path / "out.mp4") == packets(src)
    # a different canonical track replaces it, still losslessly
    other = tone(2.0, freq=500.0)
    normalize_to_file(tmp_path / "out2.mp4", other, (64, 48), video_path=src)
    np.testing.assert_array_equal(read_audio(tmp_path / "out2.mp4"), other)


def test_reencoded_output_keeps_exact_samples(tmp_path):
    audio = (np.random.default_rng(0).normal(0, 3000, 16000 * 2 + 77)).astype(np.int16)
    rep = normalize_to_file(tmp_path / "o.mp4", audio, (32, 24), frames=level_frames(60, (40, 30)), fps=30)
    assert rep.reencoded and probe_video(tmp_path / "o.mp4").n_frames == 50
    np.testing.assert_array_equal(read_audio(tmp_path / "o.mp4"), audio)


# ------------------------------------------------------------------------------------------- driving audio
librosa = pytest.importorskip("librosa", reason="librosa: kdbench[kdtalker]")


def test_librosa_loader_equals_librosa_on_stereo_16k(hdtf_mini):
    from kdbench.audio import read_audio_librosa

    wav = hdtf_mini / "audio" / "WDA_BenCardin1_000.wav"
    got = read_audio_librosa(wav)
    ref, sr = librosa.load(str(wav), sr=16000)
    assert sr == 16000 and got.dtype == np.float32
    np.testing.assert_array_equal(got, ref)
    # the exact float average of the two channels: the int16 mixdown differs by half a sample wherever the
    # channels sum to an odd number
    import soundfile

    both, _ = soundfile.read(str(wav), dtype="int16")
    np.testing.assert_array_equal(got, (both.astype(np.float32) / 32768).mean(axis=1))
    odd = (both.astype(np.int32).sum(axis=1) % 2 != 0).sum()
    mixdown = read_audio(wav).astype(np.float32) / 32768
    assert len(mixdown) == len(got) and odd > 5000
    assert np.count_nonzero(mixdown != got) >= odd


def test_librosa_loader_equals_librosa_on_44k_stereo(tmp_path):
    import soundfile

    from kdbench.audio import read_audio_librosa

    rng = np.random.default_rng(1)
    t = np.arange(44100 * 2) / 44100
    x = np.stack([np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 330 * t + 1)], 1) * 9000
    x = (x + rng.normal(0, 300, x.shape)).astype(np.int16)
    wav = tmp_path / "s44.wav"
    soundfile.write(str(wav), x, 44100, subtype="PCM_16")
    got = read_audio_librosa(wav)
    ref, _ = librosa.load(str(wav), sr=16000)
    assert len(got) == 32000
    np.testing.assert_array_equal(got, ref)
    # librosa's resampler (soxr_hq), not swresample's: the canonical int16 track is a different signal
    canonical = read_audio(wav).astype(np.float32) / 32768
    assert np.abs(canonical[: len(got)] - got).max() > 1e-3


def test_librosa_loader_on_a_video_decodes_as_audioread(gt_spec):
    """mp4: librosa.load falls back to audioread, whose FFmpeg backend pipes native-rate s16le."""
    import subprocess

    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="needs imageio-ffmpeg (test extra)")
    from kdbench.audio import read_audio_librosa

    raw = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(gt_spec.gt_video), "-f", "s16le",
                          "-"], capture_output=True, check=True).stdout
    pcm = np.frombuffer(raw, "<i2").reshape(-1, 2)  # the GT's AAC track: 16 kHz stereo
    ref = librosa.to_mono((pcm.astype(np.float32) / 32768).T)
    got = read_audio_librosa(gt_spec.gt_video)
    np.testing.assert_array_equal(got, ref)


def test_run_hands_methods_their_driving_audio(tiny_dataset, tmp_path):
    """`kdbench run` gives generate() what driving_audio() returns, and muxes the canonical track."""
    from kdbench import FPS
    from kdbench.dataset import load_dataset
    from kdbench.method import Generated, Method, MethodInfo
    from kdbench.registry import register_method
    from kdbench.runner import run_method

    seen = []

    @register_method("_test_float_audio")
    class FloatAudio(Method):
        info = MethodInfo(name="_test_float_audio", description="records its audio", generates=False)

        def driving_audio(self, spec, canonical):
            return canonical.astype(np.float32) / 32768 * 0.5

        def generate(self, spec, ref_image, audio):
            seen.append(audio)
            return Generated(fps=FPS, frames=level_frames(len(audio) * FPS // 16000, (64, 64)))

    ds = load_dataset(tiny_dataset).limit(1)
    summary = run_method("_test_float_audio", ds, tmp_path / "run", warmup=0, progress=False)
    assert summary.ok == [ds.clips[0].clip_id]
    canonical = ds.clips[0].load_audio()
    (got,) = seen
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, canonical.astype(np.float32) / 32768 * 0.5)
    np.testing.assert_array_equal(read_audio(summary.run_dir / "videos" / f"{ds.clips[0].clip_id}.mp4"), canonical)


def test_kdtalker_is_driven_by_librosa_audio(hdtf_mini):
    from baselines.kdtalker import KDTalker

    spec = load_dataset("hdtf-mini").get("WDA_BenCardin1_000")
    m = KDTalker.__new__(KDTalker)  # driving_audio needs no weights
    got = m.driving_audio(spec, spec.load_audio())
    np.testing.assert_array_equal(got, librosa.load(str(spec.audio), sr=16000)[0])
