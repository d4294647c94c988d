"""LSE's ``files`` protocol: syncnet_python's pipeline on the video file, disk round trips included.

What a researcher gets by running PyPI ``syncnet-python`` 0.2.3 (``SyncNetPipeline.inference(video, None)``,
MoChaBench's copy of joonson's ``run_pipeline.py`` + ``SyncNetInstance.evaluate``) on a video file, step by step
with the same programs, arguments and codecs:

1. audio: ``ffmpeg -y -i VIDEO -ac 1 -ar 16000 -acodec pcm_s16le -f wav extracted.wav``, then
   ``ffmpeg -i extracted.wav -f wav -ac 1 -ar 16000 speech.wav -y``;
2. ``ffmpeg -i VIDEO -async 1 -q:v 2 -r 25 video.avi -y`` (MPEG-4 Part 2 video; this can duplicate or drop
   frames: a 75-frame H.264 clip became 77 frames), then
   ``ffmpeg -i video.avi -f image2 -q:v 2 -threads 1 frames/%06d.jpg -y``;
3. S3FD on every JPEG read back with ``cv2.imread`` (kdbench's batched detector, equal to the reference's);
4. PySceneDetect ``ContentDetector()`` on ``video.avi``; tracks (syncnet-python's tracker) in scenes of at least
   ``min_track`` frames;
5. per track: crops (scale 0.4, pad 110, 224x224) written with OpenCV's ``XVID`` writer at 25 fps, the audio cut
   with ``ffmpeg -y -i speech.wav -ss T0 -to T1 slice.wav`` and muxed ``-c:v copy -c:a copy``; then the crop video
   is read back: ``ffmpeg -i crop.avi -f image2 -threads 1 %06d.jpg -y`` (default JPEG quality) and
   ``ffmpeg -i crop.avi -ac 1 -acodec pcm_s16le -af aresample=async=1 -ar 16000 -vn audio.wav -y``;
6. SyncNet on those JPEGs (``cv2.imread``) and that wav (``scipy.io.wavfile``): kdbench's scoring, equal to
   ``SyncNetInstance.evaluate`` on the same arrays.

The results depend on the ffmpeg build (MPEG-4/MJPEG/MP3 encoders, ``-async``), OpenCV (XVID writer, JPEG
decoder) and PySceneDetect; :func:`tool_versions` records them. The ffmpeg binary is the one of the
``imageio-ffmpeg`` package (pinned in kdbench's ``lse-files`` extra) unless ``ffmpeg`` is given.

This module imports cv2 and numpy only; torch comes in through the detector and scorer callables.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from kdbench.errors import ClipFailure, KdbenchError

FRAME_RATE = 25
SAMPLE_RATE = 16000


def ffmpeg_binary(path: str | None = None) -> str:
    """The ffmpeg executable: ``path`` when given, else the ``imageio-ffmpeg`` package's binary."""
    if path:
        return str(path)
    try:
        import imageio_ffmpeg
    except ImportError as e:
        raise KdbenchError(
            "lse.protocol=files runs ffmpeg as syncnet_python does: `pip install 'kdbench[lse-files]'` "
            "(imageio-ffmpeg's pinned binary) or pass --set lse.ffmpeg=/path/to/ffmpeg"
        ) from e
    return imageio_ffmpeg.get_ffmpeg_exe()


def tool_versions(ffmpeg: str) -> dict[str, str]:
    """Versions of everything the file round trips depend on (recorded in each clip's record)."""
    import cv2

    out = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True, check=False).stdout
    versions = {"ffmpeg": out.split("\n", 1)[0].strip(), "ffmpeg_path": ffmpeg, "opencv": cv2.__version__}
    for pkg in ("imageio-ffmpeg", "scenedetect"):
        try:
            from importlib.metadata import version

            versions[pkg] = version(pkg)
        except Exception:  # noqa: BLE001 - not installed: not recorded
            pass
    return versions


