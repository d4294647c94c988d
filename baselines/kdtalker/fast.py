"""Fast paths for KDTalker inference, each behind a switch of :class:`FastOptions`; the plain path is the reference.

Where the time goes on one GPU (H200, fp32, 200 frames, 50 DDIM steps, plain path): diffusion 1.4 s (4 windows x
50 steps = 200 sequential denoiser calls on 66 tokens, about 7 ms each, launch-bound), rendering 3.2 s (warp +
SPADE decode, batch 16, then a blocking copy to the host and the uint8 conversion in numpy while the GPU idles).

- ``diffusion_graph`` (exact): each window's whole 50-step DDIM loop is captured once as a CUDA graph over static
  input buffers (noise, identity + reference tokens, audio context) and replayed per window. The captured kernels
  are the eager ones with the same arguments (the per-step DDIM scalars and timesteps are baked in at capture, as
  eager passes them per launch), so the motion is bit-identical to :func:`.window.sample_window`. On a CPU the
  same static-buffer loop runs eagerly (what the tests compare with the plain loop).
- ``device_uint8`` (exact): the float frames are converted to uint8 on the device with the same float32 operations
  as :meth:`.liveportrait.LivePortrait.to_uint8` (clip, x255, clip, truncate) and copied asynchronously into pinned
  host memory, so the GPU never waits for numpy and copies a quarter of the bytes.
- ``channels_last`` (approximate): the warping and SPADE networks run on copies of their weights in channels-last
  (2-D) / channels-last-3d (3-D) layouts, where cuDNN has its tensor-core kernels. Other convolution algorithms sum
  in another order: frames may differ from the plain path by rounding, which the benchmark and tests bound.
- ``compile`` (approximate): ``torch.compile`` of warp + decode + uint8 conversion (inductor fuses the
  element-wise work between convolutions); ``pad_batches`` keeps every call at ``batch_size`` frames so the
  compiled graph never re-specialises (the padding frames repeat the last keypoints and are dropped).

Diffusion and rendering do not overlap: the Kalman (RTS) smoother needs the whole motion sequence before the
first frame can be rendered (its backward pass runs from the last frame), so rendering window k while window k+1
diffuses would change the frames. Batching several clips' windows into one denoiser call changes the matrix
shapes, hence cuBLAS kernels and rounding; it is not offered here.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from .compile_modes import COMPILE_MODES
from .ddim import DDIMSchedule
from .denoiser import AUDIO_DIM, MOTION_DIM, KDTalkerDenoiser
from .window import sample_window


@dataclass(frozen=True)
class FastOptions:
    """Which fast paths run. ``FastOptions()`` is the plain (reference) path; :meth:`exact` the bit-identical set."""

    diffusion_graph: bool = False
    """Replay each 64-frame window's DDIM loop from a CUDA graph (CUDA only; ignored on a CPU). Exact."""
    device_uint8: bool = False
    """uint8 conversion on the device + asynchronous copy to pinned host memory. Exact."""
    channels_last: bool = False
    """Warping and SPADE in channels-last(3d) layouts. Approximate (rounding)."""
    compile: str | None = None
    """``torch.compile`` mode for warp + decode (one of :data:`COMPILE_MODES`), or None. Approximate."""
    pad_batches: bool = False
    """Pad the last render batch to ``batch_size`` frames (static shapes for ``compile``)."""

    def __post_init__(self) -> None:
        if self.compile is not None and self.compile not in COMPILE_MODES:
            raise ValueError(f"compile must be one of {', '.join(COMPILE_MODES)} or None, got {self.compile!r}")

    @classmethod
    def exact(cls) -> FastOptions:
        """Every fast path whose frames equal the plain path's bit for bit."""
        return cls(diffusion_graph=True, device_uint8=True)

    @property
    def is_plain(self) -> bool:
        return self == FastOptions()

    def with_(self, **kw: Any) -> FastOptions:
        return replace(self, **kw)


