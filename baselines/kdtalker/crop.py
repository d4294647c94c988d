"""KDTalker's source crop: dlib HOG face + 68 landmarks, FFHQ-style quad, its bounding box, resize to 256.

This is the crop of KDTalker's ``dataset_process/croper.py`` (``Croper.crop(..., still=False, xsize=512)``)
followed by ``cv2.resize(crop, (256, 256))`` in ``inference.py``; it is *not* upstream LivePortrait's
InsightFace crop. Geometry, for the first dlib detection (upsample 1):

- eye centres from landmarks 36-41 / 42-47, mouth corners 48 and 54;
- ``x = eye_to_eye - flip(eye_to_mouth) * [-1, 1]`` normalised and scaled to
  ``max(2 |eye_to_eye|, 1.8 |eye_to_mouth|)``, ``y = flip(x) * [-1, 1]``,
  centre ``eye_avg + 0.1 eye_to_mouth``;
- if the quad is larger than 4x the 512 output (``shrink > 1``), the image is first resized by ``1/shrink``;
- a border crop around the quad (10 % of its size, at least 3 px), then the quad's axis-aligned box inside it
  (``+0.5``, clamped, truncated to int; the bottom edge is clamped with the image *width*, as upstream);
- bilinear resize (``cv2.INTER_LINEAR``) of that box to 256x256.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from kdbench.errors import ClipFailure

CROP_SIZE = 256          # LivePortrait input
QUAD_OUTPUT_SIZE = 512   # KDTalker's ``xsize``: only sets when the image is shrunk first
NO_FACE = "no face found in the reference image"


@dataclass
class SourceCrop:
    """The LivePortrait input crop of a reference image.

    img256: uint8[256,256,3] RGB. M_c2o: float64[3,3] affine map of crop pixel coordinates (x, y, 1) to
    original-image pixel coordinates (pixel centres at integers). box: (x0, y0, x1, y1) of the cropped region
    in the original image, pixels. landmarks: float64[68,2] dlib landmarks (x, y) in the original image.
    """

    img256: np.ndarray
    M_c2o: np.ndarray
    box: tuple[float, float, float, float]
    landmarks: np.ndarray


@dataclass(frozen=True)
class CropGeometry:
    """Integer geometry of the crop in the (possibly shrunk) image, as KDTalker's ``Croper`` computes it.

    rsize: (width, height) the image is resized to first (its own size unless shrunk).
    border_box: (x0, y0, x1, y1) border crop. quad_box: (lx, ly, rx, ry) of the quad box relative to
    border_box (before slicing clamps).
    """

    rsize: tuple[int, int]
    border_box: tuple[int, int, int, int]
    quad_box: tuple[int, int, int, int]


def ffhq_quad(lm: np.ndarray) -> tuple[np.ndarray, float]:
    """FFHQ quad from 68 landmarks float[68,2] (x, y): corners float[4,2] and its side length (pixels)."""
    lm = np.asarray(lm, dtype=np.float64)
    eye_left = np.mean(lm[36:42], axis=0)
    eye_right = np.mean(lm[42:48], axis=0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    return quad, float(np.hypot(*x) * 2)


def crop_geometry(lm: np.ndarray, width: int, height: int,
                  output_size: int = QUAD_OUTPUT_SIZE) -> CropGeometry:
    """KDTalker's ``Croper.align_face`` box arithmetic for an image of ``width`` x ``height`` pixels."""
    quad, qsize = ffhq_quad(lm)
    shrink = int(np.floor(qsize / output_size * 0.5))
    if shrink > 1:
        rsize = (int(np.rint(float(width) / shrink)), int(np.rint(float(height) / shrink)))
        quad = quad / shrink
        qsize /= shrink
    else:
        rsize = (int(np.rint(float(width))), int(np.rint(float(height))))
    w, h = rsize
    border = max(int(np.rint(qsize * 0.1)), 3)
    box = (int(np.floor(min(quad[:, 0]))), int(np.floor(min(quad[:, 1]))), int(np.ceil(max(quad[:, 0]))),
           int(np.ceil(max(quad[:, 1]))))
    box = (max(box[0] - border, 0), max(box[1] - border, 0), min(box[2] + border, w), min(box[3] + border, h))
    if box[2] - box[0] < w or box[3] - box[1] < h:
        quad = quad - np.asarray(box[0:2], dtype=np.float64)
    q = (quad + 0.5).flatten()
    lx = max(min(q[0], q[2]), 0)
    ly = max(min(q[1], q[7]), 0)
    rx = min(max(q[4], q[6]), w)
    ry = min(max(q[3], q[5]), w)   # sic: upstream clamps the bottom edge with the image width
    return CropGeometry(rsize=rsize, border_box=box, quad_box=(int(lx), int(ly), int(rx), int(ry)))


