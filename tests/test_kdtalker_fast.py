"""KDTalker fast paths (baselines/kdtalker/fast.py) against the plain reference path.

CPU tests: the static-buffer DDIM loop that a CUDA graph captures gives the plain loop's motion bit for bit; the
on-device uint8 conversion gives ``to_uint8``'s frames bit for bit; channels-last rendering stays within one grey
level (narrow random LivePortrait networks, as in test_liveportrait.py); the method's switches select the paths.
The CUDA-only parts (graph capture and replay, pinned asynchronous copies, cuDNN layouts) are checked by the GPU
tests at the end, opt-in with KDBENCH_GPU_TESTS=1 on a machine with CUDA.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="KDTalker needs torch (kdbench[kdtalker])")

from baselines.kdtalker import fast as FA  # noqa: E402
from baselines.kdtalker import liveportrait as LP  # noqa: E402
from baselines.kdtalker import pipeline as P  # noqa: E402
from baselines.kdtalker.denoiser import KDTalkerDenoiser, load_denoiser  # noqa: E402
from baselines.kdtalker.random_weights import random_denoiser_checkpoint  # noqa: E402
from tests.liveportrait_fixtures import tiny_liveportrait  # noqa: E402

GPU = os.environ.get("KDBENCH_GPU_TESTS") == "1"


def small_denoiser(seed: int) -> KDTalkerDenoiser:
    """The released architecture, narrowed (width 128, 2 layers): the loop logic does not depend on the width."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = KDTalkerDenoiser(dim=128, num_layers=2).eval()
        with torch.no_grad():
            model.output_projection.weight.normal_(0, 0.05)       # a visible epsilon, not ~0
    return model


@pytest.fixture(scope="module")
def denoiser():
    return small_denoiser(3)


def _inputs(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, 512, generator=g).relu()
    ref, ori = torch.randn(70, generator=g).numpy(), torch.randn(70, generator=g).numpy()
    return feats, ref, ori


# -- diffusion ---------------------------------------------------------------------------------------------------
def test_static_window_loop_gives_the_plain_motion_bit_for_bit(denoiser):
    sampler = FA.WindowSampler(denoiser, use_graph=True)      # on a CPU: the captured loop, run eagerly
    for n, seed in ((70, 11), (20, 5)):                         # 2 windows with wrap-around; one short 2N window
        feats, ref, ori = _inputs(n, seed)
        plain = P.sample_motion(denoiser, feats, ref, ori, num_steps=3, seed=seed)
        fast = P.sample_motion(denoiser, feats, ref, ori, num_steps=3, seed=seed, window_fn=sampler)
        assert fast.shape == (n, 70)
        np.testing.assert_array_equal(fast, plain)
    # one static loop per (steps, window length), reused across windows and clips
    assert sorted(k[:2] for k in sampler.loops) == [(3, 40), (3, 64)]
    assert all(loop.graph is None for loop in sampler.loops.values())  # no capture off CUDA
    # a reused loop with other inputs still follows them (buffers are overwritten, not stale)
    feats, ref, ori = _inputs(64, 9)
    np.testing.assert_array_equal(
        P.sample_motion(denoiser, feats, ref, ori, num_steps=3, seed=2, window_fn=sampler),
        P.sample_motion(denoiser, feats, ref, ori, num_steps=3, seed=2),
    )


def test_window_sampler_keeps_the_plain_loop_for_another_model(denoiser):
    other = small_denoiser(4)
    sampler = FA.WindowSampler(denoiser)
    feats, ref, ori = _inputs(64, 1)
    np.testing.assert_array_equal(
        P.sample_motion(other, feats, ref, ori, num_steps=2, seed=0, window_fn=sampler),
        P.sample_motion(other, feats, ref, ori, num_steps=2, seed=0),
    )
    assert sampler.loops == {}


# -- uint8 conversion --------------------------------------------------------------------------------------------
def test_frames_to_uint8_equals_to_uint8():
    g = torch.Generator().manual_seed(0)
    edges = torch.arange(256, dtype=torch.float32) / 255                 # exact grey-level boundaries ...
    near = torch.cat([edges, torch.nextafter(edges, edges + 1), torch.nextafter(edges, edges - 1)])
    values = torch.cat([near, torch.rand(3 * 40 * 40 - near.numel(), generator=g) * 1.4 - 0.2])
    out = values[torch.randperm(values.numel(), generator=g)].reshape(1, 3, 40, 40)
    got = FA.frames_to_uint8(out)
    assert got.dtype == torch.uint8 and tuple(got.shape) == (1, 40, 40, 3)
    np.testing.assert_array_equal(got.numpy(), LP.LivePortrait.to_uint8(out))
    assert set(np.unique(got.numpy())) >= {0, 254, 255}