# -- diffusion: the DDIM loop of one window over static buffers ------------------------------------------------
class StaticWindowLoop:
    """One window's DDIM loop reading and writing fixed tensors (the form a CUDA graph captures).

    Buffers (float32, on the denoiser's device): ``x_t [1,L,70]`` initial noise, ``prefix [1,2,70]``
    (identity, reference tokens), ``context [1,L+2,512]`` (two zero rows, then the window's audio), ``out [1,L,70]``.
    :meth:`run` performs exactly the operations of :func:`.window.sample_window`, in the same order.
    """

    def __init__(self, denoiser: KDTalkerDenoiser, schedule: DDIMSchedule, length: int,
                 device: str | torch.device, dtype: torch.dtype = torch.float32):
        self.denoiser, self.schedule, self.length = denoiser, schedule, int(length)
        self.device = torch.device(device)
        self.x_t = torch.zeros(1, length, MOTION_DIM, device=device, dtype=dtype)
        self.prefix = torch.zeros(1, 2, MOTION_DIM, device=device, dtype=dtype)
        self.context = torch.zeros(1, length + 2, AUDIO_DIM, device=device, dtype=dtype)
        self.out = torch.zeros(1, length, MOTION_DIM, device=device, dtype=dtype)
        self.positional = denoiser.positional_terms(length + 2, self.device, dtype)
        self.graph: Any = None

    def load(self, x_t: torch.Tensor, ori: torch.Tensor, ref: torch.Tensor, aud: torch.Tensor) -> None:
        """Copy one window's inputs (``x_t [1,L,70]``, ``ori``/``ref [1,70]``, ``aud [1,L,512]``) into the buffers."""
        self.x_t.copy_(x_t)
        self.prefix[:, 0].copy_(ori)
        self.prefix[:, 1].copy_(ref)
        self.context[:, 2:].copy_(aud)

    @torch.no_grad()
    def run(self) -> None:
        """The 50 (or ``S``) denoiser calls and DDIM updates; result in :attr:`out`."""
        x_t = self.x_t
        for t in self.schedule.timesteps:
            tt = torch.full((1,), int(t), dtype=torch.long, device=self.device)
            eps = self.denoiser(torch.cat([self.prefix, x_t], 1), tt, self.context, self.positional)[:, 2:]
            x_t = self.schedule.step(eps, int(t), x_t)
        self.out.copy_(x_t)

    def capture(self) -> None:
        """Warm up on a side stream (cuBLAS workspace, lazy initialisation), then capture :meth:`run`."""
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            self.run()
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.run()
        self.graph = graph

    def __call__(self, x_t: torch.Tensor, ori: torch.Tensor, ref: torch.Tensor, aud: torch.Tensor,
                 use_graph: bool) -> torch.Tensor:
        self.load(x_t, ori, ref, aud)
        if use_graph:
            if self.graph is None:
                self.capture()
            self.graph.replay()
        else:
            self.run()
        return self.out.clone()


class WindowSampler:
    """Drop-in for :func:`.window.sample_window` that reuses one :class:`StaticWindowLoop` per (steps, length).

    ``use_graph``: replay CUDA graphs (needs a CUDA device); otherwise the static loop runs eagerly. If capturing
    fails, it warns once and falls back to the plain eager loop for the rest of the process.
    """

    def __init__(self, denoiser: KDTalkerDenoiser, use_graph: bool = True):
        self.denoiser = denoiser
        self.use_graph = bool(use_graph)
        self.loops: dict[tuple[int, int, str], StaticWindowLoop] = {}
        self.failed: str | None = None

    def __call__(self, denoiser: KDTalkerDenoiser, schedule: DDIMSchedule, x_t: torch.Tensor, ori: torch.Tensor,
                 ref: torch.Tensor, aud: torch.Tensor) -> torch.Tensor:
        graph = self.use_graph and x_t.device.type == "cuda"
        if denoiser is not self.denoiser or self.failed or aud.dtype != torch.float32:
            return sample_window(denoiser, schedule, x_t, ori, ref, aud)
        key = (schedule.num_inference_steps, x_t.shape[1], str(x_t.device))
        loop = self.loops.get(key)
        if loop is None or loop.schedule.num_train_timesteps != schedule.num_train_timesteps:
            loop = self.loops[key] = StaticWindowLoop(denoiser, schedule, x_t.shape[1], x_t.device)
        try:
            return loop(x_t, ori, ref, aud, use_graph=graph)
        except RuntimeError as e:  # capture not supported here: keep the plain path, say so once
            if not graph:
                raise
            self.failed = f"{type(e).__name__}: {e}"
            warnings.warn(f"kdtalker: CUDA-graph capture of the DDIM loop failed ({self.failed}); "
                          "using the plain loop", RuntimeWarning, stacklevel=2)
            self.loops.pop(key, None)
            return sample_window(denoiser, schedule, x_t, ori, ref, aud)


