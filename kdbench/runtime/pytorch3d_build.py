"""Build pytorch3d's mesh rasterizer, and only it, against a method venv's torch (a ``kdbench setup`` step).

No pytorch3d wheel fits current torch (2.14) / Python 3.11, and a full source build compiles 36 C++ (and, with
CUDA, 40 more CUDA) files: 43-58 min on a 2-core machine. Inference code such as Real3D-Portrait's
``deep_3drecon/util/mesh_renderer.py`` calls only ``pytorch3d._C.rasterize_meshes`` (``MeshRasterizer``) and, on
CUDA, ``_C.interp_face_attrs_forward`` (``interpolate_face_attributes``; on CPU it is pure PyTorch). So this step
compiles an extension ``pytorch3d._C`` from a small binding file (those functions and their backward passes) and
the sources they need: ``rasterize_meshes/rasterize_meshes_cpu.cpp``, plus, when the venv's torch has CUDA and
``nvcc`` is found, ``rasterize_meshes.cu``, ``rasterize_coarse/rasterize_coarse.cu`` and
``interp_face_attrs/interp_face_attrs.cu`` (with ``-DWITH_CUDA``, as pytorch3d's own ``setup.py`` builds them).
Any other ``pytorch3d._C`` function is absent (``AttributeError``), which the methods that use this never call.

Source: pytorch3d at :data:`COMMIT` (tag v0.7.9): GitHub's archive of that commit, or ``--pytorch3d-source`` (a git
repository, checked out at the commit, or a folder holding ``pytorch3d/csrc``). Its Python package is copied into the
venv's site-packages with the built ``_C`` and a ``pytorch3d-0.7.9.dist-info`` (installer ``kdbench``).

Cache: the built library lives in ``$KDBENCH_HOME/cache/pytorch3d/<key>/`` with ``build.json`` (seconds, flags,
sources), ``key`` = pytorch3d commit + torch version + CUDA version (or ``cpu``) + Python version + a digest of the
binding and the flags, so it is built once per machine and reused by every later setup with the same torch.
``torch.utils.cpp_extension`` compiles with ninja: ``MAX_JOBS`` sets the parallel jobs (default: the CPU count).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import KdbenchError
from ..weights import kdbench_home

REPO = "facebookresearch/pytorch3d"
COMMIT = "33824be3cbc87a7dd1db0f6a9a9de9ac81b2d0ba"  # tag v0.7.9
VERSION = "0.7.9"
ARCHIVE_URL = f"https://github.com/{REPO}/archive/{COMMIT}.tar.gz"
CPU_SOURCES = ("rasterize_meshes/rasterize_meshes_cpu.cpp",)
CUDA_SOURCES = ("rasterize_meshes/rasterize_meshes.cu", "rasterize_coarse/rasterize_coarse.cu",
                "interp_face_attrs/interp_face_attrs.cu")
CXX_FLAGS = ("-O3",)  # torch >= 2.10 headers need C++20: torch.utils.cpp_extension of those versions passes it
NVCC_FLAGS = ("-DCUDA_HAS_FP16=1", "-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__",
              "-D__CUDA_NO_HALF2_OPERATORS__", "-DTHRUST_IGNORE_CUB_VERSION_CHECK")
BINDING = """// kdbench: pytorch3d._C with only the mesh rasterizer and face-attribute interpolation
#include <torch/extension.h>
#include "interp_face_attrs/interp_face_attrs.h"
#include "pulsar/constants.h"
#include "rasterize_meshes/rasterize_meshes.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("interp_face_attrs_forward", &InterpFaceAttrsForward);
  m.def("interp_face_attrs_backward", &InterpFaceAttrsBackward);
  m.def("rasterize_meshes_backward", &RasterizeMeshesBackward);
  m.def("rasterize_meshes", &RasterizeMeshes);
  // ext.cpp's constants: pytorch3d.renderer imports the pulsar renderer, which reads them at import time
  m.attr("EPS") = py::float_(EPS);
  m.attr("MAX_FLOAT") = py::float_(MAX_FLOAT);
  m.attr("MAX_INT") = py::int_(MAX_INT);
  m.attr("MAX_UINT") = py::int_(MAX_UINT);
  m.attr("MAX_USHORT") = py::int_(MAX_USHORT);
  m.attr("PULSAR_MAX_GRAD_SPHERES") = py::int_(128);  // MAX_GRAD_SPHERES of pulsar/global.h
}
"""
SECONDS_PER_CPU_FILE = 165
"""Measured (2026-12-06, 2-core development VM, 2 jobs at nice 19): the binding and rasterize_meshes_cpu.cpp with -O3
against torch 2.14.1 compiled and linked in 165 s at load average 4-8 from other work, 510-543 s at 12-18. Used only
for the time estimate shown (a lower bound on a busy machine)."""
SECONDS_PER_CUDA_FILE = 240  # an estimate (not measured here: no nvcc on the development machine)

_PROBE = """import json, os, sys, sysconfig, torch
from torch.utils import cpp_extension as ce
nvcc = bool(ce.CUDA_HOME) and os.path.exists(os.path.join(ce.CUDA_HOME, 'bin', 'nvcc'))
print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda, 'nvcc': nvcc,
                  'gpu': torch.cuda.is_available(),
                  'python': '%d.%d.%d' % sys.version_info[:3], 'ext_suffix': sysconfig.get_config_var('EXT_SUFFIX'),
                  'purelib': sysconfig.get_paths()['purelib']}))
