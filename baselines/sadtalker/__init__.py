"""SadTalker (OpenTalker/SadTalker, CVPR 2023) run from its official code through :mod:`kdbench.runtime`.

``spec.py``: pinned commit, Python, requirements, weights layout, options. ``worker.py``: the hooks the persistent
worker runs inside SadTalker's environment (they call upstream's own classes exactly as ``inference.py`` does).
``method.py``: the registered ``sadtalker`` method. This package's ``__init__`` imports nothing, because the
worker imports ``baselines.sadtalker.worker`` inside SadTalker's environment.
"""
