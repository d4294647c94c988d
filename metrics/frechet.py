"""Set-level Fréchet-distance metrics (FID, FVD): the pure functions :mod:`metrics.fid` and :mod:`metrics.fvd` share.

The sufficient statistics ``(n, Σx, Σxxᵀ)`` of features ``float[N, D]`` and their sum over disjoint parts (what the
Ray workers export and the driver adds: exact in float64), the SciPy range where ``sqrtm(..., disp=False)`` is right
(:func:`check_scipy`, :func:`sqrtm_disp_accepted`), the weights' sha256 for the protocol. torch is never imported
here.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from kdbench.errors import KdbenchError

SCIPY_RANGE = ((1, 13), (1, 18))
"""SciPy versions (lower inclusive, upper exclusive) where pytorch-fid's ``sqrtm`` call is correct."""

Sufficient = tuple[int, np.ndarray, np.ndarray]
"""``(n, Σx float64[D], Σxxᵀ float64[D, D])`` of ``n`` feature rows."""


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
