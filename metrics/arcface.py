"""insightface's face detection (SCRFD), 5-point alignment and ArcFace embedding, on onnxruntime.

The CSIM metric's network code, imported lazily by :mod:`metrics.csim`. It re-implements the
pipeline of insightface 0.7.3 (``FaceAnalysis(name="buffalo_l")``) step by step, on RGB frames:

1. detection (``model_zoo/scrfd.py`` / ``retinaface.py``): the image is resized, aspect kept, into
   the top-left corner of a zero ``det_size`` canvas, normalised ``(x - 127.5) / 128``; the network
   gives per stride (8, 16, 32) a score, box distances and 5 keypoint offsets per anchor; anchors
   with score >= ``det_thresh`` are decoded, sorted by score and thinned by NMS (IoU > 0.4 dropped);
2. alignment (``utils/face_align.py``): the least-squares similarity transform (Umeyama, computed by
   scikit-image exactly as insightface does) from the 5 keypoints to the ArcFace template, then
   ``cv2.warpAffine`` (bilinear, black border) to 112x112;
3. recognition (``model_zoo/arcface_onnx.py``): ``(x - 127.5) / 127.5`` RGB NCHW float32 -> 512-d
   embedding (mean/std come from the graph: 0/1 for MXNet-converted models, see
   :func:`input_normalisation`).

insightface works on BGR images and swaps channels in ``cv2.dnn.blobFromImage``; here images stay
RGB end to end, which gives the same network inputs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

#: ArcFace 5-point template for 112x112 crops (left eye, right eye, nose, left/right mouth corner),
#: image coordinates in pixels (insightface ``utils/face_align.py`` ``arcface_dst``).
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)

# --------------------------------------------------------------------------------------------------
# alignment


def alignment_template(image_size: int = 112) -> np.ndarray:
    """The 5-point template for a square crop of ``image_size`` px: ``float32[5,2]``.

    Sizes that are multiples of 112 scale the 112 template; multiples of 128 scale it by
    ``size/128`` and shift it right by ``8*size/128`` (insightface's rule).
    """
    if image_size % 112 == 0:
        ratio, shift_x = image_size / 112.0, 0.0
    elif image_size % 128 == 0:
        ratio = image_size / 128.0
        shift_x = 8.0 * ratio
    else:
        raise ValueError(f"alignment size must be a multiple of 112 or 128, got {image_size}")
    dst = ARCFACE_TEMPLATE * ratio
    dst[:, 0] += shift_x
    return dst


def estimate_norm(landmarks: np.ndarray, image_size: int = 112) -> np.ndarray:
    """Similarity transform (rotation, uniform scale, translation) mapping ``landmarks`` onto the template.

    Args:
        landmarks: ``float[5,2]`` keypoints (x, y) in image pixels, in template order.
    Returns:
        ``float64[2,3]`` affine matrix for ``cv2.warpAffine`` (least squares, Umeyama 1991).
    """
    from skimage.transform import SimilarityTransform

    landmarks = np.asarray(landmarks)
    if landmarks.shape != (5, 2):
        raise ValueError(f"expected 5 landmarks of shape (5, 2), got {landmarks.shape}")
    dst = alignment_template(image_size)
    if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26
        tform = SimilarityTransform.from_estimate(landmarks, dst)
        params = tform.params
    else:  # pragma: no cover - older scikit-image
        tform = SimilarityTransform()
        tform.estimate(landmarks, dst)
        params = tform.params
    return params[0:2, :]


def norm_crop(image: np.ndarray, landmarks: np.ndarray, image_size: int = 112) -> np.ndarray:
    """Aligned face crop: ``uint8[S,S,3]`` from ``image`` ``uint8[H,W,3]`` (any channel order).

    Bilinear ``cv2.warpAffine`` with a black border, as ``insightface.utils.face_align.norm_crop``.
    """
    matrix = estimate_norm(landmarks, image_size)
    return cv2.warpAffine(image, matrix, (image_size, image_size), borderValue=0.0)


# --------------------------------------------------------------------------------------------------
# network input


def normalise_images(images: np.ndarray, mean: float, std: float) -> np.ndarray:
    """``uint8[N,H,W,3]`` -> ``float32[N,3,H,W]`` holding ``(x - mean) / std`` (channel order kept).

    Computed like ``cv2.dnn.blobFromImages(images, 1/std, (W, H), (mean,)*3)``: subtract in float32,
    then multiply by the float32 ``1/std``.
    """
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:
        x = x[None]
    x = (x - np.float32(mean)) * np.float32(1.0 / std)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def input_normalisation(model_path: str | os.PathLike) -> tuple[float, float]:
    """``(mean, std)`` a recognition ONNX expects, by insightface's rule (``arcface_onnx.py``).

    A graph whose first 8 nodes include one named ``Sub*``/``_minus*`` and one ``Mul*``/``_mul*``
    normalises inside (MXNet conversion): ``(0, 1)``. Otherwise ``(127.5, 127.5)`` (w600k_r50).
    """
    import onnx

    nodes = onnx.load(str(model_path), load_external_data=False).graph.node[:8]
    has_sub = any(n.name.startswith(("Sub", "_minus")) for n in nodes)
    has_mul = any(n.name.startswith(("Mul", "_mul")) for n in nodes)
    return (0.0, 1.0) if has_sub and has_mul else (127.5, 127.5)


# --------------------------------------------------------------------------------------------------
# detection maths (SCRFD output decoding)


def letterbox(image: np.ndarray, det_size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """Resize ``image`` (aspect kept) into the top-left of a zero canvas of ``det_size = (W, H)``.

    Returns ``(canvas uint8[H,W,3], scale)`` where ``scale`` = canvas px per image px.
    """
    in_w, in_h = det_size
    im_ratio = float(image.shape[0]) / image.shape[1]
    model_ratio = float(in_h) / in_w
    if im_ratio > model_ratio:
        new_h = in_h
        new_w = int(new_h / im_ratio)
    else:
        new_w = in_w
        new_h = int(new_w * im_ratio)
    scale = float(new_h) / image.shape[0]
    canvas = np.zeros((in_h, in_w, 3), dtype=np.uint8)
    canvas[:new_h, :new_w, :] = cv2.resize(image, (new_w, new_h))
    return canvas, scale


def anchor_centers(height: int, width: int, stride: int, num_anchors: int) -> np.ndarray:
    """Anchor centres of one feature map, ``float32[height*width*num_anchors, 2]`` (x, y) in input px.

    Row-major over the map, each location repeated ``num_anchors`` times in a row.
    """
    centers = np.stack(np.mgrid[:height, :width][::-1], axis=-1).astype(np.float32)
    centers = (centers * stride).reshape((-1, 2))
    if num_anchors > 1:
        centers = np.stack([centers] * num_anchors, axis=1).reshape((-1, 2))
    return centers


def distance_to_boxes(centers: np.ndarray, distances: np.ndarray) -> np.ndarray:
    """(left, top, right, bottom) distances ``[N,4]`` from ``centers [N,2]`` -> boxes ``[N,4]`` x1y1x2y2."""
    return np.stack([centers[:, 0] - distances[:, 0], centers[:, 1] - distances[:, 1],
                     centers[:, 0] + distances[:, 2], centers[:, 1] + distances[:, 3]], axis=-1)


def distance_to_keypoints(centers: np.ndarray, distances: np.ndarray) -> np.ndarray:
    """Keypoint offsets ``[N,2K]`` (x0, y0, x1, y1, ...) from ``centers [N,2]`` -> points ``[N,K,2]``."""
    xs = centers[:, 0:1] + distances[:, 0::2]
    ys = centers[:, 1:2] + distances[:, 1::2]
    return np.stack([xs, ys], axis=-1)


@dataclass(frozen=True)
class ScrfdLayout:
    """How an SCRFD ONNX lays out its outputs: ``[scores..., boxes..., keypoints...]`` per stride."""

    strides: tuple[int, ...]
    num_anchors: int
    has_keypoints: bool

    @classmethod
    def from_num_outputs(cls, n: int) -> ScrfdLayout:
        layouts = {6: ((8, 16, 32), 2, False), 9: ((8, 16, 32), 2, True),
                   10: ((8, 16, 32, 64, 128), 1, False), 15: ((8, 16, 32, 64, 128), 1, True)}
        if n not in layouts:
            raise ValueError(f"not an SCRFD detector: {n} outputs (expected 6, 9, 10 or 15)")
        return cls(*layouts[n])


def decode_scrfd(outputs: list[np.ndarray], layout: ScrfdLayout, input_hw: tuple[int, int],
                 threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Candidate faces of one image from the raw network outputs (canvas pixel coordinates).

    Args:
        outputs: the session outputs, ``[N,1]`` scores, ``[N,4]`` box and ``[N,10]`` keypoint
            distances in stride units per stride (a leading batch axis of 1 is dropped).
        input_hw: canvas ``(H, W)`` fed to the network.
    Returns:
        ``scores float32[M,1]``, ``boxes float32[M,4]``, ``keypoints float32[M,5,2]`` (or None),
        the anchors with score >= ``threshold``, stride by stride.
    """
    n = len(layout.strides)
    scores_all, boxes_all, kps_all = [], [], []
    for i, stride in enumerate(layout.strides):
        def out(k: int) -> np.ndarray:
            a = outputs[k]
            return a[0] if a.ndim == 3 else a

        scores = out(i)
        box_dist = out(i + n) * stride
        centers = anchor_centers(input_hw[0] // stride, input_hw[1] // stride, stride, layout.num_anchors)
        pos = np.where(scores >= threshold)[0]
        scores_all.append(scores[pos])
        boxes_all.append(distance_to_boxes(centers, box_dist)[pos])
        if layout.has_keypoints:
            kps_dist = out(i + 2 * n) * stride
            kps_all.append(distance_to_keypoints(centers, kps_dist)[pos])
    kps = np.vstack(kps_all) if layout.has_keypoints else None
    return np.vstack(scores_all), np.vstack(boxes_all), kps


def nms(dets: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy non-maximum suppression on ``dets float[N,5]`` (x1, y1, x2, y2, score).

    Boxes overlapping a kept, higher-scoring box by IoU > ``iou_threshold`` are dropped; areas use
    the inclusive ``+1`` pixel convention of insightface. Returns kept row indices, best first.
    """
    x1, y1, x2, y2, scores = (dets[:, k] for k in range(5))
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep: list[int] = []
    while order.size > 0:
        i = order[0]
        keep.append(int(i))
        w = np.maximum(0.0, np.minimum(x2[i], x2[order[1:]]) - np.maximum(x1[i], x1[order[1:]]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[order[1:]]) - np.maximum(y1[i], y1[order[1:]]) + 1)
        inter = w * h
        iou = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[np.where(iou <= iou_threshold)[0] + 1]
    return keep


def postprocess(scores: np.ndarray, boxes: np.ndarray, keypoints: np.ndarray | None, scale: float,
                iou_threshold: float) -> tuple[np.ndarray, np.ndarray | None]:
    """Sort candidates by score, map them back to image px (divide by ``scale``), apply NMS.

    Returns ``dets float32[F,5]`` (x1, y1, x2, y2, score) and ``keypoints float32[F,5,2]``, best first
    (insightface ``detect(max_num=0)`` order).
    """
    order = scores.ravel().argsort()[::-1]
    boxes = boxes / scale
    dets = np.hstack((boxes, scores)).astype(np.float32, copy=False)[order, :]
    keep = nms(dets, iou_threshold)
    if keypoints is not None:
        keypoints = (keypoints / scale)[order][keep]
    return dets[keep, :], keypoints


# --------------------------------------------------------------------------------------------------
# onnxruntime models


def onnx_providers(device: str) -> list[str]:
    """onnxruntime providers for a torch-style device string: CUDA first when asked for and present."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    if device.startswith("cuda") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _session(path: str | os.PathLike, device: str):
    import onnxruntime

    providers = onnx_providers(device)
    if providers[0] == "CUDAExecutionProvider":
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        # IEEE fp32 as on the CPU (onnxruntime's CUDA provider allows TF32 by default; kdbench.numerics)
        cuda_options = {"device_id": index, "use_tf32": 0}
        provider_arg: list = [("CUDAExecutionProvider", cuda_options), "CPUExecutionProvider"]
    else:
        provider_arg = providers
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), sess_options=options, providers=provider_arg)


class ScrfdDetector:
    """SCRFD face detector (e.g. buffalo_l ``det_10g.onnx``) on RGB images."""

    def __init__(self, path: str | os.PathLike, det_size: tuple[int, int] = (640, 640),
                 det_thresh: float = 0.5, nms_thresh: float = 0.4, device: str = "cpu"):
        self.session = _session(path, device)
        self.input_name = self.session.get_inputs()[0].name
        shape = self.session.get_inputs()[0].shape
        fixed = None if isinstance(shape[2], str) or shape[2] is None else (int(shape[3]), int(shape[2]))
        # a graph with a fixed input size wins over det_size (insightface ignores det_size then)
        self.det_size = fixed or (int(det_size[0]), int(det_size[1]))
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.layout = ScrfdLayout.from_num_outputs(len(self.output_names))
        if not self.layout.has_keypoints:
            raise ValueError(f"{path}: this detector gives no keypoints; alignment needs the 5-point model")
        self.det_thresh = det_thresh
        self.nms_thresh = nms_thresh

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Faces in ``image uint8[H,W,3]`` RGB: ``dets float32[F,5]`` (box, score), ``kps float32[F,5,2]``."""
        canvas, scale = letterbox(image, self.det_size)
        blob = normalise_images(canvas, 127.5, 128.0)
        outputs = self.session.run(self.output_names, {self.input_name: blob})
        scores, boxes, kps = decode_scrfd(outputs, self.layout, canvas.shape[:2], self.det_thresh)
        dets, kps = postprocess(scores, boxes, kps, scale, self.nms_thresh)
        assert kps is not None
        return dets, kps


class ArcFaceRecognizer:
    """ArcFace recognition ONNX (e.g. buffalo_l ``w600k_r50.onnx``): aligned RGB crops -> embeddings."""

    def __init__(self, path: str | os.PathLike, device: str = "cpu", batch_size: int = 32):
        self.session = _session(path, device)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_size = int(inp.shape[2])
        if inp.shape[2] != inp.shape[3] or self.input_size % 16 or self.input_size < 112:
            raise ValueError(f"{path}: input {inp.shape} is not a square ArcFace input")
        # a fixed batch axis (e.g. 1) limits the batch size
        self.batch_size = int(inp.shape[0]) if isinstance(inp.shape[0], int) else batch_size
        self.output_name = self.session.get_outputs()[0].name
        self.mean, self.std = input_normalisation(path)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """Embeddings ``float32[N,D]`` (not normalised) of aligned crops ``uint8[N,S,S,3]`` RGB."""
        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[None]
        out = []
        for start in range(0, len(crops), self.batch_size):
            blob = normalise_images(crops[start:start + self.batch_size], self.mean, self.std)
            out.append(self.session.run([self.output_name], {self.input_name: blob})[0])
        return np.concatenate(out, axis=0).reshape(len(crops), -1) if out else np.zeros((0, 0), np.float32)


def pack_files(folder: str | os.PathLike, detector: str, recognizer: str) -> tuple[Path, Path]:
    """Paths of the detector and recognizer ONNX inside a model pack folder (e.g. extracted buffalo_l)."""
    folder = Path(folder)
    found = []
    for name in (detector, recognizer):
        p = folder / name
        if not p.is_file():
            have = sorted(x.name for x in folder.glob("*.onnx"))
            raise FileNotFoundError(f"{p} not found; the pack holds {have or 'no .onnx files'}")
        found.append(p)
    return found[0], found[1]
