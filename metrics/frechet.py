"""Set-level Fréchet-distance metrics (FID, FVD): features → statistics → one value over all scored clips.

The scaffolding :mod:`metrics.fid` and :mod:`metrics.fvd` share, in torch-fidelity's shape (extraction apart from
scoring):

* pure functions: the sufficient statistics ``(n, Σx, Σxxᵀ)`` of features ``float[N, D]`` and their sum over disjoint
  parts (what the Ray workers export and the driver adds: exact in float64), the SciPy range where ``sqrtm(...,
  disp=False)`` is right (:func:`check_scipy`, :func:`sqrtm_disp_accepted`), the weights' sha256 for the protocol;
* :class:`FrechetMetric`: loads the network once, keeps each clip's generated and GT features, exports and merges
  the workers' sufficient statistics, pools each side into :class:`Statistics` and reports the distance.

Each metric keeps what is its own: the network (:meth:`FrechetMetric.load_network`), the features
(``score_clip``: frames or windows, preprocessing), the statistics (:meth:`FrechetMetric.statistics`,
:meth:`FrechetMetric.pool`: pytorch-fid's ddof 1 or StyleGAN-V's ddof 0), the distance
(:meth:`FrechetMetric.distance`), the protocol record (:meth:`FrechetMetric.make_protocol`) and the aggregate's
counts and flags (:meth:`FrechetMetric.summary`). torch is never imported here.
"""

from __future__ import annotations

import abc
import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np

from kdbench.errors import KdbenchError
from kdbench.metric import Metric

SCIPY_RANGE = ((1, 13), (1, 18))
"""SciPy versions (lower inclusive, upper exclusive) where pytorch-fid's ``sqrtm`` call is correct."""

Sufficient = tuple[int, np.ndarray, np.ndarray]
"""``(n, Σx float64[D], Σxxᵀ float64[D, D])`` of ``n`` feature rows."""


