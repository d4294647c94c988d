"""What was installed and which machine ran: recorded in ``env.json`` and every ``metrics.json``."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from . import __version__

PACKAGES = ("numpy", "scipy", "av", "torch", "torchvision", "pytorch-fid", "scikit-image", "opencv-python-headless",
            "python_speech_features", "insightface", "onnxruntime", "dlib-bin", "face_recognition_models",
            "librosa", "diffusers", "rotary-embedding-torch", "pykalman", "pandas", "matplotlib")


def package_versions(names=PACKAGES) -> dict[str, str | None]:
    out = {}
    for n in names:
        try:
            out[n] = importlib.metadata.version(n)
        except importlib.metadata.PackageNotFoundError:
            out[n] = None
    return out


def git_hash() -> str | None:
    """Commit of the kdbench checkout (with ``-dirty`` when modified), or None outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (rev + ("-dirty" if dirty else "")) or None


def device_info(device: str) -> dict[str, Any]:
    """Device name, CUDA and driver versions. Imports torch only for a CUDA device or if already imported."""
    info: dict[str, Any] = {"device": device, "cpu": platform.processor() or platform.machine()}
    try:
        import os

        info["cpu_count"] = os.cpu_count()
    except Exception:  # noqa: BLE001
        pass
    if device.startswith("cuda") or "torch" in sys.modules:
        try:
            import torch

            info["torch_threads"] = torch.get_num_threads()
            info["cuda_available"] = torch.cuda.is_available()
            info["cuda"] = torch.version.cuda
            if device.startswith("cuda") and torch.cuda.is_available():
                info["gpu"] = torch.cuda.get_device_name(torch.device(device))
                try:
                    out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                         capture_output=True, text=True, timeout=10).stdout.strip()
                    info["driver"] = out.splitlines()[0] if out else None
                except (OSError, subprocess.SubprocessError):
                    info["driver"] = None
        except ImportError:
            pass
    return info


def collect_env(device: str = "cpu") -> dict[str, Any]:
    return {
        "kdbench_version": __version__,
        "kdbench_git": git_hash(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        **device_info(device),
    }


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is usable, else ``cpu``; ``cuda`` / ``cuda:N`` only when that GPU is usable.

    A CUDA device that this machine lacks is a :class:`KdbenchError` (raised before any output is written), never
    a CPU run labelled cuda. Imports torch only for ``auto`` and CUDA devices.
    """
    import re

    from .errors import KdbenchError

    device = str(device).strip()
    if device == "auto":
        try:
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        except ImportError:
            return "cpu"
    if device == "cpu":
        return device
    m = re.fullmatch(r"cuda(?::(\d+))?", device)
    if not m:
        raise KdbenchError(f"unknown device {device!r}: use cpu, cuda, cuda:N or auto")
    try:
        import torch
    except ImportError as e:
        raise KdbenchError(f"--device {device} needs PyTorch with CUDA; install it, or use --device cpu") from e
    if not torch.cuda.is_available():
        raise KdbenchError(
            f"--device {device}: no usable CUDA GPU on this machine (torch {torch.__version__}, CUDA build "
            f"{torch.version.cuda or 'none'}, torch.cuda.is_available() is False). Use --device cpu, or --device auto "
            "to use a GPU only when there is one")
    n = torch.cuda.device_count()
    if int(m.group(1) or 0) >= n:
        raise KdbenchError(f"--device {device}: this machine has {n} CUDA device(s): use cuda:0..cuda:{n - 1}")
    return device
