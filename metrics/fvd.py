"""FVD: Fréchet Video Distance the StyleGAN-V way, between generated videos and the GT videos of the same clips.

Pipeline (the torch-fidelity shape of :mod:`metrics.frechet`): clips → I3D features → statistics → Fréchet distance.

* **Clips** (:func:`window_starts`, recorded in every result by :func:`fvd_protocol`): from each video, windows of
  ``num_frames`` (16) frames taken every ``subsample``-th frame (1: consecutive), the first starting at frame
  ``offset`` (0), the next ``stride`` frames later (default: right after the previous one), ``count`` windows per
  video (1; ``null``: as many as fit). The default is StyleGAN-V's ``fvd2048_16f`` clip protocol: **one window per
  video, its first 16 frames** — of a 200-frame clip, frames 0-15 (frames 16-199 are not used). The same windows
  are taken from the generated video and from the GT video of the clip. (StyleGAN-V's own ``calc_metrics_for_dataset``
  takes the generated videos' first 16 frames but draws the real videos' window at an unseeded random offset,
  ``random.randint(0, T - 16)``; kdbench uses offset 0 on both sides, deterministic and paired. ``count`` and
  ``stride`` give more windows: ``count=null`` with the default stride takes frames 0-15, 16-31, ..., 176-191 of a
  200-frame clip.) A video shorter than one window is a clip failure (StyleGAN-V discards it).
* **Features**: StyleGAN-V's ``i3d_torchscript.pt`` (Kinetics-400 I3D ported from ``tf.hub``), **loaded directly**
  with ``torch.jit.load`` and called as ``src/metrics/frechet_video_distance.py`` calls it:
  ``detector(x, rescale=True, resize=True, return_features=True)`` on ``x = uint8[B, 3, T, H, W]`` (the decoded RGB
  frames, as StyleGAN-V's dataset loads lossless PNG frames; each video at its own size, the network resizes to
  224x224 and rescales to [-1, 1]); the 400 pre-softmax logits, float32. No re-implementation of I3D.
* **Statistics**: StyleGAN-V's ``FeatureStats``: float64 sums ``n, Σx, Σxxᵀ`` (sufficient statistics, so workers'
  parts add up exactly), mean ``Σx / n`` and covariance ``Σxxᵀ / n - μμᵀ`` (**ddof 0**, unlike pytorch-fid's FID).
* **Distance**: ``compute_fvd``'s formula: ``|μg - μr|² + tr(Σg + Σr - 2 sqrtm(Σg Σr))`` with
  ``scipy.linalg.sqrtm(..., disp=False)`` and the real part of the total (same SciPy range as FID,
  :func:`metrics.frechet.check_scipy`).

FVD is set-level (one value over all scored clips; the scaffolding is :class:`metrics.frechet.FrechetMetric`'s): on
the Ray executor each worker exports its sufficient statistics and the driver adds them (:meth:`FVDMetric.export_state`
/ :meth:`FVDMetric.merge_states`). Fewer than 400 windows on a side: the 400x400 covariance is rank-deficient and FVD
is biased upward (flagged); StyleGAN-V's ``fvd2048_16f`` uses 2048 videos per side, so values are only comparable at
equal numbers of windows.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from kdbench.errors import ClipFailure, KdbenchError
from kdbench.metric import MetricInfo, Output
from kdbench.options import Range
from kdbench.registry import register_metric

from .frechet import FrechetMetric, Statistics, Sufficient, sqrtm_disp_accepted, sufficient_statistics

WEIGHTS_NAME = "i3d_torchscript"
PROTOCOL_NAME = "kdbench-fvd/1"
DETECTOR_KWARGS = {"rescale": True, "resize": True, "return_features": True}
"""StyleGAN-V ``compute_fvd``'s call: uint8 in, rescaled to [-1, 1] and resized to 224x224 by the network itself."""
FEATURE_DIM = 400
REFERENCE_VIDEOS = 2048
"""Videos per side in StyleGAN-V's ``fvd2048_16f``."""
EXAMPLE_FRAMES = 200
"""Clip length for which :func:`fvd_protocol` lists the windows (an HDTF clip of 8 s at 25 fps)."""


