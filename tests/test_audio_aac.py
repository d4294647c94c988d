"""Driving audio from AAC files (mp4, m4a) equals what each method's official loader reads, sample for sample.

An AAC encoder primes 1,024 samples and pads the last frame to 1,024; the container's edit list and the last
packet's duration say where the signal ends, and ffmpeg (hence audioread, hence ``librosa.load``) trims both.
The clips here are generated (no downloads) with lengths that are not multiples of 1,024, so that the padding is
there to trim: mp4 and m4a, mono and stereo, 16 / 44.1 / 48 kHz.

References, run on the same file:
- KDTalker (``inference.py``): ``librosa.load(path, sr=16000)``. This venv's libsndfile cannot read mp4, so
  librosa falls back to audioread, whose FFmpeg backend runs ``ffmpeg -i FILE -f s16le -`` with the ``ffmpeg`` on
  PATH: here imageio-ffmpeg's pinned binary (kdbench[test]).
- SadTalker, AniTalker, AniPortrait: ``librosa.load(path, sr=16000)`` too (librosa 0.9.2 with resampy's
  ``kaiser_best`` for SadTalker and AniPortrait, 0.10.1 with ``soxr_hq`` for AniTalker, in their own environments);
  their worker gets a wav of the samples librosa decodes from the file, so their own librosa must read back the
  same samples at the same rate and channels (then any resampler gives the same result: checked for two).
- Real3D-Portrait: ``ffmpeg -i A -f wav -ar 16000 A_16k.wav``, then ``soundfile.read`` (HuBERT: channel 0) and
  ``librosa.load(A_16k, sr=16000)`` (F0).
- The canonical track (what metrics hear, stored as FLAC in the run store): ``ffmpeg -i GT -ac 1 -ar 16000
  -acodec pcm_s16le``, the extraction step of syncnet_python.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from kdbench.audio import PCM, read_audio
from kdbench.dataset import ClipSpec

librosa = pytest.importorskip("librosa", reason="librosa: kdbench[kdtalker]")
soundfile = pytest.importorskip("soundfile", reason="soundfile: kdbench[kdtalker]")
imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="the reference ffmpeg binary (kdbench[test])")

# (container, rate, channels, samples): none a multiple of 1,024
CASES = [
    ("mp4", 16000, 1, 47840),  # 2.99 s: 74 video frames, not 75
    ("m4a", 16000, 2, 47900),
    ("mp4", 44100, 2, 131967),
    ("m4a", 44100, 1, 88205),
    ("mp4", 48000, 1, 96077),
    ("m4a", 48000, 2, 144333),
]
IDS = [f"{c}-{r}-{'stereo' if ch == 2 else 'mono'}-{n}" for c, r, ch, n in CASES]


def make_aac(path: Path, rate: int, channels: int, n: int, frames: np.ndarray | None = None) -> Path:
    """An AAC track of ``n`` samples (two tones plus noise, one per channel) at ``rate``, in mp4, m4a (ipod), ts or mkv,
    optionally with an H.264 video of ``frames`` at 25 fps (a GT video)."""
    rng = np.random.default_rng(rate + channels + n)
    t = np.arange(n) / rate
    x = np.stack([np.sin(2 * np.pi * (220 + 110 * c) * t + c) for c in range(channels)]) * 0.3
    x = (x + rng.normal(0, 0.01, x.shape)).astype(np.float32)
    layout = "stereo" if channels == 2 else "mono"
    fmt = {".m4a": "ipod", ".ts": "mpegts", ".mkv": "matroska"}.get(path.suffix, "mp4")
    with av.open(str(path), "w", format=fmt) as c:
        vs = None
        if frames is not None:
            vs = c.add_stream("libx264", rate=25)
            vs.width, vs.height, vs.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s = c.add_stream("aac", rate=rate, layout=layout)
        for i in range(0, n, 1000):
            f = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[:, i:i + 1000]), format="fltp", layout=layout)
            f.sample_rate, f.pts = rate, i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
        if vs is not None:
            for img in frames:
                for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    c.mux(p)
            for p in vs.encode(None):
                c.mux(p)
    return path


@pytest.fixture(scope="module")
def ffmpeg_on_path(tmp_path_factory):
    """imageio-ffmpeg's binary linked as ``ffmpeg`` first on PATH (what audioread runs), and its path."""
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    bindir = tmp_path_factory.mktemp("bin")
    (bindir / "ffmpeg").symlink_to(exe)
    import audioread

    old = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{bindir}{os.pathsep}{old}"
    audioread.available_backends(flush_cache=True)  # audioread caches the backends it found on first use
    yield str(bindir / "ffmpeg")
    os.environ["PATH"] = old
    audioread.available_backends(flush_cache=True)


