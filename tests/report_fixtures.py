"""Synthetic evaluation results (``metrics.json`` layout) for the report and check tests.

``make_doc(method, values)`` builds a ``metrics.json`` document from per-clip values, computing the
aggregates with :func:`kdbench.metric.summarize` exactly as the evaluator does; ``write_run`` puts it
in a run folder with ``config.json`` and ``env.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kdbench.metric import summarize

MANIFEST_ID = "3f2a9c0d1e4b5a6c"

# name -> (version, {output: (higher_is_better, unit, paper_column or None)}, protocol or None, weights)
Outputs = dict[str, tuple[bool | None, str, str | None]]
CATALOGUE: dict[str, tuple[str, Outputs, str | None, tuple[str, ...]]] = {
    "lse": ("1", {"lse_c": (True, "", "LSE-C"), "lse_d": (False, "", "LSE-D")}, "syncnet_python",
            ("syncnet_v2",)),
    "diversity": ("1", {"pose_std_kdtalker_compat": (True, "logit", "Diversity"),
                        "pose_std_deg": (True, "deg", None)}, "kdtalker", ("hopenet_robust_alpha1",)),
    "fid": ("1", {"fid": (False, "", "FID")}, "pytorch-fid", ("pt_inception",)),
    "cpbd": ("1", {"cpbd": (True, "", "CPBD")}, None, ()),
    "csim": ("1", {"csim": (True, "cos", "CSIM")}, "arcface-r100", ("arcface_r100",)),
    "csim_dlib": ("1", {"csim": (True, "cos", "CSIM")}, "dlib", ("dlib_face_recognition",)),
    "fps": ("1", {"fps": (True, "frames/s", "FPS")}, None, ()),
}

PAPER_ROWS = {"real": "Real Video", "kdtalker": "KDTalker", "sadtalker": "SadTalker",
              "real3dportrait": "Real3DPortrait", "anitalker": "AniTalker", "aniportrait": "AniPortrait"}

WEIGHT_SHA = {name: f"{i:02d}" * 32 for i, name in enumerate(sorted(
    {w for _, _, _, ws in CATALOGUE.values() for w in ws}))}


def metric_info(name: str, version: str | None = None) -> dict[str, Any]:
    """``MetricInfo.to_json()``-shaped metadata of a catalogue metric."""
    ver, outputs, _, weights = CATALOGUE[name]
    return {
        "name": name, "version": version or ver, "description": f"synthetic {name}",
        "outputs": {o: {"higher_is_better": hib, "unit": unit, "range": None, "description": o}
                    for o, (hib, unit, _) in outputs.items()},
        "needs_gt": name in ("fid", "csim"), "weights": list(weights), "reference": "",
        "paper_column": {o: col for o, (_, _, col) in outputs.items() if col},
    }


def metric_entry(name: str, per_clip: dict[str, dict[str, float]] | None = None, *,
                 failures: dict[str, str] | None = None, status: str = "ok", skip_reason: str | None = None,
                 version: str | None = None, protocol: str | None = None,
                 aggregate: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """One ``metrics.json["metrics"][name]`` entry from per-clip values ``{clip_id: {output: value}}``."""
    _, outputs, default_protocol, _ = CATALOGUE[name]
    per_clip = per_clip or {}
    options: dict[str, Any] = {}
    if protocol or default_protocol:
        options["protocol"] = protocol or default_protocol
    if status != "ok":
        aggregate = {}
    elif aggregate is None:
        aggregate = {o: summarize([rec.get(o) for rec in per_clip.values()]) for o in outputs}
    return {"info": metric_info(name, version), "options": options, "status": status,
            "skip_reason": skip_reason, "aggregate": aggregate, "failures": dict(failures or {}),
            "per_clip": per_clip if status == "ok" else {}}


def per_clip_values(values: dict[str, list[float]], clips: list[str]) -> dict[str, dict[str, float]]:
    """``{output: [v per clip]}`` -> ``{clip_id: {output: v}}``."""
    return {c: {o: vals[i] for o, vals in values.items()} for i, c in enumerate(clips)}


def make_doc(method: str, metrics: dict[str, dict[str, Any]], *, clips: list[str] | None = None,
             manifest_id: str = MANIFEST_ID, dataset: str = "hdtf-mini", device: str = "cuda",
             gpu: str | None = "NVIDIA H100 80GB HBM3", weights: dict[str, str] | None = None,
             run_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A full ``metrics.json`` document.

    ``metrics[name]`` is either a ready entry (has ``"info"``) or ``{output: [value per clip]}``
    (per-clip lists, all of length ``len(clips)``).
    """
    clips = clips or ["WDA_A_000", "WDA_B_000", "WDA_C_000"]
    entries = {}
    used_weights: set[str] = set()
    for name, spec in metrics.items():
        entries[name] = spec if "info" in spec else metric_entry(name, per_clip_values(spec, clips))
        used_weights.update(entries[name]["info"]["weights"])
    wsha = {**{w: WEIGHT_SHA[w] for w in used_weights if w in WEIGHT_SHA}, **(weights or {})}
    return {
        "schema": "kdbench.metrics/1",
        "run": {"method": method, "paper_row": PAPER_ROWS.get(method), "config": {"method": method},
                **(run_extra or {})},
        "dataset": {"name": dataset, "n_clips": len(clips), "manifest_id": manifest_id},
        "env": {"device": device, "gpu": gpu},
        "weights": {w: {"sha256": s, "verified": True} for w, s in sorted(wsha.items())},
        "metrics": entries,
    }


