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


PICKLE_POLICY: dict = {"allow": (), "loads": []}
"""What :func:`torch_load_pinned_pickle` allows: ``allow`` = ``"module:qualname"`` globals of the method's checkpoint
formats (set by the worker from its hooks' ``pickle_allow``); ``loads`` = one record per ``torch.load`` call
(file, sha256 when pinned, how it was loaded), reported in the worker's ready message and env.json."""

TRUST_UNPINNED_ENV = "KDBENCH_TRUST_UNPINNED"
PINS_ENV = "KDBENCH_WORKER_PINS"


class UnpinnedPickle(RuntimeError):
    """A checkpoint without a matching published pin holds objects outside the method's allow-list: not loaded."""


def _pins() -> dict:
    """``realpath -> {name, sha256, size, mtime_ns, inode, pin_full}`` of the files the parent verified against a
    published pin just before starting this worker (the JSON file named by ``$KDBENCH_WORKER_PINS``)."""
    import json

    path = os.environ.get(PINS_ENV)
    if not path:
        return {}
    with open(path) as f:
        return json.load(f)


def _file_of(f):
    """The real path of what ``torch.load`` got (a path or an open file), or None (a buffer)."""
    name = f if isinstance(f, (str, os.PathLike)) else getattr(f, "name", None)
    if not isinstance(name, (str, os.PathLike)):
        return None
    return os.path.realpath(os.fspath(name))


def _pinned_match(path, pins: dict):
    """The pin record of ``path`` when it is a fully pinned file whose size, mtime and inode are those the parent
    hashed (else None: a file changed after verification is not trusted)."""
    rec = pins.get(path) if path else None
    if not rec or not rec.get("pin_full"):
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    if (st.st_size, st.st_mtime_ns, st.st_ino) != (rec.get("size"), rec.get("mtime_ns"), rec.get("inode")):
        return None
    return rec


def _unpinned_reason(rec) -> str:
    """Why a file's pin record (from ``$KDBENCH_WORKER_PINS``, or None) does not allow full unpickling."""
    if rec is None:
        return "it is not a manifest file verified by kdbench"
    if rec.get("trust") == "unverified":
        return "it differs from its pin (used under KDBENCH_ALLOW_UNVERIFIED)"
    if rec.get("trust") == "tofu":
        return "it is trusted on first use (no published checksum)"
    if not rec.get("pin_full"):
        return "its pin is only a sha256 prefix"
    return "its size, mtime or inode changed after kdbench verified it"


def _resolve_globals(names) -> list:
    """``"module:qualname"`` strings -> objects (names whose module is not installed are skipped)."""
    import importlib

    out = []
    for n in names:
        module, _, qual = n.partition(":")
        try:
            obj = importlib.import_module(module)
        except ImportError:
            continue
        for part in qual.split("."):
            obj = getattr(obj, part, None)
        if obj is not None:
            out.append(obj)
    return out


