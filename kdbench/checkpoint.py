"""Loading PyTorch checkpoints without running code from them.

Every ``.pth`` / ``.pkl`` / ``.model`` kdbench reads goes through :func:`load_checkpoint`:

1. ``torch.load(weights_only=True)``: tensors, containers and numbers only (torch's own allow-list).
2. Only if that refuses the file, the pickle's globals are listed statically (nothing is executed) and, when
   every one of them belongs to :data:`INERT_GLOBAL_PREFIXES` (configuration objects that training scripts
   save next to the weights, e.g. KDTalker's OmegaConf ``cfg``), the file is loaded again with
   ``weights_only=True`` where each such global is an inert placeholder class: its constructor and
   ``__setstate__`` only store their arguments, so nothing from the file is ever called. Any other global
   (``os.system``, ``builtins.exec``, ``subprocess.Popen``, an unknown class, ...) is refused with
   :class:`UnsafeCheckpoint` naming it.

``weights_only=False`` is never used. This module imports torch inside its functions only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import KdbenchError, WeightsChecksumError

INERT_GLOBAL_PREFIXES = ("omegaconf.", "numpy.", "typing.", "collections.", "pathlib.", "enum.")
"""Modules whose objects may stand in a checkpoint next to its tensors; loaded as inert placeholders."""

INERT_BUILTINS = frozenset(f"builtins.{n}" for n in (
    "dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "str", "bytes", "bool", "object",
    "slice", "range", "NoneType"))
"""Builtin *types* (used as type annotations in configs); builtin functions (``exec``, ``eval``, ...) are refused."""


class UnsafeCheckpoint(WeightsChecksumError):
    """A checkpoint refers to code that kdbench will not run (it is never unpickled)."""


class InertObject:
    """Placeholder for a non-tensor object of a checkpoint: keeps constructor arguments and state, runs nothing."""

    def __new__(cls, *args: Any, **kwargs: Any):
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any):
        self.args = args
        self.kwargs = kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<inert {self.__module__}.{type(self).__qualname__}>"


def _inert_class(qualified: str) -> type:
    module, _, name = qualified.rpartition(".")
    return type(name or qualified, (InertObject,), {"__module__": module or "inert", "__qualname__": name})


def is_inert_global(qualified: str) -> bool:
    """Whether the pickle global ``module.name`` may be loaded as an :class:`InertObject` placeholder."""
    return qualified in INERT_BUILTINS or qualified.startswith(INERT_GLOBAL_PREFIXES)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """The object saved in ``path`` (``torch.save`` zip or legacy format), loaded without executing its code.

    Raises :class:`UnsafeCheckpoint` when the file needs a callable outside torch's tensor allow-list and
    :data:`INERT_GLOBAL_PREFIXES` (and drops the first-use pin this process wrote for it, so a refused file is not
    left trusted); :class:`KdbenchError` when it is not a readable checkpoint.
    """
    try:
        return _load(Path(path), map_location)
    except UnsafeCheckpoint:
        from .weights import forget_first_use_pin

        forget_first_use_pin(path)
        raise


def _load(path: Path, map_location: Any) -> Any:
    import pickle

    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as first:
        try:
            names = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
        except (ValueError, RuntimeError) as e:  # legacy (pre-zip) format: no static listing
            raise UnsafeCheckpoint(
                f"{path} holds objects other than tensors and is in PyTorch's legacy format, which kdbench "
                f"cannot inspect without running it ({str(first).splitlines()[0]}); it was not loaded. Re-save "
                "its state_dict with torch.save (zip format) from a trusted environment.") from e
        refused = [n for n in names if not is_inert_global(n)]
        if refused or not names:
            raise UnsafeCheckpoint(
                f"{path} refers to code kdbench does not run: {', '.join(refused) or str(first).splitlines()[0]}. "
                "It was not unpickled. Use the official file (`kdbench weights fetch NAME`) or a plain "
                "state_dict saved with torch.save.") from first
        stubs = [(_inert_class(n), n) for n in names]
        with torch.serialization.safe_globals(stubs):
            return torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError) as e:
        raise KdbenchError(f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from e
