"""Set-up shared by the tests of baselines run from their official code (tests/test_anitalker.py,
test_aniportrait.py, test_real3dportrait.py): a fake upstream tree installed the way `kdbench setup` installs
the real one."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import sysconfig
from pathlib import Path

SITE = sysconfig.get_paths()["purelib"]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def set_up_fake_method(spec, repo: Path, home: Path, weight_files: dict[str, Path],
                       file_names: dict[str, str] | None = None) -> Path:
    """``kdbench setup`` of ``spec`` from the fake upstream tree ``repo``; returns ``home`` (its KDBENCH_HOME).

    The tree is committed to git and set up from that commit with no requirements installed and no native builds
    (the running interpreter's packages are shared); each fake weight file goes into ``home``'s weight cache under
    the name in ``file_names`` (default: its own), pinned by its sha256 in the manifest (``.zip`` files extracted,
    as upstream archives are). Asserts the method's environment is ready.
    """
    from kdbench.files import sha256_file
    from kdbench.runtime.setup import setup_method
    from kdbench.runtime.spec import env_for
    from kdbench.weights import WeightEntry, WeightsManager

    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", f"fake {spec.name}")
    manifest = {}
    for name, path in weight_files.items():
        dest = home / "weights" / name / (file_names or {}).get(name, path.name)
        dest.parent.mkdir(parents=True)
        dest.write_bytes(path.read_bytes())
        manifest[name] = WeightEntry(name=name, file=dest.name, url="https://example.invalid/x",
                                     sha256=sha256_file(dest), extract=dest.suffix == ".zip")
    spec = dataclasses.replace(spec, commit=git(repo, "rev-parse", "HEAD"), requirements=(), python=sys.executable,
                               native_builds=())
    setup_method(spec, source=str(repo), python=sys.executable, share=SITE, installer="pip",
                 weights=WeightsManager(home=home, manifest=manifest), home=home, progress=False)
    assert env_for(spec.name, home).status() == "ready"
    return home


def one_clip_dataset(root: Path, img: Path, wav: Path):
    """A dataset folder ``root`` with one clip, ``clip_a`` (``img`` and ``wav`` moved into it), loaded."""
    from kdbench.dataset import load_dataset

    (root / "ref").mkdir(parents=True)
    (root / "audio").mkdir()
    img.rename(root / "ref" / "clip_a.png")
    wav.rename(root / "audio" / "clip_a.wav")
    return load_dataset(root)


def run_one_clip(method: str, root: Path, img: Path, wav: Path, out: Path, **kw) -> tuple:
    """``run_method`` on :func:`one_clip_dataset`; checks ``clip_a`` went through and returns
    ``(probe of its video, its clip event, the run's env.json)``."""
    import json

    from kdbench.runner import run_method
    from kdbench.video import probe_video

    s = run_method(method, one_clip_dataset(root, img, wav), out, progress=False, **kw)
    assert s.ok == ["clip_a"] and not s.failed
    events = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    clip = next(e for e in events if e.get("clip_id") == "clip_a")
    return probe_video(out / "videos" / "clip_a.mp4"), clip, json.loads((out / "env.json").read_text())