# -- rendering (narrow networks on a [1,32,4,8,8] volume, as test_liveportrait.py's ``tiny``) ----------------------
@pytest.fixture(scope="module")
def tiny():
    lp, src = tiny_liveportrait(trained_batchnorm=True)
    g = torch.Generator().manual_seed(3)
    kp = src.x_s + 0.08 * torch.randn(5, 21, 3, generator=g)
    return lp, src, kp


def test_device_uint8_render_equals_plain(tiny):
    lp, src, kp = tiny
    plain = lp.render(src, kp, batch_size=2)                          # batches of 2, 2, 1
    fast = FA.FastRenderer(lp, FA.FastOptions(device_uint8=True)).render(src, kp, batch_size=2)
    assert fast.shape == plain.shape == (5, 64, 64, 3) and fast.dtype == np.uint8
    np.testing.assert_array_equal(fast, plain)
    assert len(np.unique(plain)) > 100                                # a real picture, not a flat one
    assert FA.FastRenderer(lp, FA.FastOptions(device_uint8=True)).render(src, kp[:0]).shape == (0, 512, 512, 3)
    with pytest.raises(ValueError, match=r"\[T,21,3\]"):
        FA.FastRenderer(lp, FA.FastOptions(device_uint8=True)).render(src, kp[:, :20])


def test_padded_batches_keep_frame_count_and_values(tiny):
    lp, src, kp = tiny
    plain = lp.render(src, kp, batch_size=2)
    fast = FA.FastRenderer(lp, FA.FastOptions(device_uint8=True, pad_batches=True)).render(src, kp, batch_size=2)
    assert fast.shape == plain.shape
    diff = np.abs(fast.astype(int) - plain.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3              # frames are independent of their batch
    np.testing.assert_array_equal(fast[:4], plain[:4])               # full batches: the same computation


def test_channels_last_within_one_grey_level(tiny):
    lp, src, kp = tiny
    weights_before = {k: v.clone() for k, v in lp.spade.state_dict().items()}
    fast_r = FA.FastRenderer(lp, FA.FastOptions(device_uint8=True, channels_last=True))
    plain = lp.render(src, kp, batch_size=5)
    fast = fast_r.render(src, kp, batch_size=5)
    diff = np.abs(fast.astype(int) - plain.astype(int))
    # other convolution kernels sum in another order: float32 rounding, truncated to uint8, moves at most one level
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-2
    with torch.no_grad():
        ref = lp.warp_decode(src, kp)
        out = fast_r.spade(fast_r.warping(src.f_s.expand(5, -1, -1, -1, -1).contiguous(
            memory_format=torch.channels_last_3d), kp_driving=kp, kp_source=src.x_s.expand(5, -1, -1))["out"])
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=0)
    # the plain networks are untouched (their own layout and values), the fast copies are channels-last
    conv = lp.spade.fc.weight
    assert conv.is_contiguous() and not fast_r.spade.fc.weight.is_contiguous()
    assert fast_r.spade.fc.weight.is_contiguous(memory_format=torch.channels_last)
    w3 = fast_r.warping.dense_motion_network.mask.weight
    assert w3.is_contiguous(memory_format=torch.channels_last_3d)
    for k, v in lp.spade.state_dict().items():
        assert torch.equal(v, weights_before[k])