# -- rendering -------------------------------------------------------------------------------------------------
def frames_to_uint8(out: torch.Tensor) -> torch.Tensor:
    """float[B,3,H,W] in [0,1] -> uint8[B,H,W,3] on the same device, the float32 operations of ``to_uint8``.

    ``clip(x, 0, 1) * 255``, ``clip(., 0, 255)``, truncation toward zero: equal, element for element, to
    :meth:`.liveportrait.LivePortrait.to_uint8` for finite inputs.
    """
    x = out.float().clamp(0, 1).mul(255).clamp(0, 255)
    return x.to(torch.uint8).permute(0, 2, 3, 1)


def _to_layout(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``module`` whose 4-D weights are channels-last and 5-D weights channels-last-3d."""
    module = copy.deepcopy(module)
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            if t.dim() == 4:
                t.data = t.data.contiguous(memory_format=torch.channels_last)
            elif t.dim() == 5:
                t.data = t.data.contiguous(memory_format=torch.channels_last_3d)
    return module


class FastRenderer:
    """Warp + SPADE decode of a :class:`.liveportrait.LivePortrait` with the render switches of :class:`FastOptions`.

    ``render(source, kp_driving [T,21,3], batch_size) -> uint8[T,512,512,3]``. With every switch off it returns
    what ``LivePortrait.render`` returns.
    """

    def __init__(self, lp: Any, options: FastOptions):
        self.lp, self.options = lp, options
        self.warping, self.spade = lp.warping, lp.spade
        if options.channels_last:
            self.warping, self.spade = _to_layout(lp.warping), _to_layout(lp.spade)
        self._core: Any = self._frames
        if options.compile:
            self._core = torch.compile(self._frames, mode=options.compile, dynamic=False)

    def _frames(self, f_s: torch.Tensor, x_s: torch.Tensor, kp: torch.Tensor) -> torch.Tensor:
        """``f_s [B,32,16,64,64]``, ``x_s``/``kp [B,21,3]`` -> uint8[B,512,512,3] on the device."""
        with self.lp._autocast():
            warped = self.warping(f_s, kp_driving=kp, kp_source=x_s)["out"]
            if self.options.channels_last:
                warped = warped.contiguous(memory_format=torch.channels_last)
            out = self.spade(warped)
        return frames_to_uint8(out)

    @torch.no_grad()
    def batch(self, source: Any, kp: torch.Tensor) -> torch.Tensor:
        """One batch of driving keypoints [b,21,3] -> uint8[b,512,512,3] on the device."""
        kp = torch.as_tensor(kp).to(device=self.lp.device, dtype=torch.float32)
        b = kp.shape[0]
        f_s = source.f_s.expand(b, *source.f_s.shape[1:])
        if self.options.channels_last:
            f_s = f_s.contiguous(memory_format=torch.channels_last_3d)
        x_s = source.x_s.expand(b, *source.x_s.shape[1:])
        return self._core(f_s, x_s, kp)

    @torch.no_grad()
    def render(self, source: Any, kp_driving: Any, batch_size: int = 16) -> np.ndarray:
        from .liveportrait import NUM_KP, OUTPUT_SIZE

        kp = torch.as_tensor(kp_driving)
        if kp.ndim != 3 or tuple(kp.shape[1:]) != (NUM_KP, 3):
            raise ValueError(f"kp_driving must be [T,{NUM_KP},3], got {list(kp.shape)}")
        n, bs = kp.shape[0], max(1, int(batch_size))
        if not self.options.device_uint8:
            chunks = [self.batch(source, kp[i:i + bs]).cpu().numpy() for i in range(0, n, bs)]
            return (np.concatenate(chunks, 0) if chunks
                    else np.zeros((0, OUTPUT_SIZE, OUTPUT_SIZE, 3), np.uint8))
        if n == 0:
            return np.zeros((0, OUTPUT_SIZE, OUTPUT_SIZE, 3), np.uint8)
        on_cuda = self.lp.device.type == "cuda"
        host = None
        for i in range(0, n, bs):
            chunk = kp[i:i + bs]
            b = chunk.shape[0]
            if self.options.pad_batches and b < bs:
                chunk = torch.cat([chunk, chunk[-1:].expand(bs - b, -1, -1)], 0)
            frames = self.batch(source, chunk)[:b]
            if host is None:   # pinned (page-locked) on CUDA, so the copies run asynchronously
                host = torch.empty((n, *frames.shape[1:]), dtype=torch.uint8, pin_memory=on_cuda)
            host[i:i + b].copy_(frames, non_blocking=on_cuda)
        if on_cuda:
            torch.cuda.synchronize(self.lp.device)
        return host.numpy()
