"""Motion heatmaps (KDTalker Fig. 7 style): yaw x pitch histograms of head motion, one panel per method.

For each method, every frame of every clip contributes its (yaw, pitch) in degrees with the clip's
first-frame pose subtracted (``relative=True``), so the panel shows how the head *moves*, not where it
points. The 2-D histogram uses fixed bins and range (defaults: 2-degree bins centred on whole multiples
of 2, covering +-40 degrees, 41 x 41 bins; zero motion falls in the centre bin) and is normalised
to the fraction of that method's frames, so methods with different clip counts compare;
all panels share one logarithmic colour scale; the GT panel comes first. The arrays are saved next to
the PNG (``.npz``) so they can be checked without reading pixels.

    angles = angles_from_metrics(json.load(open("runs/kdtalker/metrics.json")), metric="diversity")
    write_pose_heatmaps({"real": gt_angles, "kdtalker": angles}, "reports/out/motion_heatmap.png")
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

GT_NAMES = ("real", "gt", "GT", "Real Video", "real_video")


def angles_from_record(record: Mapping[str, Any]) -> np.ndarray:
    """Per-frame angles ``float64[T,3]`` (yaw, pitch, roll degrees) from one per-clip record.

    Records of ``diversity`` and ``pose_offline`` hold ``yaw_deg``/``pitch_deg``/``roll_deg`` lists
    (one value per face) and ``frame_index``; when a frame has several faces the first one is kept.
    """
    a = np.stack([np.asarray(record[f"{k}_deg"], dtype=np.float64) for k in ("yaw", "pitch", "roll")], axis=1)
    idx = np.asarray(record.get("frame_index", range(len(a))))
    _, first = np.unique(idx, return_index=True)
    return a[np.sort(first)]


def angles_from_metrics(metrics_json: Mapping[str, Any], metric: str = "diversity") -> list[np.ndarray]:
    """Per-clip angle arrays ``[float64[T,3]]`` of ``metric`` ("diversity" or "pose_offline") in a
    ``metrics.json`` dict, in sorted clip order; failed clips (no record) are left out."""
    metrics = metrics_json.get("metrics", {})
    if metric not in metrics:
        raise KeyError(f"metrics.json has no metric {metric!r}; has {sorted(metrics)}")
    per_clip = metrics[metric].get("per_clip") or {}
    return [angles_from_record(per_clip[c]) for c in sorted(per_clip)
            if per_clip[c] and "yaw_deg" in per_clip[c]]


def order_methods(names: Sequence[str], gt: str | None = None) -> list[str]:
    """Method names with the GT one (``gt``, or the first of :data:`GT_NAMES` present) first."""
    names = list(names)
    first = gt if gt in names else next((n for n in GT_NAMES if n in names), None)
    return ([first] if first else []) + [n for n in names if n != first]


def bin_edges(range_deg: float = 40.0, bin_deg: float = 2.0) -> np.ndarray:
    """Edges ``float64[B+1]`` of bins ``bin_deg`` wide centred on ``-range_deg, ..., 0, ..., +range_deg``."""
    n = int(round(range_deg / bin_deg))
    return (np.arange(-n, n + 2) - 0.5) * bin_deg


def pose_histograms(angles_by_method: Mapping[str, Sequence[np.ndarray]], *, range_deg: float = 40.0,
                    bin_deg: float = 2.0, relative: bool = True, gt: str | None = None) -> dict[str, Any]:
    """Yaw x pitch histograms. ``angles_by_method[m]``: per-clip ``float[T,3]`` (yaw, pitch, roll) degrees.

    Bins: :func:`bin_edges` (B = 2 * range_deg / bin_deg + 1 bins per axis).
    Returns ``{"methods": str[M], "counts": int64[M,B,B]`` (axis 1 = yaw, axis 2 = pitch),
    ``"density": float64[M,B,B]`` (counts / frames of that method), ``"yaw_edges"``,
    ``"pitch_edges"``: ``float64[B+1]``, ``"n_frames": int64[M]`` (all frames),
    ``"n_outside": int64[M]`` (frames outside the range), ``"n_clips": int64[M]`` (clips with frames),
    ``"relative": bool}``.
    """
    edges = bin_edges(range_deg, bin_deg)
    bins = len(edges) - 1
    methods = order_methods(list(angles_by_method), gt)
    counts = np.zeros((len(methods), bins, bins), np.int64)
    n_frames = np.zeros(len(methods), np.int64)
    n_out = np.zeros(len(methods), np.int64)
    n_clips = np.zeros(len(methods), np.int64)
    for i, m in enumerate(methods):
        for clip in angles_by_method[m]:
            a = np.asarray(clip, dtype=np.float64).reshape(-1, 3)
            if len(a) == 0:
                continue
            n_clips[i] += 1
            if relative:
                a = a - a[0]
            h, _, _ = np.histogram2d(a[:, 0], a[:, 1], bins=[edges, edges])
            counts[i] += h.astype(np.int64)
            n_frames[i] += len(a)
        n_out[i] = n_frames[i] - counts[i].sum()
    density = counts / np.maximum(n_frames, 1)[:, None, None]
    return {"methods": np.array(methods), "counts": counts, "density": density, "yaw_edges": edges,
            "pitch_edges": edges.copy(), "n_frames": n_frames, "n_outside": n_out, "n_clips": n_clips,
            "relative": relative}


def write_pose_heatmaps(angles_by_method: Mapping[str, Sequence[np.ndarray]], out_png: str | os.PathLike, *,
                        range_deg: float = 40.0, bin_deg: float = 2.0, relative: bool = True,
                        gt: str | None = None, title: str | None = None) -> dict[str, Any]:
    """Draw :func:`pose_histograms` as one panel per method (GT first, shared log colour scale) into
    ``out_png`` and save the arrays to ``out_png`` with suffix ``.npz``. Returns the arrays."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    hist = pose_histograms(angles_by_method, range_deg=range_deg, bin_deg=bin_deg, relative=relative, gt=gt)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out_png.with_suffix(".npz"), **hist)

    dens = hist["density"]
    pos = dens[dens > 0]
    vmax = float(pos.max()) if pos.size else 1.0
    # below the smallest non-empty bin, so a single frame still shows a colour distinct from empty (white)
    vmin = min(float(pos.min()) if pos.size else vmax, vmax / 10.0) / 2.0
    m = len(hist["methods"])
    fig, axes = plt.subplots(1, max(m, 1), figsize=(3.2 * max(m, 1) + 0.9, 3.8), squeeze=False,
                             constrained_layout=True)
    cmap = plt.get_cmap("viridis").with_extremes(bad="white")
    im = None
    for i, ax in enumerate(axes[0]):
        if i >= m:
            ax.axis("off")
            continue
        shown = np.ma.masked_less_equal(dens[i].T, 0.0)  # transpose: rows = pitch (y), cols = yaw (x)
        lo, hi = float(hist["yaw_edges"][0]), float(hist["yaw_edges"][-1])
        im = ax.imshow(shown, origin="lower", extent=(lo, hi, lo, hi),
                       cmap=cmap, norm=LogNorm(vmin=vmin, vmax=vmax), interpolation="nearest", aspect="equal")
        name = str(hist["methods"][i])
        nc = int(hist["n_clips"][i])
        ax.set_title(f"{name}\n{nc} clip{'s' if nc != 1 else ''}, {hist['n_frames'][i]} frames, "
                     f"{hist['n_outside'][i]} outside", fontsize=9)
        ax.set_xlabel("yaw - yaw$_0$ (deg)" if relative else "yaw (deg)")
        if i == 0:
            ax.set_ylabel("pitch - pitch$_0$ (deg)" if relative else "pitch (deg)")
        ax.axhline(0, color="0.6", lw=0.4, zorder=0)
        ax.axvline(0, color="0.6", lw=0.4, zorder=0)
    if im is not None:
        fig.colorbar(im, ax=axes[0].tolist(), shrink=0.85, label="fraction of frames")
    if title:
        from .figures import fit_suptitle

        fit_suptitle(fig, title, fontsize=10)  # wrapped to the width: one panel is narrower than the title
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return hist


