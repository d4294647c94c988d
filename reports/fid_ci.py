"""FID's uncertainty by resampling clips (FID is pooled over frames, so it has no per-clip values).

Needs the run's per-clip Inception activations, ``<run folder>/fid_activations.npz`` (written by the FID
metric with ``kdbench eval --set fid.save_activations=true``): ``clip_ids`` str[C], ``gen`` float32[N,D]
with ``gen_offsets`` int64[C+1] (clip c's generated frames are ``gen[gen_offsets[c]:gen_offsets[c+1]]``),
and ``gt``/``gt_offsets`` likewise for the GT frames of the same clips.

A bootstrap resample draws C clips with replacement and pools their generated and their GT frames (a
clip drawn twice counts twice), exactly as :meth:`metrics.fid.FIDMetric.aggregate` pools the clips
of a run; the distance is :func:`metrics.fid.frechet_distance` (pytorch-fid's). The pooled mean and
covariance of a resample come from per-clip sums (``sum x`` float64[D], ``sum x x^T`` float64[D,D]),
so a resample costs one D x D matrix square root (about a second at D = 2048 on a CPU core): FID uses
at most :data:`MAX_RESAMPLES` resamples, stated in the caption.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import stats

ACTIVATIONS_FILE = "fid_activations.npz"
MAX_RESAMPLES = 200
"""FID resamples at most (each one is a 2048 x 2048 matrix square root)."""
MAX_BYTES = 2 << 30
"""Memory cap for the per-clip second-moment matrices (C x D x D float64 per side)."""


def activations_path(run: Any) -> Path | None:
    if run.path is None:
        return None
    folder = run.path if run.path.is_dir() else run.path.parent
    p = folder / ACTIVATIONS_FILE
    return p if p.is_file() else None


@dataclass
class ClipMoments:
    """Per-clip sufficient statistics of one side: ``n`` int64[C], ``s`` float64[C,D], ``g`` float64[C,D,D]."""

    n: np.ndarray
    s: np.ndarray
    g: np.ndarray

    @classmethod
    def from_activations(cls, acts: list[np.ndarray]) -> ClipMoments:
        n = np.array([len(a) for a in acts], dtype=np.int64)
        s = np.stack([np.asarray(a, np.float64).sum(0) for a in acts])
        g = np.stack([np.asarray(a, np.float64).T @ np.asarray(a, np.float64) for a in acts])
        return cls(n, s, g)

    def pooled(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(mu, sigma)`` of the frames of the clips taken ``counts[c]`` times each, as ``np.mean`` and
        ``np.cov`` (ddof 1) of the concatenated frames give them."""
        w = np.asarray(counts, dtype=np.float64)
        total = float(w @ self.n)
        mu = (w @ self.s) / total
        sxx = np.tensordot(w, self.g, axes=1)
        sigma = (sxx - total * np.outer(mu, mu)) / (total - 1)
        return mu, sigma


def load_moments(path: Path, clips: list[str] | None = None) -> tuple[list[str], ClipMoments, ClipMoments]:
    """(clip ids, generated-side moments, GT-side moments) of the clips in ``path`` (``clips``: a subset,
    in that order). Raises ValueError when the file is malformed or too large for memory."""
    with np.load(path, allow_pickle=False) as z:
        ids = [str(c) for c in z["clip_ids"]]
        go, to = z["gen_offsets"], z["gt_offsets"]
        if len(go) != len(ids) + 1 or len(to) != len(ids) + 1:
            raise ValueError(f"{path}: offsets do not match clip_ids")
        want = ids if clips is None else [c for c in clips if c in ids]
        d = int(z["gen"].shape[1])
        if 2 * len(want) * d * d * 8 > MAX_BYTES:
            raise ValueError(f"{len(want)} clips x {d}^2 second moments exceed {MAX_BYTES >> 30} GiB")
        gen, gt = z["gen"], z["gt"]
        pick = [ids.index(c) for c in want]
        ga = [gen[go[i]:go[i + 1]] for i in pick]
        ta = [gt[to[i]:to[i + 1]] for i in pick]
    return want, ClipMoments.from_activations(ga), ClipMoments.from_activations(ta)


