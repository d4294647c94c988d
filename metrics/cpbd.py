"""CPBD: Cumulative Probability of Blur Detection (Narvekar & Karam 2011), as python-cpbd computes it.

A vectorised re-implementation of ``cpbd.compute`` (PyPI ``cpbd`` 1.0.7 / ``cpbd-py312``, a port of the
ASU MATLAB ``CPBDM_Release_v1.0``) that returns the *same float* as the reference, without its
per-pixel Python loops (about 0.5 s per 512x512 frame there).

Pipeline for one greyscale image ``I`` (float64, 0-255 scale, not normalised), each step a pure function:

1. :func:`canny_edges` - ``skimage.feature.canny(I)`` with its defaults (sigma 1, absolute thresholds
   0.1 / 0.2 on the 0-255-scale gradient); only used to classify 64x64 blocks.
2. :func:`sobel_edges` - the Octave-style Sobel of python-cpbd: squared horizontal derivative, cut at
   ``2*sqrt(mean)``, simple thinning (vertical edges only).
3. :func:`marziliano_widths` - edge widths along rows for edge pixels whose quantised gradient angle is
   0 or +-180 degrees (extent of the monotone intensity run on each side, at most 101 pixels a side).
4. :func:`sharpness_from_maps` - per full 64x64 edge block (> 0.2 % Canny pixels): just-noticeable
   width 5 (contrast <= 50) or 3, ``P = 1 - exp(-(w/JNB)^3.6)``, histogram of ``round(100 P)``;
   CPBD = fraction of edge pixels with bin <= 63.

The metric: frames -> grey (PIL ``convert("L")`` rule, see :func:`rgb_to_grey`) -> optional resize to
the fixed evaluation size -> CPBD per frame -> mean over frames -> mean over clips.

Grey conversion (option ``grey``). python-cpbd's ``compute`` takes the grey image as given and uses absolute
thresholds, so the scale matters. ``pil`` (default): Pillow ``convert("L")``, uint8 0-255 — python-cpbd's own
usage (its README reads images with ``imread(..., mode='L')``; its LIVE comparison CSVs were computed on PIL grey),
and what talking-head evaluation scripts do. On HDTF it gives values in the range of the KDTalker paper's Real
Video CPBD (0.353; hdtf-mini's real clip: 0.395). ``skimage``: ``skimage.color.rgb2gray`` in [0, 1], what the
``cpbd-py312`` README shows; Canny thresholds and block contrasts then mean something else and the values are
much higher (about 0.87 on the same HDTF frames), far from every published CPBD of HDTF ground truth.

Resizing: frames that are not at ``size`` are resized (Pillow bicubic) first; the reference never resizes. Each
clip record says so (``resized``) and the aggregate counts such clips and carries a note for the report.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from kdbench.metric import Metric, MetricInfo, Output
from kdbench.options import Range
from kdbench.registry import register_metric

THRESHOLD = 0.002
"""Fraction of Canny pixels above which a block is an edge block."""
BETA = 3.6
"""Exponent of the blur-detection probability."""
BLOCK = 64
"""Block side (pixels); only full blocks are used."""
MAX_MARGIN = 100
"""A one-sided edge width is at most ``MAX_MARGIN + 1`` pixels."""
WIDTH_JNB = np.concatenate([5 * np.ones(51), 3 * np.ones(205)])
"""Just-noticeable blur width by block contrast (0..255)."""
SHARP_BINS = 64
"""CPBD sums histogram bins 0..63 (P_blur <= 0.635)."""


# --------------------------------------------------------------------------------------------------
# Pre-processing
# --------------------------------------------------------------------------------------------------
def rgb_to_grey(frames: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma exactly as Pillow's ``Image.convert("L")`` computes it.

    ``frames``: uint8[..., 3] RGB. Returns uint8[...]: ``(19595 R + 38470 G + 7471 B + 32768) >> 16``.
    """
    if frames.dtype != np.uint8 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8[..., 3] RGB, got {frames.dtype}{list(frames.shape)}")
    f = frames.astype(np.uint32)
    y = (f[..., 0] * 19595 + f[..., 1] * 38470 + f[..., 2] * 7471 + 0x8000) >> 16
    return y.astype(np.uint8)