def heatmaps_from_runs(metrics_files: Mapping[str, str | os.PathLike], out_png: str | os.PathLike, *,
                       metric: str = "diversity", **kw: Any) -> dict[str, Any]:
    """``{method: path of its metrics.json}`` -> :func:`write_pose_heatmaps` of ``metric``'s angles."""
    import json

    angles = {}
    for method, path in metrics_files.items():
        with open(path) as f:
            angles[method] = angles_from_metrics(json.load(f), metric)
    title = f"head motion ({metric}, first-frame pose subtracted)"
    return write_pose_heatmaps(angles, out_png, title=title, **kw)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m reports.heatmap OUT.png METHOD=metrics.json ... [--metric pose_offline]``."""
    import argparse

    ap = argparse.ArgumentParser(description="Yaw x pitch motion heatmaps from metrics.json files.")
    ap.add_argument("out_png")
    ap.add_argument("runs", nargs="+", help="METHOD=path/to/metrics.json (GT method 'real' goes first)")
    ap.add_argument("--metric", default="diversity", choices=("diversity", "pose_offline"))
    ap.add_argument("--range-deg", type=float, default=40.0)
    ap.add_argument("--bin-deg", type=float, default=2.0)
    args = ap.parse_args(argv)
    runs = dict(r.split("=", 1) for r in args.runs)
    hist = heatmaps_from_runs(runs, args.out_png, metric=args.metric, range_deg=args.range_deg,
                              bin_deg=args.bin_deg)
    for m, n, out in zip(hist["methods"], hist["n_frames"], hist["n_outside"], strict=True):
        print(f"{m}: {n} frames ({out} outside the range)")
    print(f"wrote {args.out_png} and {Path(args.out_png).with_suffix('.npz')}")


if __name__ == "__main__":
    main()