def _frechet(mu1, s1, mu2, s2) -> float:
    from metrics.fid import frechet_distance

    return frechet_distance(mu1, s1, mu2, s2)


def fid_of(counts: np.ndarray, gen: ClipMoments, gt: ClipMoments) -> float:
    return _frechet(*gen.pooled(counts), *gt.pooled(counts))


def fid_bootstrap(gen: ClipMoments, gt: ClipMoments, resamples: int, seed: int) -> np.ndarray:
    """FID of ``resamples`` clip resamples ``float64[B]`` (the same index draws as :mod:`reports.stats`)."""
    c = len(gen.n)
    idx = stats.resample_indices(c, resamples, np.random.default_rng(seed))
    return np.array([fid_of(np.bincount(row, minlength=c), gen, gt) for row in idx])


def fid_interval(run: Any, resamples: int, seed: int, expected: float | None = None) -> tuple[Any, str | None]:
    """(:class:`reports.stats.Interval`, None) or (None, why not). The estimate is the FID of all clips,
    which must reproduce the recorded aggregate ``expected``."""
    path = activations_path(run)
    if path is None:
        return None, (f"no {ACTIVATIONS_FILE} in the run folder (evaluate with --set fid.save_activations=true)")
    scored = [c for c in ((run.metrics.get("fid") or {}).get("per_clip") or {})]
    try:
        ids, gen, gt = load_moments(path, scored or None)
    except (ValueError, KeyError, OSError) as e:
        return None, f"{ACTIVATIONS_FILE}: {e}"
    if len(ids) < 2:
        return None, "fewer than 2 clips"
    estimate = fid_of(np.ones(len(ids)), gen, gt)
    if expected is not None and abs(estimate - expected) > 1e-6 * max(1.0, abs(expected)):
        return None, f"{ACTIVATIONS_FILE} gives FID {estimate:.6f}, not the recorded {expected:.6f}"
    b = min(resamples, MAX_RESAMPLES)
    lo, hi = stats.percentile_interval(fid_bootstrap(gen, gt, b, seed))
    return stats.Interval(estimate, lo, hi, len(ids), b), None


def paired_fid(a: Any, b: Any, resamples: int, seed: int) -> tuple[Any, str]:
    """(:class:`reports.stats.PairedResult`, "") or (None, why not): FID(A) − FID(B) on the clips both
    scored, paired bootstrap CI and p-value (the same resampled clips for both runs)."""
    pa, pb = activations_path(a), activations_path(b)
    for r, p in ((a, pa), (b, pb)):
        if p is None:
            return None, f"no {ACTIVATIONS_FILE} for {r.label}"
    shared = [c for c in ((a.metrics.get("fid") or {}).get("per_clip") or {})
              if c in ((b.metrics.get("fid") or {}).get("per_clip") or {})]
    try:
        ids_a, ga, ta = load_moments(pa, shared)
        ids_b, gb, tb = load_moments(pb, ids_a)
    except (ValueError, KeyError, OSError) as e:
        return None, f"{ACTIVATIONS_FILE}: {e}"
    if ids_a != ids_b or len(ids_a) < 2:
        return None, "fewer than 2 shared clips with activations"
    c = len(ids_a)
    n = min(resamples, MAX_RESAMPLES)
    idx = stats.resample_indices(c, n, np.random.default_rng(seed))
    diffs = []
    for row in idx:
        w = np.bincount(row, minlength=c)
        diffs.append(fid_of(w, ga, ta) - fid_of(w, gb, tb))
    fa, fb = fid_of(np.ones(c), ga, ta), fid_of(np.ones(c), gb, tb)
    lo, hi = stats.percentile_interval(np.array(diffs))
    return stats.PairedResult(fa - fb, lo, hi, c, "paired bootstrap", math.nan,
                              stats.bootstrap_p_value(np.array(diffs)), fa, fb), ""