@pytest.fixture(scope="module", params=CASES, ids=IDS)
def clip(request, tmp_path_factory):
    fmt, rate, ch, n = request.param
    return make_aac(tmp_path_factory.mktemp("aac") / f"clip.{fmt}", rate, ch, n), rate, ch, n


def ffmpeg(exe: str, *args: str) -> bytes:
    return subprocess.run([exe, "-v", "error", *args], capture_output=True, check=True).stdout


def test_librosa_reads_mp4_through_audioread_and_ffmpeg(clip, ffmpeg_on_path):
    """What the references run: libsndfile refuses the file, audioread's FFmpeg backend decodes it."""
    import audioread
    from audioread.ffdec import FFmpegAudioFile

    path, rate, ch, n = clip
    with pytest.raises(soundfile.LibsndfileError):
        soundfile.info(str(path))
    with audioread.audio_open(str(path)) as f:
        assert isinstance(f, FFmpegAudioFile) and (f.samplerate, f.channels) == (rate, ch)
    # ffmpeg trims the priming and the end padding: the file's own length, not a multiple of 1,024
    raw = ffmpeg(ffmpeg_on_path, "-i", str(path), "-f", "s16le", "-")
    assert len(raw) // (2 * ch) < -(-n // 1024) * 1024 and abs(len(raw) // (2 * ch) - n) <= 32


def test_kdtalker_driving_audio_equals_librosa_load(clip, ffmpeg_on_path):
    from baselines.kdtalker import KDTalker

    path, rate, ch, n = clip
    m = KDTalker.__new__(KDTalker)  # driving_audio needs no weights
    got = m.driving_audio(ClipSpec(clip_id="c", audio=path), np.zeros(1, np.int16))
    ref, sr = librosa.load(str(path), sr=16000)
    assert sr == 16000 and got.dtype == np.float32 and len(got) == len(ref)
    np.testing.assert_array_equal(got, ref)
    # the same as a GT video's track
    got_gt = m.driving_audio(ClipSpec(clip_id="c", gt_video=path), np.zeros(1, np.int16))
    np.testing.assert_array_equal(got_gt, ref)


@pytest.mark.parametrize("method", ["sadtalker", "anitalker", "aniportrait"])
def test_librosa_baselines_read_the_files_samples(method, clip, ffmpeg_on_path, tmp_path):
    """The worker's wav gives ``librosa.load`` the samples the file gives it: at the native rate and channels
    (``sr=None, mono=False``), hence after any mixing and resampling (soxr_hq: AniTalker's librosa 0.10 default;
    the FFT resampler as a second, independent one)."""
    from kdbench.registry import METHODS
    from kdbench.runtime.method import write_inputs

    path, rate, ch, n = clip
    cls = METHODS.get(method)
    assert cls.spec.audio_loader == "librosa"
    pcm = cls.__new__(cls).driving_audio(ClipSpec(clip_id="c", audio=path), np.zeros(1, np.int16))
    assert isinstance(pcm, PCM) and pcm.rate == rate and pcm.samples.shape[1] == ch
    _, wav = write_inputs(tmp_path, np.zeros((4, 4, 3), np.uint8), pcm)
    native_ref, sr_ref = librosa.load(str(path), sr=None, mono=False)
    native, sr = librosa.load(str(wav), sr=None, mono=False)
    assert sr == sr_ref == rate
    np.testing.assert_array_equal(native, native_ref)
    for res_type in ("soxr_hq", "fft"):
        np.testing.assert_array_equal(librosa.load(str(wav), sr=16000, res_type=res_type)[0],
                                      librosa.load(str(path), sr=16000, res_type=res_type)[0])


