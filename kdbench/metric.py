"""The metric interface: metadata, per-clip scoring and aggregation.

A metric is a class registered with ``@register_metric(name)`` whose module does not import torch
at top level (so ``kdbench ls metrics`` stays cheap). The evaluator builds it once per evaluation,
feeds it each clip (an :class:`kdbench.clip.EvalClip`, frames decoded once and shared by all
metrics), and finally asks for the aggregate:

    metric = Cls(options=..., device="cpu", weights=WeightsManager())
    record = metric.score_clip(clip)        # dict of per-clip values; raise ClipFailure(reason)
    summary = metric.aggregate(records)     # {output_name: Aggregate-dict}

Set-level metrics (FID) keep state in ``score_clip`` and compute the pooled value in ``aggregate``; when clips
were scored in other processes, ``export_state``/``merge_states`` carry that state to the aggregating one.
Scoring math lives in small pure functions in the metric's module, tested on arrays.
"""

from __future__ import annotations

import abc
import functools
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from .clip import EvalClip
    from .weights import WeightsManager


@dataclass(frozen=True)
class Output:
    """One number a metric reports (pyiqa-style metadata)."""

    higher_is_better: bool | None
    unit: str = ""
    range: tuple[float, float] | None = None
    description: str = ""


@dataclass(frozen=True)
class MetricInfo:
    """Static description of a metric, recorded in every ``metrics.json``.

    ``outputs`` maps each reported value (e.g. ``lse_c``) to its metadata; the first one is the
    headline value. ``weights`` names entries of the weights manifest that must be present.
    ``paper_column`` names the Table 1 column an output reproduces (``{output: column}``).
    """

    name: str
    version: str
    description: str
    outputs: dict[str, Output]
    needs_gt: bool = False
    weights: tuple[str, ...] = ()
    reference: str = ""
    paper_column: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["weights"] = list(self.weights)
        return d


class Metric(abc.ABC):
    """Base class. Subclasses set ``info`` and ``default_options`` and implement ``score_clip``.

    On a GPU device every subclass's ``score_clip`` runs in IEEE fp32 (no TF32; :mod:`kdbench.numerics`), so a
    metric gives the numbers of the CPU equivalence tests wherever it runs.
    """

    info: ClassVar[MetricInfo]
    default_options: ClassVar[dict[str, Any]] = {}
    cpu_pool: ClassVar[bool] = False
    """True for metrics that compute in their own worker processes (CPBD): the evaluator runs them on a side
    thread, overlapping the metrics that use this process and the GPU."""
    option_types: ClassVar[dict[str, tuple]] = {}
    """Accepted kinds of options whose default does not tell (``None`` defaults), see :mod:`kdbench.options`."""
    option_ranges: ClassVar[dict[str, Any]] = {}
    """Accepted values of each option: a :class:`kdbench.options.Range`, a tuple of strings, or
    :class:`kdbench.options.Text`; every non-bool option declares one (tested), see :mod:`kdbench.options`."""

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        if "score_clip" in cls.__dict__:
            cls.score_clip = _in_ieee_fp32_on_gpu(cls.__dict__["score_clip"])

    def __init__(self, *, options: dict[str, Any] | None = None, device: str = "cpu",
                 weights: WeightsManager | None = None):
        unknown = set(options or {}) - set(self.default_options)
        if unknown:
            from .errors import KdbenchError

            raise KdbenchError(
                f"metric {self.info.name!r} has no option(s) {sorted(unknown)}; "
                f"known: {sorted(self.default_options) or 'none'}"
            )
        from .options import check_option_types

        options = check_option_types(self.info.name, options or {}, self.default_options, self.option_types,
                                     self.option_ranges)
        self.options: dict[str, Any] = {**self.default_options, **options}
        self.device = device
        if weights is None:
            from .weights import WeightsManager

            weights = WeightsManager()
        self.weights = weights
        self.context = {}

    cpu_only: ClassVar[bool] = False
    """True for metrics that compute on the CPU whatever the device (numpy, dlib): recorded as ``cpu``."""

    @property
    def device_used(self) -> str:
        """The device the scores were computed on, recorded per metric in ``metrics.json``."""
        return "cpu" if self.cpu_only else self.device

    context: dict[str, Any]
    """Set by the evaluator before scoring: ``manifest_id``, ``dataset``, ``method``, ``generates``, ``device``."""

    def skip_reason(self) -> str | None:
        """A reason why this metric does not apply to the run being scored (then it is listed as skipped)."""
        return None

    @abc.abstractmethod
    def score_clip(self, clip: EvalClip) -> dict[str, Any]:
        """Per-clip record: a value for each output (plus any extra diagnostics)."""

    def export_state(self) -> Any:
        """Set-level state accumulated by ``score_clip`` in this process, to be merged by another (the Ray
        executor's driver): picklable, memory independent of the number of clips. Default: None (none kept)."""
        return None

    def merge_states(self, states: list[Any]) -> None:  # noqa: B027 - optional hook
        """Take over the states exported by the workers that scored the clips, before :meth:`aggregate`."""

    def aggregate(self, records: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Summary per output over the clips that did not fail. Default: mean over clips."""
        return {name: summarize([r.get(name) for r in records.values()]) for name in self.info.outputs}


def _in_ieee_fp32_on_gpu(score_clip):
    """Wrap ``score_clip(self, clip)`` so that it runs inside :func:`kdbench.numerics.ieee_fp32` on a GPU."""

    @functools.wraps(score_clip)
    def wrapper(self: Metric, clip: EvalClip) -> dict[str, Any]:
        from .numerics import ieee_fp32, on_gpu

        if not on_gpu(self.device):
            return score_clip(self, clip)
        with ieee_fp32():
            return score_clip(self, clip)

    return wrapper


def summarize(values: list[float | None]) -> dict[str, Any]:
    """Mean, sample std (ddof=1) and n of the finite values; NaN/None are counted as missing."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(finite)
    if n == 0:
        return {"mean": None, "std": None, "n": 0}
    mean = math.fsum(finite) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in finite) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "n": n}