def run_ffmpeg(args: list[str]) -> None:
    """Run one ffmpeg command; a failure raises with ffmpeg's own message."""
    p = subprocess.run(args, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise KdbenchError(f"ffmpeg failed ({' '.join(args[1:])}): {p.stderr.strip()[-800:]}")


def read_jpegs(folder: Path) -> list[np.ndarray]:
    """``cv2.imread`` of every ``*.jpg`` in sorted order (BGR ``uint8[H,W,3]``), as the reference reads them."""
    import cv2

    return [cv2.imread(str(p)) for p in sorted(folder.glob("*.jpg"))]


def detect_scenes(avi: Path) -> list[tuple[int, int]]:
    """``(first, end)`` frame ranges of PySceneDetect's ``ContentDetector()`` on ``avi``, as syncnet-python
    calls it (``VideoManager``; one scene spanning the video when no cut is found)."""
    try:
        from scenedetect import ContentDetector, SceneManager, StatsManager
        from scenedetect.video_manager import VideoManager
    except ImportError as e:
        raise KdbenchError("lse.protocol=files needs PySceneDetect: `pip install 'kdbench[lse-files]'`") from e
    import logging

    logging.getLogger("pyscenedetect").setLevel(logging.ERROR)
    vm = VideoManager([str(avi)])
    sm = SceneManager(StatsManager())
    sm.add_detector(ContentDetector())
    vm.start()
    sm.detect_scenes(frame_source=vm)
    scenes = sm.get_scene_list(vm.get_base_timecode()) or [(vm.get_base_timecode(), vm.get_current_timecode())]
    out = [(int(a.frame_num), int(b.frame_num)) for a, b in scenes]
    vm.release()
    return out


def prepare(video: Path, work: Path, ffmpeg: str, audio_from: Path | None = None
            ) -> tuple[list[np.ndarray], Path, Path]:
    """Steps 1-2: ``(frames BGR read from the JPEGs, video.avi, speech.wav)`` in ``work``.

    ``audio_from``: extract the audio (step 1) from this file instead of ``video`` (``lse.audio=file`` when the
    scored video is a re-encoded copy of the submitted file).
    """
    extracted, speech, avi = work / "extracted_audio.wav", work / "speech.wav", work / "video.avi"
    run_ffmpeg([ffmpeg, "-y", "-i", str(audio_from or video), "-ac", "1", "-ar", str(SAMPLE_RATE), "-acodec",
                "pcm_s16le", "-f", "wav", str(extracted)])
    run_ffmpeg([ffmpeg, "-i", str(video), "-async", "1", "-q:v", "2", "-r", str(FRAME_RATE), str(avi), "-y"])
    frames_dir = work / "frames"
    frames_dir.mkdir()
    run_ffmpeg([ffmpeg, "-i", str(avi), "-f", "image2", "-q:v", "2", "-threads", "1", str(frames_dir / "%06d.jpg"),
                "-y"])
    run_ffmpeg([ffmpeg, "-i", str(extracted), "-f", "wav", "-ac", "1", "-ar", str(SAMPLE_RATE), str(speech), "-y"])
    frames = read_jpegs(frames_dir)
    if not frames:
        raise ClipFailure(f"ffmpeg extracted no frames from {video.name}")
    if any(f is None for f in frames):
        raise ClipFailure("a JPEG frame written by ffmpeg could not be read back")
    return frames, avi, speech


def crop_round_trip(crops_bgr: np.ndarray, first: int, last: int, speech: Path, base: Path, ffmpeg: str
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Step 5 for one track: XVID crop video + audio slice, read back as ``(BGR uint8[L',224,224,3], int16[A])``."""
    import cv2
    from scipy.io import wavfile

    base.parent.mkdir(parents=True, exist_ok=True)
    tmp_avi, slice_wav, final = Path(f"{base}t.avi"), Path(f"{base}.wav"), Path(f"{base}.avi")
    vw = cv2.VideoWriter(str(tmp_avi), cv2.VideoWriter_fourcc(*"XVID"), FRAME_RATE, (224, 224))
    for c in crops_bgr:
        vw.write(np.ascontiguousarray(c))
    vw.release()
    ss, to = first / FRAME_RATE, (last + 1) / FRAME_RATE
    run_ffmpeg([ffmpeg, "-y", "-i", str(speech), "-ss", f"{ss:.3f}", "-to", f"{to:.3f}", str(slice_wav)])
    run_ffmpeg([ffmpeg, "-y", "-i", str(tmp_avi), "-i", str(slice_wav), "-c:v", "copy", "-c:a", "copy", str(final)])
    tmp_avi.unlink()
    out = base.parent / f"crop_{base.name}"
    out.mkdir()
    run_ffmpeg([ffmpeg, "-i", str(final), "-f", "image2", "-threads", "1", str(out / "%06d.jpg"), "-y"])
    run_ffmpeg([ffmpeg, "-i", str(final), "-ac", "1", "-acodec", "pcm_s16le", "-af", "aresample=async=1", "-ar",
                str(SAMPLE_RATE), "-vn", str(out / "audio.wav"), "-y"])
    frames = read_jpegs(out)
    _, audio = wavfile.read(str(out / "audio.wav"))
    if not frames:
        return np.zeros((0, 224, 224, 3), np.uint8), audio
    return np.stack(frames), audio


def score_video_file(
    video: Path,
    work: Path,
    *,
    detect: Callable[[np.ndarray], list[np.ndarray]],
    score: Callable[[np.ndarray, np.ndarray], dict[str, Any]],
    min_track: int,
    num_failed_det: int = 25,
    min_face_size: float = 100,
    crop_scale: float = 0.4,
    ffmpeg: str | None = None,
    audio_from: Path | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The whole pipeline on ``video`` in the empty folder ``work`` (its audio from ``audio_from`` if given).

    ``detect``: RGB ``uint8[T,H,W,3]`` -> per-frame boxes ``float[K,5]``; ``score``: BGR crops + int16 audio ->
    ``{lse_c, lse_d, av_offset, n_windows}``. Returns the per-track scores (scene order, then track order, as the
    reference lists them) and facts about the round trips (frame counts, scenes).
    """
    from metrics.face_tracks import crop_track, track_faces

    ff = ffmpeg_binary(ffmpeg)
    frames_bgr, avi, speech = prepare(video, work, ff, audio_from)
    frames_bgr = np.stack(frames_bgr)
    dets = detect(np.ascontiguousarray(frames_bgr[..., ::-1]))
    scenes = detect_scenes(avi)
    tracks = []
    for s, e in scenes:
        if e - s >= min_track:
            tracks += track_faces(dets[s:e], min_track, num_failed_det, min_face_size, frame_offset=s,
                                  variant="syncnet-python")
    per_track = []
    for i, t in enumerate(tracks):
        crops = crop_track(frames_bgr, t, crop_scale)
        crop_frames, audio = crop_round_trip(crops, int(t.frames[0]), int(t.frames[-1]), speech,
                                             work / "cropped" / f"{i:05d}", ff)
        r = score(crop_frames, audio)
        per_track.append(r | {"first_frame": int(t.frames[0]), "last_frame": int(t.frames[-1]),
                              "n_crop_frames_read": len(crop_frames)})
    facts = {"n_frames_after_reencode": len(frames_bgr), "scenes": scenes,
             "n_frames_with_face": int(sum(1 for d in dets if len(d)))}
    return per_track, facts