def test_librosa_baselines_on_kaiser_best(clip, ffmpeg_on_path, tmp_path):
    """SadTalker's and AniPortrait's librosa 0.9.2 default: resampy's kaiser_best."""
    pytest.importorskip("resampy", reason="resampy (SadTalker's resampler) comes with kdbench[test]: "
                                          "pip install -e '.[test]'")
    from kdbench.registry import METHODS
    from kdbench.runtime.method import write_inputs

    path, rate, ch, n = clip
    cls = METHODS.get("sadtalker")
    _, wav = write_inputs(tmp_path, np.zeros((4, 4, 3), np.uint8),
                          cls.__new__(cls).driving_audio(ClipSpec(clip_id="c", audio=path), np.zeros(1, np.int16)))
    np.testing.assert_array_equal(librosa.load(str(wav), sr=16000, res_type="kaiser_best")[0],
                                  librosa.load(str(path), sr=16000, res_type="kaiser_best")[0])


def test_real3dportrait_reads_ffmpegs_16k_wav(clip, ffmpeg_on_path, tmp_path):
    """Real3D-Portrait's ``save_wav16k`` on the worker's wav gives the samples it gives on the file; then its
    HuBERT input (``soundfile.read``, channel 0) and F0 input (``librosa.load``) are the same."""
    from kdbench.registry import METHODS
    from kdbench.runtime.method import write_inputs

    path, rate, ch, n = clip
    cls = METHODS.get("real3dportrait")
    assert cls.spec.audio_loader == "ffmpeg_wav16k"
    pcm = cls.__new__(cls).driving_audio(ClipSpec(clip_id="c", audio=path), np.zeros(1, np.int16))
    assert pcm.rate == 16000 and pcm.samples.dtype == np.int16 and pcm.samples.shape[1] == ch
    _, wav = write_inputs(tmp_path / "in", np.zeros((4, 4, 3), np.uint8), pcm)
    for src, out in ((path, tmp_path / "ref_16k.wav"), (wav, tmp_path / "got_16k.wav")):
        ffmpeg(ffmpeg_on_path, "-i", str(src), "-f", "wav", "-ar", "16000", "-y", str(out))  # upstream's command
    ref, _ = soundfile.read(str(tmp_path / "ref_16k.wav"))
    got, _ = soundfile.read(str(tmp_path / "got_16k.wav"))
    assert got.shape == ref.shape == pcm.samples.shape[:1] + ((ch,) if ch > 1 else ())
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(pcm.samples.reshape(ref.shape) / 32768.0, ref)
    np.testing.assert_array_equal(librosa.load(str(tmp_path / "got_16k.wav"), sr=16000)[0],
                                  librosa.load(str(tmp_path / "ref_16k.wav"), sr=16000)[0])


def test_canonical_track_equals_ffmpeg_extraction(clip, ffmpeg_on_path):
    path, rate, ch, n = clip
    ref = np.frombuffer(ffmpeg(ffmpeg_on_path, "-i", str(path), "-ac", "1", "-ar", "16000", "-acodec",
                               "pcm_s16le", "-f", "s16le", "-"), "<i2")
    got = read_audio(path)
    assert len(got) == len(ref)
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("suffix", [".ts", ".mkv"])
def test_other_containers_are_not_cut_at_an_estimated_duration(suffix, ffmpeg_on_path, tmp_path):
    """ffmpeg's MPEG-TS muxer declares a duration the demuxer estimates from the bitrate (here 0.1 s short),
    Matroska none; ffmpeg cuts at neither, so the driving and canonical tracks keep every decoded sample."""
    from kdbench.audio import _read_native_int16

    t = np.arange(47900) / 44100
    pcm = (np.sin(2 * np.pi * 300 * t) * 9000).astype("<i2").tobytes()
    path = tmp_path / f"clip{suffix}"
    subprocess.run([ffmpeg_on_path, "-v", "error", "-f", "s16le", "-ar", "44100", "-ac", "1", "-i", "-", "-c:a", "aac",
                    str(path)], input=pcm, check=True)
    native = np.frombuffer(ffmpeg(ffmpeg_on_path, "-i", str(path), "-f", "s16le", "-"), "<i2")
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        declared = float(s.duration * s.time_base) * 44100 if s.duration else None
    assert declared is None if suffix == ".mkv" else declared < len(native) - 4000
    np.testing.assert_array_equal(_read_native_int16(path)[0].reshape(-1), native)
    ref = np.frombuffer(ffmpeg(ffmpeg_on_path, "-i", str(path), "-ac", "1", "-ar", "16000", "-acodec", "pcm_s16le",
                               "-f", "s16le", "-"), "<i2")
    np.testing.assert_array_equal(read_audio(path), ref)


