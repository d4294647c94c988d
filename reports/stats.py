"""Uncertainty and paired comparisons over clips: percentile bootstrap CIs and paired tests.

Every aggregate of the report is a statistic of the per-clip values of one run (the mean for most
metrics, ``sum(frames) / sum(seconds)`` for FPS, the pooled Fréchet distance for FID). Its 95%
confidence interval resamples *clips* with replacement (``B`` resamples, percentile interval, seeded
``numpy.random.default_rng(seed)``), so it says how much the number would move on another draw of clips
of the same kind — not the noise inside a clip.

Paired comparisons use only the clips both runs scored: the paired difference ``A - B`` of the statistic,
its bootstrap CI (the same resampled clips for both runs), and a paired test — Wilcoxon signed-rank
(``scipy.stats.wilcoxon``, two-sided) on the per-clip differences, or for set-level statistics (FID,
pooled FPS) the paired bootstrap's two-sided p-value ``min(1, 2 * min(P*(d <= 0), P*(d >= 0)))``.

Shapes: per-clip values are ``float64[n]`` aligned by clip; resample indices ``int64[B, n]``. Only numpy
is imported at module level; scipy is imported when a Wilcoxon test is asked for.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

DEFAULT_RESAMPLES = 10_000
DEFAULT_SEED = 0
DEFAULT_LEVEL = 0.95
MAX_CELLS = 20_000_000
"""Resample indices are drawn in chunks of at most this many entries (``B * n``) to bound memory."""


def resample_indices(n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``int64[B, n]``: clip indices drawn uniformly with replacement (one bootstrap sample per row)."""
    return rng.integers(0, n, size=(resamples, n))