"""

_BUILD = """import json, sys, time
from torch.utils.cpp_extension import load
a = json.loads(sys.argv[1])
t = time.time()
m = load(name='_C', sources=a['sources'], extra_cflags=a['cflags'], extra_cuda_cflags=a['nvcc_flags'],
         extra_include_paths=[a['include']], build_directory=a['build'], verbose=True, with_cuda=a['cuda'])
print(json.dumps({'module': m.__file__, 'seconds': time.time() - t}))
"""

_CHECK = """import torch
from pytorch3d.renderer import FoVPerspectiveCameras, MeshRasterizer, RasterizationSettings
from pytorch3d.structures import Meshes
verts = torch.tensor([[[-1., -1., 5.], [1., -1., 5.], [0., 1., 5.]]])
faces = torch.tensor([[[0, 1, 2]]])
frag = MeshRasterizer()(Meshes(verts, faces), cameras=FoVPerspectiveCameras(),
                        raster_settings=RasterizationSettings(image_size=16))
covered = int((frag.pix_to_face >= 0).sum())
assert 0 < covered < 256, covered
print(covered)
"""


def _say(msg: str, progress: bool) -> None:
    if progress:
        print(f"[setup] pytorch3d: {msg}", file=sys.stderr, flush=True)


def _run(cmd: list[str], what: str, **kw) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise KdbenchError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return proc.stdout


def probe(python: Path) -> dict[str, Any]:
    """The venv's torch/CUDA/Python versions, whether nvcc is there, its extension suffix and site-packages."""
    return json.loads(_run([str(python), "-c", _PROBE], "asking the venv's torch for its versions").strip()
                      .splitlines()[-1])


def cache_key(info: dict[str, Any], cuda: bool) -> str:
    """``pytorch3d-<commit12>-torch<v>-<cuXY|cpu>-py<X.Y>-<digest8>`` for the build of ``info``'s venv."""
    flags = json.dumps([BINDING, CPU_SOURCES, CUDA_SOURCES if cuda else (), CXX_FLAGS, NVCC_FLAGS if cuda else ()])
    digest = hashlib.sha256(flags.encode()).hexdigest()[:8]
    dev = f"cu{info['cuda'].replace('.', '')}" if cuda else "cpu"
    py = ".".join(info["python"].split(".")[:2])
    return f"pytorch3d-{COMMIT[:12]}-torch{info['torch'].split('+')[0]}-{dev}-py{py}-{digest}"


