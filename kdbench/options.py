"""Type checks of ``--set`` options against a method's or metric's defaults, before anything runs.

A value must have the kind of its default: ``bool`` (or 0/1) for a bool, an integer for an int, a number for a
float, a string for a str. Options whose default is ``None`` (or that accept several kinds) declare their kinds
in the class's ``option_types`` (``{"max_frames": (int, None)}``); without a declaration they accept anything.
"""

from __future__ import annotations

from typing import Any

from .errors import KdbenchError

NoneType = type(None)


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
                       declared: dict[str, tuple] | None = None) -> dict[str, Any]:
    """``options`` with text values of non-text options parsed (``"5"`` -> 5, ``"false"`` -> False); raise
    :class:`KdbenchError` naming every option whose value has the wrong kind."""
    import json

    problems, out = [], dict(options)
    for key, value in options.items():
        if key not in defaults:
            continue  # unknown options are reported by the class itself
        kinds = (declared or {}).get(key) or _kinds_of_default(defaults[key])
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
    if problems:
        raise KdbenchError("wrong option type: " + "; ".join(problems) + ". Nothing was run or written.")
    return out


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
        check_option_types(name, opts, cls.default_options, getattr(cls, "option_types", None))