def _chunks(n: int, resamples: int, seed: int):
    rng = np.random.default_rng(seed)
    step = max(1, MAX_CELLS // max(n, 1))
    done = 0
    while done < resamples:
        k = min(step, resamples - done)
        yield resample_indices(n, k, rng)
        done += k


def percentile_interval(stats: np.ndarray, level: float = DEFAULT_LEVEL) -> tuple[float, float]:
    """``(lo, hi)``: the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of bootstrap statistics."""
    stats = np.asarray(stats, dtype=np.float64)
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        return math.nan, math.nan
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap_stats(columns: tuple[np.ndarray, ...], statistic: Callable[..., np.ndarray],
                    resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Bootstrap distribution ``float64[B]`` of ``statistic(*[c[idx] for c in columns])``.

    ``columns``: per-clip arrays ``float[n]`` (aligned); ``statistic`` maps arrays ``float[B, n]`` to
    ``float[B]`` (vectorised over resamples). The same indices are used for every column, which makes a
    paired bootstrap when the columns are two runs' values on the same clips.
    """
    cols = [np.asarray(c, dtype=np.float64) for c in columns]
    n = len(cols[0])
    if n == 0:
        return np.empty(0)
    out = [statistic(*[c[idx] for c in cols]) for idx in _chunks(n, resamples, seed)]
    return np.concatenate(out)


def mean_stat(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=-1)


def ratio_stat(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Pooled ratio ``sum(num) / sum(den)`` per resample (FPS = frames / seconds)."""
    return num.sum(axis=-1) / den.sum(axis=-1)


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap CI over clips."""

    estimate: float
    lo: float
    hi: float
    n: int
    resamples: int
    level: float = DEFAULT_LEVEL

    def as_text(self, precision: int = 3) -> str:
        """``"7.330 [7.210, 7.450]"``."""
        return f"{self.estimate:.{precision}f} [{self.lo:.{precision}f}, {self.hi:.{precision}f}]"


def bootstrap_ci(values: np.ndarray, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
                 level: float = DEFAULT_LEVEL) -> Interval:
    """Percentile bootstrap CI of the mean of ``values`` (``float[n]``, one per clip; non-finite dropped).

    A constant gives a zero-width interval; one clip gives ``[v, v]`` (nothing to resample)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0, resamples, level)
    lo, hi = percentile_interval(bootstrap_stats((x,), mean_stat, resamples, seed), level)
    return Interval(float(x.mean()), lo, hi, int(x.size), resamples, level)


def bootstrap_ratio_ci(num: np.ndarray, den: np.ndarray, resamples: int = DEFAULT_RESAMPLES,
                       seed: int = DEFAULT_SEED, level: float = DEFAULT_LEVEL) -> Interval:
    """CI of the pooled ratio ``sum(num) / sum(den)`` (FPS: frames and seconds per clip)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    ok = np.isfinite(num) & np.isfinite(den)
    num, den = num[ok], den[ok]
    if num.size == 0 or den.sum() <= 0:
        return Interval(math.nan, math.nan, math.nan, 0, resamples, level)
    lo, hi = percentile_interval(bootstrap_stats((num, den), ratio_stat, resamples, seed), level)
    return Interval(float(num.sum() / den.sum()), lo, hi, int(num.size), resamples, level)


# ---------------------------------------------------------------------------------------------
# Paired comparisons
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PairedResult:
    """``A - B`` over the clips both runs share: estimate, bootstrap CI, test and its p-value."""

    diff: float
    lo: float
    hi: float
    n: int
    test: str
    statistic: float
    p_value: float
    mean_a: float
    mean_b: float


def bootstrap_p_value(diffs: np.ndarray) -> float:
    """Two-sided p-value of a paired bootstrap: ``min(1, 2 * min(P(d <= 0), P(d >= 0)))``."""
    d = np.asarray(diffs, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return math.nan
    return float(min(1.0, 2.0 * min(np.mean(d <= 0), np.mean(d >= 0))))


def wilcoxon_test(diffs: np.ndarray) -> tuple[float, float]:
    """``(statistic, p)`` of ``scipy.stats.wilcoxon(diffs)`` (two-sided; zero differences dropped as in
    scipy's default ``zero_method="wilcox"``). All differences zero: ``(0.0, 1.0)``."""
    d = np.asarray(diffs, dtype=np.float64)
    if d.size == 0:
        return math.nan, math.nan
    if not np.any(d != 0):
        return 0.0, 1.0
    from scipy import stats

    res = stats.wilcoxon(d)
    return float(res.statistic), float(res.pvalue)


def paired_mean(a: np.ndarray, b: np.ndarray, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
                level: float = DEFAULT_LEVEL) -> PairedResult:
    """Paired difference of means ``mean(a - b)`` over aligned per-clip values (non-finite pairs dropped),
    its bootstrap CI and the Wilcoxon signed-rank test."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if a.size == 0:
        return PairedResult(math.nan, math.nan, math.nan, 0, "wilcoxon", math.nan, math.nan, math.nan, math.nan)
    d = a - b
    lo, hi = percentile_interval(bootstrap_stats((d,), mean_stat, resamples, seed), level)
    stat, p = wilcoxon_test(d)
    return PairedResult(float(d.mean()), lo, hi, int(d.size), "wilcoxon", stat, p, float(a.mean()), float(b.mean()))


def paired_ratio(num_a: np.ndarray, den_a: np.ndarray, num_b: np.ndarray, den_b: np.ndarray,
                 resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
                 level: float = DEFAULT_LEVEL) -> PairedResult:
    """Paired difference of pooled ratios (FPS A − FPS B) on the same clips; test: Wilcoxon on the
    per-clip ratios; CI: paired bootstrap."""
    cols = [np.asarray(c, dtype=np.float64) for c in (num_a, den_a, num_b, den_b)]
    ok = np.logical_and.reduce([np.isfinite(c) for c in cols])
    na, da, nb, db = (c[ok] for c in cols)
    if na.size == 0:
        return PairedResult(math.nan, math.nan, math.nan, 0, "wilcoxon", math.nan, math.nan, math.nan, math.nan)
    boot = bootstrap_stats((na, da, nb, db), lambda w, x, y, z: ratio_stat(w, x) - ratio_stat(y, z),
                           resamples, seed)
    lo, hi = percentile_interval(boot, level)
    stat, p = wilcoxon_test(na / da - nb / db)
    ra, rb = float(na.sum() / da.sum()), float(nb.sum() / db.sum())
    return PairedResult(ra - rb, lo, hi, int(na.size), "wilcoxon", stat, p, ra, rb)