class Statistics(NamedTuple):
    """One side's pooled statistics: ``mu float64[D]``, ``sigma float64[D, D]`` and the number of feature rows."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int


# --------------------------------------------------------------------------------------------------
# Pure functions (arrays in, numbers out)
# --------------------------------------------------------------------------------------------------
def sufficient_statistics(act: np.ndarray) -> Sufficient:
    """``(n, sum float64[D], sum of outer products float64[D,D])`` of activations ``[N, D]``: adding these over
    disjoint sets of frames gives the statistics of their union."""
    act = np.asarray(act, dtype=np.float64)
    return int(len(act)), act.sum(axis=0), act.T @ act


def merge_sufficient_statistics(parts: list[Sufficient]) -> Sufficient:
    """Sum of ``(n, sum, outer)`` triples (float64)."""
    parts = [p for p in parts if p is not None and p[0] > 0]
    if not parts:
        raise ValueError("no statistics to merge")
    n = sum(p[0] for p in parts)
    return n, np.sum([p[1] for p in parts], axis=0), np.sum([p[2] for p in parts], axis=0)


def pooled_sufficient_statistics(parts: list[np.ndarray]) -> Sufficient:
    """The sufficient statistics of features ``[N_i, D]`` in parts (one per clip), summed part by part."""
    return merge_sufficient_statistics([sufficient_statistics(p) for p in parts])


def weights_sha256(weights: Any, name: str, path: Path) -> str:
    """The sha256 of weight file ``path`` (entry ``name``): the one the weights manager recorded when it verified
    the file, else hashed here. Recorded in the protocol, so results from other weights never compare as equal."""
    rec = weights.record().get(name) or {}
    if rec.get("sha256"):
        return rec["sha256"]
    from kdbench.files import sha256_file

    return sha256_file(path)


def check_scipy() -> str:
    """SciPy's version, or :class:`KdbenchError` outside the range where pytorch-fid's FID is right."""
    import scipy

    parts = []
    for p in scipy.__version__.split(".")[:2]:
        digits = "".join(ch for ch in p if ch.isdigit())
        parts.append(int(digits or 0))
    ver = tuple(parts)
    lo, hi = SCIPY_RANGE
    if not (lo <= ver < hi):
        raise KdbenchError(
            f"FID needs {lo[0]}.{lo[1]} <= scipy < {hi[0]}.{hi[1]} (found {scipy.__version__}): pytorch-fid "
            "0.3.0 calls sqrtm(..., disp=False), removed in SciPy 1.18, and SciPy 1.11.2-1.12 has a sqrtm "
            "regression. Install e.g. `pip install 'scipy>=1.13,<1.18'`."
        )
    return scipy.__version__


@contextlib.contextmanager
def sqrtm_disp_accepted() -> Iterator[None]:
    """:func:`check_scipy`, then a block where SciPy 1.17's DeprecationWarning for ``sqrtm``'s ``disp`` is silenced
    (checked: still accepted in the range)."""
    check_scipy()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*`disp`.*", category=DeprecationWarning)
        yield


# --------------------------------------------------------------------------------------------------
# Metric
# --------------------------------------------------------------------------------------------------
class FrechetMetric(Metric):
    """A set-level metric: ``score_clip`` keeps a clip's generated and GT features (``float[N, D]`` rows: frames for
    FID, windows for FVD) in ``_gen`` / ``_gt``; :meth:`aggregate` pools each side over the scored clips (here, or
    from the workers' sufficient statistics merged by :meth:`merge_states`) and reports the Fréchet distance under
    the output named like the metric."""

    weights_name: ClassVar[str]
    """The weights entry of the network (its sha256 goes into the protocol)."""
    sample_noun: ClassVar[str] = "frames"
    """What one feature row is, in messages (``frames``, ``windows``)."""
    distance_errors: ClassVar[tuple[type[Exception], ...]] = (ValueError,)
    """Errors of :meth:`distance` reported in the aggregate's ``error`` (the value is then null)."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)  # options checked against option_ranges there
        self._model: Any = None
        self._weights_sha256: str | None = None
        self._gen: dict[str, np.ndarray] = {}
        self._gt: dict[str, Any] = {}
        self._merged: dict[str, Any] | None = None

    # -- network and protocol ------------------------------------------------------------------------
    @property
    def device_type(self) -> str:
        return str(self.device).split(":")[0]

    def _load(self) -> None:
        if self._model is not None:
            return
        check_scipy()
        path = self.weights.path(self.weights_name)
        self._weights_sha256 = weights_sha256(self.weights, self.weights_name, path)
        self._model = self.load_network(path)

    @abc.abstractmethod
    def load_network(self, path: Path) -> Any:
        """The feature network from weight file ``path``, on ``self.device``, in eval mode."""

    @property
    def protocol(self) -> dict[str, Any]:
        """Everything that defines the value, recorded with the result (loads the network for its sha256)."""
        self._load()
        return self.make_protocol(str(self._weights_sha256), self.device_type)

    @abc.abstractmethod
    def make_protocol(self, weights_sha256: str, device_type: str) -> dict[str, Any]:
        """The protocol record for these options, weights and device type."""

    # -- statistics ----------------------------------------------------------------------------------
    def gt_features(self, clip_id: str) -> np.ndarray:
        """The GT features ``float[N, D]`` kept for ``clip_id``."""
        return self._gt[clip_id]

    @abc.abstractmethod
    def statistics(self, sufficient: Sufficient) -> Statistics:
        """:class:`Statistics` from summed sufficient statistics (the merged workers' path)."""

    def pool(self, parts: list[np.ndarray]) -> Statistics:
        """:class:`Statistics` of one side's features, one ``float[N_i, D]`` per clip. Default: from the per-clip
        sufficient statistics summed (the same numbers as merging them from workers)."""
        return self.statistics(pooled_sufficient_statistics(parts))

    def gt_statistics(self, ids: list[str]) -> tuple[Statistics, bool]:
        """(pooled GT :class:`Statistics` over ``ids``, whether they were read from a cache)."""
        return self.pool([self.gt_features(cid) for cid in ids]), False

    # -- merged from other processes (Ray executor) ---------------------------------------------------
    def export_state(self) -> dict[str, Any] | None:
        """Sufficient statistics (float64) of this worker's generated and GT features, and its clip ids."""
        ids = sorted(self._gen)
        if not ids:
            return None
        return {"ids": ids, "gen": pooled_sufficient_statistics([self._gen[cid] for cid in ids]),
                "gt": pooled_sufficient_statistics([self.gt_features(cid) for cid in ids])}

    def merge_states(self, states: list[Any]) -> None:
        states = [s for s in states if s]
        if not states:
            return
        ids = sorted(cid for s in states for cid in s["ids"])
        if len(ids) != len(set(ids)):
            raise KdbenchError(f"{self.info.name.upper()}: a clip was scored by two workers; its {self.sample_noun} "
                               "would count twice")
        self._merged = {"ids": ids, "gen": merge_sufficient_statistics([s["gen"] for s in states]),
                        "gt": merge_sufficient_statistics([s["gt"] for s in states])}

    def pooled_statistics(self, records: dict[str, dict[str, Any]]
                          ) -> tuple[list[str], Statistics | None, Statistics | None, bool]:
        """(ids, generated :class:`Statistics`, GT :class:`Statistics`, GT statistics from a cache) over the scored
        clips: pooled from the features kept here, or from the merged sufficient statistics of the workers."""
        if self._merged is not None:
            ids = self._merged["ids"]
            if set(ids) != set(records):
                lost = sorted(set(records) - set(ids))
                raise KdbenchError(f"{self.info.name.upper()}: the workers' statistics cover {len(ids)} clips but "
                                   f"{len(records)} were scored (missing: {', '.join(lost[:5]) or 'none'}; a worker "
                                   "that crashed lost them): run `kdbench eval` again")
            return ids, self.statistics(self._merged["gen"]), self.statistics(self._merged["gt"]), False
        ids = sorted(cid for cid in records if cid in self._gen)
        if not ids:
            return ids, None, None, False
        return ids, self.pool([self._gen[cid] for cid in ids]), *self.gt_statistics(ids)

    # -- set level -----------------------------------------------------------------------------------
    @abc.abstractmethod
    def distance(self, gen: Statistics, gt: Statistics) -> float:
        """The Fréchet distance between the generated and the GT statistics."""

    @abc.abstractmethod
    def summary(self, ids: list[str], records: dict[str, dict[str, Any]], gen: Statistics, gt: Statistics,
                gt_cached: bool) -> dict[str, Any]:
        """The aggregate's fields between ``n`` and ``protocol``: counts and ``flags``, in the order recorded."""

    def after_pooling(self, ids: list[str], flags: list[str]) -> None:  # noqa: B027 - optional hook
        """Called with the pooled clips and the aggregate's flags before the distance (FID saves activations)."""

    def aggregate(self, records: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        name = self.info.name
        ids, gen, gt, gt_cached = self.pooled_statistics(records)
        if not ids:
            return {name: {"mean": None, "std": None, "n": 0, "reason": "no clip scored"}}
        out: dict[str, Any] = {"mean": None, "std": None, "n": len(ids),
                               **self.summary(ids, records, gen, gt, gt_cached), "protocol": self.protocol}
        self.after_pooling(ids, out["flags"])
        try:
            out["mean"] = self.distance(gen, gt)
        except self.distance_errors as e:
            out["error"] = f"Frechet distance failed: {e}"
        return {name: out}