def rgb_to_grey_skimage(frame: np.ndarray) -> np.ndarray:
    """``skimage.color.rgb2gray``: ``uint8[H,W,3]`` RGB -> ``float64[H,W]`` in [0, 1] (the cpbd-py312 README)."""
    from skimage.color import rgb2gray

    return rgb2gray(frame)


MAX_WORKERS = 256
"""Largest ``workers`` accepted (a value beyond the machine's cores only adds processes)."""

GREY_RULES = {
    "pil": "pillow-L (19595 R + 38470 G + 7471 B + 32768) >> 16, uint8 0-255",
    "skimage": "skimage.color.rgb2gray, float64 0-1",
}


def resize_grey(grey: np.ndarray, size: int) -> np.ndarray:
    """Resize one grey image (uint8, or float as Pillow mode F) to [size,size] with Pillow bicubic (no-op if
    already so); the dtype is kept."""
    if grey.shape == (size, size):
        return grey
    from PIL import Image

    if grey.dtype == np.uint8:
        return np.asarray(Image.fromarray(grey, mode="L").resize((size, size), Image.BICUBIC))
    img = Image.fromarray(grey.astype(np.float32), mode="F").resize((size, size), Image.BICUBIC)
    return np.asarray(img).astype(grey.dtype)


# --------------------------------------------------------------------------------------------------
# Edge maps
# --------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _canny_bleed_over(shape: tuple[int, int]) -> np.ndarray:
    """Gaussian of an all-ones image (mode constant) + eps: skimage canny's border renormaliser."""
    import scipy.ndimage as ndi

    out = ndi.gaussian_filter(np.ones(shape), 1.0, mode="constant", cval=0.0, truncate=4.0)
    out += np.finfo(np.float64).eps
    out.setflags(write=False)
    return out


def canny_edges(image: np.ndarray) -> np.ndarray:
    """bool[H,W]: ``skimage.feature.canny(image)`` with default arguments, on the float64 0-255 image.

    Same steps and primitives as scikit-image (Gaussian sigma 1 mode constant renormalised by the
    blurred all-ones mask, ndimage Sobel, skimage's bilinear non-maximum suppression, hysteresis 0.1/0.2
    with 8-connectivity); the image-independent mask blur is cached per shape. Falls back to
    ``skimage.feature.canny`` if skimage's private NMS kernel is not importable.
    """
    try:
        from skimage.feature._canny_cy import _nonmaximum_suppression_bilinear
    except ImportError:  # pragma: no cover - other scikit-image layouts
        from skimage.feature import canny

        return canny(image)
    import scipy.ndimage as ndi

    smoothed = ndi.gaussian_filter(image, 1.0, mode="constant", cval=0.0, truncate=4.0)
    smoothed /= _canny_bleed_over(image.shape)
    jsobel = ndi.sobel(smoothed, axis=1)
    isobel = ndi.sobel(smoothed, axis=0)
    magnitude = isobel * isobel
    magnitude += jsobel * jsobel
    np.sqrt(magnitude, out=magnitude)
    eroded = np.zeros(image.shape, dtype=bool)
    eroded[1:-1, 1:-1] = True
    low_masked = _nonmaximum_suppression_bilinear(isobel, jsobel, magnitude, eroded, 0.1)
    low_mask = low_masked > 0
    labels, count = ndi.label(low_mask, np.ones((3, 3), bool))
    if count == 0:
        return low_mask
    good = np.zeros(count + 1, bool)
    good[labels[low_mask & (low_masked >= 0.2)]] = True
    return good[labels]


