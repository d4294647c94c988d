"""A baseline that runs official code, described as data: where the code is, what to install, where weights go.

One :class:`UpstreamSpec` per method lives in ``baselines/<name>/`` next to its worker hooks; the registry
``SPECS`` maps names to ``"module:object"`` strings so that listing methods imports nothing heavy.
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import KdbenchError
from ..weights import kdbench_home


@dataclass(frozen=True)
class UpstreamSpec:
    """Everything kdbench needs to install and drive one upstream method.

    ``requirements``: pip requirement lines this project pins for current interpreters and GPUs;
    ``requirement_notes``: package -> why the pin differs from upstream's own (written into README/setup.json).
    ``weights``: weights-manager name -> path relative to the source tree where upstream expects the file.
    ``hooks``: ``"module:Class"`` of the worker hooks (imported inside the method's environment).
    ``compat``: names of :mod:`kdbench.runtime.compat` fixes the worker applies before importing upstream.
    ``scratch_links``: source-tree entries linked into each clip's scratch folder (upstream paths relative to
    the working directory that are read at generation time).
    ``options``: the method's ``--set`` options and their defaults (passed to the hooks unchanged).
    """

    name: str
    description: str
    repo: str
    commit: str
    python: str
    requirements: tuple[str, ...]
    hooks: str
    archive_sha256: str | None = None
    requirement_notes: dict[str, str] = field(default_factory=dict)
    torch_packages: tuple[str, ...] = ("torch", "torchvision")
    build_requirements: tuple[str, ...] = ()
    """Installed first (e.g. cython for sdists that are built without isolation)."""
    build_isolation: bool = True
    """False: sdists build against the venv's packages (torch already installed) instead of pip downloading a
    second multi-GB torch into an isolated build environment."""
    weights: dict[str, str] = field(default_factory=dict)
    optional_weights: tuple[str, ...] = ()
    compat: tuple[str, ...] = ()
    scratch_links: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    native_builds: tuple[str, ...] = ()
    """Extensions ``kdbench setup`` compiles into the venv after the requirements (no fitting wheel exists):
    ``"pytorch3d_rasterizer"`` = :mod:`kdbench.runtime.pytorch3d_build` (cached per torch/CUDA/Python)."""
    grid: str | None = None
    """``--grid`` text of the panel to keep when upstream writes a grid of panels (AniPortrait: ``"3:2,pad=2"``)."""
    paper_row: str | None = None
    audio_loader: str = "librosa"
    """How the official code reads the driving audio (:data:`kdbench.runtime.method.AUDIO_LOADERS`): ``librosa``
    (``librosa.load(path, sr=16000)``) or ``ffmpeg_wav16k`` (``ffmpeg -i A -f wav -ar 16000``, then its own
    readers)."""
    licence: str = ""
    version: str = "1"

    @property
    def archive_url(self) -> str:
        """GitHub's tarball of the pinned commit."""
        return f"https://github.com/{self.repo}/archive/{self.commit}.tar.gz"

    @property
    def git_url(self) -> str:
        return f"https://github.com/{self.repo}.git"


SPECS: dict[str, str] = {
    "sadtalker": "baselines.sadtalker.spec:SPEC",
    "anitalker": "baselines.anitalker.spec:SPEC",
    "aniportrait": "baselines.aniportrait.spec:SPEC",
    "real3dportrait": "baselines.real3dportrait.spec:SPEC",
}
"""Built-in upstream methods: name -> ``"module:object"`` of their :class:`UpstreamSpec`."""


def get_spec(name: str) -> UpstreamSpec:
    if name not in SPECS:
        raise KdbenchError(f"{name!r} is not a method that runs upstream code; those are: {', '.join(sorted(SPECS))}")
    module, _, attr = SPECS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def method_dir(name: str, home: str | os.PathLike | None = None) -> Path:
    """``$KDBENCH_HOME/methods/<name>``."""
    return Path(home or kdbench_home()) / "methods" / name


