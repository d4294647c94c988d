"""Import-time fixes that let unmodified upstream code run on current numpy / torch / torchvision.

Applied by the worker (:mod:`kdbench.runtime.worker`) before it imports any upstream module, by name from the
method's spec (``UpstreamSpec.compat``); upstream files are never edited. Each fix says why it exists. This module
runs inside the method's environment (any Python >= 3.8): standard library only at import time.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import types


def torchvision_functional_tensor() -> str:
    """``torchvision.transforms.functional_tensor`` -> ``torchvision.transforms._functional_tensor``.

    basicsr 1.4.2 (SadTalker's GFPGAN/facexlib stack) imports ``torchvision.transforms.functional_tensor``,
    which torchvision 0.17 renamed to ``_functional_tensor`` (the old name was removed). The module is aliased
    before basicsr is imported; with an older torchvision that still has it, nothing is done.
    """
    try:
        import torchvision.transforms.functional_tensor  # noqa: F401
        return "not needed (torchvision still has functional_tensor)"
    except ImportError:
        pass
    import torchvision.transforms._functional_tensor as ft

    sys.modules["torchvision.transforms.functional_tensor"] = ft
    return "aliased torchvision.transforms.functional_tensor to _functional_tensor"


def torch_load_full_pickle() -> str:
    """``torch.load`` defaults to ``weights_only=False`` again (it became True in torch 2.6).

    Upstream checkpoints were saved by pickling whole dicts (epochs, numpy scalars, optimizer states);
    torch >= 2.6 refuses those by default. The files are checksum-pinned by kdbench's weights manager, so
    the old default is restored for calls that do not pass ``weights_only`` themselves.
    """
    import torch

    if getattr(torch.load, "_kdbench_compat", False):
        return "already applied"
    original = torch.load

    def load(*args, **kwargs):
        kwargs.setdefault("weights_only", False)
        return original(*args, **kwargs)

    load._kdbench_compat = True  # type: ignore[attr-defined]
    torch.load = load
    return f"torch {torch.__version__}: torch.load(weights_only=False) by default"


def ffmpeg_on_path() -> str:
    """An ``ffmpeg`` executable on ``PATH`` (imageio-ffmpeg's bundled binary when the system has none).

    Upstream scripts call ``ffmpeg`` through ``os.system`` to mux audio (SadTalker's
    ``save_video_with_watermark``); a failed call there is silent and leaves no video. Machines without a
    system ffmpeg get imageio-ffmpeg's binary (a dependency of the method's environment) linked as ``ffmpeg``
    into a private folder put first on ``PATH``.
    """
    found = shutil.which("ffmpeg")
    if found:
        return f"system ffmpeg: {found}"
    import imageio_ffmpeg

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    folder = tempfile.mkdtemp(prefix="kdbench-ffmpeg-")
    os.symlink(exe, os.path.join(folder, "ffmpeg"))
    os.environ["PATH"] = folder + os.pathsep + os.environ.get("PATH", "")
    return f"linked imageio-ffmpeg's {exe} as ffmpeg"


def cuda_to_cpu() -> str:
    """On a machine without CUDA, upstream's hard-coded ``.cuda()`` / ``.to("cuda")`` stay on the CPU.

    AniPortrait's ``scripts/audio2vid.py`` and ``frame_interpolation.py`` call ``.cuda()`` and ``.to("cuda")``
    unconditionally, so the official script cannot run on a CPU (tests, equivalence checks with random weights).
    Without CUDA, ``Tensor.cuda`` / ``Module.cuda`` return the object unchanged and ``Tensor.to`` / ``Module.to``
    map a CUDA device to ``cpu``; with CUDA, nothing is changed.
    """
    import torch

    if torch.cuda.is_available():
        return "not needed (CUDA available)"
    if getattr(torch.Tensor.cuda, "_kdbench_compat", False):
        return "already applied"

    def cpu(x):
        if isinstance(x, torch.device) and x.type == "cuda":
            return torch.device("cpu")
        if isinstance(x, str) and x.split(":")[0] == "cuda":
            return "cpu"
        return x

    def wrap_to(original):
        def to(self, *args, **kwargs):
            if "device" in kwargs:
                kwargs["device"] = cpu(kwargs["device"])
            return original(self, *(cpu(a) for a in args), **kwargs)
        return to

    def stay(self, *args, **kwargs):
        return self

    stay._kdbench_compat = True  # type: ignore[attr-defined]
    torch.Tensor.cuda = stay
    torch.nn.Module.cuda = stay
    torch.Tensor.to = wrap_to(torch.Tensor.to)
    torch.nn.Module.to = wrap_to(torch.nn.Module.to)
    return "no CUDA: .cuda() is a no-op and .to('cuda') goes to the CPU"


FIXES: dict[str, types.FunctionType] = {
    "torchvision_functional_tensor": torchvision_functional_tensor,
    "torch_load_full_pickle": torch_load_full_pickle,
    "ffmpeg_on_path": ffmpeg_on_path,
    "cuda_to_cpu": cuda_to_cpu,
}


def apply(names) -> dict[str, str]:
    """Apply the named fixes in order; return ``name -> what was done`` (recorded in the run's env.json)."""
    done = {}
    for n in names:
        if n not in FIXES:
            raise KeyError(f"unknown compat fix {n!r}; known: {', '.join(sorted(FIXES))}")
        done[n] = FIXES[n]()
    return done
