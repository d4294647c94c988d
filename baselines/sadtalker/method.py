"""The registered ``sadtalker`` method: SadTalker's official code through the persistent worker."""

from __future__ import annotations

from kdbench.registry import register_method
from kdbench.runtime.method import upstream_method

from .spec import SPEC

SadTalker = register_method("sadtalker")(upstream_method(SPEC))
