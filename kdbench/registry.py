"""Registries of methods and metrics, loaded lazily (lm-evaluation-harness style).

Built-in entries are ``name -> "module:object"`` strings, so listing them never imports a
model or torch. A class registers itself with ``@register_method`` / ``@register_metric``
when its module is imported; third-party code can register new classes the same way.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import KdbenchError

T = TypeVar("T")


class Registry:
    """A name -> object map whose values may be lazy ``"module:object"`` strings."""

    def __init__(self, kind: str, builtins: dict[str, str]):
        self.kind = kind
        self._entries: dict[str, Any] = dict(builtins)

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register ``obj`` under ``name`` (replacing a lazy entry for the same object)."""

        def deco(obj: T) -> T:
            current = self._entries.get(name)
            if current is not None and not isinstance(current, str) and current is not obj:
                raise KdbenchError(f"{self.kind} {name!r} is registered twice ({current!r} and {obj!r})")
            self._entries[name] = obj
            return obj

        return deco

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self._entries)

    def get(self, name: str) -> Any:
        """The registered object, importing its module on first use."""
        if name not in self._entries:
            load_plugins()
        if name not in self._entries:
            raise KdbenchError(
                f"unknown {self.kind} {name!r}; available: {', '.join(self.names())} "
                f"(see `kdbench ls {self.kind}s`)"
            )
        entry = self._entries[name]
        if isinstance(entry, str):
            module_name, _, attr = entry.partition(":")
            module = importlib.import_module(module_name)
            entry = getattr(module, attr)
            self._entries[name] = entry
        return entry


METHODS = Registry(
    "method",
    {
        "real": "baselines.real:RealVideo",
        "static": "baselines.static:StaticImage",
        "kdtalker": "baselines.kdtalker:KDTalker",
        "sadtalker": "baselines.sadtalker.method:SadTalker",
        "anitalker": "baselines.anitalker.method:AniTalker",
        "aniportrait": "baselines.aniportrait.method:AniPortrait",
        "real3dportrait": "baselines.real3dportrait.method:Real3DPortrait",
    },
)

METRICS = Registry(
    "metric",
    {
        "fps": "metrics.fps:FPSMetric",
        "lse": "metrics.lse:LSEMetric",
        "diversity": "metrics.diversity:HopenetDiversity",
        "pose_offline": "metrics.pose_offline:OfflinePose",
        "fid": "metrics.fid:FIDMetric",
        "cpbd": "metrics.cpbd:CPBDMetric",
        "csim": "metrics.csim:CSIMMetric",
        "csim_dlib": "metrics.csim_dlib:DlibIdentity",
        "fvd": "metrics.fvd:FVDMetric",
    },
)


def register_method(name: str):
    """Class decorator registering a :class:`kdbench.method.Method` under ``name``."""
    return METHODS.register(name)


def register_metric(name: str):
    """Class decorator registering a :class:`kdbench.metric.Metric` under ``name``."""
    return METRICS.register(name)


_PLUGINS_LOADED: set[str] = set()


def load_plugins() -> None:
    """Import the modules named in ``$KDBENCH_PLUGINS`` (comma-separated), so that methods and metrics they
    register exist in every process — also in the Ray executor's workers, which inherit the variable."""
    for module in filter(None, (m.strip() for m in os.environ.get("KDBENCH_PLUGINS", "").split(","))):
        if module not in _PLUGINS_LOADED:
            _PLUGINS_LOADED.add(module)
            try:
                importlib.import_module(module)
            except ImportError as e:
                raise KdbenchError(f"KDBENCH_PLUGINS names {module!r}, which cannot be imported: {e}") from e