def torch_load_pinned_pickle() -> str:
    """``torch.load`` unpickles fully only files that match a published pin; everything else is tensors-only.

    Upstream checkpoints were saved by pickling whole dicts (epochs, numpy scalars, ``argparse.Namespace``), and
    torch >= 2.6 loads with ``weights_only=True`` by default. Full unpickling runs code from the file, so it is
    allowed only for a file whose sha256 or git blob id the parent verified against the weights manifest's pin
    just before starting the worker (``$KDBENCH_WORKER_PINS``; size, mtime and inode unchanged since). Any other
    file (trusted on first use, unverified, not in the manifest, changed since) is loaded with ``weights_only=True``
    plus the method's allow-list (``PICKLE_POLICY["allow"]``: the globals its official formats contain); a file
    that needs more is refused with :class:`UnpinnedPickle` naming it, unless ``KDBENCH_TRUST_UNPINNED=1``
    (``kdbench run --trust-unpinned``; recorded in env.json and the report).
    """
    import pickle

    import torch

    if getattr(torch.load, "_kdbench_compat", False):
        return "already applied"
    original = torch.load
    pins = _pins()
    trust_unpinned = os.environ.get(TRUST_UNPINNED_ENV) == "1"

    def load(f, *args, **kwargs):
        path = _file_of(f)
        rec = _pinned_match(path, pins)
        if kwargs.get("weights_only") is not True and rec is not None:
            kwargs["weights_only"] = False
            PICKLE_POLICY["loads"].append({"file": path, "name": rec.get("name"), "sha256": rec.get("sha256"),
                                           "mode": "full pickle (pinned)"})
            return original(f, *args, **kwargs)
        kwargs.pop("weights_only", None)  # a caller asking for full unpickling itself gets the same rule
        entry = {"file": path, "name": (pins.get(path) or {}).get("name"), "mode": "weights_only"}
        PICKLE_POLICY["loads"].append(entry)
        allow = _resolve_globals(PICKLE_POLICY["allow"])
        start = f.tell() if hasattr(f, "tell") and hasattr(f, "seek") else None
        try:
            with torch.serialization.safe_globals(allow):
                return original(f, *args, **{**kwargs, "weights_only": True})
        except pickle.UnpicklingError as e:
            why = "it matches no published pin: " + _unpinned_reason(pins.get(path) if path else None)
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            try:  # listed statically, nothing is run
                names = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path)) if path else []
                allowed = {f"{getattr(o, '__module__', '')}.{getattr(o, '__qualname__', '')}" for o in allow}
                refused = [n for n in names if n not in allowed]
                if refused:
                    first = "it refers to " + ", ".join(refused)
            except Exception:  # noqa: BLE001 - legacy format: torch's own message says what it met
                pass
            if not trust_unpinned:
                raise UnpinnedPickle(
                    f"{path or 'a checkpoint buffer'}: not unpickled, because {why}, and it holds objects outside "
                    f"the method's allow-list ({first}). Loading it would run code from the file. If you trust this "
                    f"file, re-run with --trust-unpinned (or {TRUST_UNPINNED_ENV}=1); results then record it.") from e
            entry["mode"] = "full pickle (UNPINNED, --trust-unpinned)"
            sys.stderr.write(f"kdbench: {path}: unpickled fully although {why} (--trust-unpinned)\n")
            if start is not None:
                f.seek(start)
            return original(f, *args, **{**kwargs, "weights_only": False})

    load._kdbench_compat = True  # type: ignore[attr-defined]
    torch.load = load
    return (f"torch {torch.__version__}: full unpickling only for {sum(bool(r.get('pin_full')) for r in pins.values())}"
            f" pinned files; others weights_only + allow-list" + (" (--trust-unpinned)" if trust_unpinned else ""))


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


def imageio_plugins_spec() -> str:
    """Give imageio 2.19's replacement ``imageio.plugins`` module its ``__spec__`` (and ``__path__``) back.

    imageio < 2.22 swaps ``sys.modules["imageio.plugins"]`` for a bare module object with a lazy ``__getattr__``.
    Python >= 3.11 reads ``parent.__spec__`` when importing a submodule, which that ``__getattr__`` turns into an
    endless import of ``imageio.plugins.__spec__`` (RecursionError in ``imageio.mimsave``: SadTalker's video
    writer). The package's real spec is looked up with the path finder and set on the module.
    """
    import importlib.machinery

    import imageio
    import imageio.plugins  # noqa: F401 - installs the replacement module

    mod = sys.modules["imageio.plugins"]
    if "__spec__" in mod.__dict__ and mod.__dict__["__spec__"] is not None:
        return "not needed (imageio.plugins has its __spec__)"
    spec = importlib.machinery.PathFinder.find_spec("imageio.plugins", list(imageio.__path__))
    mod.__spec__ = spec
    if "__path__" not in mod.__dict__:
        mod.__path__ = list(spec.submodule_search_locations or [])
    return f"set imageio.plugins.__spec__ (imageio {imageio.__version__})"


