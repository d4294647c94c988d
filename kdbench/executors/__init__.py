"""Executors: where the units of work run (``--executor local|ray``). See :mod:`.base` for the interface."""

from __future__ import annotations

from ..errors import KdbenchError
from .base import EXECUTORS, Executor, GenerationOutcome, ScoreJob, check_executor

__all__ = ["EXECUTORS", "Executor", "GenerationOutcome", "ScoreJob", "check_executor", "get_executor"]


def get_executor(name: str = "local", *, overlap_writes: bool = False, ray_address: str | None = None,
                 workers: int | None = None, gpus_per_worker: float = 1.0, keep_generated: bool = False) -> Executor:
    """The executor called ``name``: ``local`` (this process; ``overlap_writes`` writes clip i while clip i+1
    generates; ``keep_generated`` keeps each clip's output as it reached the normaliser, in ``generated/``) or
    ``ray`` (one long-lived actor per worker on a Ray instance or cluster; imports Ray)."""
    check_executor(name)
    if name == "ray":
        if keep_generated:
            raise KdbenchError("--keep-generated runs with --executor local (Ray actors may write on other "
                               "machines); run the clips to keep locally, e.g. with --limit")
        from .ray_cluster import RayExecutor

        return RayExecutor(address=ray_address, workers=workers, gpus_per_worker=gpus_per_worker)
    from .local import LocalExecutor

    return LocalExecutor(overlap_writes=overlap_writes, keep_generated=keep_generated)