def sobel_edges(image: np.ndarray, integer_valued: bool = False) -> np.ndarray:
    """bool[H,W]: python-cpbd's ``octave.sobel`` (vertical edges of the float64 0-255 image).

    ``S = convolve(I, h.T)^2`` with ``h = [[1,2,1],[0,0,0],[-1,-2,-1]] / 8`` (mode reflect); values
    ``<= 2 sqrt(mean(S))`` are zeroed; a pixel is kept if it beats both horizontal or both vertical
    neighbours (zeros outside the image). ``integer_valued``: the image holds small integers (e.g. from
    uint8), so the separable form - whose sums are then exact dyadic numbers - gives the same bits as
    the 3x3 convolution, several times faster.
    """
    import scipy.ndimage as ndi

    if integer_valued:
        p = np.pad(image, 1, mode="symmetric")  # = ndimage's "reflect" border
        v = p[:-2] + 2 * p[1:-1] + p[2:]
        g = (v[:, 2:] - v[:, :-2]) * 0.125
    else:
        h = np.array([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]])
        h /= np.sum(np.abs(h))
        g = ndi.convolve(image, h.T)
    s = np.square(g)
    s[s <= 2 * np.sqrt(np.mean(s))] = 0
    p = np.pad(s, 1)  # zero border
    c = p[1:-1, 1:-1]
    x = (c > p[1:-1, :-2]) & (c > p[1:-1, 2:])
    y = (c > p[:-2, 1:-1]) & (c > p[2:, 1:-1])
    return x | y


def _atan2_deg(gy: np.ndarray, gx: np.ndarray) -> np.ndarray:
    """``atan2(gy, gx) * 180/pi`` elementwise, with ``math.atan2`` wherever the last bit could matter.

    The reference calls ``math.atan2`` per pixel; only the 45-degree quantisation of the angle is used
    later, so values within 1e-9 of a quantisation boundary (angle/45 = k + 0.5) are recomputed with
    ``math.atan2`` to get the identical bucket.
    """
    ang = np.arctan2(gy, gx) * (180 / math.pi)
    q = ang / 45
    near = np.flatnonzero(np.abs(q - np.floor(q) - 0.5) < 1e-9)
    for i in near:
        ang.flat[i] = math.atan2(gy.flat[i], gx.flat[i]) * (180 / math.pi)
    return ang


def _any_angle(gy: np.ndarray, gx: np.ndarray) -> bool:
    """Whether python-cpbd's angle map has any non-zero entry, without computing it everywhere."""
    if np.isnan(gx).any() or np.isnan(gy).any():
        return True
    if np.any((gx == 0) & (gy == math.pi / 2)):
        return True  # the reference's 90-degree branch
    if np.any(gx < 0):
        return True  # atan2(y, x<0) is close to +-180 degrees
    m = (gx > 0) & (gy != 0)
    if not m.any():
        return False  # every angle is atan2(0, x>0) = 0 or the gx == 0 default 0
    gym, gxm = gy[m], gx[m]
    if np.any(np.abs(gym) >= np.abs(gxm) * 1e-300):
        return True  # atan2 of a ratio that does not underflow is non-zero
    return bool(np.any(np.arctan2(gym, gxm)))


def edge_angles(image: np.ndarray) -> np.ndarray:
    """float64[H,W]: gradient angle in degrees as python-cpbd computes it (full map, for tests).

    ``atan2(gy, gx) * 180/pi`` where ``gx != 0``; 90 where ``gx == 0 and gy == pi/2``; else 0 (so a
    purely vertical gradient counts as angle 0 - a quirk of the reference kept on purpose).
    """
    gy, gx = np.gradient(image)
    with np.errstate(invalid="ignore", divide="ignore"):
        ang = np.where(gx != 0, _atan2_deg(gy, gx), 0.0)
    ang[(gx == 0) & (gy == math.pi / 2)] = 90.0
    return ang


def marziliano_widths(edges: np.ndarray, image: np.ndarray) -> np.ndarray:
    """float64[H,W]: edge widths (0 where no width is measured), identical to ``marziliano_method``."""
    h, w = image.shape
    widths = np.zeros((h, w))
    flat, width = marziliano_edge_widths(edges, image)
    widths.flat[flat] = width
    return widths


