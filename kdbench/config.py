"""Options given on the command line as ``--set key=value`` and the hash that identifies a config.

Keys with a dot address a metric (``lse.protocol=full``); plain keys address the method
(``ddim_steps=5``). Values are parsed as JSON when they parse (numbers, booleans, lists), else kept
as strings. The resolved options are recorded in every result.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .errors import KdbenchError


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def parse_value(text: str) -> Any:
    """JSON when it parses (numbers, booleans, lists), else the text. ``NaN``/``Infinity`` stay text (JSON has no
    such numbers; the option checks refuse them for numeric options)."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except ValueError:  # json.JSONDecodeError, or a NaN/Infinity constant
        return text


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """``["a=1", "lse.protocol=full"]`` -> ``{"a": 1, "lse.protocol": "full"}``. A key given twice is an error
    (which value was meant cannot be told)."""
    out: dict[str, Any] = {}
    given: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise KdbenchError(f"--set expects key=value, got {item!r}")
        key = key.strip()
        if key in given:
            raise KdbenchError(f"--set {key} is given twice ({given[key]!r} and {item!r}): give each option once")
        given[key] = item
        out[key] = parse_value(value.strip())
    return out


def split_scoped(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Split into (plain options, {scope: options}) — ``lse.protocol`` goes to scope ``lse``."""
    plain: dict[str, Any] = {}
    scoped: dict[str, dict[str, Any]] = {}
    for key, value in options.items():
        scope, dot, name = key.partition(".")
        if dot:
            scoped.setdefault(scope, {})[name] = value
        else:
            plain[key] = value
    return plain, scoped


def config_hash(config: dict[str, Any]) -> str:
    """Stable 16-hex hash of a JSON-serialisable config (key order does not matter)."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
