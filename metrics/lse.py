"""LSE-C / LSE-D: SyncNet lip-sync confidence and minimum distance (Wav2Lip's protocol, syncnet_python maths).

Reference: joonson/syncnet_python ``SyncNetInstance.evaluate`` (PyPI ``syncnet-python`` 0.2.3 has the same
maths) and ``run_pipeline.py``; Wav2Lip ``evaluation/scores_LSE`` (the protocol KDTalker says it follows).
Every constant, with file:line citations: ``shared/research/metrics_reference.md`` section 1.

Chain of pure functions (arrays in, arrays out), then the metric class:

    audio int16[A] --audio_features--> mfcc float32[13,M]
    frames uint8[T,224,224,3] BGR + mfcc --syncnet_net.embed_video/embed_audio--> v, a float32[N,1024]
    v, a --sync_distances--> d float64[N,31] --sync_scores--> {lse_d, lse_c, av_offset}

with ``N = min(T, floor(A/640)) - 5`` windows (the reference drops the last valid window too).
``d[i,k] = || v_i - a_{i+k-15} + 1e-6 ||_2`` with zero vectors for out-of-range audio windows
(``torch.pairwise_distance`` adds its eps to the difference); ``D_k = mean_i d[i,k]``;
LSE-D = min_k D_k, LSE-C = median_k D_k - min_k D_k (the lower median, as ``torch.median``),
AV offset = 15 - argmin_k D_k.

Protocols (option ``protocol``, recorded in every per-clip record):
- ``s3fd`` (default; Wav2Lip ``calculate_scores_real_videos.sh`` = joonson ``run_pipeline.py``): S3FD faces at
  scale 0.25 and score > 0.9, IoU tracking, tracks of more than ``min_track`` detections, median-filtered
  crops (scale 0.4, pad 110) resized to 224x224; each track is scored with its own slice of the audio.
  Several tracks in a clip are combined by ``track_rule``: ``mean`` (default: the mean over tracks, what
  averaging Wav2Lip's per-track lines or LatentSync's per-video mean gives; ``av_offset`` is the longest
  track's), ``longest`` (the longest track only), or ``best`` (syncnet-python 0.2.3: max LSE-C and min LSE-D
  over tracks, possibly from different tracks; ``av_offset`` of the min-LSE-D track).
  ``tracker`` picks joonson's tracking loop (default, what Wav2Lip runs) or syncnet-python 0.2.3's (which
  stops at the first non-matching face of a frame); they differ only with several faces in a frame.
  Not reproduced: the scene-cut split (PySceneDetect) — a clip is one shot; the reference's disk round trips
  (MPEG-4 re-encode, JPEG frames, XVID crops): frames are used as decoded. With those, LSE-D moves by a few
  hundredths between builds of the same reference (metrics_reference.md 1.7), so this protocol does not give
  the number of a reference run on the file (protocol ``files`` does); on the same frames and audio the numbers
  agree to 1e-4.
- ``full`` (Wav2Lip ``calculate_scores_LRS.py``): the whole frame ``cv2.resize``-d to 224x224, whole audio.
- ``files`` (``metrics/lse_files.py``): syncnet-python 0.2.3's ``SyncNetPipeline`` on the video file with the
  reference's own disk round trips — ffmpeg to a 25 fps MPEG-4 AVI (``-q:v 2 -async 1 -r 25``), JPEG frames,
  scene detection, syncnet-python's tracker, XVID crop videos read back as JPEGs, the audio through ffmpeg. Equal
  to running the package on the file (``tests/test_lse_files.py``); slower, and tied to the ffmpeg/OpenCV builds
  it records. ``track_rule=best`` gives the package's own summary (max LSE-C, min LSE-D).

Audio (option ``audio``, recorded in every per-clip record and in ``metrics.json``'s options):
- ``file`` (default; the paper's protocol: Wav2Lip's scripts run syncnet_python on each generated video file, which
  extracts that file's own track with ``ffmpeg -ac 1 -ar 16000``): for a run imported from video files
  (``kdbench eval --videos``), the submitted file's audio track, decoded as that ffmpeg command decodes it, so a
  method that trims, shifts or re-encodes its audio is scored on what it delivered; with protocol ``files`` the
  package's pipeline runs on the submitted file itself when the normaliser kept its video stream (else on the
  normalised copy with the audio extracted from the submitted file). A run made by ``kdbench run`` has no other
  file: its videos carry the dataset's track, so ``file`` is ``dataset`` there.
- ``dataset``: the dataset's canonical track (what the normalised copy carries), whatever the submitted file holds.

Per-clip failures (``ClipFailure``): video not at 25 fps, silent audio (peak <= ``silence_peak``), audio
shorter than the video by more than ``max_audio_shortfall_frames`` frames, fewer than 6 scorable frames,
no usable face track.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from kdbench.clip import EvalClip
from kdbench.errors import ClipFailure, KdbenchError
from kdbench.metric import Metric, MetricInfo, Output, summarize
from kdbench.numerics import on_gpu
from kdbench.options import Range, Text
from kdbench.registry import register_metric

SAMPLE_RATE = 16000
FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
VSHIFT = 15
PAIRWISE_EPS = 1e-6
SYNCNET_SIZE = 224
PROTOCOLS = ("s3fd", "full", "files")
AUDIO_SOURCES = ("file", "dataset")
TRACK_RULES = ("mean", "longest", "best")


# ---------------------------------------------------------------------------------------------------
# pure functions
# ---------------------------------------------------------------------------------------------------
def audio_features(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """MFCC as SyncNetInstance computes it: ``python_speech_features.mfcc(int16 samples, 16000)`` (defaults:
    25 ms windows, 10 ms step, 13 cepstra, c0 = log energy), transposed: ``float32[13, M]`` (100 per second).

    ``audio`` must be the raw int16 samples (not rescaled to [-1, 1]: scaling changes c0).
    """
    import python_speech_features

    audio = np.asarray(audio)
    if audio.dtype != np.int16:
        raise ValueError(f"audio must be int16 16 kHz samples, got {audio.dtype}")
    return np.ascontiguousarray(python_speech_features.mfcc(audio, sample_rate).T, dtype=np.float32)


def n_windows(n_frames: int, n_samples: int) -> int:
    """Number of SyncNet windows N = min(frames, floor(samples / 640)) - 5 (may be <= 0)."""
    return min(n_frames, n_samples // SAMPLES_PER_FRAME) - 5


def sync_distances(video_emb: np.ndarray, audio_emb: np.ndarray, vshift: int = VSHIFT) -> np.ndarray:
    """``d[i,k] = || v_i - a_{i+k-vshift} + 1e-6 ||_2``, audio zero-padded by ``vshift`` windows at each end.

    Args: ``video_emb``, ``audio_emb``: ``float[N,D]``. Returns ``float64[N, 2*vshift+1]``.
    """
    v = np.asarray(video_emb, np.float64)
    a = np.asarray(audio_emb, np.float64)
    n, d = v.shape
    a_pad = np.concatenate([np.zeros((vshift, d)), a, np.zeros((vshift, d))])
    idx = np.arange(n)[:, None] + np.arange(2 * vshift + 1)[None, :]
    return np.linalg.norm(v[:, None, :] - a_pad[idx] + PAIRWISE_EPS, axis=-1)


def sync_scores(dists: np.ndarray, vshift: int = VSHIFT) -> dict[str, Any]:
    """Mean distance per offset ``D_k`` and LSE-D = min D, LSE-C = median D - min D (lower median),
    AV offset = vshift - argmin D (first minimum). ``dists``: ``float[N, 2*vshift+1]``."""
    mean = np.asarray(dists, np.float64).mean(axis=0)
    k = int(np.argmin(mean))
    median = float(np.sort(mean)[(len(mean) - 1) // 2])
    return {
        "lse_d": float(mean[k]),
        "lse_c": median - float(mean[k]),
        "av_offset": vshift - k,
        "mean_dists": mean,
    }


def full_frame_input(frames_rgb: np.ndarray, size: int = SYNCNET_SIZE) -> np.ndarray:
    """Wav2Lip LRS input: each whole frame ``cv2.resize``-d (bilinear) to size x size, as BGR.

    ``frames_rgb``: ``uint8[T,H,W,3]`` RGB -> ``uint8[T,size,size,3]`` BGR.
    """
    import cv2

    out = np.empty((len(frames_rgb), size, size, 3), np.uint8)
    for i, f in enumerate(frames_rgb):
        out[i] = cv2.resize(f, (size, size))[:, :, ::-1]
    return out


def combine_tracks(per_track: list[dict[str, Any]], rule: str) -> dict[str, Any]:
    """Combine per-track scores (lse_c, lse_d, av_offset, n_windows) by ``rule`` (see module doc)."""
    if not per_track:
        raise ValueError("no tracks to combine")
    longest = max(per_track, key=lambda t: t["n_windows"])
    if rule == "longest":
        return {k: longest[k] for k in ("lse_c", "lse_d", "av_offset")} | {
            "n_frames_scored": longest["n_windows"]
        }
    if rule == "mean":
        return {
            "lse_c": float(np.mean([t["lse_c"] for t in per_track])),
            "lse_d": float(np.mean([t["lse_d"] for t in per_track])),
            "av_offset": longest["av_offset"],
            "n_frames_scored": int(sum(t["n_windows"] for t in per_track)),
        }
    if rule == "best":
        best_d = min(per_track, key=lambda t: t["lse_d"])
        return {
            "lse_c": max(t["lse_c"] for t in per_track),
            "lse_d": best_d["lse_d"],
            "av_offset": best_d["av_offset"],
            "n_frames_scored": int(sum(t["n_windows"] for t in per_track)),
        }
    raise KdbenchError(f"lse.track_rule must be one of {TRACK_RULES}, got {rule!r}")


def check_audio_for_video(
    audio: np.ndarray, n_frames: int, max_shortfall_frames: int = 1, silence_peak: int = 0
) -> None:
    """Raise ClipFailure for silent audio or audio that covers fewer than ``n_frames - max_shortfall_frames``
    video frames (640 samples per frame)."""
    if len(audio) == 0 or int(np.abs(audio.astype(np.int32)).max()) <= silence_peak:
        raise ClipFailure(f"silent audio (peak amplitude <= {silence_peak})")
    covered = len(audio) // SAMPLES_PER_FRAME
    if covered < n_frames - max_shortfall_frames:
        raise ClipFailure(
            f"audio shorter than the video: {len(audio) / SAMPLE_RATE:.3f} s of audio "
            f"for {n_frames / FPS:.3f} s of video ({covered} of {n_frames} frames covered)"
        )


# ---------------------------------------------------------------------------------------------------
# the metric
# ---------------------------------------------------------------------------------------------------
@register_metric("lse")
class LSEMetric(Metric):
    """LSE-C (higher is better) and LSE-D (lower is better) with SyncNet ``syncnet_v2``."""

    info: ClassVar[MetricInfo] = MetricInfo(
        name="lse",
        version="1.0",
        description="SyncNet lip-sync: LSE-C = median - min of the mean audio-video embedding distance over "
        "offsets -15..15, LSE-D = that min (syncnet_python SyncNetInstance.evaluate; Wav2Lip "
        "real-video protocol with S3FD face crops by default, or the whole frame).",
        outputs={
            "lse_c": Output(higher_is_better=True, unit="distance", description="SyncNet confidence"),
            "lse_d": Output(higher_is_better=False, unit="distance", description="SyncNet min distance"),
            "av_offset": Output(
                higher_is_better=None,
                unit="frames",
                description="audio-video offset at the min distance (15 - argmin)",
            ),
        },
        weights=("syncnet_v2", "sfd_face"),
        reference="joonson/syncnet_python SyncNetInstance.py, run_pipeline.py; Wav2Lip evaluation/scores_LSE",
        paper_column={"lse_c": "LSE-C", "lse_d": "LSE-D"},
    )
    option_ranges: ClassVar[dict[str, Any]] = {
        "protocol": PROTOCOLS, "track_rule": TRACK_RULES, "tracker": ("joonson", "syncnet-python"),
        "min_track": Range(0), "num_failed_det": Range(0), "min_face_size": Range(0),
        "facedet_scale": Range(0, 4, lo_open=True), "conf_th": Range(0, 1), "crop_scale": Range(0, 4),
        "vshift": Range(1, 100), "batch_size": Range(1, 4096), "det_batch_size": Range(1, 4096),
        "max_audio_shortfall_frames": Range(0), "silence_peak": Range(0, 32767),
        "syncnet_weights": Text("a file path"), "s3fd_weights": Text("a file path"), "ffmpeg": Text("a program path"),
        "audio": ("file", "dataset"),
    }
    option_types: ClassVar[dict[str, tuple]] = {"batch_size": (int, None), "det_batch_size": (int, None),
                                                "syncnet_weights": (str, None), "s3fd_weights": (str, None)}
    default_options: ClassVar[dict[str, Any]] = {
        "protocol": "s3fd",  # "s3fd" (face crops, Wav2Lip real videos) | "full" (Wav2Lip LRS)
        "track_rule": "mean",  # several face tracks in one clip: "mean" | "longest" | "best"
        "min_track": 100,  # a track needs more than this many detections (joonson/Wav2Lip: 100)
        "tracker": "joonson",  # "joonson" (run_pipeline.py) | "syncnet-python" (PyPI 0.2.3 _track)
        "num_failed_det": 25,
        "min_face_size": 100,
        "facedet_scale": 0.25,
        "conf_th": 0.9,
        "crop_scale": 0.4,
        "vshift": VSHIFT,
        "batch_size": None,  # SyncNet windows per forward pass (None: 16 on CPU, 64 on GPU; numbers unchanged)
        "det_batch_size": None,  # S3FD frames per forward pass (None: 8 on CPU, 64 on GPU; numbers unchanged)
        "max_audio_shortfall_frames": 1,
        "silence_peak": 0,  # audio whose peak |sample| is <= this is "silent"
        "syncnet_weights": None,  # explicit path to syncnet_v2.model (still checksum-verified)
        "s3fd_weights": None,  # explicit path to sfd_face.pth
        "ffmpeg": None,  # protocol "files": ffmpeg executable (None: the imageio-ffmpeg package's binary)
        "audio": "file",  # "file" (the scored video file's own track, as the paper's protocol) | "dataset"
    }

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        o = self.options
        if o["protocol"] not in PROTOCOLS:
            raise KdbenchError(f"lse.protocol must be one of {PROTOCOLS}, got {o['protocol']!r}")
        if o["tracker"] not in ("joonson", "syncnet-python"):
            raise KdbenchError(f"lse.tracker must be 'joonson' or 'syncnet-python', got {o['tracker']!r}")
        if o["track_rule"] not in TRACK_RULES:
            raise KdbenchError(f"lse.track_rule must be one of {TRACK_RULES}, got {o['track_rule']!r}")
        if o["audio"] not in AUDIO_SOURCES:
            raise KdbenchError(f"lse.audio must be one of {AUDIO_SOURCES}, got {o['audio']!r}")
        for name, key in (("syncnet_v2", "syncnet_weights"), ("sfd_face", "s3fd_weights")):
            if o[key]:
                self.weights.overrides[name] = Path(o[key])
        # resolve (and verify) now, so missing weights skip the metric before any clip is scored
        self._syncnet_path = self.weights.path("syncnet_v2")
        self._s3fd_path = self.weights.path("sfd_face") if o["protocol"] in ("s3fd", "files") else None
        self._tools: dict[str, str] | None = None
        self._syncnet = None
        self._lip = None
        self._s3fd = None

    def skip_reason(self) -> str | None:
        """Protocol ``files`` without a runnable ffmpeg (or PySceneDetect): skipped, saying what to install."""
        if self.options["protocol"] != "files":
            return None
        import importlib.util
        import shutil

        from metrics.lse_files import ffmpeg_binary

        try:
            ff = ffmpeg_binary(self.options["ffmpeg"])
        except KdbenchError as e:
            return str(e)
        if not (Path(ff).is_file() or shutil.which(ff)):
            return f"lse.protocol=files: ffmpeg not found at {ff!r}; set --set lse.ffmpeg=/path/to/ffmpeg"
        if importlib.util.find_spec("scenedetect") is None:
            return "lse.protocol=files needs PySceneDetect: `pip install 'kdbench[lse-files]'`"
        return None

    def _batch_size(self, key: str, cpu: int, gpu: int) -> int:
        """The option's value, or the device's default when it is None (memory and speed only)."""
        value = self.options[key]
        return int(value) if value is not None else (gpu if on_gpu(self.device) else cpu)

    # -- networks (loaded on first use) -----------------------------------------------------------
    def _nets(self):
        if self._syncnet is None:
            from metrics.syncnet_net import LipNet2D, load_syncnet

            self._syncnet = load_syncnet(self._syncnet_path, self.device)
            self._lip = LipNet2D(self._syncnet).to(self.device)
        return self._syncnet, self._lip

    def _detector(self):
        if self._s3fd is None:
            from metrics.s3fd import load_s3fd

            self._s3fd = load_s3fd(self._s3fd_path, self.device)
        return self._s3fd

    # -- audio ------------------------------------------------------------------------------------
    def submitted_file(self, clip: EvalClip) -> Path | None:
        """The video file a run imported with ``kdbench eval --videos`` was made from (None for other runs).

        Read from the run's ``config.json`` (``videos``: the folder of submitted ``<clip_id>.mp4``), found through
        the evaluation context's ``run_dir``.
        """
        run_dir = (getattr(self, "context", None) or {}).get("run_dir")
        if not run_dir:
            return None
        if not hasattr(self, "_videos_dir"):
            from kdbench.runstore import RunStore

            videos = (RunStore(run_dir).config() or {}).get("videos")
            self._videos_dir = Path(videos) if videos else None
        if self._videos_dir is None:
            return None
        path = self._videos_dir / f"{clip.clip_id}.mp4"
        if not path.is_file():
            raise ClipFailure(f"lse.audio=file hears the submitted video {path}, which is gone: put it back, or "
                              "score the dataset's audio with --set lse.audio=dataset")
        return path

    def clip_audio(self, clip: EvalClip) -> tuple[np.ndarray, str]:
        """``(int16[N] 16 kHz mono, where it came from)`` per option ``audio``."""
        src = self.submitted_file(clip) if self.options["audio"] == "file" else None
        if src is None:
            audio = clip.audio
            if self.options["audio"] == "file":
                return audio, f"run video, which carries the dataset's track: {clip.audio_source}"
            return audio, str(clip.audio_source)
        from kdbench.audio import read_audio

        try:
            return read_audio(src), f"submitted file {src} (ffmpeg -ac 1 -ar 16000, as the reference)"
        except KdbenchError as e:
            raise ClipFailure(f"lse.audio=file: {e}; score the dataset's audio with --set lse.audio=dataset") from e

    # -- scoring ----------------------------------------------------------------------------------
    def score_windows(self, frames_bgr: np.ndarray, audio: np.ndarray) -> dict[str, Any]:
        """``SyncNetInstance.evaluate`` on frames ``uint8[T,224,224,3]`` BGR and ``int16[A]`` audio."""
        from metrics.syncnet_net import embed_audio, embed_video

        n = n_windows(len(frames_bgr), len(audio))
        if n <= 0:
            raise ClipFailure(
                f"too short for SyncNet: {len(frames_bgr)} frames / {len(audio)} samples "
                "(at least 6 frames are needed)"
            )
        net, lip = self._nets()
        bs = self._batch_size("batch_size", cpu=16, gpu=64)
        v = embed_video(lip, frames_bgr, n, bs, self.device)
        a = embed_audio(net, audio_features(audio), n, max(bs, 256), self.device)
        vshift = int(self.options["vshift"])
        s = sync_scores(sync_distances(v, a, vshift), vshift)
        return {"lse_c": s["lse_c"], "lse_d": s["lse_d"], "av_offset": s["av_offset"], "n_windows": n}

    def detections(self, clip: EvalClip) -> list[np.ndarray]:
        """S3FD boxes per frame, shared through ``clip.cache`` (key names detector, scale and threshold)."""
        from metrics.s3fd import detect_faces

        o = self.options
        key = f"s3fd_detections:{self._s3fd_path}:scale={o['facedet_scale']}:conf={o['conf_th']}"
        if key not in clip.cache:
            clip.cache[key] = detect_faces(
                self._detector(),
                clip.frames,
                float(o["facedet_scale"]),
                float(o["conf_th"]),
                self._batch_size("det_batch_size", cpu=8, gpu=64),
                self.device,
            )
        return clip.cache[key]

    def score_clip(self, clip: EvalClip) -> dict[str, Any]:
        o = self.options
        audio, source = self.clip_audio(clip)
        if o["protocol"] == "files":  # the reference converts any frame rate to 25 fps itself
            check_audio_for_video(
                audio, len(clip.frames), int(o["max_audio_shortfall_frames"]), int(o["silence_peak"])
            )
            return self.score_files(clip) | {"audio": o["audio"]}
        if abs(clip.fps - FPS) > 1e-3:
            raise ClipFailure(
                f"video is {clip.fps:g} fps; SyncNet scores need 25 fps (normalise the clip first)"
            )
        frames = clip.frames
        check_audio_for_video(
            audio, len(frames), int(o["max_audio_shortfall_frames"]), int(o["silence_peak"])
        )
        if o["protocol"] == "full":
            r = self.score_windows(full_frame_input(frames), audio)
            rec = {
                "lse_c": r["lse_c"],
                "lse_d": r["lse_d"],
                "av_offset": r["av_offset"],
                "n_tracks": 1,
                "n_frames_scored": r["n_windows"],
                "protocol": "full",
            }
        else:
            rec = self.score_face_tracks(clip, audio)
        return rec | {"audio": o["audio"], "audio_source": source}

    def score_files(self, clip: EvalClip) -> dict[str, Any]:
        """Protocol ``files``: syncnet-python's pipeline on ``clip.video_path`` (see ``metrics/lse_files.py``)."""
        import tempfile

        from metrics.lse_files import ffmpeg_binary, score_video_file, tool_versions
        from metrics.s3fd import detect_faces

        o = self.options
        ff = ffmpeg_binary(o["ffmpeg"])
        if self._tools is None:
            self._tools = tool_versions(ff)

        def detect(frames_rgb: np.ndarray) -> list[np.ndarray]:
            return detect_faces(self._detector(), frames_rgb, float(o["facedet_scale"]), float(o["conf_th"]),
                                self._batch_size("det_batch_size", cpu=8, gpu=64), self.device)

        def score(frames_bgr: np.ndarray, audio: np.ndarray) -> dict[str, Any]:
            try:
                return self.score_windows(frames_bgr, audio)
            except ClipFailure as e:
                return {"error": str(e)}

        video, audio_from = Path(clip.video_path), None
        submitted = self.submitted_file(clip) if o["audio"] == "file" else None
        if submitted is not None:
            if (clip.event.get("normalizer") or {}).get("reencoded") is False:
                video = submitted  # the normaliser kept its video stream: the package's run on the submitted file
            else:
                audio_from = submitted  # frames from the normalised copy, audio from the submitted file
        with tempfile.TemporaryDirectory(prefix="kdbench-lse-") as work:
            tracks, facts = score_video_file(
                video, Path(work), detect=detect, score=score, min_track=int(o["min_track"]),
                num_failed_det=int(o["num_failed_det"]), min_face_size=float(o["min_face_size"]),
                crop_scale=float(o["crop_scale"]), ffmpeg=ff, audio_from=audio_from,
            )
        facts = facts | {"video_file": str(video), "audio_file": str(audio_from or video)}
        per_track = [t for t in tracks if "error" not in t]
        if not per_track:
            raise ClipFailure(
                f"no usable face track (protocol files): {len(tracks)} track(s) in {facts['n_frames_with_face']} "
                f"of {facts['n_frames_after_reencode']} re-encoded frames with a face; a track needs more than "
                f"min_track={o['min_track']} detections"
            )
        rec = combine_tracks(per_track, o["track_rule"])
        return rec | {
            "audio_source": f"{facts['audio_file']} (ffmpeg, as the reference)",
            "n_tracks": len(per_track),
            "protocol": "files",
            "track_rule": o["track_rule"],
            "tracker": "syncnet-python",
            "tracks": per_track,
            "files": facts,
            "tools": self._tools,
        }

    def score_face_tracks(self, clip: EvalClip, audio: np.ndarray | None = None) -> dict[str, Any]:
        """Protocol ``s3fd`` on ``clip``'s frames and ``audio`` (``int16[N]``; default: ``clip.audio``)."""
        from metrics.face_tracks import crop_track, track_faces

        o = self.options
        frames = clip.frames
        audio = clip.audio if audio is None else audio
        min_track = int(o["min_track"])
        if len(frames) <= min_track:  # the reference skips shots shorter than min_track frames
            raise ClipFailure(
                f"no usable face track: the clip has {len(frames)} frames and a track needs more "
                f"than min_track={min_track} detections"
            )
        dets = self.detections(clip)
        tracks = track_faces(
            dets, min_track, int(o["num_failed_det"]), float(o["min_face_size"]), variant=o["tracker"]
        )
        if not tracks:
            n_with = sum(1 for d in dets if len(d))
            raise ClipFailure(
                f"no usable face track: faces detected in {n_with} of {len(frames)} frames; a "
                f"track needs more than min_track={min_track} detections and a mean face size "
                f"over {o['min_face_size']} px"
            )
        per_track = []
        for t in tracks:
            crops = crop_track(frames, t, float(o["crop_scale"]))[..., ::-1]  # RGB -> BGR, as cv2.imread
            a = audio[int(t.frames[0]) * SAMPLES_PER_FRAME : (int(t.frames[-1]) + 1) * SAMPLES_PER_FRAME]
            try:
                r = self.score_windows(np.ascontiguousarray(crops), a)
            except ClipFailure:
                continue  # a track with fewer than 6 frames of audio: not scorable
            per_track.append(r | {"first_frame": int(t.frames[0]), "last_frame": int(t.frames[-1])})
        if not per_track:
            raise ClipFailure("no face track with enough audio to score")
        rec = combine_tracks(per_track, o["track_rule"])
        return rec | {
            "n_tracks": len(per_track),
            "protocol": "s3fd",
            "track_rule": o["track_rule"],
            "tracks": per_track,
        }

    def aggregate(self, records: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Mean/std over scored clips; each output also states the protocol and how many clips it covers."""
        out = {}
        for name in self.info.outputs:
            s = summarize([r.get(name) for r in records.values()])
            out[name] = s | {"n_clips": s["n"], "protocol": self.options["protocol"]}
        return out
