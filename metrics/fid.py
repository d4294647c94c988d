"""FID: Frechet Inception Distance between generated frames and the GT frames of the same clips.

Protocol (recorded in every result, see :func:`fid_protocol`): **one pooled FID** over all frames of
all scored clips - the generated frames vs the GT frames of the same clips (Wav2Lip's "dump all frames
of both, run pytorch-fid"), both at the dataset frame size (a generated video of another size is
resized to its GT size, Pillow bicubic, and flagged). Features, statistics and the distance are
pytorch-fid 0.3.0's: the TF-ported Inception (``pt_inception``), input ``uint8 RGB / 255`` resized
bilinearly to 299x299, pool3 2048-d activations, float64 mean and ``np.cov``, and
``pytorch_fid.fid_score.calculate_frechet_distance`` (SciPy ``sqrtm``). kdbench feeds it decoded frames
in memory, batched on the device, instead of image files: the same numbers as pytorch-fid on the same
frames written losslessly as PNG.

FID is set-level (the scaffolding is :class:`metrics.frechet.FrechetMetric`'s): :meth:`FIDMetric.score_clip`
extracts a clip's activations (generated frames, and GT frames unless cached) and returns diagnostics;
:meth:`FIDMetric.aggregate` pools them and computes the distance. GT features are cached on disk under
``$KDBENCH_HOME/features/fid/<protocol key>/<manifest_id>/`` - per clip (keyed by clip id + GT file sha256, plus
``-vfr`` for a variable-frame-rate GT video, whose frames are resampled by timestamp:
:attr:`kdbench.clip.EvalClip.gt_frames`) and pooled (keyed by the set of clips) - where the protocol key hashes the
weights' sha256, the feature protocol and the device type. So each method only pays for its own frames.

Fewer than 2048 frames on either side: the value is computed but flagged (the 2048x2048 covariance is
rank-deficient, FID is biased upward and only comparable at equal N).

SciPy: pytorch-fid 0.3.0 calls ``scipy.linalg.sqrtm(..., disp=False)``; ``disp`` is removed in SciPy
1.18 (TypeError), and SciPy 1.11.2-1.12 has a ``sqrtm`` regression (large spurious imaginary parts,
pytorch-fid #100/#103). kdbench requires ``1.13 <= scipy < 1.18`` (:func:`check_scipy`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from kdbench.errors import ClipFailure
from kdbench.metric import MetricInfo, Output
from kdbench.options import Range, Text
from kdbench.registry import register_metric

from .frechet import SCIPY_RANGE as SCIPY_RANGE  # re-exported: tests and callers import these from metrics.fid
from .frechet import FrechetMetric, Statistics, Sufficient, sqrtm_disp_accepted
from .frechet import check_scipy as check_scipy
from .frechet import merge_sufficient_statistics as merge_sufficient_statistics
from .frechet import sufficient_statistics as sufficient_statistics
from .frechet import weights_sha256 as weights_sha256

WEIGHTS_NAME = "pt_inception"
MIN_FRAMES = 2048
"""Fewer samples than feature dimensions: rank-deficient covariance, flagged."""
PROTOCOL_NAME = "kdbench-fid/1"


# --------------------------------------------------------------------------------------------------
# Pure functions (arrays in, numbers out)
# --------------------------------------------------------------------------------------------------
def activation_statistics(act: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mu float64[D], sigma float64[D,D])`` of activations ``[N, D]``, as pytorch-fid computes them."""
    act = np.asarray(act, dtype=np.float64)
    return np.mean(act, axis=0), np.cov(act, rowvar=False)


def statistics_from_sufficient(n: int, total: np.ndarray, outer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mu, sigma)`` as :func:`activation_statistics` gives them (sample covariance, ddof=1), from sums."""
    mu = total / n
    sigma = (outer - n * np.outer(mu, mu)) / (n - 1)
    return mu, sigma


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """``|mu1 - mu2|^2 + tr(S1 + S2 - 2 sqrtm(S1 S2))`` by pytorch-fid's ``calculate_frechet_distance``."""
    with sqrtm_disp_accepted():
        from pytorch_fid.fid_score import calculate_frechet_distance

        return float(calculate_frechet_distance(mu1, sigma1, mu2, sigma2))


