"""Type and range checks of ``--set`` options against a method's or metric's defaults, before anything runs.

A value must have the kind of its default: ``bool`` (or 0/1) for a bool, an integer for an int, a number for a
float, a string for a str. Options whose default is ``None`` (or that accept several kinds) declare their kinds
in the class's ``option_types`` (``{"max_frames": (int, None)}``); without a declaration they accept anything.

A number must be finite (NaN and ±Infinity are refused for every option) and inside the option's declared range:
the class's ``option_ranges`` maps each option to a :class:`Range` (numbers; for a list, each element), a tuple
of the accepted strings, or :class:`Text` (free text such as a path). Every option of a metric declares one
(bool options excepted: true/false is their range); a value outside it is an error naming the option, the value
and the range, never clamped or ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .errors import KdbenchError

NoneType = type(None)


@dataclass(frozen=True)
class Range:
    """Accepted numbers ``lo <= v <= hi`` (a bound of None: unbounded; ``lo_open``/``hi_open``: strict)."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, v: float) -> bool:
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return not (self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi))

    def describe(self) -> str:
        """``">= 1"``, ``"in [0, 1]"``, ``"in (0, 4]"``, ``"any finite number"``."""
        if self.lo is None and self.hi is None:
            return "any finite number"
        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        if self.lo is None:
            return f"{'<' if self.hi_open else '<='} {self.hi:g}"
        return f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"


@dataclass(frozen=True)
class Text:
    """An option whose value is free text (a path, a file name): any string is in range."""

    what: str = "text"


OptionRange = Range | tuple | Text
"""What ``option_ranges`` maps an option to: a :class:`Range`, a tuple of accepted strings, or :class:`Text`."""


def _non_finite(value: Any) -> bool:
    """True for NaN/±Infinity, as a float, inside a list, or written as text (``"nan"``, ``"-Infinity"``)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, list):
        return any(_non_finite(v) for v in value)
    if isinstance(value, str):
        try:
            return not math.isfinite(float(value))
        except ValueError:
            return False
    return False


def _shown(value: Any) -> str:
    return repr(value) if not isinstance(value, float) or math.isfinite(value) else str(value)


def range_problem(owner: str, key: str, value: Any, rng: OptionRange | None) -> str | None:
    """Why ``value`` is outside ``rng`` (None when inside, or when ``rng`` is None). Kinds are checked apart."""
    if rng is None or value is None or isinstance(value, bool):
        return None
    if isinstance(rng, Range):
        numbers = value if isinstance(value, list) else [value]
        for v in numbers:
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v not in rng:
                return f"{owner}.{key}={_shown(value)} is out of range: it must be {rng.describe()}"
    elif isinstance(rng, tuple) and isinstance(value, str) and value not in rng:
        return f"{owner}.{key}={value!r} is not one of {', '.join(map(repr, rng))}"
    return None


def _kinds_of_default(default: Any) -> tuple | None:
    if isinstance(default, bool):
        return (bool,)
    if isinstance(default, int):
        return (int,)
    if isinstance(default, float):
        return (float,)
    if isinstance(default, str):
        return (str,)
    return None


def _matches(value: Any, kind: Any) -> bool:
    if kind is None or kind is NoneType:
        return value is None
    if kind is bool:
        return isinstance(value, bool) or (type(value) is int and value in (0, 1))
    if kind is int:
        return type(value) is int or (type(value) is float and value.is_integer())
    if kind is float:
        return type(value) in (int, float)
    if kind is list:
        return isinstance(value, list)
    return isinstance(value, kind)


def _kind_name(kind: Any) -> str:
    return "null" if kind is None or kind is NoneType else {"bool": "true/false", "int": "an integer",
                                                            "float": "a number", "str": "a string",
                                                            "list": "a list"}.get(kind.__name__, kind.__name__)


def check_option_types(owner: str, options: dict[str, Any], defaults: dict[str, Any],
                       declared: dict[str, tuple] | None = None,
                       ranges: dict[str, OptionRange] | None = None) -> dict[str, Any]:
    """``options`` with text values of non-text options parsed (``"5"`` -> 5, ``"false"`` -> False); raise
    :class:`KdbenchError` naming every option whose value has the wrong kind, is not a finite number (NaN,
    ±Infinity) or lies outside its range in ``ranges`` (see the module docstring)."""
    import json

    problems, non_finite, out = [], [], dict(options)
    for key, value in options.items():
        if key not in defaults:
            continue  # unknown options are reported by the class itself
        kinds = (declared or {}).get(key) or _kinds_of_default(defaults[key])
        numeric = kinds is not None and str not in kinds and any(k in (int, float) for k in kinds)
        if _non_finite(value) and (not isinstance(value, str) or numeric):
            non_finite.append(f"{owner}.{key}={_shown(value)} must be a finite number (NaN and Infinity are refused)")
            continue
        if kinds is None or any(_matches(value, k) for k in kinds):
            continue
        if isinstance(value, str):  # API callers may pass text, as --set does before parsing
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError:
                parsed = value
            if not isinstance(parsed, str) and any(_matches(parsed, k) for k in kinds):
                out[key] = parsed
                continue
        want = " or ".join(_kind_name(k) for k in kinds)
        problems.append(f"{owner}.{key}={value!r} must be {want} (default {defaults[key]!r})")
    if problems or non_finite:
        raise KdbenchError(("wrong option type: " if problems else "option not a finite number: ")
                           + "; ".join(problems + non_finite) + ". Nothing was run or written.")
    for key, value in out.items():
        why = range_problem(owner, key, value, (ranges or {}).get(key)) if key in defaults else None
        if why:
            problems.append(why)
    if problems:
        raise KdbenchError("option out of range: " + "; ".join(problems) + ". Nothing was run or written.")
    return out


def undeclared_ranges(cls: Any) -> list[str]:
    """Options of ``cls`` (a metric or method class) without a declared range; bool options need none."""
    ranges = getattr(cls, "option_ranges", None) or {}
    return sorted(k for k, v in cls.default_options.items() if k not in ranges and not isinstance(v, bool))


def check_metric_options(names: list[str], scoped: dict[str, dict[str, Any]]) -> None:
    """Check ``--set metric.key=value`` for the metrics ``names`` (unknown keys and wrong kinds), importing only
    the metric classes (no weights, no torch models), so that a bad option fails before any scoring."""
    from .registry import METRICS

    for name in names:
        opts = scoped.get(name)
        if not opts:
            continue
        try:
            cls = METRICS.get(name)
        except ImportError:
            continue  # reported as a skipped metric by the evaluator
        unknown = set(opts) - set(cls.default_options)
        if unknown:
            raise KdbenchError(f"metric {name!r} has no option(s) {sorted(unknown)}; "
                               f"known: {sorted(cls.default_options) or 'none'}")
        check_option_types(name, opts, cls.default_options, getattr(cls, "option_types", None),
                           getattr(cls, "option_ranges", None))