def marziliano_edge_widths(edges: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edge widths of python-cpbd's ``marziliano_method`` as (flat pixel indices, float64 widths > 0).

    For an edge pixel (r, c) with 1 <= r <= H-2, 1 <= c <= W-2 and quantised angle
    q = 45 round(angle/45): q = +-180: the left run goes on while the intensity keeps increasing towards
    the left (``I[r,k-1] - I[r,k] > 0`` for k = c-1, c-2, ...), the right run while it keeps decreasing
    towards the right; q = 0: the same with the inequalities reversed. A side's width is (steps taken)
    + 1, at most 101, stopped at the image border; the width is the sum of both sides. Other angles: no
    width. Implemented with sorted "stop" positions and ``searchsorted`` instead of per-pixel walks.
    """
    h, w = image.shape
    empty = (np.zeros(0, np.int64), np.zeros(0))
    if h < 3 or w < 3:
        return empty
    gy, gx = np.gradient(image)
    if not _any_angle(gy, gx):
        return empty
    r_in, c_in = np.nonzero(edges[1:-1, 1:-1] == 1)
    flat = (r_in + 1) * w + (c_in + 1)  # interior edge pixels, row-major
    if flat.size == 0:
        return empty
    ex, ey = gx.flat[flat], gy.flat[flat]
    with np.errstate(invalid="ignore", divide="ignore"):
        ang = np.where(ex != 0, _atan2_deg(ey, ex), 0.0)
    ang[(ex == 0) & (ey == math.pi / 2)] = 90.0
    q = 45 * np.round(ang / 45)
    sel180 = (q == 180) | (q == -180)
    sel0 = q == 0
    keep = sel180 | sel0
    flat, sel180 = flat[keep], sel180[keep]
    if flat.size == 0:
        return empty

    # The walks only look at horizontal steps d[r, k] = I[r, k+1] - I[r, k] (k = 0..W-2).
    # q = +-180: the left walk stops at inner k when I[k-1] - I[k] <= 0, i.e. d[k-1] >= 0, or k = 0; the
    # right walk stops at inner k when I[k+1] - I[k] >= 0, i.e. d[k] >= 0, or k = W-1. So one boolean
    # row Q = [True, d >= 0, True] (length W+1) holds both: left stop at k <=> Q[k], right stop at
    # k <=> Q[k+1]. q = 0: the same with d <= 0. (NaN steps never stop a walk, as in the reference.)
    d = image[:, 1:] - image[:, :-1]
    rows, cols = np.divmod(flat, w)
    w1 = w + 1

    def walk(sel: np.ndarray, stop: np.ndarray) -> np.ndarray:
        q_rows = np.ones((h, w1), dtype=bool)
        q_rows[:, 1:w] = stop
        stops = np.flatnonzero(q_rows)  # sorted; each row starts and ends with a stop
        base, c = rows[sel] * w1, cols[sel]
        left = stops[np.searchsorted(stops, base + c - 1, side="right") - 1] - base  # last k <= c-1
        right = stops[np.searchsorted(stops, base + c + 2, side="left")] - base - 1  # first k >= c+1
        m_left = (c - 1) - left
        m_right = right - (c + 1)
        return (np.minimum(m_left, MAX_MARGIN) + 1 + np.minimum(m_right, MAX_MARGIN) + 1).astype(np.float64)

    width = np.empty(flat.size)
    if sel180.any():
        width[sel180] = walk(sel180, d >= 0)
    if (~sel180).any():
        width[~sel180] = walk(~sel180, d <= 0)
    return flat, width


# --------------------------------------------------------------------------------------------------
# Score
# --------------------------------------------------------------------------------------------------
def sharpness_from_edges(image: np.ndarray, canny: np.ndarray, flat: np.ndarray, width: np.ndarray) -> float:
    """CPBD from the image, its Canny map and its edge widths (``_calculate_sharpness_metric``).

    Only full 64x64 blocks count; a block is an edge block if more than 0.2 % of its pixels are Canny
    edges; its edge pixels with a width get ``P = 1 - exp(-(w/JNB)^3.6)`` with JNB 5 (block contrast
    ``int(max - min) <= 50``) or 3; CPBD = share of those pixels with ``round(100 P) <= 63``.
    """
    h, w = image.shape
    nby, nbx = int(h / BLOCK), int(w / BLOCK)
    if nby == 0 or nbx == 0:
        return 0.0
    hh, ww = nby * BLOCK, nbx * BLOCK
    counts = canny[:hh, :ww].reshape(nby, BLOCK, nbx, BLOCK).sum(axis=(1, 3), dtype=np.int64)
    edge_block = (counts > BLOCK * BLOCK * THRESHOLD).ravel()
    if not edge_block.any():
        return 0.0
    r, c = np.divmod(flat, w)
    inside = (r < hh) & (c < ww)
    block = (r[inside] // BLOCK) * nbx + c[inside] // BLOCK
    bw = width[inside]
    in_edge_block = edge_block[block]
    block, bw = block[in_edge_block], bw[in_edge_block]
    if bw.size == 0:
        return 0.0
    tiles = image[:hh, :ww].reshape(nby, BLOCK, nbx, BLOCK)
    contrast = (tiles.max(axis=(1, 3)) - tiles.min(axis=(1, 3))).ravel().astype(int)  # int() truncation
    jnb = WIDTH_JNB[contrast[edge_block]]  # IndexError for contrast > 255, as the reference
    jnb_of_block = np.zeros(nby * nbx)
    jnb_of_block[edge_block] = jnb
    prob = 1 - np.exp(-abs(bw / jnb_of_block[block]) ** BETA)
    buckets = np.rint(prob * 100).astype(np.int64)  # Python round() on floats: half to even
    hist = np.bincount(buckets, minlength=101).astype(np.float64)
    hist = hist / bw.size
    return float(np.sum(hist[:SHARP_BINS]))


def sharpness_from_maps(image: np.ndarray, canny: np.ndarray, widths: np.ndarray) -> float:
    """CPBD from the image, its Canny map and a full width map (the reference's interface)."""
    flat = np.flatnonzero(widths)
    return sharpness_from_edges(image, canny, flat, widths.flat[flat])


def cpbd(image: np.ndarray) -> float:
    """CPBD sharpness of one greyscale image ``float64/uint8[H,W]`` on the 0-255 scale (higher = sharper)."""
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"cpbd expects a 2-D greyscale image, got shape {image.shape}")
    small_ints = image.dtype in (np.uint8, np.int8, np.uint16, np.int16)
    image = image.astype(np.float64)
    flat, width = marziliano_edge_widths(sobel_edges(image, integer_valued=small_ints), image)
    return sharpness_from_edges(image, canny_edges(image), flat, width)


def sample_indices(n_frames: int, stride: int, max_frames: int | None) -> np.ndarray:
    """Indices of the frames scored: every ``stride``-th frame from 0, at most ``max_frames``."""
    idx = np.arange(0, n_frames, max(1, int(stride)))
    return idx if max_frames is None else idx[: int(max_frames)]


def cpbd_frames(frames: np.ndarray, size: int | None = None, grey: str = "pil") -> np.ndarray:
    """float64[T]: CPBD of each frame. ``frames``: uint8[T,H,W,3] RGB; ``size``: evaluation side or None;
    ``grey``: ``"pil"`` or ``"skimage"`` (see the module doc)."""
    if grey not in GREY_RULES:
        raise ValueError(f"grey must be one of {sorted(GREY_RULES)}, got {grey!r}")
    to_grey = rgb_to_grey if grey == "pil" else rgb_to_grey_skimage
    out = np.empty(len(frames))
    for i, frame in enumerate(frames):  # one frame at a time: bounded memory for long clips
        g = to_grey(frame)
        if size is not None:
            g = resize_grey(g, size)
        out[i] = cpbd(g)
    return out


# --------------------------------------------------------------------------------------------------
# Metric
# --------------------------------------------------------------------------------------------------
@register_metric("cpbd")
class CPBDMetric(Metric):
    """Per clip: mean CPBD over the sampled frames of the scored video; overall: mean over clips."""

    info = MetricInfo(
        name="cpbd",
        version="1",
        description=(
            "Cumulative probability of blur detection (no-reference sharpness), python-cpbd 1.0.7 algorithm "
            "vectorised (same value). Frames -> grey by Pillow's convert('L') rule (uint8, 0-255 scale) -> "
            "resized to size x size (Pillow bicubic) when they differ -> CPBD per frame; mean over frames, "
            "then over clips."
        ),
        outputs={
            "cpbd": Output(higher_is_better=True, unit="", range=(0.0, 1.0),
                           description="mean over sampled frames of the CPBD sharpness"),
        },
        needs_gt=False,
        reference="cpbd 1.0.7 (github 0x64746b/python-cpbd), compute.cpbd.compute; Narvekar & Karam, "
                  "IEEE TIP 2011",
        paper_column={"cpbd": "CPBD"},
    )
    option_types = {"size": (int, None), "max_frames": (int, None), "workers": (int, None)}
    option_ranges = {
        "size": Range(64, 8192),  # one full 64x64 block at least
        "stride": Range(1),
        "max_frames": Range(1),  # None: all
        "workers": Range(1, MAX_WORKERS),  # None: one per CPU core
        "grey": ("pil", "skimage"),
    }
    cpu_only = True  # numpy / dlib: recorded as device cpu whatever --device says
    default_options = {
        "size": 512,  # evaluation side (HDTF frame size); None keeps each video's own size
        "stride": 1,  # score every stride-th frame
        "max_frames": None,  # None: all sampled frames
        "workers": None,  # processes scoring frames in parallel; None: one per CPU core, 1: in this process
        "grey": "pil",  # "pil" (Pillow L, 0-255: python-cpbd's usage) | "skimage" (rgb2gray 0-1: cpbd-py312 README)
    }
    cpu_pool = True
    """Computes in its own worker processes: the evaluator runs it beside the GPU metrics (kdbench.evaluate)."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._pool = None
        if self.options["grey"] not in GREY_RULES:
            from kdbench.errors import KdbenchError

            raise KdbenchError(f"cpbd.grey must be one of {sorted(GREY_RULES)}, got {self.options['grey']!r}")

    def _workers(self) -> int:
        import os

        w = self.options["workers"]
        return max(1, int(w)) if w is not None else max(1, os.cpu_count() or 1)

    def _frames_values(self, frames: np.ndarray, size: int | None, grey: str = "pil") -> np.ndarray:
        """:func:`cpbd_frames` over worker processes, in order (the same values as one process)."""
        workers = min(self._workers(), len(frames))
        if workers <= 1:
            return cpbd_frames(frames, size, grey)
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        from kdbench.interrupt import pool_kwargs, starting_processes, stopping

        chunks = np.array_split(np.arange(len(frames)), workers * 2)
        chunks = [c for c in chunks if len(c)]
        for attempt in range(2):
            try:
                with starting_processes():  # SIGTERM/SIGINT end these workers too (kdbench.interrupt)
                    if self._pool is None:
                        self._pool = ProcessPoolExecutor(self._workers(), **pool_kwargs())
                    parts = self._pool.map(cpbd_frames, [frames[c] for c in chunks], [size] * len(chunks),
                                           [grey] * len(chunks))
                return np.concatenate(list(parts))
            except BrokenProcessPool:
                # the workers end with the thread that started them (kdbench.interrupt.die_with_parent): a pool
                # started by a thread that has ended is started again, once
                self._pool = None
                if attempt or stopping():
                    raise
        raise AssertionError("unreachable")

    def __del__(self):
        if getattr(self, "_pool", None) is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def score_clip(self, clip: Any) -> dict[str, Any]:
        frames = clip.frames
        idx = sample_indices(len(frames), self.options["stride"], self.options["max_frames"])
        if len(idx) == 0:
            from kdbench.errors import ClipFailure

            raise ClipFailure("no frame to score (empty video or max_frames=0)")
        size = self.options["size"]
        values = self._frames_values(frames[idx], size, self.options["grey"])
        h, w = frames.shape[1:3]
        return {
            "cpbd": float(np.mean(values)),
            "cpbd_std_frames": float(np.std(values)),
            "n_frames": int(len(values)),
            "frame_size": [int(h), int(w)],
            "eval_size": [int(size), int(size)] if size is not None else [int(h), int(w)],
            "resized": bool(size is not None and (h, w) != (size, size)),
            "grey": GREY_RULES[self.options["grey"]],
        }

    def aggregate(self, records: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Mean over clips, plus how many clips were resized before scoring (the reference never resizes)."""
        from kdbench.metric import summarize

        out = summarize([r.get("cpbd") for r in records.values()])
        resized = {tuple(r["frame_size"]) for r in records.values() if r.get("resized")}
        n_resized = sum(1 for r in records.values() if r.get("resized"))
        out |= {"n_resized": n_resized, "grey": GREY_RULES[self.options["grey"]]}
        if n_resized:
            sizes = ", ".join(f"{w}x{h}" for h, w in sorted(resized))
            size = self.options["size"]
            out["note"] = (f"{n_resized} of {len(records)} clip(s) resized from {sizes} to {size}x{size} (bicubic) "
                           "before CPBD; the reference scores frames at their own size")
        return {"cpbd": out}
