"""FPS: generated frames per second of generation time, read from the run store.

The runner times ``method.generate`` only — models loaded and warmed up beforehand, the device
synchronised before each clock read — so FPS excludes model loading (reported separately as
``load_s``), normalisation and video encoding. The headline value pools the run:
``sum(frames) / sum(seconds)``; per-clip values give the spread. Compare FPS only across runs on the
same device (recorded in ``env``).
"""

from __future__ import annotations

from typing import Any

from kdbench.errors import ClipFailure
from kdbench.metric import Metric, MetricInfo, Output, summarize
from kdbench.registry import register_metric


def pooled_fps(frames: list[int], seconds: list[float]) -> float:
    """Total frames over total seconds (a run's throughput)."""
    total = sum(seconds)
    if total <= 0:
        raise ValueError("total generation time must be positive")
    return sum(frames) / total


@register_metric("fps")
class FPSMetric(Metric):
    info = MetricInfo(
        name="fps",
        version="1",
        description="Generated frames / generation seconds (models loaded and warmed up, device synchronised).",
        outputs={"fps": Output(higher_is_better=True, unit="frames/s", description="pooled over the run"),
                 "load_s": Output(higher_is_better=False, unit="s", description="model loading time")},
        paper_column={"fps": "FPS"},
    )

    def skip_reason(self) -> str | None:
        if self.context.get("external_videos"):
            return (f"the videos were made outside kdbench (`kdbench eval --videos {self.context['external_videos']}`) "
                    "and carry no generation timing; FPS is measured only by `kdbench run`")
        if self.context.get("generates") is False:
            return ("the method replays its inputs (nothing is generated); FPS is not measured — "
                    "the paper lists the playback rate, 25")
        if self.context.get("copies_input"):
            return ("the method copies its input (a file, not a generator): FPS is not measured — it would "
                    "time a copy")
        return None

    def score_clip(self, clip) -> dict[str, Any]:
        ev = clip.event
        if not ev or ev.get("seconds") is None:
            raise ClipFailure("no generation timing for this clip (videos scored outside `kdbench run`)")
        if ev["seconds"] <= 0:
            raise ClipFailure("generation time is zero")
        frames = int(ev.get("n_generated") or ev["n_frames"])
        return {"fps": frames / ev["seconds"], "frames": frames, "seconds": float(ev["seconds"])}

    def aggregate(self, records: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        fps = summarize([r["fps"] for r in records.values()])
        if records:
            fps["per_clip_mean"] = fps["mean"]
            fps["mean"] = pooled_fps([r["frames"] for r in records.values()], [r["seconds"] for r in records.values()])
        load = self.context.get("load_seconds")
        return {"fps": fps, "load_s": {"mean": load, "std": None, "n": 1 if load is not None else 0}}