@pytest.mark.parametrize(("rate", "ch", "n"), [(44100, 2, 3 * 44100 - 333), (48000, 1, 2 * 48000 + 77)])
def test_run_store_flac_holds_the_gts_samples(rate, ch, n, ffmpeg_on_path, tmp_path):
    """A GT video with an AAC track of such a length: the run store's FLAC track (what metrics hear) is the GT's
    decoded samples, as ffmpeg extracts them."""
    from baselines.real import RealVideo
    from kdbench.clip import EvalClip
    from kdbench.normalize import normalize_to_file
    from kdbench.video import audio_codec
    from tests.conftest import level_frames

    gt = make_aac(tmp_path / "gt.mp4", rate, ch, n, frames=level_frames(n * 25 // rate, (64, 64)))
    spec = ClipSpec(clip_id="gt", gt_video=gt)
    canonical = spec.load_audio()
    gen = RealVideo().generate(spec, spec.load_ref_image(), canonical)
    out = normalize_to_file(tmp_path / "run" / "gt.mp4", canonical, (64, 64), video_path=gen.video_path)
    assert out.n_frames == n * 25 // rate
    ref = np.frombuffer(ffmpeg(ffmpeg_on_path, "-i", str(gt), "-vn", "-ac", "1", "-ar", "16000", "-acodec",
                               "pcm_s16le", "-f", "s16le", "-"), "<i2")
    stored = read_audio(tmp_path / "run" / "gt.mp4")
    assert audio_codec(tmp_path / "run" / "gt.mp4") == "flac"
    n_native = len(ffmpeg(ffmpeg_on_path, "-i", str(gt), "-vn", "-f", "s16le", "-")) // (2 * ch)
    assert n_native < -(-n // 1024) * 1024  # the padding was there to trim
    assert len(stored) == len(ref) == round(n_native * 16000 / rate)
    np.testing.assert_array_equal(stored, ref)
    np.testing.assert_array_equal(EvalClip(spec=spec, video_path=tmp_path / "run" / "gt.mp4").audio, ref)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
def test_worker_wav_of_a_wav_source_is_exact(subtype, tmp_path):
    """A wav source: the worker's wav gives librosa the source's own floats (16-bit stays 16-bit; 24-bit and
    float sources travel as 32-bit float)."""
    from kdbench.runtime.method import upstream_driving_audio, write_inputs

    rng = np.random.default_rng(5)
    x = np.clip(rng.normal(0, 0.2, (22050 + 77, 2)), -1, 1)
    src = tmp_path / "src.wav"
    soundfile.write(str(src), x, 22050, subtype=subtype)
    pcm = upstream_driving_audio("librosa", src)
    assert pcm.rate == 22050 and pcm.samples.dtype == (np.int16 if subtype == "PCM_16" else np.float32)
    _, wav = write_inputs(tmp_path / "in", np.zeros((4, 4, 3), np.uint8), pcm)
    assert soundfile.info(str(wav)).subtype == ("PCM_16" if subtype == "PCM_16" else "FLOAT")
    np.testing.assert_array_equal(librosa.load(str(wav), sr=None, mono=False)[0],
                                  librosa.load(str(src), sr=None, mono=False)[0])
    np.testing.assert_array_equal(librosa.load(str(wav), sr=16000)[0], librosa.load(str(src), sr=16000)[0])
