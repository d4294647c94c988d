"""Face tracking and cropping of syncnet_python's ``run_pipeline.py`` (joonson), in memory.

numpy/scipy/cv2 only (cv2 imported inside the crop function). Constants and their sources
(joonson syncnet_python ``run_pipeline.py`` at 6efbb1c; Wav2Lip's real-video LSE protocol runs that script):

- tracking (``track_shot``, lines 66-105): greedy, a detection joins the track when it is at most
  ``num_failed_det`` = 25 frames after the track's last box and IoU > 0.5; a track is kept when it has more
  than ``min_track`` (default 100) detections; missing frames are filled by linear interpolation; kept when
  the mean box width or height exceeds ``min_face_size`` = 100 px.
- cropping (``crop_video``, lines 111-179): box half-size ``s = max(w,h)/2`` and centre, each smoothed by
  ``scipy.signal.medfilt(k=13)`` (zero-padded ends, as the reference); frame padded with the constant 110;
  crop rows ``[int(my-s), int(my+s(1+2cs)))``, cols ``[int(mx-s(1+cs)), int(mx+s(1+cs)))`` with crop scale
  cs = 0.4; ``cv2.resize`` (bilinear) to 224x224.

``track_shot`` removes detections from the per-frame list while iterating over it; Python's list
iterator then skips the element after each removed one. :func:`track_faces` reproduces that on purpose
(it only matters with several faces in a frame), so the tracks equal the reference's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IOU_THRESHOLD = 0.5
MEDFILT_KERNEL = 13
PAD_VALUE = 110
CROP_SIZE = 224
TRACKER_VARIANTS = ("joonson", "syncnet-python")


@dataclass
class FaceTrack:
    """A face track: ``frames int[L]`` (consecutive frames), ``boxes float64[L,4]`` (x1,y1,x2,y2 px)."""

    frames: np.ndarray
    boxes: np.ndarray

    def __len__(self) -> int:
        return len(self.frames)


def box_iou(a, b, eps: float = 0.0) -> float:
    """IoU of two (x1,y1,x2,y2) boxes, the reference's formula (no +1; ``eps`` added to the union)."""
    xa, ya = max(a[0], b[0]), max(a[1], b[1])
    xb, yb = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, xb - xa) * max(0, yb - ya)
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    if eps:
        return inter / (area_a + area_b - inter + eps)
    return inter / float(area_a + area_b - inter)


def track_faces(
    detections: list[np.ndarray],
    min_track: int = 100,
    num_failed_det: int = 25,
    min_face_size: float = 100,
    frame_offset: int = 0,
    variant: str = "joonson",
) -> list[FaceTrack]:
    """Tracks of one shot, as ``track_shot``.

    Args:
        detections: per frame, ``float[K,5]`` boxes (x1,y1,x2,y2,score) in pixels.
        frame_offset: index of ``detections[0]`` in the video (tracks report video frame indices).
        variant: ``"joonson"`` (run_pipeline.py, used by Wav2Lip: a detection that fails the IoU test is
            skipped and the next detection of the same frame is tried) or ``"syncnet-python"`` (PyPI
            syncnet-python 0.2.3 ``SyncNetPipeline._track``: the first failing detection ends the frame,
            and the IoU denominator gets +1e-8). They differ only with several faces in a frame.
    """
    if variant not in TRACKER_VARIANTS:
        raise ValueError(f"tracker variant must be one of {TRACKER_VARIANTS}, got {variant!r}")
    stop_on_mismatch = variant == "syncnet-python"
    iou_eps = 1e-8 if stop_on_mismatch else 0.0
    remaining = [list(range(len(d))) for d in detections]
    tracks: list[FaceTrack] = []
    while True:
        track: list[tuple[int, np.ndarray]] = []
        for f, faces in enumerate(remaining):
            i = 0
            while i < len(faces):
                box = np.asarray(detections[f][faces[i]][:4], dtype=np.float64)
                if not track:
                    track.append((f, box))
                    del faces[i]
                    i += 1  # the list iterator skips the element after a removed one
                elif (
                    f - track[-1][0] <= num_failed_det and box_iou(box, track[-1][1], iou_eps) > IOU_THRESHOLD
                ):
                    track.append((f, box))
                    del faces[i]
                    i += 1
                elif f - track[-1][0] <= num_failed_det and not stop_on_mismatch:
                    i += 1
                else:
                    break
        if not track:
            break
        if len(track) > min_track:
            from scipy.interpolate import interp1d

            fr = np.array([t[0] for t in track])
            bb = np.stack([t[1] for t in track])
            full = np.arange(fr[0], fr[-1] + 1)
            bbi = np.stack([interp1d(fr, bb[:, k])(full) for k in range(4)], axis=1)
            if max(np.mean(bbi[:, 2] - bbi[:, 0]), np.mean(bbi[:, 3] - bbi[:, 1])) > min_face_size:
                tracks.append(FaceTrack(full + frame_offset, bbi))
    return tracks


