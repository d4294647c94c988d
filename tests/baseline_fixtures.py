"""Set-up shared by the tests of baselines run from their official code (tests/test_anitalker.py,
test_aniportrait.py, test_real3dportrait.py): a fake upstream tree installed the way `kdbench setup` installs
the real one."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

SITE = sysconfig.get_paths()["purelib"]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_manifest(path: Path, entries: dict) -> Path:
    """``entries`` (name -> WeightEntry) as a weights.toml at ``path`` (what ``KDBENCH_WEIGHTS_MANIFEST`` reads)."""
    lines = []
    for e in entries.values():
        lines.append(f"[{e.name}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in dataclasses.asdict(e).items()
                  if k != "name" and v not in (None, "", (), False)]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


@contextlib.contextmanager
def fake_manifest(home: Path) -> Iterator[Path]:
    """``KDBENCH_WEIGHTS_MANIFEST`` = the manifest :func:`set_up_fake_method` wrote (``home/weights.toml``: the fake
    weights pinned as if their sha256 were published) while the block runs; restored afterwards."""
    old = os.environ.get("KDBENCH_WEIGHTS_MANIFEST")
    os.environ["KDBENCH_WEIGHTS_MANIFEST"] = str(home / "weights.toml")
    try:
        yield home
    finally:
        if old is None:
            os.environ.pop("KDBENCH_WEIGHTS_MANIFEST", None)
        else:
            os.environ["KDBENCH_WEIGHTS_MANIFEST"] = old


def set_up_fake_method(spec, repo: Path, home: Path, weight_files: dict[str, Path],
                       file_names: dict[str, str] | None = None, tofu: tuple[str, ...] = ()) -> Path:
    """``kdbench setup`` of ``spec`` from the fake upstream tree ``repo``; returns ``home`` (its KDBENCH_HOME).

    The tree is committed to git and set up from that commit with no requirements installed and no native builds
    (the running interpreter's packages are shared); each fake weight file goes into ``home``'s weight cache under
    the name in ``file_names`` (default: its own), pinned by its sha256 in the manifest (``.zip`` files extracted,
    as upstream archives are) as if that sha256 were published, except the names in ``tofu`` (no checksum: trusted
    on first use). That manifest is written to ``home/weights.toml`` (:func:`fake_manifest` puts it in use).
    Asserts the method's environment is ready.
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
                                     sha256=None if name in tofu else sha256_file(dest),
                                     pin_strength="" if name in tofu else "official", extract=dest.suffix == ".zip",
                                     used_by=(spec.name,))
    write_manifest(home / "weights.toml", manifest)
    spec = dataclasses.replace(spec, commit=git(repo, "rev-parse", "HEAD"), requirements=(), python=sys.executable,
                               native_builds=())
    setup_method(spec, source=str(repo), python=sys.executable, share=SITE, installer="pip",
                 weights=WeightsManager(home=home, manifest=manifest), home=home, progress=False)
    with fake_manifest(home):
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


class Payload:
    """A pickle payload: unpickling it runs ``exec``, which creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def check_payload_never_runs(env, spec, rel: str, tmp: Path) -> None:
    """A copy of ``env``'s source tree (weight links kept) where the weight at ``rel`` is a checkpoint carrying a
    pickle payload and no pin (the worker gets none): the worker refuses it, naming the file, why and the flag, and
    the payload never runs; with ``KDBENCH_TRUST_UNPINNED=1`` it does run (what the flag accepts)."""
    import shutil

    import pytest
    import torch

    from kdbench.errors import KdbenchError
    from kdbench.runtime.client import WorkerClient

    src = tmp / "src"
    shutil.copytree(env.source, src, symlinks=True)
    target = src / rel
    target.unlink()  # a link into the weight cache: replaced in the copy only
    marker = tmp / "marker"
    torch.save({"state_dict": {}, "payload": Payload(marker)}, target)

    def start(extra=None):
        client = WorkerClient(env.python, src, spec.hooks, options=spec.options, compat=spec.compat,
                              links=spec.scratch_links, log_path=tmp / "w.log", scratch=tmp / "s", env=extra)
        try:
            client.start()
        finally:
            client.close()

    with pytest.raises(KdbenchError, match="did not start"):
        start()
    log = (tmp / "w.log").read_text()
    assert f"{os.path.realpath(target)}: not unpickled, because it matches no published pin" in log
    assert "builtins.exec" in log and "--trust-unpinned (or KDBENCH_TRUST_UNPINNED=1)" in log
    assert not marker.exists()
    try:
        start({"KDBENCH_TRUST_UNPINNED": "1"})
    except KdbenchError:
        pass  # the payload is not a state dict the model accepts; what matters is that it ran
    assert marker.read_text() == "ran"
