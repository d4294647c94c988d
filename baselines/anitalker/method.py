"""The registered ``anitalker`` method: AniTalker's official code through the persistent worker."""

from __future__ import annotations

from kdbench.registry import register_method
from kdbench.runtime.method import upstream_method

from .spec import SPEC

AniTalker = register_method("anitalker")(upstream_method(SPEC))
