"""Runtime for baselines that run their official code: one isolated environment per method, a persistent worker.

Layout under ``$KDBENCH_HOME/methods/<name>/``::

    source/        the upstream code at the pinned commit (git checkout or extracted archive; never edited)
    venv/          the method's virtual environment (uv, or ``python -m venv``)
    requirements.txt   what was installed (this project's pins for the method)
    setup.json     commit, Python, package versions, linked weights: copied into every run's env.json

Modules: :mod:`.spec` (a method described as data + small hooks), :mod:`.setup` (``kdbench setup``),
:mod:`.worker` (runs inside the method's environment; stdlib only), :mod:`.compat` (import-time fixes for
current numpy/torch/torchvision), :mod:`.client` (starts and talks to the worker), :mod:`.method` (the
:class:`kdbench.method.Method` that ``kdbench run`` uses). Importing this package never imports torch.
"""
