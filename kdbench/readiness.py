"""Is a method ready to run here? One answer shared by ``kdbench ls methods``, ``kdbench run`` and
``kdbench reproduce`` (its plan, its dry run and the rows it skips).

A method is ready when its class can be imported and :meth:`kdbench.method.Method.setup_problems` finds
nothing missing: for a native method (``kdtalker``), every weight file it needs is available to the weights
manager; for a method that runs upstream code (``sadtalker`` …), its environment under
``$KDBENCH_HOME/methods/<name>`` is set up and complete (:meth:`kdbench.runtime.spec.MethodEnv.status`).
Nothing here loads a model or imports torch for an upstream method.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import KdbenchError


@dataclass(frozen=True)
class Readiness:
    """What stands between ``method`` and a run: ``problems`` are ``(what is missing, the command that fixes
    it)``; empty when ready. ``fixable`` is False when no kdbench command can fix it (an unknown method)."""

    method: str
    problems: tuple[tuple[str, str], ...] = ()
    fixable: bool = True

    @property
    def ready(self) -> bool:
        return not self.problems

    @property
    def status(self) -> str:
        """``ready``, or what is missing (``not set up``, ``weights missing: a, b``)."""
        return "ready" if self.ready else "; ".join(what for what, _ in self.problems)

    @property
    def fix(self) -> str:
        """The command(s) that make the method ready, joined with ``&&`` ('' when ready)."""
        return " && ".join(dict.fromkeys(f for _, f in self.problems if f))

    def message(self) -> str:
        """One sentence for an error: what is missing and how to fix it."""
        if self.ready:
            return f"method {self.method!r} is ready"
        offline = (f" (offline: `kdbench setup {self.method} --source DIR`)"
                   if self.fix == f"kdbench setup {self.method}" else "")
        fix = f" Run `{self.fix}`{offline}, then `kdbench ls methods` shows it ready." if self.fixable else ""
        return f"method {self.method!r} is not ready: {self.status}.{fix}"


def method_readiness(name: str, weights=None) -> Readiness:
    """The :class:`Readiness` of method ``name`` (``weights``: a :class:`~kdbench.weights.WeightsManager`,
    default the one of ``$KDBENCH_HOME``)."""
    from .registry import METHODS

    if name not in METHODS.names():
        return Readiness(name, ((f"method {name!r} is not available in this kdbench version (see "
                                 "`kdbench ls methods`)", ""),), fixable=False)
    try:
        cls = METHODS.get(name)
    except (ImportError, KdbenchError) as e:
        return Readiness(name, ((f"cannot load: {e}", "pip install -e '.[all]'"),))
    if weights is None:
        from .weights import WeightsManager

        weights = WeightsManager()
    return Readiness(name, tuple(cls.setup_problems(weights)))


def require_ready(name: str, weights=None) -> None:
    """Raise :class:`KdbenchError` with :meth:`Readiness.message` unless ``name`` is ready."""
    r = method_readiness(name, weights)
    if not r.ready:
        raise KdbenchError(r.message())
