"""The executor interface: what ``--executor local|ray`` chooses between.

An executor receives the work of a run (clips to generate) or of an evaluation (clips to score), runs the units of
work (:mod:`kdbench.generation`, :mod:`kdbench.scoring`) wherever it runs them, and hands every result back to the
driver through a callback, in this process. The drivers (:mod:`kdbench.runner`, :mod:`kdbench.evaluate`) stay the
run store's only writers and talk to nothing but this interface and the run store; every executor gives the same
videos, events and per-clip records.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import KdbenchError

EXECUTORS = ("local", "ray")


def check_executor(executor: str) -> None:
    """Refuse an unknown ``--executor`` before anything runs."""
    if executor not in EXECUTORS:
        raise KdbenchError(f"--executor must be one of {', '.join(EXECUTORS)} (got {executor!r})")


@dataclass
class GenerationOutcome:
    """What an executor hands back after generating a run's clips (the events went to ``record`` already)."""

    env: dict[str, Any]
    """The environment record for ``env.json``, with ``executor`` (and ``method_env`` for a baseline)."""
    load_seconds: float | None
    """Model load time (the slowest worker's, on Ray)."""
    loop_seconds: float
    """Wall seconds from the first clip's start to the last clip's video on disk (loading excluded)."""


@dataclass
class ScoreJob:
    """The clips of one evaluation and the metrics to score them with.

    ``active``: the driver's metric objects (name -> metric), already built; set-level state (FID's statistics)
    must end up in them. ``names``/``scoped``/``context``: what an executor needs to build its own copies elsewhere.
    ``seconds``: per-metric wall seconds, accumulated (``decode`` too where frames are decoded).
    """

    ds: Any
    store: Any
    clip_ids: list[str]
    events: dict[str, dict[str, Any]]
    names: list[str]
    scoped: dict[str, dict[str, Any]]
    device: str
    context: dict[str, Any]
    active: dict[str, Any]
    desc: str = "eval"
    seconds: dict[str, float] = field(default_factory=dict)


class Executor(ABC):
    """Runs units of work; returns results to the driver through ``record`` callbacks (called in this process)."""

    name: str = "?"
    overlap_writes: bool = False

    @abstractmethod
    def generate(self, config: dict[str, Any], store, todo: list, record: Callable[[dict[str, Any]], None], *,
                 warmup: int = 1, progress: bool = True) -> GenerationOutcome:
        """Generate the ``todo`` clips (:class:`kdbench.dataset.ClipSpec`) of the run ``config`` into ``store``;
        ``record(event)`` once per clip, in this process."""

    @abstractmethod
    def score(self, job: ScoreJob, record: Callable[[str, dict[str, tuple[str, Any]]], None], *,
              progress: bool = True) -> dict[str, Any]:
        """Score ``job.clip_ids``; ``record(clip_id, outcomes)`` once per clip (outcomes as
        :func:`kdbench.scoring.score_one` returns them). Returns the executor record for ``metrics.json``."""