def get_source(source: str | None, cache: Path, progress: bool) -> tuple[Path, dict[str, Any]]:
    """A folder holding ``pytorch3d/`` (with ``csrc``) at :data:`COMMIT`, and where it came from."""
    if source:
        src = Path(source).resolve()
        if (src / ".git").exists() or ((src / "HEAD").is_file() and (src / "objects").is_dir()):
            dest = cache / f"src-{COMMIT[:12]}"
            if not (dest / "pytorch3d" / "csrc").is_dir():
                tmp = Path(tempfile.mkdtemp(prefix="pytorch3d-src-", dir=cache))
                with tempfile.TemporaryFile() as tf:
                    proc = subprocess.run(["git", "-C", str(src), "archive", "--format=tar", COMMIT, "pytorch3d",
                                           "LICENSE"], stdout=tf, stderr=subprocess.PIPE)
                    if proc.returncode != 0:
                        raise KdbenchError(f"--pytorch3d-source {src}: `git archive {COMMIT}` failed "
                                           f"({proc.stderr.decode(errors='replace').strip()}); fetch tag v0.7.9 there")
                    tf.seek(0)
                    with tarfile.open(fileobj=tf) as t:
                        t.extractall(tmp, filter="data") if sys.version_info >= (3, 12) else t.extractall(tmp)
                shutil.rmtree(dest, ignore_errors=True)
                os.replace(tmp, dest)
            return dest, {"from": str(src), "kind": "git", "commit": COMMIT, "verified": True}
        if not (src / "pytorch3d" / "csrc").is_dir():
            raise KdbenchError(f"--pytorch3d-source {source}: no pytorch3d/csrc in it (give a clone of "
                               f"https://github.com/{REPO} or its v0.7.9 archive extracted)")
        return src, {"from": str(src), "kind": "folder", "commit": COMMIT, "verified": False}
    dest = cache / f"src-{COMMIT[:12]}"
    if (dest / "pytorch3d" / "csrc").is_dir():
        return dest, {"from": ARCHIVE_URL, "kind": "archive", "commit": COMMIT, "verified": False}
    if os.environ.get("KDBENCH_OFFLINE") == "1":
        raise KdbenchError(f"KDBENCH_OFFLINE=1: cannot download {ARCHIVE_URL}; give a clone of "
                           f"https://github.com/{REPO} with --pytorch3d-source DIR")
    from ..weights import download_url

    tmp = Path(tempfile.mkdtemp(prefix="pytorch3d-src-", dir=cache))
    archive = tmp / "src.tar.gz"
    _say(f"downloading {ARCHIVE_URL}", progress)
    try:
        download_url(ARCHIVE_URL, archive, progress)
    except Exception as e:  # noqa: BLE001 - any network failure gets the same advice
        shutil.rmtree(tmp, ignore_errors=True)
        raise KdbenchError(f"downloading {ARCHIVE_URL} failed ({type(e).__name__}: {e}). Offline: clone "
                           f"https://github.com/{REPO} elsewhere and pass --pytorch3d-source CLONE") from e
    out = tmp / "tree"
    out.mkdir()
    with tarfile.open(archive) as t:
        for m in t.getmembers():
            parts = m.name.split("/")[1:]
            if not parts or any(p in ("..", "") for p in parts):
                continue
            m.name = "/".join(parts)
            t.extract(m, out, filter="data") if sys.version_info >= (3, 12) else t.extract(m, out)
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(out, dest)
    shutil.rmtree(tmp, ignore_errors=True)
    return dest, {"from": ARCHIVE_URL, "kind": "archive", "commit": COMMIT, "verified": False}


