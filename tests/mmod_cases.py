"""The frames on which the PyTorch MMOD detector is checked against dlib (golden file and tests).

Every input is the real hdtf-mini material or made from it with integer/NumPy arithmetic only (no
OpenCV/PIL resampling), so the same bytes come out on every machine; the golden file records each
frame's sha256 and the tests refuse a golden made from other bytes.

- ``gt/<i>``: the 200 frames of ``gt/WDA_KatieHill_000.mp4`` (512x512), decoded by kdbench's PyAV reader;
- ``ref/<name>``: the three 256x256 reference PNGs;
- hard cases (:func:`hard_cases`): no face (black, noise), two faces side by side, a small face, a face
  cut by the border, a face rotated by 30 degrees, and ``crop128`` (a 128x128 face, cheap enough for
  live dlib in CI).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

GT_NAME = "WDA_KatieHill_000"
REF_NAMES = ("WDA_BenCardin1_000", "WRA_MarkwayneMullin_000", "WRA_MikeJohanns1_000")
# which upsampling each group is checked at (the protocol's is 1; 0 and 2 exercise the general path)
UPSAMPLES = {"gt": (1,), "ref": (0, 1), "hard": (0, 1), "crop128": (0, 1, 2)}


def sha256(frame: np.ndarray) -> str:
    """sha256 of a ``uint8[H,W,3]`` frame's bytes with its shape (``"HxW:"`` prefix)."""
    h = hashlib.sha256(f"{frame.shape[0]}x{frame.shape[1]}:".encode())
    h.update(np.ascontiguousarray(frame, dtype=np.uint8).data)
    return h.hexdigest()


def gt_frames(root: Path) -> np.ndarray:
    """``uint8[200,512,512,3]`` RGB frames of the hdtf-mini GT clip."""
    from kdbench.video import read_video

    return read_video(root / "gt" / f"{GT_NAME}.mp4")[0]


def ref_images(root: Path) -> dict[str, np.ndarray]:
    """The three reference images, ``uint8[256,256,3]`` RGB."""
    from PIL import Image

    return {n: np.asarray(Image.open(root / "ref" / f"{n}.png").convert("RGB")) for n in REF_NAMES}


def block_mean(img: np.ndarray, k: int) -> np.ndarray:
    """Integer box downscale by ``k`` (rounded half up): ``uint8[H,W,3]`` -> ``uint8[H//k,W//k,3]``."""
    h, w = img.shape[0] // k * k, img.shape[1] // k * k
    s = img[:h, :w].astype(np.int64).reshape(h // k, k, w // k, k, 3).sum(axis=(1, 3))
    return ((2 * s + k * k) // (2 * k * k)).astype(np.uint8)


def rotate_nearest(img: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate about the image centre by ``degrees`` (counter-clockwise), nearest neighbour, black outside."""
    h, w = img.shape[:2]
    a = np.deg2rad(degrees)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    # inverse map: destination pixel -> source pixel
    sx = np.cos(a) * (xx - cx) - np.sin(a) * (yy - cy) + cx
    sy = np.sin(a) * (xx - cx) + np.cos(a) * (yy - cy) + cy
    ix, iy = np.floor(sx + 0.5).astype(np.int64), np.floor(sy + 0.5).astype(np.int64)
    ok = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
    out = np.zeros_like(img)
    out[ok] = img[iy[ok], ix[ok]]
    return out


def hard_cases(gt0: np.ndarray, refs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Deterministic hard cases from GT frame 0 (512x512) and the reference images (256x256)."""
    r0, r1 = refs[REF_NAMES[0]], refs[REF_NAMES[1]]
    half = block_mean(gt0, 2)                                       # 256x256
    cases: dict[str, np.ndarray] = {}
    cases["blank"] = np.zeros((200, 240, 3), np.uint8)
    cases["noise"] = np.random.default_rng(13).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    cases["two_faces"] = np.concatenate([half, r1], axis=1)          # 256x512
    small = np.full((240, 320, 3), 96, np.uint8)                     # an 85x85 portrait on grey
    small[100:185, 40:125] = block_mean(r0, 3)
    cases["small_face"] = small
    border = np.zeros_like(half)                                     # face pushed to the top-left corner
    border[:-70, :-90] = half[70:, 90:]
    cases["border"] = border
    cases["rotated30"] = rotate_nearest(half, 30.0)
    cases["crop128"] = block_mean(r1, 2)                             # 128x128
    return cases


def all_inputs(root: Path) -> dict[str, np.ndarray]:
    """Every checked frame by name: ``gt/000``..``gt/199``, ``ref/<name>``, ``hard/<case>``, ``crop128``."""
    gt = gt_frames(root)
    refs = ref_images(root)
    out = {f"gt/{i:03d}": f for i, f in enumerate(gt)}
    out.update({f"ref/{n}": f for n, f in refs.items()})
    for k, v in hard_cases(gt[0], refs).items():
        out["crop128" if k == "crop128" else f"hard/{k}"] = v
    return out


def upsamples_for(name: str) -> tuple[int, ...]:
    """The upsampling values a named input is checked at."""
    return UPSAMPLES[name.split("/")[0]]