def test_pipeline_switches_select_the_paths(tiny, denoiser):
    lp, src, kp = tiny
    norm = None
    plain = P.KDTalkerPipeline(denoiser, None, lp, norm, None, "cpu")
    assert plain.fast.is_plain and plain._window_fn is None and plain._fast_renderer is None
    exact = P.KDTalkerPipeline(denoiser, None, lp, norm, None, "cpu", fast=FA.FastOptions.exact())
    assert isinstance(exact._window_fn, FA.WindowSampler)
    assert exact._fast_renderer is None           # on a CPU, device_uint8 alone is the plain renderer
    fast = P.KDTalkerPipeline(denoiser, None, lp, norm, None, "cpu",
                              fast=FA.FastOptions.exact().with_(channels_last=True))
    assert fast._fast_renderer is not None and fast._fast_renderer.options.channels_last
    g = torch.Generator().manual_seed(4)
    n = 5
    motion = {"pitch": np.zeros((n, 1)), "yaw": np.linspace(-5, 5, n)[:, None], "roll": np.zeros((n, 1)),
              "t": 0.01 * torch.randn(n, 3, generator=g).numpy(), "exp": 0.02 * torch.randn(n, 63, generator=g).numpy()}
    want = plain.render(src, motion, 2)
    np.testing.assert_array_equal(exact.render(src, motion, 2), want)
    diff = np.abs(fast.render(src, motion, 2).astype(int) - want.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-2


def test_method_options_select_fast_paths():
    from baselines.kdtalker import KDTalker
    from kdbench.errors import KdbenchError

    assert KDTalker().fast_options() == FA.FastOptions.exact()
    off = {"cuda_graphs": "false", "device_uint8": "false", "channels_last": "false", "compile": "none"}
    assert KDTalker(options=off).fast_options().is_plain
    opts = KDTalker(options={"channels_last": "true", "compile": "max-autotune-no-cudagraphs"}).fast_options()
    assert opts == FA.FastOptions(True, True, True, "max-autotune-no-cudagraphs", pad_batches=True)
    with pytest.raises(KdbenchError, match="compile must be"):
        KDTalker(options={"compile": "fast"})._checked_options()
    with pytest.raises(ValueError, match="compile must be"):
        FA.FastOptions(compile="turbo")


# -- GPU (opt-in) --------------------------------------------------------------------------------------------------
gpu = pytest.mark.skipif(not (GPU and torch.cuda.is_available()),
                         reason="CUDA-graph and layout checks need a GPU: set KDBENCH_GPU_TESTS=1 on a CUDA machine")


@gpu
def test_gpu_graph_replay_gives_the_eager_motion():
    d = load_denoiser(random_denoiser_checkpoint(3), "cuda")          # the full-size released architecture
    sampler = FA.WindowSampler(d)
    for n in (130, 20):
        feats, ref, ori = _inputs(n, n)
        feats = feats.cuda()
        plain = P.sample_motion(d, feats, ref, ori, num_steps=50, seed=0)
        graphed = P.sample_motion(d, feats, ref, ori, num_steps=50, seed=0, window_fn=sampler)
        np.testing.assert_array_equal(graphed, plain)
    assert sampler.failed is None and all(loop.graph is not None for loop in sampler.loops.values())


@gpu
def test_gpu_render_paths_against_plain():
    states = LP.random_state_dicts(0)
    lp = LP.LivePortrait.from_state_dicts(*states, device="cuda")
    g = torch.Generator().manual_seed(0)
    img = (torch.rand(256, 256, 3, generator=g) * 255).to(torch.uint8).numpy()
    src = lp.extract_source(img)
    kp = (src.x_s.cpu() + 0.03 * torch.randn(40, 21, 3, generator=g)).cuda()
    plain = lp.render(src, kp, batch_size=16)
    exact = FA.FastRenderer(lp, FA.FastOptions(device_uint8=True)).render(src, kp, batch_size=16)
    np.testing.assert_array_equal(exact, plain)
    cl = FA.FastRenderer(lp, FA.FastOptions(device_uint8=True, channels_last=True)).render(src, kp, batch_size=16)
    diff = np.abs(cl.astype(int) - plain.astype(int))
    print(f"channels_last vs plain: max {diff.max()} grey levels, {(diff > 0).mean():.2e} of the values differ")
    assert diff.max() <= 1


@pytest.mark.skipif(os.environ.get("KDBENCH_COMPILE_TESTS") != "1",
                    reason="torch.compile takes minutes on a 2-core CPU: set KDBENCH_COMPILE_TESTS=1 (needs a C++ "
                           "compiler)")
def test_compiled_render_within_one_grey_level(tiny):
    lp, src, kp = tiny
    plain = lp.render(src, kp, batch_size=2)
    opts = FA.FastOptions(device_uint8=True, compile="default", pad_batches=True)
    fast = FA.FastRenderer(lp, opts).render(src, kp, batch_size=2)
    diff = np.abs(fast.astype(int) - plain.astype(int))
    assert fast.shape == plain.shape and diff.max() <= 1 and (diff > 0).mean() < 1e-2