@dataclass(frozen=True)
class MethodEnv:
    """The installed environment of one method (paths under :func:`method_dir`)."""

    root: Path

    @property
    def source(self) -> Path:
        return self.root / "source"

    @property
    def venv(self) -> Path:
        return self.root / "venv"

    @property
    def python(self) -> Path:
        return self.venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")

    @property
    def setup_json(self) -> Path:
        return self.root / "setup.json"

    def record(self) -> dict[str, Any] | None:
        """The ``setup.json`` written by a finished ``kdbench setup`` (None when not set up)."""
        if not self.setup_json.is_file():
            return None
        return json.loads(self.setup_json.read_text())

    def verify_weights(self) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """Every weight linked by ``kdbench setup``, verified now against the weights manifest
        (``$KDBENCH_WEIGHTS_MANIFEST`` or the built-in one) as the native path verifies: re-hashed only when a file's
        size, mtime, ctime or inode changed since it was last hashed. Returns ``(records, problems)``: name -> the
        verification record (``sha256`` of the file that will be read, ``trust``, ``pin_full``) and name -> why
        it cannot be used (missing, link re-pointed, checksum differs, not in the manifest)."""
        from ..errors import KdbenchError
        from ..weights import WeightsManager

        rec = self.record() or {}
        records: dict[str, dict[str, Any]] = {}
        problems: dict[str, str] = {}
        wm = WeightsManager(home=self.root.parents[1])
        for name, link in rec.get("weights", {}).items():
            path = Path(link["link"])
            if not path.exists():
                problems[name] = f"{path} is missing"
                continue
            target = path.resolve()
            if link.get("target") and str(target) != link["target"]:
                problems[name] = f"{path} now points to {target}, not to the file setup linked ({link['target']})"
                continue
            if name not in wm.entries:
                problems[name] = "not in the weights manifest in use (KDBENCH_WEIGHTS_MANIFEST?)"
                continue
            if wm.entries[name].extract and target.is_dir():
                # an extracted archive: the archive is what is pinned (its files are never fully unpickled)
                archive = wm._candidate(name)
                if archive is None or archive.is_dir():
                    problems[name] = f"the archive {wm.cache_path(name)} that {target} was extracted from is missing"
                    continue
                target = archive
            try:
                records[name] = wm.verify_file(name, target)
            except KdbenchError as e:
                problems[name] = str(e)
        return records, problems

    def weights_added_since_setup(self, spec: UpstreamSpec) -> list[str]:
        """Required weights of ``spec`` (the method's spec as this kdbench version has it) that this setup never
        linked, because the spec gained them after ``kdbench setup`` ran here: a run would stop, or try to download,
        where upstream reads them."""
        rec = self.record() or {}
        done = set(rec.get("weights", {})) | set(rec.get("weights_missing", {}))
        return [n for n in spec.weights if n not in done and n not in spec.optional_weights]

    def status(self, spec: UpstreamSpec | None = None) -> str:
        """``ready``, or what is missing or changed (for ``kdbench ls methods`` and before a run): every linked
        weight is verified (:meth:`verify_weights`), so a file changed after setup is reported here; with the
        method's ``spec``, weights it gained after this setup count as missing (setup again links them)."""
        rec = self.record()
        if rec is None or not self.python.exists() or not self.source.is_dir():
            return "not set up"
        _, problems = self.verify_weights()
        missing = [n for n, why in problems.items() if why.endswith(" is missing")]
        missing += list(rec.get("weights_missing", {}))
        if spec is not None:
            missing += [n for n in self.weights_added_since_setup(spec) if n not in missing]
        if missing:
            return f"weights missing: {', '.join(missing)}"
        if problems:
            return (f"weights changed since setup: {', '.join(problems)} (`kdbench weights verify "
                    f"{' '.join(problems)}` says why)")
        return "ready"


def env_for(name: str, home: str | os.PathLike | None = None) -> MethodEnv:
    return MethodEnv(method_dir(name, home))
