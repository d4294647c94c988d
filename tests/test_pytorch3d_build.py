"""``kdbench setup``'s pytorch3d rasterizer build (kdbench/runtime/pytorch3d_build.py): what is compiled, the cache
key, the source checks and errors. The compile itself (minutes) is exercised by ``kdbench setup real3dportrait``
(see docs/methods/real3dportrait.md for its measured time)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from kdbench.errors import KdbenchError
from kdbench.runtime import pytorch3d_build as pb

INFO = {"torch": "2.14.1+cu130", "cuda": "13.0", "nvcc": True, "gpu": False, "python": "3.11.7",
        "ext_suffix": ".cpython-311-x86_64-linux-gnu.so", "purelib": "/nowhere"}


def test_only_the_rasterizer_is_compiled():
    assert pb.CPU_SOURCES == ("rasterize_meshes/rasterize_meshes_cpu.cpp",)
    assert set(pb.CUDA_SOURCES) == {"rasterize_meshes/rasterize_meshes.cu", "rasterize_coarse/rasterize_coarse.cu",
                                    "interp_face_attrs/interp_face_attrs.cu"}
    bound = {line.split('"')[1] for line in pb.BINDING.splitlines() if "m.def(" in line}
    # what pytorch3d's MeshRasterizer and interpolate_face_attributes call (forward and backward)
    assert bound == {"rasterize_meshes", "rasterize_meshes_backward", "interp_face_attrs_forward",
                     "interp_face_attrs_backward"}
    constants = {line.split('"')[1] for line in pb.BINDING.splitlines() if "m.attr(" in line}
    assert constants == {"EPS", "MAX_FLOAT", "MAX_INT", "MAX_UINT", "MAX_USHORT", "PULSAR_MAX_GRAD_SPHERES"}
    assert pb.COMMIT.startswith("33824be3") and pb.VERSION == "0.7.9"


def test_cache_key_names_torch_cuda_and_python():
    cpu, cuda = pb.cache_key(INFO, False), pb.cache_key(INFO, True)
    assert cpu.startswith("pytorch3d-33824be3cbc8-torch2.14.1-cpu-py3.11-")
    assert cuda.startswith("pytorch3d-33824be3cbc8-torch2.14.1-cu130-py3.11-")
    assert pb.cache_key({**INFO, "torch": "2.15.0"}, False) != cpu
    assert pb.cache_key({**INFO, "python": "3.12.1"}, False) != cpu
    assert pb.cache_key(INFO, False) == cpu  # stable


def test_source_folder_without_csrc_is_refused(tmp_path):
    with pytest.raises(KdbenchError, match=r"--pytorch3d-source .*: no pytorch3d/csrc in it"):
        pb.get_source(str(tmp_path), tmp_path / "cache", progress=False)
    (tmp_path / "pytorch3d" / "csrc").mkdir(parents=True)
    src, origin = pb.get_source(str(tmp_path), tmp_path / "cache", progress=False)
    assert src == tmp_path and origin == {"from": str(tmp_path), "kind": "folder", "commit": pb.COMMIT,
                                          "verified": False}


def test_offline_without_a_source_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("KDBENCH_OFFLINE", "1")
    with pytest.raises(KdbenchError, match="KDBENCH_OFFLINE=1: cannot download .*--pytorch3d-source DIR"):
        pb.get_source(None, tmp_path, progress=False)


def test_cuda_build_needs_nvcc(monkeypatch, tmp_path):
    monkeypatch.setattr(pb, "probe", lambda python: {**INFO, "nvcc": False})
    with pytest.raises(KdbenchError, match="nvcc not found: set CUDA_HOME"):
        pb.build_pytorch3d(tmp_path / "python", cuda=True, home=tmp_path, progress=False)


def test_a_cached_build_is_reused_without_compiling(monkeypatch, tmp_path):
    """Same torch/CUDA/Python: the cached library is installed, nothing is compiled."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.setattr(pb, "probe", lambda python: {**INFO, "purelib": str(site)})
    monkeypatch.setattr(pb, "compile_extension", lambda *a, **k: pytest.fail("compiled although cached"))
    monkeypatch.setattr(pb, "_run", lambda cmd, what, **kw: "7\n")  # the rasterizer check
    src = tmp_path / "src"
    (src / "pytorch3d" / "csrc").mkdir(parents=True)
    (src / "pytorch3d" / "__init__.py").write_text("__version__ = '0.7.9'\n")
    (src / "pytorch3d" / "renderer").mkdir()
    (src / "pytorch3d" / "renderer" / "x.py").write_text("")
    dest = tmp_path / "cache" / "pytorch3d" / pb.cache_key(INFO, False)
    dest.mkdir(parents=True)
    (dest / "_C.so").write_bytes(b"ELF")
    (dest / "build.json").write_text(json.dumps({"seconds": 165.0}))
    rec = pb.build_pytorch3d(tmp_path / "python", source=str(src), home=tmp_path, progress=False)
    assert rec["reused"] and rec["build"] == {"seconds": 165.0} and rec["cache"] == str(dest)
    assert (site / "pytorch3d" / f"_C{INFO['ext_suffix']}").read_bytes() == b"ELF"
    assert (site / "pytorch3d" / "renderer" / "x.py").is_file() and not (site / "pytorch3d" / "csrc").exists()
    assert "Version: 0.7.9" in (site / "pytorch3d-0.7.9.dist-info" / "METADATA").read_text()


def test_unknown_native_build_is_refused(tmp_path):
    from baselines.real3dportrait.spec import SPEC
    from kdbench.runtime.setup import native_builds
    from kdbench.runtime.spec import env_for

    assert SPEC.native_builds == ("pytorch3d_rasterizer",)
    assert not any(r.startswith("pytorch3d") for r in SPEC.requirements)  # built, not pip-installed
    bad = dataclasses.replace(SPEC, native_builds=("opencv_cuda",))
    with pytest.raises(KdbenchError, match="unknown native build 'opencv_cuda'"):
        native_builds(env_for("real3dportrait", tmp_path), bad, pytorch3d_source=None, home=tmp_path,
                      progress=False)