# --------------------------------------------------------------------------------------------------
# Pure functions (arrays in, numbers out)
# --------------------------------------------------------------------------------------------------
def window_starts(n_frames: int, num_frames: int = 16, subsample: int = 1, count: int | None = 1,
                  stride: int | None = None, offset: int = 0) -> list[int]:
    """First frame of each window of a ``n_frames``-frame video.

    A window is frames ``start, start + subsample, ..., start + (num_frames - 1) * subsample``. Windows start at
    ``offset``, then every ``stride`` frames (None: ``num_frames * subsample``, back to back); at most ``count``
    (None: all that fit). A video with fewer than ``num_frames * subsample`` frames has none (StyleGAN-V's
    ``discard_short_videos`` rule).
    """
    if n_frames < num_frames * subsample:
        return []
    step = num_frames * subsample if stride is None else stride
    last = n_frames - (num_frames - 1) * subsample - 1  # the last start whose window fits
    starts = []
    start = offset
    while start <= last and (count is None or len(starts) < count):
        starts.append(start)
        start += step
    return starts


def clip_windows(frames: np.ndarray, starts: list[int], num_frames: int = 16, subsample: int = 1) -> np.ndarray:
    """``uint8[N, 3, num_frames, H, W]`` (the detector's B, C, T, H, W layout, contiguous) of ``uint8[T, H, W, 3]``."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8[T,H,W,3] RGB frames, got {frames.dtype}{list(frames.shape)}")
    idx = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(num_frames) * subsample  # [W, T]
    return np.ascontiguousarray(frames[idx].transpose(0, 4, 1, 2, 3))


def statistics_from_sufficient(n: int, total: np.ndarray, outer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, covariance)`` as StyleGAN-V's ``FeatureStats.get_mean_cov``: ``Σx/n`` and ``Σxxᵀ/n - μμᵀ`` (ddof 0)."""
    mean = total / n
    cov = outer / n
    cov = cov - np.outer(mean, mean)
    return mean, cov


