"""dlib face detection and 68-point landmarks, shared by the head-pose metrics.

Imports dlib lazily (inside functions), so importing this module is cheap.

Detections are plain tuples ``(left, top, right, bottom, score)`` in pixels of the frame as given
(dlib's inclusive rectangle corners), ``score`` = the CNN detector's confidence (or the HOG score).

Speed without changing a number: identical frames (a static video, a frozen tail) are detected once —
:func:`detect_frames` keys its memo by the frame's bytes digest — the CNN detector is run on batches
of frames with dlib's list API (same boxes and confidences as one frame at a time), and
:func:`cnn_detect_parallel` spreads batches over worker processes (dlib's CPU detector is
single-threaded and holds the GIL, so threads do not help; processes scale with the cores).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

Detection = tuple[int, int, int, int, float]


def frame_digest(frame: np.ndarray) -> bytes:
    """Content digest of one ``uint8[H,W,3]`` frame (shape included)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(frame.shape).encode())
    h.update(np.ascontiguousarray(frame).data)
    return h.digest()


def cnn_cache_key(model_path: str | os.PathLike, upsample: int) -> str:
    """``EvalClip.cache`` key of the CNN detection memo, shared by every metric using the same settings."""
    return f"dlib_cnn:{os.fspath(model_path)}:upsample={int(upsample)}"


@lru_cache(maxsize=4)
def cnn_detector(path: str) -> Any:
    """dlib's MMOD CNN face detector (``mmod_human_face_detector.dat``), loaded once per path."""
    import dlib

    return dlib.cnn_face_detection_model_v1(os.fspath(path))


@lru_cache(maxsize=1)
def hog_detector() -> Any:
    """dlib's built-in HOG + linear SVM frontal face detector (no weight file needed)."""
    import dlib

    return dlib.get_frontal_face_detector()


@lru_cache(maxsize=4)
def shape_predictor(path: str) -> Any:
    """dlib's landmark regressor (``shape_predictor_68_face_landmarks.dat``), loaded once per path."""
    import dlib

    return dlib.shape_predictor(os.fspath(path))


def _mmod_to_tuples(dets: Any) -> list[Detection]:
    return [(d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom(), float(d.confidence)) for d in dets]


def cnn_detect_batch(detector: Any, frames: Sequence[np.ndarray], upsample: int = 1,
                     batch_size: int = 8) -> list[list[Detection]]:
    """Run the CNN detector on ``frames`` (each ``uint8[H,W,3]`` RGB); one detection list per frame.

    ``batch_size > 1`` uses dlib's batched call (frames of a batch must share a size); ``1`` is the
    reference's one-frame-at-a-time call ``detector(rgb, upsample)``.
    """
    out: list[list[Detection]] = []
    frames = [np.ascontiguousarray(f) for f in frames]
    if batch_size <= 1:
        return [_mmod_to_tuples(detector(f, upsample)) for f in frames]
    for i in range(0, len(frames), batch_size):
        chunk = frames[i:i + batch_size]
        if len({f.shape for f in chunk}) > 1:
            out += [_mmod_to_tuples(detector(f, upsample)) for f in chunk]
        else:
            out += [_mmod_to_tuples(d) for d in detector(chunk, upsample, batch_size=len(chunk))]
    return out


def _detect_chunk(args: tuple[str, list[np.ndarray], int, int]) -> list[list[Detection]]:
    path, frames, upsample, batch_size = args
    return cnn_detect_batch(cnn_detector(path), frames, upsample, batch_size)


def default_workers() -> int:
    """Worker processes for detection: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def cnn_detect_parallel(path: str | os.PathLike, frames: Sequence[np.ndarray], upsample: int = 1,
                        batch_size: int = 4, workers: int = 1) -> list[list[Detection]]:
    """:func:`cnn_detect_batch` with the batches spread over ``workers`` processes (same results).

    ``workers <= 1`` (or a single batch) runs in this process. Workers are spawned (not forked, which
    is unsafe once torch's thread pools exist) and load the detector once each.
    """
    path = os.fspath(path)
    frames = list(frames)
    batch_size = max(1, batch_size)
    chunks = [frames[i:i + batch_size] for i in range(0, len(frames), batch_size)]
    workers = min(workers, len(chunks))
    if workers <= 1:
        return cnn_detect_batch(cnn_detector(path), frames, upsample, batch_size)
    from concurrent.futures import ProcessPoolExecutor

    from kdbench.interrupt import pool_kwargs, starting_processes

    with ProcessPoolExecutor(workers, **pool_kwargs()) as ex:
        with starting_processes():  # SIGTERM/SIGINT end these workers too (kdbench.interrupt)
            results = ex.map(_detect_chunk, [(path, c, upsample, batch_size) for c in chunks])
        parts = list(results)
    return [d for part in parts for d in part]


def hog_detect(frame: np.ndarray, upsample: int = 0) -> list[Detection]:
    """HOG detections of one ``uint8[H,W,3]`` RGB frame, with their SVM scores."""
    rects, scores, _ = hog_detector().run(np.ascontiguousarray(frame), upsample, 0.0)
    return [(r.left(), r.top(), r.right(), r.bottom(), float(s)) for r, s in zip(rects, scores, strict=True)]


def detect_frames(frames: Sequence[np.ndarray],
                  detect_many: Callable[[list[np.ndarray]], list[list[Detection]]],
                  memo: dict[bytes, list[Detection]] | None = None) -> list[list[Detection]]:
    """Detections for every frame, running ``detect_many`` once per distinct frame content.

    ``memo`` (digest -> detections) is filled in place, so callers can share it between clips or
    metrics that use the same detector and settings (e.g. via ``EvalClip.cache``).
    """
    memo = {} if memo is None else memo
    digests = [frame_digest(f) for f in frames]
    todo: dict[bytes, np.ndarray] = {}
    for d, f in zip(digests, frames, strict=True):
        if d not in memo and d not in todo:
            todo[d] = f
    if todo:
        found = detect_many(list(todo.values()))
        memo.update(zip(todo.keys(), found, strict=True))
    return [memo[d] for d in digests]


def landmarks68(frame: np.ndarray, det: Detection, predictor: Any) -> np.ndarray:
    """68 dlib landmarks ``float64[68,2]`` (x, y pixels) of the face in ``det`` on an RGB frame."""
    import dlib

    rect = dlib.rectangle(int(det[0]), int(det[1]), int(det[2]), int(det[3]))
    shape = predictor(np.ascontiguousarray(frame), rect)
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
