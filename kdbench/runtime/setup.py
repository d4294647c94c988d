"""``kdbench setup METHOD``: fetch the upstream code at its pinned commit, build its environment, link weights.

Steps (each re-runnable; a finished setup writes ``setup.json`` last, so a half-done one is never "ready"):

1. **source** -> ``methods/<name>/source``: GitHub's archive of the pinned commit (sha256 pinned in the spec, or
   trusted on first download and recorded), or ``--source`` = a local git repository/checkout (the pinned commit is
   checked out from it, so its hash is the checksum) or a plain folder (recorded as unverified, with a content hash).
2. **venv** -> ``methods/<name>/venv``: ``uv venv --python X`` when uv is on PATH (it can reuse or install an
   interpreter), else ``X -m venv`` with ``--python PATH`` (default: a ``pythonX.Y`` found on PATH or in pyenv).
   ``--share-site DIR`` appends DIR (e.g. a site-packages that already holds torch) to the venv's path through a
   ``.pth`` file: the method's pinned packages are installed on top and shadow it, and the torch packages are
   not installed again, so several methods can share one multi-GB CUDA torch.
3. **requirements**: the spec's pins (``methods/<name>/requirements.txt``), torch first, then the rest (without
   build isolation when the spec asks, so sdists like basicsr build against the installed torch).
3b. **native builds** (``spec.native_builds``): extensions no wheel provides, compiled against the venv's torch and
   cached per machine (Real3D-Portrait: pytorch3d's mesh rasterizer, :mod:`kdbench.runtime.pytorch3d_build`).
4. **weights**: each file, fetched and checksum-verified by the weights manager, is symlinked where upstream
   expects it inside the source tree.
5. ``setup.json``: commit, source origin and checksum, Python, every installed distribution's version, the links.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import KdbenchError, WeightsMissing
from ..files import sha256_file
from .spec import MethodEnv, UpstreamSpec, env_for


def _run(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    """Run a setup step; on failure raise with the command and the end of its output."""
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip().splitlines()
        raise KdbenchError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n" + "\n".join(out[-25:]))
    return proc


def _say(msg: str, progress: bool) -> None:
    if progress:
        print(f"[setup] {msg}", file=sys.stderr, flush=True)


# --- 1. source ----------------------------------------------------------------------------------------------
def _is_git(path: Path) -> bool:
    return (path / ".git").exists() or ((path / "HEAD").is_file() and (path / "objects").is_dir())


def tree_digest(folder: Path) -> str:
    """sha256 over ``relative path + file sha256`` lines of every file (``.git`` excluded, links not followed)."""
    lines = []
    for p in sorted(folder.rglob("*")):
        if ".git" in p.relative_to(folder).parts or not p.is_file() or p.is_symlink():
            continue
        lines.append(f"{p.relative_to(folder).as_posix()} {sha256_file(p)}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _checkout_problem(tree: Path) -> str | None:
    """Why the checkout in ``tree`` is not the commit's full tree, or None. ``git checkout`` of a repository with
    missing blobs prints "unable to read sha1 file" and still exits 0, leaving those files out: the tree must be
    clean (``git status --porcelain`` empty) to be recorded as verified."""
    proc = subprocess.run(["git", "-C", str(tree), "status", "--porcelain"], capture_output=True, text=True)
    if proc.returncode != 0:
        return f"git status failed after the checkout: {(proc.stderr or proc.stdout).strip()[:300]}"
    changed = proc.stdout.splitlines()
    if changed:
        return (f"the checkout differs from the commit in {len(changed)} file(s) (blobs missing from the source "
                f"repository?): {', '.join(x[3:] for x in changed[:5])}")
    return None


def fetch_source(spec: UpstreamSpec, dest: Path, source: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Put the upstream tree at ``spec.commit`` into ``dest`` (replaced); returns how it was obtained."""
    tmp = dest.with_name(dest.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    if source and _is_git(Path(source)):
        src = Path(source).resolve()
        _say(f"checking out {spec.commit[:12]} from the git repository {src}", progress)
        _run(["git", "clone", "--quiet", "--no-checkout", str(src), str(tmp)], "git clone")
        _run(["git", "-C", str(tmp), "-c", "advice.detachedHead=false", "checkout", "--quiet", spec.commit],
             f"checking out the pinned commit {spec.commit} (is it in {src}? `git -C {src} fetch` it)")
        head = _run(["git", "-C", str(tmp), "rev-parse", "HEAD"], "git rev-parse").stdout.strip()
        problem = _checkout_problem(tmp)
        shutil.rmtree(tmp / ".git")
        origin = {"from": str(src), "kind": "git", "commit": head,
                  "verified": head.startswith(spec.commit) and problem is None}
        if problem:
            origin["problem"] = problem
            _say(f"WARNING: {problem}; the source is recorded as unverified", progress)
    elif source:
        src = Path(source).resolve()
        if not src.is_dir():
            raise KdbenchError(f"--source {source}: not a folder or git repository")
        _say(f"copying the folder {src} (not a git repository: its commit cannot be verified)", progress)
        shutil.copytree(src, tmp, symlinks=True, ignore=shutil.ignore_patterns(".git"))
        origin = {"from": str(src), "kind": "folder", "commit": spec.commit, "verified": False,
                  "tree_sha256": tree_digest(tmp)}
    else:
        try:
            origin = _download_archive(spec, tmp, progress)
        except KdbenchError as e:
            if os.environ.get("KDBENCH_OFFLINE") == "1" or not shutil.which("git"):
                raise
            _say(f"{e}; trying git instead", progress)
            shutil.rmtree(tmp, ignore_errors=True)
            _run(["git", "clone", "--quiet", "--filter=blob:none", "--no-checkout", spec.git_url, str(tmp)],
                 f"git clone {spec.git_url} (offline: `kdbench setup {spec.name} --source DIR`)")
            _run(["git", "-C", str(tmp), "-c", "advice.detachedHead=false", "checkout", "--quiet", spec.commit],
                 f"checking out the pinned commit {spec.commit}")
            head = _run(["git", "-C", str(tmp), "rev-parse", "HEAD"], "git rev-parse").stdout.strip()
            problem = _checkout_problem(tmp)
            shutil.rmtree(tmp / ".git")
            origin = {"from": spec.git_url, "kind": "git", "commit": head,
                      "verified": head == spec.commit and problem is None}
            if problem:
                origin["problem"] = problem
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return origin


def _download_archive(spec: UpstreamSpec, tmp: Path, progress: bool) -> dict[str, Any]:
    from ..weights import download_url

    if os.environ.get("KDBENCH_OFFLINE") == "1":
        raise KdbenchError(f"KDBENCH_OFFLINE=1: cannot download {spec.archive_url}. Give a local copy: "
                           f"`kdbench setup {spec.name} --source DIR` (a clone of {spec.git_url}, or that archive "
                           "extracted)")
    with tempfile.TemporaryDirectory() as td:
        archive = Path(td) / f"{spec.commit}.tar.gz"
        _say(f"downloading {spec.archive_url}", progress)
        try:
            download_url(spec.archive_url, archive, progress)
        except Exception as e:  # noqa: BLE001 - any network failure gets the same advice
            raise KdbenchError(f"downloading {spec.archive_url} failed ({type(e).__name__}: {e}). Offline: clone "
                               f"{spec.git_url} elsewhere and run `kdbench setup {spec.name} --source CLONE`") from e
        digest = sha256_file(archive)
        if spec.archive_sha256 and digest != spec.archive_sha256:
            raise KdbenchError(f"{spec.archive_url}: sha256 {digest} != pinned {spec.archive_sha256}")
        tmp.mkdir(parents=True)
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            top = members[0].name.split("/")[0]
            for m in members:
                parts = m.name.split("/")[1:]
                if not parts or any(p in ("..", "") for p in parts):
                    continue
                m.name = "/".join(parts)
                tf.extract(m, tmp, filter="data") if sys.version_info >= (3, 12) else tf.extract(m, tmp)
    return {"from": spec.archive_url, "kind": "archive", "commit": spec.commit, "top": top,
            "sha256": digest, "verified": bool(spec.archive_sha256)}


# --- 2. venv ----------------------------------------------------------------------------------------------------
def find_python(version: str) -> Path:
    """An interpreter for ``version`` (``3.11``) on PATH or in pyenv, or ``version`` itself when it is a path."""
    if os.sep in version or Path(version).is_file():
        p = Path(version)
        if not p.exists():
            raise KdbenchError(f"--python {version}: no such interpreter")
        return p
    found = shutil.which(f"python{version}")
    if found:
        return Path(found)
    roots = [os.environ.get("PYENV_ROOT", ""), str(Path.home() / ".pyenv")]
    try:
        roots.insert(0, subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip())
    except OSError:
        pass
    for root in filter(None, roots):
        hits = sorted(glob.glob(f"{root}/versions/{version}.*/bin/python"))
        if hits:
            return Path(hits[-1])
    raise KdbenchError(f"no Python {version} found (python{version} on PATH or pyenv). Install uv "
                       f"(`pip install uv`: it downloads interpreters) or pass --python /path/to/python{version}")


def _venv_python_version(python: Path) -> str:
    return _run([str(python), "-c", "import sys;print('%d.%d.%d' % sys.version_info[:3])"],
                "asking the venv's Python for its version").stdout.strip()


def create_venv(env: MethodEnv, python: str, *, installer: str, with_pip: bool, progress: bool) -> str:
    """Create ``env.venv`` (kept when it already runs the wanted Python). Returns its Python version."""
    if env.python.exists():
        have = _venv_python_version(env.python)
        want = python if os.sep not in python else _venv_python_version(Path(python))
        if have == want or have.startswith(want + "."):
            _say(f"reusing {env.venv} (Python {have})", progress)
            return have
        shutil.rmtree(env.venv)
    if installer == "uv":
        _say(f"creating {env.venv} with uv (Python {python})", progress)
        _run(["uv", "venv", "--quiet", "--python", python, str(env.venv)], "uv venv")
    else:
        interp = find_python(python)
        _say(f"creating {env.venv} with {interp} -m venv", progress)
        _run([str(interp), "-m", "venv", *([] if with_pip else ["--without-pip"]), str(env.venv)], "python -m venv")
    return _venv_python_version(env.python)


def site_packages(python: Path) -> Path:
    return Path(_run([str(python), "-c", "import sysconfig;print(sysconfig.get_paths()['purelib'])"],
                     "locating site-packages").stdout.strip())


SHARE_PTH = "_kdbench_shared_site.pth"


def share_site(env: MethodEnv, folder: str | None) -> None:
    """Append ``folder`` to the venv's import path (after its own site-packages), or remove a previous one."""
    pth = site_packages(env.python) / SHARE_PTH
    if folder:
        if not Path(folder).is_dir():
            raise KdbenchError(f"--share-site {folder}: not a folder")
        pth.write_text(str(Path(folder).resolve()) + "\n")
    else:
        pth.unlink(missing_ok=True)


# --- 3. requirements ----------------------------------------------------------------------------------------------
def _req_name(line: str) -> str:
    for sep in ("==", ">=", "<=", "<", ">", "~=", "!=", "[", " ", ";"):
        line = line.split(sep)[0]
    return line.strip().lower().replace("_", "-")


def install_requirements(env: MethodEnv, spec: UpstreamSpec, *, installer: str, shared: bool,
                         progress: bool) -> list[str]:
    """Install the spec's pins (torch first unless shared); returns the lines installed."""
    torch_names = {n.lower() for n in spec.torch_packages}
    torch_lines = [r for r in spec.requirements if _req_name(r) in torch_names]
    rest = [r for r in spec.requirements if _req_name(r) not in torch_names]
    installed = rest if shared else torch_lines + rest
    (env.root / "requirements.txt").write_text(
        f"# kdbench pins for {spec.name} (Python {spec.python}); see baselines/{spec.name}/spec.py for why each\n"
        + ("# torch packages come from the shared site (--share-site)\n" if shared else "")
        + "\n".join(installed) + "\n")
    if not installed:
        return installed
    if installer == "uv":
        base = ["uv", "pip", "install", "--python", str(env.python)]
    else:
        base = [str(env.python), "-m", "pip", "install", "--disable-pip-version-check"]
    steps = []
    if spec.build_requirements:
        steps.append(("build requirements", list(spec.build_requirements)))
    if torch_lines and not shared:
        steps.append(("torch", torch_lines))
    steps.append(("requirements", ["--no-build-isolation"] * (not spec.build_isolation) + rest))
    for what, args in steps:
        _say(f"installing {what}: {' '.join(a for a in args if not a.startswith('--'))}", progress)
        _run(base + args, f"installing {spec.name}'s {what}")
    return installed


def installed_packages(python: Path) -> dict[str, str]:
    """Every distribution importable by ``python`` (its venv and any shared site), name -> version.

    Where a name is installed twice (the venv shadowing a shared site), the first on ``sys.path`` wins, as on import.
    """
    code = ("import importlib.metadata as m, json\nout = {}\n"
            "for d in m.distributions():\n"
            "    if d.metadata['Name']:\n"
            "        out.setdefault(d.metadata['Name'], d.version)\n"
            "print(json.dumps(out))")
    return json.loads(_run([str(python), "-c", code], "listing installed packages").stdout)


# --- 4. weights -----------------------------------------------------------------------------------------------------
def link_weights(env: MethodEnv, spec: UpstreamSpec, weights, *, fetch: bool, progress: bool
                 ) -> tuple[dict[str, Any], dict[str, str]]:
    """Symlink each weight into the source tree; returns (links, name -> what to do for each missing one)."""
    links, missing = {}, {}
    for name, rel in spec.weights.items():
        link = env.source / rel
        try:
            path = weights.fetch(name, progress=progress) if fetch else weights.path(name)
        except WeightsMissing as e:
            if name not in spec.optional_weights:
                missing[name] = str(e)
            continue
        rec = weights.record().get(name, {})
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(Path(path).resolve())
        links[name] = {"link": str(link), "target": str(Path(path).resolve()), "sha256": rec.get("sha256"),
                       "verified": rec.get("verified"), "optional": name in spec.optional_weights}
    return links, missing


# --- 3b. native builds -----------------------------------------------------------------------------------------------
def native_builds(env: MethodEnv, spec: UpstreamSpec, *, pytorch3d_source: str | None, home, progress: bool
                  ) -> dict[str, Any]:
    """Compile the spec's ``native_builds`` into the venv (each cached across setups); returns name -> record."""
    done = {}
    for name in spec.native_builds:
        if name != "pytorch3d_rasterizer":
            raise KdbenchError(f"{spec.name}: unknown native build {name!r} (known: pytorch3d_rasterizer)")
        from .pytorch3d_build import build_pytorch3d

        done[name] = build_pytorch3d(env.python, source=pytorch3d_source, home=home, progress=progress)
    return done


# --- all -------------------------------------------------------------------------------------------------------------
def setup_method(spec: UpstreamSpec, *, source: str | None = None, python: str | None = None,
                 share: str | None = None, installer: str = "auto", fetch_weights: bool = True,
                 weights=None, home: str | os.PathLike | None = None, progress: bool = True,
                 pytorch3d_source: str | None = None) -> dict[str, Any]:
    """Install ``spec`` under ``$KDBENCH_HOME/methods/<name>``; returns the ``setup.json`` record.

    ``pytorch3d_source``: a local pytorch3d clone/folder for the ``pytorch3d_rasterizer`` native build (default:
    GitHub's archive of the pinned commit)."""
    from ..weights import WeightsManager

    env = env_for(spec.name, home)
    env.root.mkdir(parents=True, exist_ok=True)
    env.setup_json.unlink(missing_ok=True)
    if installer == "auto":
        installer = "uv" if shutil.which("uv") else "pip"
    t0 = time.time()
    origin = fetch_source(spec, env.source, source, progress)
    py_version = create_venv(env, python or spec.python, installer=installer,
                             with_pip=installer == "pip" and bool(spec.requirements), progress=progress)
    share_site(env, share)
    installed = install_requirements(env, spec, installer=installer, shared=bool(share), progress=progress)
    builds = native_builds(env, spec, pytorch3d_source=pytorch3d_source, home=home, progress=progress)
    weights = weights or WeightsManager(home=home)
    links, missing = link_weights(env, spec, weights, fetch=fetch_weights, progress=progress)
    record = {
        "method": spec.name, "repo": spec.repo, "commit": spec.commit, "source": origin,
        "python": py_version, "venv": str(env.venv), "installer": installer, "shared_site": share,
        "requirements": installed, "requirement_notes": spec.requirement_notes,
        "packages": installed_packages(env.python), "weights": links, "weights_missing": missing,
        "native_builds": builds, "compat": list(spec.compat), "kdbench_version": __version__,
        "seconds": round(time.time() - t0, 1),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    env.setup_json.write_text(json.dumps(record, indent=2))
    return record