def feature_statistics(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mean float64[D], covariance float64[D, D])`` of float32 features ``[N, D]`` (StyleGAN-V's FeatureStats)."""
    return statistics_from_sufficient(*sufficient_statistics(np.asarray(feats, dtype=np.float32)))


def frechet_distance(mu_gen: np.ndarray, sigma_gen: np.ndarray, mu_real: np.ndarray, sigma_real: np.ndarray) -> float:
    """StyleGAN-V ``compute_fvd``: ``real(|μg - μr|² + tr(Σg + Σr - 2 sqrtm(Σg Σr)))``."""
    with sqrtm_disp_accepted():
        import scipy.linalg

        m = np.square(mu_gen - mu_real).sum()
        s, _ = scipy.linalg.sqrtm(np.dot(sigma_gen, sigma_real), disp=False)
    return float(np.real(m + np.trace(sigma_gen + sigma_real - s * 2)))


def fvd_from_features(gen: np.ndarray, real: np.ndarray) -> float:
    """FVD between I3D feature sets ``[N1, 400]`` (generated) and ``[N2, 400]`` (real)."""
    return frechet_distance(*feature_statistics(gen), *feature_statistics(real))


def windows_of(options: dict[str, Any], n_frames: int) -> list[int]:
    """:func:`window_starts` with a metric's options."""
    return window_starts(n_frames, int(options["num_frames"]), int(options["subsample"]), options["count"],
                         options["stride"], int(options["offset"]))


def fvd_protocol(options: dict[str, Any], weights_sha256: str, device_type: str) -> dict[str, Any]:
    """Everything that defines the FVD value, recorded with the result."""
    return {
        "name": PROTOCOL_NAME,
        "reference": "StyleGAN-V src/metrics/frechet_video_distance.py compute_fvd (fvd2048_16f clip protocol)",
        "real_set": "GT videos of the same clips, the same windows as the generated videos",
        "windows": {"num_frames": int(options["num_frames"]), "subsample": int(options["subsample"]),
                    "count": options["count"], "stride": options["stride"], "offset": int(options["offset"]),
                    f"starts_in_a_{EXAMPLE_FRAMES}_frame_clip": windows_of(options, EXAMPLE_FRAMES)},
        "short_videos": "fewer frames than one window: clip failure (StyleGAN-V discards them)",
        "features": "i3d_torchscript.pt loaded with torch.jit.load, detector(uint8[B,3,T,H,W], rescale=True, "
                    "resize=True, return_features=True): 400 pre-softmax logits; each video at its own size",
        "statistics": "float64 sums; mean and covariance with ddof 0 (StyleGAN-V FeatureStats.get_mean_cov)",
        "distance": "real(|mu_g - mu_r|^2 + tr(S_g + S_r - 2 sqrtm(S_g S_r))), scipy.linalg.sqrtm(disp=False)",
        "weights": {"name": WEIGHTS_NAME, "sha256": weights_sha256},
        "device_type": device_type,
    }


# --------------------------------------------------------------------------------------------------
# Network (torch imported lazily)
# --------------------------------------------------------------------------------------------------
def load_i3d(path: Any, device: str = "cpu") -> Any:
    """StyleGAN-V's TorchScript I3D from ``path``, in eval mode on ``device`` (as its ``get_feature_detector``)."""
    import torch

    with warnings.catch_warnings():  # torch >= 2.9 marks torch.jit as deprecated; the file is a TorchScript archive
        warnings.filterwarnings("ignore", category=FutureWarning)
        return torch.jit.load(str(path), map_location=device).eval()


def i3d_features(windows: np.ndarray, model: Any, device: str = "cpu", batch_size: int = 4) -> np.ndarray:
    """``float32[N, 400]`` I3D features of ``uint8[N, 3, T, H, W]`` windows, ``batch_size`` windows per call."""
    import torch

    out = []
    with torch.no_grad():
        for start in range(0, len(windows), max(1, int(batch_size))):
            x = torch.from_numpy(windows[start:start + batch_size]).to(device)
            out.append(np.asarray(model(x, **DETECTOR_KWARGS).cpu().numpy(), dtype=np.float32))
    feats = np.concatenate(out) if out else np.zeros((0, FEATURE_DIM), np.float32)
    if feats.ndim != 2:
        raise KdbenchError(f"the I3D returned features of shape {list(feats.shape)}, expected [N, {FEATURE_DIM}]")
    return feats


# --------------------------------------------------------------------------------------------------
# Metric
# --------------------------------------------------------------------------------------------------
@register_metric("fvd")
class FVDMetric(FrechetMetric):
    """Pooled FVD (StyleGAN-V's I3D, statistics and distance) of generated vs GT windows of the same clips."""

    weights_name = WEIGHTS_NAME
    sample_noun = "windows"
    distance_errors = (ValueError, np.linalg.LinAlgError)

    info = MetricInfo(
        name="fvd",
        version="1",
        description=(
            "Frechet Video Distance the StyleGAN-V way (i3d_torchscript.pt, rescale+resize to 224x224, 400 "
            "logits; ddof-0 statistics; compute_fvd's distance): one FVD over 16-frame windows of all clips, "
            "generated vs the same windows of the GT videos (default: each video's first 16 frames). Not in "
            "KDTalker's Table 1."
        ),
        outputs={
            "fvd": Output(higher_is_better=False, unit="", range=(0.0, float("inf")),
                          description="FVD over the windows of all scored clips (set-level)"),
        },
        needs_gt=True,
        weights=(WEIGHTS_NAME,),
        reference="StyleGAN-V (universome/stylegan-v) src/metrics/frechet_video_distance.py compute_fvd",
    )
    option_ranges: ClassVar[dict[str, Any]] = {
        "num_frames": Range(1, 4096), "subsample": Range(1, 1000), "count": Range(1), "stride": Range(1),
        "offset": Range(0), "batch_size": Range(1, 4096),
    }
    option_types = {"count": (int, None), "stride": (int, None)}
    default_options = {
        "num_frames": 16,  # frames per window (fvd2048_16f)
        "subsample": 1,  # take every subsample-th frame inside a window (StyleGAN-V's subsample_factor)
        "count": 1,  # windows per video; null: as many as fit
        "stride": None,  # frames from one window's start to the next's; null: num_frames * subsample (back to back)
        "offset": 0,  # first frame of the first window
        "batch_size": 4,  # windows per I3D call (StyleGAN-V: 64 frames // 16 at 512x512)
    }

    def load_network(self, path: Path) -> Any:
        return load_i3d(path, self.device)

    def make_protocol(self, weights_sha256: str, device_type: str) -> dict[str, Any]:
        return fvd_protocol(self.options, weights_sha256, device_type)

    def embed(self, windows: np.ndarray) -> np.ndarray:
        """``float32[N, 400]`` I3D features of ``uint8[N, 3, T, H, W]`` windows, ``batch_size`` per call."""
        self._load()
        return i3d_features(windows, self._model, self.device, int(self.options["batch_size"]))

    def windows(self, frames: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """(``uint8[W, 3, T, H, W]`` windows of a video per the options, their first frames)."""
        starts = windows_of(self.options, len(frames))
        return clip_windows(frames, starts, int(self.options["num_frames"]), int(self.options["subsample"])), starts

    def features(self, frames: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """(``float32[W, 400]`` features of the video's windows, the windows' first frames)."""
        windows, starts = self.windows(frames)
        return (self.embed(windows) if starts else np.zeros((0, FEATURE_DIM), np.float32)), starts

    # -- per clip ----------------------------------------------------------------------------------
    def score_clip(self, clip: Any) -> dict[str, Any]:
        if clip.spec.gt_video is None:
            raise ClipFailure("FVD needs the clip's GT video (real set = GT windows of the same clips); this clip "
                              "has none")
        self._load()
        need = int(self.options["num_frames"]) * int(self.options["subsample"])
        frames, gt_frames = clip.frames, clip.gt_frames
        for side, f in (("generated", frames), ("GT", gt_frames)):
            if len(f) < need:
                raise ClipFailure(f"the {side} video has {len(f)} frames; an FVD window needs {need} "
                                  f"(num_frames={self.options['num_frames']}, subsample={self.options['subsample']})")
        (gen_w, starts), (gt_w, gt_starts) = self.windows(frames), self.windows(gt_frames)
        if gen_w.shape[1:] == gt_w.shape[1:]:  # one batch of both sides' windows (fewer, fuller I3D calls)
            both = self.embed(np.concatenate([gen_w, gt_w]))
            gen, gt = both[:len(starts)], both[len(starts):]
        else:  # each video at its own size, as StyleGAN-V feeds them
            gen, gt = self.embed(gen_w), self.embed(gt_w)
        self._gen[clip.clip_id], self._gt[clip.clip_id] = gen, gt
        return {"n_windows": len(starts), "n_gt_windows": len(gt_starts), "window_starts": starts,
                "n_frames": int(len(frames)), "n_gt_frames": int(len(gt_frames)),
                "frame_size": [int(frames.shape[1]), int(frames.shape[2])],
                "gt_frame_size": [int(gt_frames.shape[1]), int(gt_frames.shape[2])]}

    # -- set level ---------------------------------------------------------------------------------
    def statistics(self, sufficient: Sufficient) -> Statistics:
        return Statistics(*statistics_from_sufficient(*sufficient), int(sufficient[0]))

    def distance(self, gen: Statistics, gt: Statistics) -> float:
        return frechet_distance(gen.mu, gen.sigma, gt.mu, gt.sigma)

    def summary(self, ids: list[str], records: dict[str, dict[str, Any]], gen: Statistics, gt: Statistics,
                gt_cached: bool) -> dict[str, Any]:
        n_gen, n_gt = gen.n, gt.n
        flags = []
        if min(n_gen, n_gt) <= FEATURE_DIM:
            flags.append(f"{min(n_gen, n_gt)} windows for {FEATURE_DIM} features (generated {n_gen}, GT {n_gt}): "
                         "the covariance is rank-deficient and FVD is biased upward")
        if min(n_gen, n_gt) < REFERENCE_VIDEOS:
            flags.append(f"fewer than StyleGAN-V's {REFERENCE_VIDEOS} videos per side: compare only values with "
                         "equal numbers of windows")
        return {"n_windows_gen": n_gen, "n_windows_gt": n_gt, "flags": flags}
