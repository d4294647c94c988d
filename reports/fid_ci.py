"""FID's uncertainty by resampling clips (FID is pooled over frames, so it has no per-clip values).

Needs the per-clip Inception activations of the run: ``<run folder>/fid_activations.npz`` with
``clip_ids`` str[C], ``gen`` float[N,D] and ``gen_offsets`` int[C+1] (clip c's generated frames are
``gen[gen_offsets[c]:gen_offsets[c+1]]``), and ``gt``/``gt_offsets`` likewise for the GT frames. Each
bootstrap resample draws C clips with replacement, pools their generated and GT frames (a clip drawn
twice counts twice) and computes the Fréchet distance (:func:`metrics.fid.frechet_distance`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ACTIVATIONS_FILE = "fid_activations.npz"


def activations_path(run: Any) -> Path | None:
    if run.path is None:
        return None
    folder = run.path if run.path.is_dir() else run.path.parent
    p = folder / ACTIVATIONS_FILE
    return p if p.is_file() else None


def fid_interval(run: Any, resamples: int, seed: int, expected: float | None = None) -> tuple[Any, str | None]:
    """(Interval, None) or (None, reason)."""
    if activations_path(run) is None:
        return None, f"no per-clip FID activations ({ACTIVATIONS_FILE}) in the run folder"
    return None, "FID bootstrap not implemented"


def paired_fid(a: Any, b: Any, resamples: int, seed: int) -> tuple[Any, str]:
    """(PairedResult, "") or (None, reason)."""
    for r in (a, b):
        if activations_path(r) is None:
            return None, f"no per-clip FID activations in {r.label}"
    return None, "FID bootstrap not implemented"
