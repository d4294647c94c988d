"""The float64 geometry and resize sampling plans of dlib's MMOD detector, shared by the PyTorch port
(:mod:`metrics.mmod`) and its compiled CPU pre-processing (:mod:`metrics.mmod_cpu`).

Pure Python/NumPy: pyramid sizes, the tiled-pyramid layout, ``lround``, nearest-rectangle mapping, box overlap
and the per-axis sample positions of dlib's bilinear ``resize_image`` (see :mod:`metrics.mmod` for the sources).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

PYRAMID_N = 6  # input_rgb_image_pyramid<pyramid_down<6>>: part of the network's C++ type, not of the file
MIN_LEVEL_ROWS = 5  # compute_tiled_image_pyramid_details' min_height


# ------------------------------------------------------------------------------------------------
# Geometry (pure Python/NumPy float64, as dlib's double arithmetic)
# ------------------------------------------------------------------------------------------------
def lround(x: np.ndarray | float) -> np.ndarray:
    """``std::lround``: nearest integer, halves away from zero (exact for every float64) -> int64."""
    x = np.asarray(x, dtype=np.float64)
    t = np.trunc(x)
    frac = x - t  # exact
    return (t + np.where(np.abs(frac) >= 0.5, np.sign(x), 0.0)).astype(np.int64)


def pyramid_up_size(h: int, w: int) -> tuple[int, int]:
    """Size of ``pyramid_up`` (``pyramid_down<2>::rect_up`` of the image rectangle, lround-ed): (rows, cols)."""
    br_x, br_y = (w - 1 + 1.25) * 2, (h - 1 + 0.75) * 2
    return int(lround(br_y)) + 1, int(lround(br_x)) + 1


def tiled_pyramid_rects(nr: int, nc: int, padding: int, outer_padding: int,
                        n: int = PYRAMID_N) -> tuple[list[tuple[int, int, int, int]], int, int]:
    """``impl::compute_tiled_image_pyramid_details``: level rectangles ``(left, top, right, bottom)``
    (inclusive) in the tiled canvas, and the canvas size ``(rows, cols)``."""
    if nr * nc == 0:
        return [], 0, 0
    rate = (n - 1.0) / n
    sizes = [(nc, nr)]  # (width, height)
    while True:
        nr, nc = math.floor(rate * nr), math.floor(rate * nc)
        if nr * nc == 0 or nr < MIN_LEVEL_ROWS:
            break
        sizes.append((nc, nr))
    total_height = sum(h + padding for _, h in sizes) - padding * 2
    w0, h0 = sizes[0]
    height = prev_width = 0
    for w, h in sizes:
        if w <= w0 - prev_width - padding and (height - h0) * 2 >= (total_height - h0):
            break
        height += h + padding
        prev_width = w
    height -= padding
    canvas = (height + outer_padding * 2, w0 + outer_padding * 2)
    rects: list[tuple[int, int, int, int]] = []
    y = outer_padding
    i = 0
    while y < height + outer_padding and i < len(sizes):
        w, h = sizes[i]
        rects.append((outer_padding, y, outer_padding + w - 1, y + h - 1))
        y += h + padding
        i += 1
    y -= padding
    while i < len(sizes):
        w, h = sizes[i]
        p1 = (outer_padding + w0 - 1, y - 1)
        rect = (p1[0] - (w - 1), p1[1] - (h - 1), p1[0], p1[1])  # rectangle(p1, p1 - br_corner)
        r0 = rects[0]
        if not (max(r0[0], rect[0]) > min(r0[2], rect[2]) or max(r0[1], rect[1]) > min(r0[3], rect[3])):
            break  # would intersect the original image
        rects.append(rect)
        y -= h + padding
        i += 1
    return rects, canvas[0], canvas[1]


def nearest_rect(rects: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """dlib ``nearest_rect`` for integer points: first rectangle containing the point, else the nearest one
    (first of equals). ``rects: int[L,4]`` (l, t, r, b), ``px, py: int[N]`` -> ``int[N]``."""
    l, t, r, b = (rects[:, k][None, :].astype(np.float64) for k in range(4))
    x, y = px[:, None].astype(np.float64), py[:, None].astype(np.float64)
    inside = (x >= l) & (x <= r) & (y >= t) & (y <= b)
    nx, ny = np.clip(x, l, r), np.clip(y, t, b)
    dist = np.sqrt((nx - x) ** 2 + (ny - y) ** 2)
    first_inside = np.where(inside.any(axis=1), inside.argmax(axis=1), -1)
    return np.where(first_inside >= 0, first_inside, dist.argmin(axis=1))


def box_overlaps(kept: np.ndarray, box: np.ndarray, iou: float, covered: float) -> bool:
    """``test_box_overlap(iou, covered)(k, box)`` true for any row ``k`` of ``kept: int[K,4]`` (inclusive boxes)."""
    if len(kept) == 0:
        return False

    def area(l, t, r, b):
        return np.where((r < l) | (b < t), 0, (r - l + 1) * (b - t + 1)).astype(np.float64)

    il, it = np.maximum(kept[:, 0], box[0]), np.maximum(kept[:, 1], box[1])
    ir, ib = np.minimum(kept[:, 2], box[2]), np.minimum(kept[:, 3], box[3])
    inner = area(il, it, ir, ib)
    outer = area(np.minimum(kept[:, 0], box[0]), np.minimum(kept[:, 1], box[1]),
                 np.maximum(kept[:, 2], box[2]), np.maximum(kept[:, 3], box[3]))
    a_k = area(kept[:, 0], kept[:, 1], kept[:, 2], kept[:, 3])
    a_b = area(*box)
    with np.errstate(divide="ignore", invalid="ignore"):
        hit = (inner != 0) & ((inner / outer > iou) | (inner / a_k > covered) | (inner / a_b > covered))
    return bool(hit.any())


# ------------------------------------------------------------------------------------------------
# dlib's bilinear resize_image, emulated to the operation
# ------------------------------------------------------------------------------------------------
@lru_cache(maxsize=256)
def axis_plan(n_in: int, n_out: int, columns: bool) -> tuple:
    """Sample positions of dlib's ``resize_image`` along one axis.

    Rows (``columns=False``): ``y`` accumulated in double (``y += y_scale``) -> ``(top, bottom, frac64)``.
    Columns: the SSE loop's float32 positions (``_x += 4 * x_scale``, truncated to int32) for the first
    ``n_simd`` columns, then the scalar loop in double -> ``(left, right, frac32, frac64, n_simd)``
    (``frac32`` is the float32 fraction each loop uses: float in the SSE loop, ``float(x - left)`` after).
    """
    scale = (n_in - 1) / float(max(n_out - 1, 1))
    if not columns:
        top = np.empty(n_out, np.int64)
        frac = np.empty(n_out, np.float64)
        y = -scale
        for r in range(n_out):
            y += scale
            top[r] = math.floor(y)
            frac[r] = y - top[r]
        return top, np.minimum(top + 1, n_in - 1), frac
    left = np.empty(n_out, np.int64)
    f32 = np.empty(n_out, np.float32)
    f64 = np.empty(n_out, np.float64)
    x = -4 * scale
    xv = np.array([x, x + scale, x + 2 * scale, x + 3 * scale], dtype=np.float32)
    step = np.float32(4 * scale)
    c = 0
    while True:
        xv = (xv + step).astype(np.float32)
        lv = np.trunc(xv).astype(np.int64)  # _mm_cvttps_epi32
        if lv[3] + 1 >= n_in:
            break
        if c + 4 > n_out:
            raise AssertionError("dlib's SSE resize would write past the row end here")
        left[c:c + 4] = lv
        f32[c:c + 4] = xv - lv.astype(np.float32)
        f64[c:c + 4] = f32[c:c + 4]
        c += 4
    n_simd = c
    x = -scale + c * scale
    for cc in range(c, n_out):
        x += scale
        left[cc] = math.floor(x)
        f64[cc] = x - left[cc]
        f32[cc] = np.float32(f64[cc])
    return left, np.minimum(left + 1, n_in - 1), f32, f64, n_simd
