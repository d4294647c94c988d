"""The registered ``real3dportrait`` method: Real3D-Portrait's official code through the persistent worker."""

from __future__ import annotations

from kdbench.registry import register_method
from kdbench.runtime.method import upstream_method

from .spec import SPEC

Real3DPortrait = register_method("real3dportrait")(upstream_method(SPEC))
