"""AniTalker (X-LANCE/AniTalker, ACM MM 2024) run from its official code through :mod:`kdbench.runtime`.

``spec.py``: pinned commit, Python, requirements, weights layout, options. ``worker.py``: the hooks the persistent
worker runs inside AniTalker's environment (upstream's own classes, called as ``code/demo.py`` calls them).
``method.py``: the registered ``anitalker`` method. This ``__init__`` imports nothing (the worker imports
``baselines.anitalker.worker`` inside AniTalker's environment).
"""