def torch_qr() -> str:
    """``torch.qr(A, some=True)`` -> ``torch.linalg.qr(A, mode="reduced" | "complete")``.

    ``torch.qr`` was deprecated in torch 1.9 and removed in later releases; AniTalker's LIA decoder
    (``networks/styledecoder.py``) orthogonalises its motion dictionary with it on every frame. ``torch.linalg.qr``
    is the same LAPACK/cuSOLVER factorisation (torch's own deprecation message gives this replacement).
    """
    import torch

    if hasattr(torch, "qr") and not getattr(torch.qr, "_kdbench_compat", False):
        try:
            torch.qr(torch.eye(2))
            return f"not needed (torch {torch.__version__} still has torch.qr)"
        except RuntimeError:
            pass

    def qr(A, some=True, *, out=None):
        q, r = torch.linalg.qr(A, mode="reduced" if some else "complete")
        if out is not None:
            out[0].copy_(q)
            out[1].copy_(r)
        return q, r

    qr._kdbench_compat = True  # type: ignore[attr-defined]
    torch.qr = qr
    return f"torch {torch.__version__}: torch.qr -> torch.linalg.qr"


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


def numpy2_removed_names() -> str:
    """Two numpy 1.x names that numpy 2 removed, restored as aliases of their numpy 2 homes.

    Real3D-Portrait (written for numpy 1.23) filters ``np.VisibleDeprecationWarning`` at import
    (``deep_3drecon/util/preprocess.py``; numpy 2 keeps the class in ``numpy.exceptions``) and imports
    ``quantile`` from ``numpy.lib.function_base`` (``fit_3dmm_landmark.py``; the private module is gone, the
    function is ``numpy.quantile``). Same objects, so nothing computes differently; with numpy 1.x nothing is done.
    """
    import numpy as np

    done = []
    if not hasattr(np, "VisibleDeprecationWarning"):
        np.VisibleDeprecationWarning = np.exceptions.VisibleDeprecationWarning
        done.append("np.VisibleDeprecationWarning")
    try:
        import numpy.lib.function_base  # noqa: F401
    except ImportError:
        mod = types.ModuleType("numpy.lib.function_base")
        mod.quantile = np.quantile
        sys.modules["numpy.lib.function_base"] = mod
        done.append("numpy.lib.function_base.quantile")
    if not done:
        return f"not needed (numpy {np.__version__})"
    return f"numpy {np.__version__}: aliased {', '.join(done)}"


def mesh_renderer_cpu_device() -> str:
    """Real3D-Portrait's ``MeshRenderer.forward`` runs on a CPU tensor.

    ``deep_3drecon/util/mesh_renderer.py`` creates its pytorch3d ``MeshRasterizer`` on the first call and prints
    ``"create rasterizer on device cuda:%d" % device.index``; on the CPU ``device.index`` is None, a ``TypeError``.
    When that module is imported (an import hook: the fix is applied before upstream is on ``sys.path``), ``forward``
    is wrapped: for a device without an index it creates the rasterizer first, exactly as that branch does, and
    prints the device's name instead; upstream's ``forward`` then runs unchanged. Nothing changes on CUDA.
    """
    import importlib.abc
    import importlib.machinery

    target = "deep_3drecon.util.mesh_renderer"

    def patch(module) -> None:
        cls = module.MeshRenderer
        if getattr(cls.forward, "_kdbench_compat", False):
            return
        original = cls.forward

        def forward(self, *args, **kwargs):
            vertex = args[0] if args else kwargs["vertex"]
            if self.rasterizer is None and vertex.device.index is None:
                self.rasterizer = module.MeshRasterizer()
                print(f"create rasterizer on device {vertex.device}")
            return original(self, *args, **kwargs)

        forward._kdbench_compat = True  # type: ignore[attr-defined]
        cls.forward = forward

    if target in sys.modules:
        patch(sys.modules[target])
        return "patched MeshRenderer.forward (already imported)"

    class _Hook(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target_module=None):
            if name != target:
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is None or spec.loader is None:
                return spec
            exec_module = spec.loader.exec_module

            def exec_and_patch(module):
                exec_module(module)
                patch(module)

            spec.loader.exec_module = exec_and_patch
            return spec

    if not any(isinstance(f, _Hook) or type(f).__name__ == "_Hook" for f in sys.meta_path):
        sys.meta_path.insert(0, _Hook())
    return "MeshRenderer.forward will accept CPU devices (patched when deep_3drecon.util.mesh_renderer is imported)"


