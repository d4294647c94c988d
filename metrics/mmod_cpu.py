"""The MMOD detector's image pre-processing on CPU as compiled loops (Numba), bit-identical to :mod:`metrics.mmod`.

:func:`metrics.mmod.resize_float` / :func:`~metrics.mmod.resize_rgb_u8` emulate dlib's ``resize_image`` with four
gathers per output plane, which costs more than half the detector's CPU time on a 512x512 frame (the tiled pyramid
of the upsampled 1025x1026 frame holds ~3.3M pixels). These kernels do the same float32/float64 arithmetic, in the
same order (no FMA contraction: Numba compiles without fast-math), once per output value, straight into the
channels-last canvas the network reads — one pass instead of eight. ``tests/test_mmod.py`` checks them against
``dlib.resize_image`` and the canvas against the torch path, to the bit.

Layout: images are ``[H, W, C]`` (RGB last), as decoded frames are; the canvas is ``float32[B, rows, cols, 3]``,
which ``torch.from_numpy(canvas).permute(0, 3, 1, 2)`` turns into the network's channels-last input without a copy.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

from .mmod_geometry import axis_plan, pyramid_up_size

F32 = np.float32


@njit(cache=True, nogil=True)
def _resize_into(src, dst, top, bot, rw0, rw1, left, right, cw0, cw1, n_simd, tail32, tail64, tb64, trunc_u8):
    """One ``resize_image`` of ``src[Hi,Wi,C]`` into ``dst[Ho,Wo,C]`` (float32 or uint8 views).

    Columns ``< n_simd``: dlib's SSE loop, ``((w0*tl + w1*tr) + w2*bl) + w3*br`` in float32 with each weight the
    float32 product of a row and a column factor. Later columns: the scalar loop — float planes blend the two rows
    in float32 and the columns in double; RGB (``trunc_u8``) blends everything in double. RGB results truncate.
    """
    ho, wo, nch = dst.shape
    one32 = F32(1.0)
    for r in range(ho):
        t, b = top[r], bot[r]
        a0, a1 = rw0[r], rw1[r]
        for c in range(n_simd):
            lc, rc = left[c], right[c]
            w0, w1, w2, w3 = a0 * cw0[c], a0 * cw1[c], a1 * cw0[c], a1 * cw1[c]
            for ch in range(nch):
                v = ((w0 * F32(src[t, lc, ch]) + w1 * F32(src[t, rc, ch])) + w2 * F32(src[b, lc, ch])) \
                    + w3 * F32(src[b, rc, ch])
                if trunc_u8:
                    dst[r, c, ch] = np.int32(v)
                else:
                    dst[r, c, ch] = v
        for c in range(n_simd, wo):
            lc, rc = left[c], right[c]
            fy = tb64[r]
            for ch in range(nch):
                if trunc_u8:
                    lr = tail64[c]
                    v64 = (1.0 - fy) * ((1.0 - lr) * np.float64(src[t, lc, ch]) + lr * np.float64(src[t, rc, ch])) \
                        + fy * ((1.0 - lr) * np.float64(src[b, lc, ch]) + lr * np.float64(src[b, rc, ch]))
                    dst[r, c, ch] = np.int32(v64)
                else:
                    lr32 = tail32[c]
                    up = (one32 - lr32) * src[t, lc, ch] + lr32 * src[t, rc, ch]
                    down = (one32 - lr32) * src[b, lc, ch] + lr32 * src[b, rc, ch]
                    dst[r, c, ch] = F32((1.0 - fy) * np.float64(up) + fy * np.float64(down))


@njit(cache=True, nogil=True)
def _normalise_into(src, dst, means):
    """Level 0 of the pyramid: ``(pixel - mean) / 256`` in float32, ``src: uint8[H,W,3]`` -> ``dst: float32[H,W,3]``."""
    h, w, nch = src.shape
    scale = F32(256.0)
    for r in range(h):
        for c in range(w):
            for ch in range(nch):
                dst[r, c, ch] = (F32(src[r, c, ch]) - means[ch]) / scale


def _resize(src: np.ndarray, dst: np.ndarray, plan) -> None:
    _resize_into(src, dst, *plan, dst.dtype == np.uint8)


def axis_weights(hin: int, win: int, hout: int, wout: int) -> tuple:
    """The per-axis indices and factors of one resize, as :class:`metrics.mmod._Plan` builds its weights."""
    top, bot, tb = axis_plan(hin, hout, False)
    left, right, lr32, lr64, n_simd = axis_plan(win, wout, True)
    rw0, rw1 = (1.0 - tb).astype(F32), tb.astype(F32)
    cw1 = lr32.copy()
    cw0 = (F32(1) - cw1).astype(F32)
    return top, bot, rw0, rw1, left, right, cw0, cw1, n_simd, lr32, lr64, tb


def resize_hwc(img: np.ndarray, hout: int, wout: int) -> np.ndarray:
    """dlib ``resize_image`` of ``img: float32[H,W]|[H,W,C]`` or ``uint8[H,W,3]`` -> same dtype ``[hout,wout,...]``."""
    src = img[:, :, None] if img.ndim == 2 else img
    dst = np.empty((hout, wout, src.shape[2]), dtype=img.dtype)
    _resize(src, dst, axis_weights(src.shape[0], src.shape[1], hout, wout))
    return dst[:, :, 0] if img.ndim == 2 else dst


def pyramid_canvas(frames: np.ndarray, upsample: int, rects: list[tuple[int, int, int, int]],
                   rows: int, cols: int, means: np.ndarray) -> np.ndarray:
    """The tiled pyramid canvas ``float32[B,rows,cols,3]`` of ``frames: uint8[B,H,W,3]`` RGB.

    ``upsample`` x ``pyramid_up`` (uint8), level 0 normalised into ``rects[0]``, each further level resized from
    the previous one inside the canvas; zeros elsewhere. ``rects`` / ``rows`` / ``cols`` come from
    :func:`metrics.mmod.tiled_pyramid_rects` of the upsampled size. Frames run on parallel threads (the
    kernels release the GIL), so a batch uses every core.
    """
    means = np.ascontiguousarray(means, dtype=F32).reshape(3)
    canvas = np.zeros((len(frames), rows, cols, 3), F32)
    plans: dict[tuple[int, int, int, int], tuple] = {}

    def plan(hi: int, wi: int, ho: int, wo: int) -> tuple:
        key = (hi, wi, ho, wo)
        if key not in plans:  # two threads may both make a plan: the same values, the last one kept
            plans[key] = axis_weights(*key)
        return plans[key]

    def one_frame(b: int) -> None:
        img = np.ascontiguousarray(frames[b])
        for _ in range(upsample):
            ho, wo = pyramid_up_size(img.shape[0], img.shape[1])
            up = np.empty((ho, wo, 3), np.uint8)
            _resize(img, up, plan(img.shape[0], img.shape[1], ho, wo))
            img = up
        prev = None
        for i, (l, t, r, bt) in enumerate(rects):
            dst = canvas[b, t:bt + 1, l:r + 1]
            if i == 0:
                _normalise_into(img, dst, means)
            else:
                _resize(prev, dst, plan(prev.shape[0], prev.shape[1], dst.shape[0], dst.shape[1]))
            prev = dst

    # the kernels release the GIL: one thread per frame, up to one per core (each frame's pixels are its own)
    threads = min(len(frames), os.cpu_count() or 1)
    if threads > 1:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one_frame, range(len(frames))))
    else:
        for b in range(len(frames)):
            one_frame(b)
    return canvas