def compile_extension(python: Path, src: Path, dest: Path, info: dict[str, Any], cuda: bool,
                      progress: bool) -> dict[str, Any]:
    """Compile ``_C`` with the venv's torch into ``dest`` (``_C.so`` + ``build.json``); returns build.json."""
    csrc = src / "pytorch3d" / "csrc"
    work = Path(tempfile.mkdtemp(prefix="build-", dir=dest.parent))
    try:
        (work / "ext_kdbench.cpp").write_text(BINDING)
        files = [str(work / "ext_kdbench.cpp")] + [str(csrc / s) for s in CPU_SOURCES + (CUDA_SOURCES if cuda else ())]
        n_cpu, n_cuda = 1 + len(CPU_SOURCES), len(CUDA_SOURCES) if cuda else 0
        jobs = max(1, int(os.environ.get("MAX_JOBS") or os.cpu_count() or 1))
        est = (n_cpu * SECONDS_PER_CPU_FILE + n_cuda * SECONDS_PER_CUDA_FILE) / min(jobs, n_cpu + n_cuda)
        _say(f"compiling {n_cpu + n_cuda} files ({'CPU + CUDA' if cuda else 'CPU only'}) against torch "
             f"{info['torch']} with {jobs} job(s): about {est / 60:.0f} min on idle cores, up to 3x that on a busy "
             "machine; built once, then cached", progress)
        args = {"sources": files, "cflags": list(CXX_FLAGS), "nvcc_flags": list(NVCC_FLAGS) if cuda else [],
                "include": str(csrc), "build": str(work / "build"), "cuda": cuda}
        (work / "build").mkdir()
        t0 = time.time()
        proc = subprocess.Popen([str(python), "-c", _BUILD, json.dumps(args)], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env={**os.environ, "MAX_JOBS": str(jobs)})
        lines: list[str] = []
        done = threading.Event()

        def heartbeat() -> None:  # cpp_extension shows ninja's [k/n] lines only when it finishes
            while not done.wait(60):
                _say(f"still compiling: {time.time() - t0:.0f} s of about {est:.0f} s", progress)

        threading.Thread(target=heartbeat, daemon=True).start()
        try:
            for line in proc.stdout:
                lines.append(line.rstrip())
                if line.startswith("[") and "/" in line.split("]")[0]:  # ninja: [k/n] <command>
                    _say(f"{line.split(']')[0]}] after {time.time() - t0:.0f} s", progress)
        finally:
            done.set()
        if proc.wait() != 0:
            raise KdbenchError("compiling pytorch3d's rasterizer failed:\n" + "\n".join(lines[-30:]))
        built = json.loads(lines[-1])
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(built["module"], dest / "_C.so")
        record = {"commit": COMMIT, "version": VERSION, "torch": info["torch"], "cuda": info["cuda"] if cuda else None,
                  "python": info["python"], "sources": [Path(f).name for f in files], "cxx_flags": list(CXX_FLAGS),
                  "nvcc_flags": args["nvcc_flags"], "jobs": jobs, "seconds": round(time.time() - t0, 1),
                  "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (dest / "build.json").write_text(json.dumps(record, indent=2))
        return record
    finally:
        shutil.rmtree(work, ignore_errors=True)


def install_package(src: Path, lib: Path, info: dict[str, Any]) -> Path:
    """Copy pytorch3d's Python package (no csrc) and the built ``_C`` into the venv; returns the package folder."""
    site = Path(info["purelib"])
    pkg = site / "pytorch3d"
    shutil.rmtree(pkg, ignore_errors=True)
    shutil.copytree(src / "pytorch3d", pkg, ignore=shutil.ignore_patterns("csrc", "__pycache__", "*.so"))
    shutil.copy(lib, pkg / f"_C{info['ext_suffix']}")
    for old in site.glob("pytorch3d-*.dist-info"):
        shutil.rmtree(old)
    dist = site / f"pytorch3d-{VERSION}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: pytorch3d\nVersion: {VERSION}\n"
                                   f"Summary: pytorch3d {COMMIT} (kdbench build: mesh rasterizer only)\n")
    (dist / "INSTALLER").write_text("kdbench\n")
    (dist / "RECORD").write_text("")
    return pkg


def build_pytorch3d(python: Path, *, source: str | None = None, home: str | os.PathLike | None = None,
                    cuda: bool | None = None, progress: bool = True) -> dict[str, Any]:
    """Build (or reuse from the cache) and install the rasterizer-only pytorch3d into ``python``'s venv.

    ``cuda``: None = with the CUDA kernels when the venv's torch sees a GPU and nvcc is found, or ``FORCE_CUDA=1``
    (as pytorch3d's own setup.py decides; a CPU-only build on a GPU machine would fail at the first CUDA mesh: run
    setup where the GPU is, or with ``FORCE_CUDA=1``). Returns a record for
    ``setup.json``: the cache folder, whether it was reused, the build's ``build.json`` and the source's origin.
    """
    info = probe(python)
    if cuda is None:
        cuda = bool(info["cuda"]) and info["nvcc"] and (info["gpu"] or os.environ.get("FORCE_CUDA") == "1")
    elif cuda and not (info["cuda"] and info["nvcc"]):
        raise KdbenchError(f"pytorch3d with CUDA needs a CUDA torch and nvcc (torch {info['torch']}, CUDA "
                           f"{info['cuda']}, nvcc {'found' if info['nvcc'] else 'not found: set CUDA_HOME'})")
    root = Path(home or kdbench_home()) / "cache" / "pytorch3d"
    root.mkdir(parents=True, exist_ok=True)
    dest = root / cache_key(info, cuda)
    reused = (dest / "_C.so").is_file() and (dest / "build.json").is_file()
    src, origin = get_source(source, root, progress)
    if reused:
        _say(f"reusing the build in {dest}", progress)
        record = json.loads((dest / "build.json").read_text())
    else:
        record = compile_extension(python, src, dest, info, cuda, progress)
        _say(f"built in {record['seconds']:.0f} s, cached in {dest}", progress)
    install_package(src, dest / "_C.so", info)
    covered = _run([str(python), "-c", _CHECK], "checking the installed pytorch3d rasterizer").strip()
    return {"cache": str(dest), "reused": reused, "build": record, "source": origin,
            "check": f"a triangle rasterized at 16x16 covers {covered} pixels"}