def write_run(folder: Path, doc: dict[str, Any]) -> Path:
    """Write ``doc`` as ``folder/metrics.json`` plus ``config.json`` and ``env.json``; returns folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(doc, indent=1))
    (folder / "config.json").write_text(json.dumps({"method": doc["run"]["method"]}))
    (folder / "env.json").write_text(json.dumps(doc.get("env") or {}))
    return folder


def standard_runs() -> dict[str, dict[str, Any]]:
    """Three runs (real, kdtalker, sadtalker) over three clips with hand-picked per-clip values.

    Means: real lse_c 8.2, kdtalker 7.3, sadtalker 7.1 (higher better -> kdtalker best);
    lse_d real 6.9, kdtalker 7.6, sadtalker 7.5 (lower better -> sadtalker best).
    sadtalker: diversity skipped; kdtalker: one clip failed LSE.
    """
    clips = ["WDA_A_000", "WDA_B_000", "WDA_C_000"]
    real = make_doc("real", {
        "lse": {"lse_c": [8.1, 8.2, 8.3], "lse_d": [6.8, 6.9, 7.0]},
        "diversity": {"pose_std_kdtalker_compat": [0.6, 0.65, 0.7], "pose_std_deg": [3.0, 4.0, 5.0]},
        "cpbd": {"cpbd": [0.35, 0.36, 0.34]},
        "fps": {"fps": [25.0, 25.0, 25.0]},
    }, clips=clips)
    kd_lse = metric_entry("lse", {"WDA_A_000": {"lse_c": 7.2, "lse_d": 7.5},
                                  "WDA_B_000": {"lse_c": 7.4, "lse_d": 7.7}},
                          failures={"WDA_C_000": "no face detected"})
    kd = make_doc("kdtalker", {
        "lse": kd_lse,
        "diversity": {"pose_std_kdtalker_compat": [0.7, 0.8, 0.75], "pose_std_deg": [5.0, 6.0, 7.0]},
        "cpbd": {"cpbd": [0.27, 0.28, 0.29]},
        "fps": {"fps": [21.0, 22.0, 23.0]},
    }, clips=clips)
    sad = make_doc("sadtalker", {
        "lse": {"lse_c": [7.0, 7.1, 7.2], "lse_d": [7.4, 7.5, 7.6]},
        "diversity": metric_entry("diversity", status="skipped", skip_reason="weights hopenet missing"),
        "cpbd": {"cpbd": [0.30, 0.28, 0.29]},
        "fps": {"fps": [20.0, 21.0, 22.0]},
    }, clips=clips)
    return {"real": real, "kdtalker": kd, "sadtalker": sad}