def fid_from_activations(gen: np.ndarray, real: np.ndarray) -> float:
    """FID between two activation sets ``[N1, D]`` and ``[N2, D]``."""
    return frechet_distance(*activation_statistics(gen), *activation_statistics(real))


def sample_indices(n_frames: int, stride: int, max_frames: int | None) -> np.ndarray:
    """Indices of the frames used: every ``stride``-th frame from 0, at most ``max_frames``."""
    idx = np.arange(0, n_frames, max(1, int(stride)))
    return idx if max_frames is None else idx[: int(max_frames)]


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8[T,H,W,3] -> uint8[T,height,width,3], Pillow bicubic (returned unchanged if already so)."""
    if frames.shape[1:3] == (height, width):
        return frames
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.BICUBIC)) for f in frames])


def fid_protocol(options: dict[str, Any], weights_sha256: str, device_type: str) -> dict[str, Any]:
    """Everything that defines the FID value, recorded with the result (and hashed for the GT cache)."""
    import pytorch_fid

    return {
        "name": PROTOCOL_NAME,
        "pooled": "one FID over all frames of all scored clips",
        "real_set": "GT frames of the same clips",
        "frame_size": "dataset (GT) frame size; generated frames of another size resized to it "
                      "(Pillow bicubic)",
        "frame_sampling": {"stride": int(options["stride"]), "max_frames": options["max_frames"]},
        "features": f"pytorch-fid {pytorch_fid.__version__} InceptionV3 pool3 (2048-d); uint8 RGB / 255, "
                    "bilinear 299x299 (align_corners=False, no antialias), 2x-1; in memory, no image files",
        "statistics": "float64 mean, np.cov(rowvar=False) (ddof=1)",
        "distance": "pytorch_fid.fid_score.calculate_frechet_distance (scipy.linalg.sqrtm)",
        "weights": {"name": WEIGHTS_NAME, "sha256": weights_sha256},
        "device_type": device_type,
    }


def protocol_key(protocol: dict[str, Any]) -> str:
    """Hex key of the parts of the protocol that change GT features."""
    keep = {k: protocol[k] for k in ("name", "frame_sampling", "features", "weights", "device_type")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def clip_set_key(items: list[tuple[str, str]]) -> str:
    """Hex key of a set of ``(clip_id, gt_sha256)`` pairs (order-independent)."""
    return hashlib.sha256(json.dumps(sorted(items)).encode()).hexdigest()[:16]


def _atomic_savez(path: Path, **arrays: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------------
# Metric
# --------------------------------------------------------------------------------------------------
@register_metric("fid")
class FIDMetric(FrechetMetric):
    """Pooled FID (pytorch-fid) of all generated frames vs the GT frames of the same clips."""

    weights_name = WEIGHTS_NAME

    info = MetricInfo(
        name="fid",
        version="1",
        description=(
            "Frechet Inception Distance, pytorch-fid 0.3.0 network and distance on decoded frames: one "
            "pooled FID over all frames of all clips, generated vs the GT frames of the same clips, both "
            "at the dataset frame size. Fewer than 2048 frames: computed and flagged."
        ),
        outputs={
            "fid": Output(higher_is_better=False, unit="", range=(0.0, float("inf")),
                          description="pooled FID over all frames of all scored clips (set-level)"),
        },
        needs_gt=True,
        weights=(WEIGHTS_NAME,),
        reference="pytorch-fid 0.3.0 (mseitzer/pytorch-fid), fid_score.calculate_frechet_distance",
        paper_column={"fid": "FID"},
    )
    option_types = {"max_frames": (int, None), "cache_dir": (str, None)}
    option_ranges = {
        "batch_size": Range(1, 4096),
        "stride": Range(1),
        "max_frames": Range(1),  # None: all
        "cache_dir": Text("a folder"),
    }
    default_options = {
        "batch_size": 50,  # frames per forward pass (pytorch-fid's default)
        "stride": 1,  # use every stride-th frame (generated and GT alike)
        "max_frames": None,  # None: all frames of each clip
        "cache": True,  # cache GT features on disk
        "cache_dir": None,  # None: $KDBENCH_HOME/features/fid
        "save_activations": False,  # write <run>/fid_activations.npz: the report's FID CI resamples clips from it
    }

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._gt_sha: dict[str, str] = {}  # clip id -> its GT file's sha256 (in the GT cache's keys)

    # -- set-up ------------------------------------------------------------------------------------
    def load_network(self, path: Path) -> Any:
        from .fid_inception import load_fid_inception

        return load_fid_inception(path, self.device)

    def make_protocol(self, weights_sha256: str, device_type: str) -> dict[str, Any]:
        return fid_protocol(self.options, weights_sha256, device_type)

    def _cache_root(self) -> Path | None:
        if not self.options["cache"]:
            return None
        if self.options["cache_dir"]:
            base = Path(self.options["cache_dir"])
        else:
            from kdbench.weights import kdbench_home

            base = kdbench_home() / "features" / "fid"
        manifest_id = str(getattr(self, "context", {}).get("manifest_id") or "no-manifest")
        return base / protocol_key(self.protocol) / manifest_id

    def activations(self, frames: np.ndarray) -> np.ndarray:
        """float32[T, 2048] pool3 activations of uint8[T,H,W,3] RGB frames (sampled per the options)."""
        self._load()
        from .fid_inception import inception_activations

        idx = sample_indices(len(frames), self.options["stride"], self.options["max_frames"])
        return inception_activations(frames[idx], self._model, self.device, self.options["batch_size"])

    # -- per clip ----------------------------------------------------------------------------------
    def score_clip(self, clip: Any) -> dict[str, Any]:
        spec = clip.spec
        if spec.gt_video is None:
            raise ClipFailure("FID needs the clip's GT video (real set = GT frames of the same clips); "
                              "this clip has none")
        self._load()
        gt_sha = spec.sha256.get("gt_video")
        if not gt_sha:
            from kdbench.files import sha256_file

            gt_sha = sha256_file(spec.gt_video)
        vfr = "-vfr" if getattr(clip, "gt_vfr", False) else ""  # not the file's frames as decoded: its own entry
        root = self._cache_root()
        cache_file = root / f"{clip.clip_id}.{gt_sha[:16]}{vfr}.npz" if root is not None else None
        gt_cached = cache_file is not None and cache_file.is_file()
        if gt_cached:
            with np.load(cache_file, allow_pickle=False) as z:
                gt_shape = tuple(int(v) for v in z["frame_shape"])
                n_gt = int(z["act"].shape[0])
            gt_act: np.ndarray | Path = cache_file
        else:
            gt_frames = clip.gt_frames
            gt_shape = tuple(gt_frames.shape[1:3])
            gt_act = self.activations(gt_frames)
            n_gt = len(gt_act)
            if cache_file is not None:
                _atomic_savez(cache_file, act=gt_act, frame_shape=np.array(gt_shape))

        frames = clip.frames
        size = tuple(frames.shape[1:3])
        resized = size != gt_shape
        if resized:
            frames = resize_frames(frames, *gt_shape)
        gen_act = self.activations(frames)
        if len(gen_act) == 0 or n_gt == 0:
            raise ClipFailure(f"no frames for FID (generated {len(gen_act)}, GT {n_gt})")

        self._gen[clip.clip_id] = gen_act
        self._gt[clip.clip_id] = gt_act
        self._gt_sha[clip.clip_id] = gt_sha + vfr
        return {
            "n_frames": int(len(gen_act)),
            "n_gt_frames": n_gt,
            "gt_cached": bool(gt_cached),
            "frame_size": [int(size[0]), int(size[1])],
            "gt_frame_size": [int(gt_shape[0]), int(gt_shape[1])],
            "resized": bool(resized),
        }

    # -- set level ---------------------------------------------------------------------------------
    def gt_features(self, clip_id: str) -> np.ndarray:
        """float32[N, 2048] GT activations of ``clip_id``: kept in ``_gt``, or read from the cache file kept there."""
        a = self._gt[clip_id]
        if isinstance(a, Path):
            with np.load(a, allow_pickle=False) as z:
                return z["act"]
        return a

    def statistics(self, sufficient: Sufficient) -> Statistics:
        return Statistics(*statistics_from_sufficient(*sufficient), int(sufficient[0]))

    def pool(self, parts: list[np.ndarray]) -> Statistics:
        """pytorch-fid's statistics (float64 mean, ``np.cov``) of the activations of all clips, concatenated."""
        act = np.concatenate(parts).astype(np.float64)
        return Statistics(*activation_statistics(act), len(act))

    def gt_statistics(self, ids: list[str]) -> tuple[Statistics, bool]:
        """Pooled GT statistics over ``ids``, cached per set of clips, and whether they came from the cache."""
        root = self._cache_root()
        key = clip_set_key([(cid, self._gt_sha[cid]) for cid in ids])
        path = root / f"pooled-{key}.npz" if root is not None else None
        if path is not None and path.is_file():
            with np.load(path, allow_pickle=False) as z:
                return Statistics(z["mu"], z["sigma"], int(z["n"])), True
        stats = self.pool([self.gt_features(cid) for cid in ids])
        if path is not None:
            _atomic_savez(path, mu=stats.mu, sigma=stats.sigma, n=np.array(stats.n), clips=np.array(sorted(ids)))
        return stats, False

    def distance(self, gen: Statistics, gt: Statistics) -> float:
        """:func:`frechet_distance` (pytorch-fid's; its ValueError, a large imaginary part of ``sqrtm``, goes into the
        aggregate's ``error``)."""
        return frechet_distance(gen.mu, gen.sigma, gt.mu, gt.sigma)

    # -- merged from other processes (Ray executor): the GT files' sha256 travel with the statistics ---------
    def export_state(self) -> dict[str, Any] | None:
        state = super().export_state()
        if state is not None:
            state["gt_sha"] = {cid: self._gt_sha[cid] for cid in state["ids"]}
        return state

    def merge_states(self, states: list[Any]) -> None:
        super().merge_states(states)
        for s in states:
            if s:
                self._gt_sha.update(s["gt_sha"])

    # -- aggregate ---------------------------------------------------------------------------------
    def summary(self, ids: list[str], records: dict[str, dict[str, Any]], gen: Statistics, gt: Statistics,
                gt_cached: bool) -> dict[str, Any]:
        flags = []
        if gen.n < MIN_FRAMES or gt.n < MIN_FRAMES:
            flags.append(f"fewer than {MIN_FRAMES} frames (generated {gen.n}, GT {gt.n}): the covariance "
                         "is rank-deficient and FID is biased upward; compare only values with equal frame "
                         "counts")
        if any(records[cid].get("resized") for cid in ids):
            flags.append("some generated videos were resized to the GT frame size")
        return {"n_frames_gen": int(gen.n), "n_frames_gt": int(gt.n), "gt_stats_cached": gt_cached, "flags": flags}

    def after_pooling(self, ids: list[str], flags: list[str]) -> None:
        """``save_activations``: write ``<run>/fid_activations.npz`` (or flag why not)."""
        if self.options.get("save_activations") and self._merged is not None:
            flags.append("save_activations: not saved (clips scored on Ray workers keep only sufficient statistics)")
        elif self.options.get("save_activations") and getattr(self, "context", {}).get("run_dir"):
            self._save_activations(Path(self.context["run_dir"]) / "fid_activations.npz", ids)

    def _save_activations(self, path: Path, ids: list[str]) -> None:
        """Per-clip activations for ``reports.fid_ci`` (layout in its docstring): float32, both sides."""
        gen = [self._gen[cid] for cid in ids]
        gt = [self.gt_features(cid) for cid in ids]
        _atomic_savez(path, clip_ids=np.array(ids), gen=np.concatenate(gen).astype(np.float32),
                      gen_offsets=np.cumsum([0] + [len(a) for a in gen]),
                      gt=np.concatenate(gt).astype(np.float32), gt_offsets=np.cumsum([0] + [len(a) for a in gt]))
