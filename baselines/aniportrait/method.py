"""The registered ``aniportrait`` method: AniPortrait's official code through the persistent worker."""

from __future__ import annotations

from kdbench.registry import register_method
from kdbench.runtime.method import upstream_method

from .spec import SPEC

AniPortrait = register_method("aniportrait")(upstream_method(SPEC))
