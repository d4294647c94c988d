"""``torch.compile`` modes that the ``compile`` option of KDTalker accepts (no torch import)."""

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
