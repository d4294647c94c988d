"""Device and checkpoint-safety checks that need a real CUDA machine (issue #11). Run on the GPU box:

    python scripts/gpu_device_check.py

Needs only torch and numpy (no av, dlib or ffmpeg). Prints one PASS/FAIL line per check and exits 1 on any
failure. Checks: ``--device`` resolution with a real GPU (``auto`` -> cuda, a missing ``cuda:N`` refused with
the device count), and :func:`kdbench.checkpoint.load_checkpoint` under this machine's torch version (the inert
placeholders use ``torch.serialization.safe_globals`` with ``(class, name)`` pairs and
``get_unsafe_globals_in_checkpoint``): a live pickle payload is refused and runs nothing, tensors land on
``map_location="cuda"``, a config object loads as an inert placeholder.
"""

from __future__ import annotations

import os
import sys
import tempfile
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from kdbench.checkpoint import InertObject, UnsafeCheckpoint, load_checkpoint  # noqa: E402
from kdbench.envinfo import device_info, resolve_device  # noqa: E402
from kdbench.errors import KdbenchError  # noqa: E402

FAILED: list[str] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    print(f"{'PASS' if ok else 'FAIL'} {name}" + (f": {detail}" if detail else ""))
    if not ok:
        FAILED.append(name)


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def main() -> int:
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, available {torch.cuda.is_available()}, "
          f"devices {torch.cuda.device_count()}")
    gpu = torch.cuda.is_available()
    check("cuda available", gpu, "" if gpu else "no GPU here: only the refusal and the CPU loader checks run")
    if gpu:
        check("auto resolves to cuda", resolve_device("auto") == "cuda")
        check("cuda:0 accepted", resolve_device("cuda:0") == "cuda:0")
        info = device_info("cuda")
        check("device_info names the GPU", bool(info.get("gpu")), str(info.get("gpu")))
    n = torch.cuda.device_count()
    try:
        resolve_device(f"cuda:{n}")
        check(f"cuda:{n} refused", False, "accepted a GPU this machine lacks")
    except KdbenchError as e:
        check(f"cuda:{n} refused", f"has {n} CUDA device(s)" in str(e) or "no usable CUDA GPU" in str(e), str(e))
    dev = "cuda" if gpu else "cpu"

    with tempfile.TemporaryDirectory() as d:
        marker = Path(d) / "pwned"
        evil = Path(d) / "evil.pth"
        torch.save({"model": {"w": torch.ones(3)}, "cfg": _Payload(str(marker))}, evil)
        try:
            load_checkpoint(evil, map_location=dev)
            check("payload refused", False, "loaded")
        except UnsafeCheckpoint as e:
            check("payload refused", "posix.system" in str(e) or "os.system" in str(e), str(e)[:120])
        check("payload did not run", not marker.exists())

        plain = Path(d) / "plain.pth"
        torch.save({"w": torch.arange(4.0)}, plain)
        sd = load_checkpoint(plain, map_location=dev)
        check(f"tensors on {dev}", sd["w"].device.type == dev and sd["w"].sum().item() == 6.0)

        pkg, mod = types.ModuleType("omegaconf"), types.ModuleType("omegaconf.dictconfig")

        class DictConfig:
            def __init__(self, content):
                self._content = content

        DictConfig.__module__, DictConfig.__qualname__ = "omegaconf.dictconfig", "DictConfig"
        mod.DictConfig = DictConfig
        sys.modules.update({"omegaconf": pkg, "omegaconf.dictconfig": mod})
        cfgf = Path(d) / "cfg.pth"
        torch.save({"model": {"w": torch.ones(2)}, "cfg": DictConfig({"lr": 1e-3})}, cfgf)
        del sys.modules["omegaconf.dictconfig"], sys.modules["omegaconf"]
        try:
            ck = load_checkpoint(cfgf, map_location=dev)
            check("config object inert", isinstance(ck["cfg"], InertObject) and ck["model"]["w"].device.type == dev,
                  repr(ck["cfg"]))
        except Exception as e:  # noqa: BLE001 - reported, the script goes on
            check("config object inert", False, f"{type(e).__name__}: {e}")
    print("ALL PASS" if not FAILED else f"FAILED: {', '.join(FAILED)}")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