def mediapipe_mask_2d() -> str:
    """``mediapipe.Image.numpy_view()`` of a one-channel image is ``[H, W]`` again (0.10.31 returns ``[H, W, 1]``).

    Real3D-Portrait's ``mp_segmenter.py`` reads the segmenter's category mask with
    ``out.category_mask.numpy_view().copy() # [H, W]`` and unpacks ``segmap[None, None].shape`` into four names, as
    the mediapipe of its time (its Colab: 0.10.7) returned; mediapipe 0.10.31's ctypes ``Image`` adds a trailing
    channel axis for one-channel formats (GRAY8, GRAY16, VEC32F1), a ``ValueError`` there. The view is the same
    memory with that axis dropped; multi-channel images are unchanged.
    """
    try:
        import mediapipe as mp
    except ImportError:
        return "not needed (no mediapipe)"
    cls = mp.Image
    if getattr(cls.numpy_view, "_kdbench_compat", False):
        return "already applied"
    original = cls.numpy_view
    one_channel = {getattr(mp.ImageFormat, n) for n in ("GRAY8", "GRAY16", "VEC32F1") if hasattr(mp.ImageFormat, n)}

    def numpy_view(self):
        view = original(self)
        if self.image_format in one_channel and view.ndim == 3 and view.shape[-1] == 1:
            return view[..., 0]
        return view

    numpy_view._kdbench_compat = True  # type: ignore[attr-defined]
    cls.numpy_view = numpy_view
    return f"mediapipe {getattr(mp, '__version__', '?')}: one-channel numpy_view() -> [H, W]"


def torchshow_window_title() -> str:
    """torchshow's ``set_window_title`` works with matplotlib >= 3.10.

    torchshow 0.5.1 picks its code path with ``matplotlib.__version__ < '3.4'``, a string comparison that is true for
    '3.10'/'3.11', and then calls ``fig.canvas.set_window_title``, which matplotlib 3.6 removed: every
    ``torchshow.save`` fails (Real3D-Portrait saves a debug image of the head crop with it). The replacement is
    torchshow's own branch for matplotlib >= 3.4 (``fig.canvas.manager.set_window_title``); the saved image is the
    same (a window title only matters on screen).
    """
    try:
        import torchshow.visualization as vis
    except ImportError:
        return "not needed (no torchshow)"
    if getattr(vis.set_window_title, "_kdbench_compat", False):
        return "already applied"

    def set_window_title(fig, title):
        manager = getattr(fig.canvas, "manager", None)
        if manager is not None:
            manager.set_window_title(title)

    set_window_title._kdbench_compat = True  # type: ignore[attr-defined]
    vis.set_window_title = set_window_title
    return "torchshow.visualization.set_window_title -> fig.canvas.manager.set_window_title"


FIXES: dict[str, types.FunctionType] = {
    "imageio_plugins_spec": imageio_plugins_spec,
    "torchvision_functional_tensor": torchvision_functional_tensor,
    "torch_load_pinned_pickle": torch_load_pinned_pickle,
    "ffmpeg_on_path": ffmpeg_on_path,
    "torch_qr": torch_qr,


    "cuda_to_cpu": cuda_to_cpu,
    "numpy2_removed_names": numpy2_removed_names,
    "mesh_renderer_cpu_device": mesh_renderer_cpu_device,
    "mediapipe_mask_2d": mediapipe_mask_2d,
    "torchshow_window_title": torchshow_window_title,
}


def apply(names) -> dict[str, str]:
    """Apply the named fixes in order; return ``name -> what was done`` (recorded in the run's env.json)."""
    done = {}
    for n in names:
        if n not in FIXES:
            raise KeyError(f"unknown compat fix {n!r}; known: {', '.join(sorted(FIXES))}")
        done[n] = FIXES[n]()
    return done
