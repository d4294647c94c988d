"""Real3D-Portrait (yerfor/Real3DPortrait, ICLR 2024) run from its official code through :mod:`kdbench.runtime`.

``spec.py``: pinned commit, Python, requirements, weights layout, options. ``worker.py``: the hooks the persistent
worker runs inside Real3D-Portrait's environment (``inference/real3d_infer.py``'s own ``GeneFace2Infer``, called as
its ``__main__`` calls it). ``method.py``: the registered ``real3dportrait`` method. This ``__init__`` imports
nothing (the worker imports ``baselines.real3dportrait.worker`` inside Real3D-Portrait's environment).
"""