def _slice_bounds(start: int, stop: int, n: int) -> tuple[int, int]:
    """Python slice ``[start:stop]`` bounds on a length-``n`` axis (handles negatives and clamping)."""
    s, e, _ = slice(start, stop).indices(n)
    return s, max(s, e)


def apply_crop(image: np.ndarray, geo: CropGeometry) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Cut and resize: image uint8[H,W,3] -> (img256 uint8[256,256,3], M_c2o float64[3,3], box)."""
    import cv2

    h0, w0 = image.shape[:2]
    w, h = geo.rsize
    img = cv2.resize(image, (w, h)) if (w, h) != (w0, h0) else image
    bx0, by0, bx1, by1 = geo.border_box
    ys, ye = _slice_bounds(by0, by1, h)
    xs, xe = _slice_bounds(bx0, bx1, w)
    lx, ly, rx, ry = geo.quad_box
    ys2, ye2 = _slice_bounds(ly, ry, ye - ys)
    xs2, xe2 = _slice_bounds(lx, rx, xe - xs)
    if ye2 - ys2 < 2 or xe2 - xs2 < 2:
        raise ClipFailure(f"face crop is degenerate ({xe2 - xs2}x{ye2 - ys2} px) in the reference image")
    x0, y0 = xs + xs2, ys + ys2
    cw, ch = xe2 - xs2, ye2 - ys2
    img256 = cv2.resize(np.ascontiguousarray(img[y0:y0 + ch, x0:x0 + cw]), (CROP_SIZE, CROP_SIZE))
    # crop pixel u -> resized-image pixel (u + 0.5) * cw / 256 - 0.5 + x0 -> original pixel via w0 / w
    sx, sy = cw / CROP_SIZE, ch / CROP_SIZE
    to_resized = np.array([[sx, 0, 0.5 * sx - 0.5 + x0], [0, sy, 0.5 * sy - 0.5 + y0], [0, 0, 1]])
    kx, ky = w0 / w, h0 / h
    to_orig = np.array([[kx, 0, 0.5 * kx - 0.5], [0, ky, 0.5 * ky - 0.5], [0, 0, 1]])
    box = (x0 * kx, y0 * ky, (x0 + cw) * kx, (y0 + ch) * ky)
    return img256, to_orig @ to_resized, box


@functools.lru_cache(maxsize=4)
def _dlib_models(predictor_path: str) -> tuple[Any, Any]:
    import dlib

    return dlib.get_frontal_face_detector(), dlib.shape_predictor(predictor_path)


def detect_landmarks(image: np.ndarray, predictor_path: str) -> np.ndarray | None:
    """68 dlib landmarks float64[68,2] (x, y) of the first HOG detection (upsample 1), or None."""
    detector, predictor = _dlib_models(str(predictor_path))
    dets = detector(image, 1)
    if len(dets) == 0:
        return None
    shape = predictor(image, dets[0])
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


def crop_source(image: np.ndarray, weights: Any) -> SourceCrop:
    """KDTalker's source crop of a reference image uint8[H,W,3] RGB.

    ``weights``: a :class:`kdbench.weights.WeightsManager` (entry ``shape_predictor_68``). Raises
    ``ClipFailure("no face found in the reference image")`` when dlib detects no face.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"reference image must be uint8[H,W,3] RGB, got {image.dtype}{list(image.shape)}")
    image = np.ascontiguousarray(image)
    lm = detect_landmarks(image, str(weights.path("shape_predictor_68")))
    if lm is None:
        raise ClipFailure(NO_FACE)
    geo = crop_geometry(lm, image.shape[1], image.shape[0])
    img256, m_c2o, box = apply_crop(image, geo)
    return SourceCrop(img256=img256, M_c2o=m_c2o, box=box, landmarks=lm)