def crop_geometry(
    boxes: np.ndarray, kernel: int = MEDFILT_KERNEL
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smoothed half-size ``s``, centre ``x`` and ``y`` (each ``float64[L]``) of a track's boxes."""
    from scipy import signal

    s = np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2
    x = (boxes[:, 0] + boxes[:, 2]) / 2
    y = (boxes[:, 1] + boxes[:, 3]) / 2
    return (
        signal.medfilt(s, kernel_size=kernel),
        signal.medfilt(x, kernel_size=kernel),
        signal.medfilt(y, kernel_size=kernel),
    )


def crop_window(
    image: np.ndarray, rows: tuple[int, int], cols: tuple[int, int], pad: int, value: int = PAD_VALUE
) -> np.ndarray:
    """``image`` padded by ``pad`` px of ``value`` on every side, then cut ``[r0:r1, c0:c1]`` (padded coords).

    Equals ``np.pad(image, pad, constant value)[r0:r1, c0:c1]`` (numpy slicing rules included) without
    building the padded frame.
    """
    h, w = image.shape[:2]
    hp, wp = h + 2 * pad, w + 2 * pad
    r0, r1 = slice(*rows).indices(hp)[:2]
    c0, c1 = slice(*cols).indices(wp)[:2]
    r1, c1 = max(r0, r1), max(c0, c1)
    out = np.full((r1 - r0, c1 - c0) + image.shape[2:], value, dtype=image.dtype)
    sr0, sr1 = max(r0 - pad, 0), min(r1 - pad, h)
    sc0, sc1 = max(c0 - pad, 0), min(c1 - pad, w)
    if sr1 > sr0 and sc1 > sc0:
        out[sr0 + pad - r0 : sr1 + pad - r0, sc0 + pad - c0 : sc1 + pad - c0] = image[sr0:sr1, sc0:sc1]
    return out


def crop_track(
    frames: np.ndarray, track: FaceTrack, crop_scale: float = 0.4, size: int = CROP_SIZE
) -> np.ndarray:
    """Face crops of a track, ``uint8[L,size,size,3]`` in the channel order of ``frames``."""
    import cv2

    s, x, y = crop_geometry(track.boxes)
    cs = crop_scale
    out = np.empty((len(track), size, size, frames.shape[3]), np.uint8)
    for k, fidx in enumerate(track.frames):
        bs = s[k]
        bsi = int(bs * (1 + 2 * cs))
        my, mx = y[k] + bsi, x[k] + bsi
        face = crop_window(
            frames[fidx],
            (int(my - bs), int(my + bs * (1 + 2 * cs))),
            (int(mx - bs * (1 + cs)), int(mx + bs * (1 + cs))),
            bsi,
        )
        out[k] = cv2.resize(face, (size, size))
    return out
