"""LivePortrait renderer (baselines/kdtalker/liveportrait*.py).

Equivalence with the official modules was checked outside the repo (same random weights: every output of F,
M, W, G and the uint8 frames bit-identical). Here: strict loading against the official key/shape list
(tests/data/liveportrait_official_keys.json, generated from the official module definitions), the pose
conventions on hand-computed cases and an independent reference (scipy), the spectral norm against
PyTorch's own implementation, warping invariants, batching, determinism and precision options.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the LivePortrait renderer needs torch (kdbench[kdtalker])")

from baselines.kdtalker import liveportrait as LP  # noqa: E402
from baselines.kdtalker import liveportrait_nets as N  # noqa: E402
from tests.liveportrait_fixtures import tiny_liveportrait  # noqa: E402

KEYS_FILE = Path(__file__).parent / "data" / "liveportrait_official_keys.json"
OFFICIAL = json.loads(KEYS_FILE.read_text())["modules"]
NAMES = ("appearance", "motion", "warping", "spade")
LP0 = LP.LivePortrait(None, None, None, None)   # no networks: enough for the keypoint arithmetic


def official_random_state(name: str, seed: int = 0, fill: bool = True) -> dict[str, torch.Tensor]:
    """A random checkpoint built only from the official key names, shapes and dtypes (not from our modules).

    ``fill=False``: uninitialised tensors (for tests that only look at keys and shapes)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape, dtype in OFFICIAL[name]:
        if not fill:
            state[key] = torch.empty(shape, dtype=getattr(torch, dtype))
        elif dtype == "int64":
            state[key] = torch.randint(0, 1000, shape, generator=g, dtype=torch.int64)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(shape, generator=g) * 0.02
    return state


@pytest.fixture(scope="module")
def random_dicts():
    return LP.random_state_dicts(seed=0)


@pytest.fixture(scope="module")
def renderer(random_dicts):
    return LP.LivePortrait.from_state_dicts(*random_dicts)


# ---------------------------------------------------------------------------------------------------------
# Strict loading
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_module_keys_equal_official_list(name):
    ours = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")]
            for k, v in LP._skeleton(name).state_dict().items()]
    assert ours == OFFICIAL[name]


def test_official_counts_and_spectral_norm_keys():
    counts = {n: len(OFFICIAL[n]) for n in NAMES}
    assert counts == {"appearance": 107, "motion": 212, "warping": 97, "spade": 182}
    spade = {k for k, _, _ in OFFICIAL["spade"]}
    for block in [f"G_middle_{i}" for i in range(6)] + ["up_0", "up_1"]:
        for conv in ("conv_0", "conv_1"):
            assert {f"{block}.{conv}.{p}" for p in ("weight_orig", "weight_u", "weight_v", "bias")} <= spade
            assert f"{block}.{conv}.weight" not in spade
    assert {"up_0.conv_s.weight_orig", "up_1.conv_s.weight_v"} <= spade and "up_0.conv_s.bias" not in spade


@pytest.mark.parametrize("name", NAMES)
def test_strict_load_of_official_format_random_checkpoint(name):
    state = official_random_state(name, seed=3)
    module = LP.load_module(name, state)
    assert not module.training
    loaded = module.state_dict()
    assert list(loaded) == [k for k, _, _ in OFFICIAL[name]]
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key


def test_from_weights_loads_the_four_files(tmp_path, random_dicts, monkeypatch):
    from kdbench.weights import WeightsManager

    monkeypatch.setenv("KDBENCH_ALLOW_UNVERIFIED", "1")
    overrides = {}
    for name, state in zip(NAMES, random_dicts, strict=True):
        path = tmp_path / LP.OFFICIAL_FILES[name]
        torch.save(state, path)
        overrides[LP.WEIGHT_ENTRIES[name]] = path
    lp = LP.LivePortrait.from_weights(WeightsManager(home=tmp_path / "home", overrides=overrides))
    for name, state in zip(NAMES, random_dicts, strict=True):
        module = getattr(lp, name)
        got = module.state_dict()
        assert all(torch.equal(got[k], v) for k, v in state.items()), name


def test_wrong_keys_are_listed():
    state = official_random_state("appearance")
    del state["first.conv.weight"]
    state["first.conv.extra"] = torch.zeros(1)
    state["second.bias"] = torch.zeros(3)
    with pytest.raises(LP.CheckpointMismatch) as err:
        LP.load_module("appearance", state)
    msg = str(err.value)
    assert "missing keys (1): first.conv.weight" in msg
    assert "unexpected keys (1): first.conv.extra" in msg
    assert "second.bias (3,) (expected (512,))" in msg


def test_swapped_checkpoint_is_recognised():
    with pytest.raises(LP.CheckpointMismatch, match=r"missing keys \(107\).*like the motion checkpoint"):
        LP.load_module("appearance", official_random_state("motion", fill=False))


def test_spade_without_spectral_norm_keys_is_rejected():
    state = official_random_state("spade", fill=False)
    for key in [k for k in state if k.startswith("G_middle_0.conv_0.weight_")]:
        state[key.replace("weight_orig", "weight")] = state.pop(key)
    with pytest.raises(LP.CheckpointMismatch, match="G_middle_0.conv_0.weight_orig"):
        LP.load_module("spade", state)


def test_random_state_dicts_deterministic_and_official(random_dicts):
    for name, state in zip(NAMES, random_dicts, strict=True):
        assert [[k, list(v.shape)] for k, v in state.items()] == [[k, s] for k, s, _ in OFFICIAL[name]]
    a = LP.random_state_dict("appearance", seed=0)      # what random_state_dicts(0) used for appearance
    b = random_dicts[0]
    c = LP.random_state_dict("appearance", seed=4)
    assert [[k, list(v.shape)] for k, v in a.items()] == [[k, s] for k, s, _ in OFFICIAL["appearance"]]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["first.conv.weight"], c["first.conv.weight"])


# ---------------------------------------------------------------------------------------------------------
# Pose conventions
# ---------------------------------------------------------------------------------------------------------
ROT_CASES = {
    # (pitch, yaw, roll) degrees -> R for row vectors (x @ R), computed by hand from (Rz Ry Rx)^T
    (0, 0, 0): [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
    (90, 0, 0): [[1, 0, 0], [0, 0, 1], [0, -1, 0]],
    (0, 90, 0): [[0, 0, -1], [0, 1, 0], [1, 0, 0]],
    (0, 0, 90): [[0, 1, 0], [-1, 0, 0], [0, 0, 1]],
    (90, 90, 0): [[0, 0, -1], [1, 0, 0], [0, -1, 0]],
    (0, 0, 180): [[-1, 0, 0], [0, -1, 0], [0, 0, 1]],
}


@pytest.mark.parametrize("angles", list(ROT_CASES))
def test_rotation_matrix_hand_cases(angles):
    p, y, r = (torch.tensor([float(a)]) for a in angles)
    rot = LP.get_rotation_matrix(p, y, r)
    assert rot.shape == (1, 3, 3) and rot.dtype == torch.float32
    np.testing.assert_allclose(rot[0].numpy(), np.array(ROT_CASES[angles], float), atol=1e-6)


def test_rotation_row_vector_semantics_and_scipy():
    from scipy.spatial.transform import Rotation

    # a keypoint on +x under yaw 90 goes to -z; under roll 90 to +y (row vector times R)
    x = torch.tensor([[1.0, 0.0, 0.0]])
    z = torch.zeros(1)
    np.testing.assert_allclose((x @ LP.get_rotation_matrix(z, z + 90, z)).reshape(3), [0, 0, -1], atol=1e-6)
    np.testing.assert_allclose((x @ LP.get_rotation_matrix(z, z, z + 90)).reshape(3), [0, 1, 0], atol=1e-6)
    rng = np.random.default_rng(0)
    ang = rng.uniform(-90, 90, size=(16, 3))          # pitch, yaw, roll
    rot = LP.get_rotation_matrix(*(torch.tensor(ang[:, i:i + 1], dtype=torch.float64) for i in range(3)))
    assert rot.dtype == torch.float64 and rot.shape == (16, 3, 3)
    ref = Rotation.from_euler("ZYX", ang[:, ::-1], degrees=True).as_matrix()   # Rz(roll) Ry(yaw) Rx(pitch)
    np.testing.assert_allclose(rot.numpy(), ref.transpose(0, 2, 1), atol=1e-12)
    # shapes [B], [B,1], numpy arrays and python numbers all accepted
    r1 = LP.get_rotation_matrix(ang[:, 0], ang[:, 1], ang[:, 2])
    r2 = LP.LivePortrait.get_rotation_matrix(torch.tensor(ang[:, :1]), torch.tensor(ang[:, 1:2]),
                                             torch.tensor(ang[:, 2:]))
    np.testing.assert_allclose(r1.numpy(), r2.numpy(), atol=1e-12)
    assert LP.get_rotation_matrix(10.0, 20.0, 30.0).shape == (1, 3, 3)


def test_headpose_bins_to_degrees():
    logits = torch.full((3, 66), -1e4)
    for row, k in enumerate((0, 32, 65)):
        logits[row, k] = 1e4
    np.testing.assert_allclose(LP.headpose_bins_to_degrees(logits).numpy(), [-97.5, -1.5, 97.5], atol=1e-4)
    assert abs(float(LP.headpose_bins_to_degrees(torch.zeros(1, 66))[0])) < 1e-4  # uniform -> 3*32.5-97.5 = 0


def _hand_source(scale: float = 0.8) -> LP.SourceState:
    g = torch.Generator().manual_seed(1)
    kp_c = torch.randn(1, 21, 3, generator=g) * 0.2
    z = torch.zeros(1)
    return LP.SourceState(f_s=torch.zeros(1, 32, 16, 64, 64), kp_c=kp_c, scale=torch.tensor([[scale]]),
                          R=LP.get_rotation_matrix(z, z, z), exp=torch.zeros(1, 21, 3), t=torch.zeros(1, 3),
                          pitch=z, yaw=z, roll=z, x_s=kp_c * scale)


def test_keypoints_driving_formula():
    src = _hand_source(scale=0.8)
    rng = np.random.default_rng(2)
    b = 3
    pitch, yaw, roll = (rng.uniform(-30, 30, size=b) for _ in range(3))
    exp = rng.normal(0, 0.02, size=(b, 21, 3))
    t = rng.normal(0, 0.05, size=(b, 3))
    scale = np.array([[0.7], [0.9], [1.3]])
    got = LP0.keypoints_driving(src, pitch, yaw, roll, exp, t, scale)
    assert got.shape == (b, 21, 3) and got.dtype == torch.float32
    kp = src.kp_c[0].double().numpy()
    for i in range(b):
        rot = LP.get_rotation_matrix(pitch[i:i + 1], yaw[i:i + 1], roll[i:i + 1])[0].double().numpy()
        want = scale[i, 0] * (kp @ rot + exp[i]) + np.array([t[i, 0], t[i, 1], 0.0])
        np.testing.assert_allclose(got[i].numpy(), want, atol=1e-5)
    # tz is ignored (KDTalker zeroes it); scale=None uses the source scale; exp may be flattened [B,63]
    t2 = t.copy()
    t2[:, 2] += 5
    again = LP0.keypoints_driving(src, pitch, yaw, roll, exp.reshape(b, 63), t2, scale)
    assert torch.equal(again, got)
    default = LP0.keypoints_driving(src, pitch, yaw, roll, exp, t)
    explicit = LP0.keypoints_driving(src, pitch, yaw, roll, exp, t, np.full((b, 1), 0.8))
    torch.testing.assert_close(default, explicit)
    # the source pose with zero expression and translation reproduces the source keypoints
    same = LP0.keypoints_driving(src, [0.0], [0.0], [0.0], np.zeros((1, 21, 3)), np.zeros((1, 3)))
    torch.testing.assert_close(same, src.x_s)


# ---------------------------------------------------------------------------------------------------------
# Building blocks against references
# ---------------------------------------------------------------------------------------------------------
def test_spectral_norm_conv_matches_torch_spectral_norm():
    torch.manual_seed(0)
    ref = torch.nn.utils.spectral_norm(torch.nn.Conv2d(6, 5, 3, padding=1))
    ref.train()
    x = torch.randn(2, 6, 9, 9)
    for _ in range(3):   # power iterations update u and v, as during training
        ref(x)
    ref.eval()
    ours = N.SpectralNormConv2d(6, 5, 3, padding=1)
    ours.load_state_dict(ref.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-6)
        torch.testing.assert_close(ours.weight(), ref.weight, rtol=0, atol=0)
    shortcut = torch.nn.utils.spectral_norm(torch.nn.Conv2d(6, 4, 1, bias=False))
    assert set(N.SpectralNormConv2d(6, 4, 1, bias=False).state_dict()) == set(shortcut.state_dict())


def test_layernorm_channels_first_and_grn():
    torch.manual_seed(0)
    ln = N.LayerNormChannelsFirst(8)
    with torch.no_grad():
        ln.weight.uniform_(0.5, 1.5)
        ln.bias.normal_()
    x = torch.randn(2, 8, 5, 6)
    ref = torch.nn.functional.layer_norm(x.permute(0, 2, 3, 1), (8,), ln.weight, ln.bias, 1e-6)
    ref = ref.permute(0, 3, 1, 2)
    torch.testing.assert_close(ln(x), ref, atol=1e-5, rtol=1e-5)
    grn = N.GRN(8)
    with torch.no_grad():
        grn.gamma.normal_()
        grn.beta.normal_()
    y = torch.randn(2, 5, 6, 8)
    yn = y.double().numpy()
    gx = np.sqrt((yn ** 2).sum(axis=(1, 2), keepdims=True))
    nx = gx / (gx.mean(axis=-1, keepdims=True) + 1e-6)
    want = grn.gamma.double().detach().numpy() * (yn * nx) + grn.beta.double().detach().numpy() + yn
    np.testing.assert_allclose(grn(y).detach().numpy(), want, atol=1e-5)


def test_coordinate_grid_and_gaussian():
    grid = N.make_coordinate_grid(3, 4, 5, torch.zeros(1))
    assert grid.shape == (3, 4, 5, 3)
    np.testing.assert_allclose(grid[0, 0, 0].numpy(), [-1, -1, -1])
    np.testing.assert_allclose(grid[2, 3, 4].numpy(), [1, 1, 1])
    np.testing.assert_allclose(grid[1, 2, 4].numpy(), [1, 1 / 3, 0], atol=1e-7)   # (x, y, z) order
    heat = N.kp2gaussian(torch.tensor([[[1.0, 1 / 3, 0.0]]]), grid, 0.01)
    assert heat.shape == (1, 1, 3, 4, 5) and float(heat[0, 0, 1, 2, 4]) == 1.0
    assert float(heat[0, 0, 1, 2, 3]) == pytest.approx(np.exp(-0.5 * 0.5 ** 2 / 0.01))


# ---------------------------------------------------------------------------------------------------------
# Networks: shapes, invariants, batching (reduced spatial size where the networks allow it, to stay cheap)
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    """A LivePortrait with the same code but narrow random networks (tests/liveportrait_fixtures.py). The
    invariants below do not depend on the widths, and the full-size networks are the same classes."""
    return tiny_liveportrait()


def test_warping_identity_and_translation(tiny):
    lp, src = tiny
    x_s = src.x_s
    delta = torch.tensor([0.05, -0.1, 0.02])
    kp_d = torch.cat([x_s, x_s + delta])
    with torch.no_grad():
        f_s = src.f_s.expand(2, -1, -1, -1, -1)
        out = lp.warping.dense_motion_network(f_s, kp_d, x_s.expand(2, -1, -1))
        single = lp.warping.dense_motion_network(src.f_s, kp_d[1:], x_s)
    grid = N.make_coordinate_grid(4, 8, 8, x_s)
    # driving == source: every sparse motion is the identity, so the blended field is the identity grid
    torch.testing.assert_close(out["deformation"][0], grid, atol=1e-6, rtol=0)
    # all keypoints shifted by delta: keypoint motions are grid - delta, the background one stays the identity
    mask_bg = out["mask"][1, 0][..., None]
    torch.testing.assert_close(out["deformation"][1], grid - (1 - mask_bg) * delta, atol=1e-6, rtol=0)
    torch.testing.assert_close(out["mask"].sum(1), torch.ones(2, 4, 8, 8))
    assert 0.01 < float(mask_bg.mean()) < 0.99                      # the random mask is not degenerate
    assert out["occlusion_map"].shape == (2, 1, 8, 8)
    assert float(out["occlusion_map"].min()) > 0 and float(out["occlusion_map"].max()) < 1
    for key in ("deformation", "mask", "occlusion_map"):            # batch members are independent
        torch.testing.assert_close(out[key][1:], single[key], atol=1e-5, rtol=1e-5)


def test_render_batching_and_determinism(tiny):
    lp, src = tiny
    kp = torch.stack([src.x_s[0], src.x_s[0] + torch.tensor([0.1, 0.0, 0.0]), src.x_s[0] * 1.1])
    whole = lp.warp_decode(src, kp)                                # [3,3,64,64] at this size
    assert whole.shape == (3, 3, 64, 64) and whole.dtype == torch.float32
    assert 0 <= float(whole.min()) and float(whole.max()) <= 1    # sigmoid output
    assert 0.05 < float(whole.std()) and float((whole > 0.999).float().mean()) < 0.2    # not saturated
    assert float((whole[0] - whole[1]).abs().max()) > 1e-3         # motion changes the frame
    frames = lp.render(src, kp, batch_size=2)                      # chunks of 2 + 1
    assert frames.shape == (3, 64, 64, 3) and frames.dtype == np.uint8
    diff = np.abs(frames.astype(int) - LP.LivePortrait.to_uint8(whole).astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3           # the batch size does not matter
    chunks = [c.shape[0] for c in lp.iter_render(src, kp, batch_size=2)]
    assert chunks == [2, 1]
    torch.testing.assert_close(lp.warp_decode(src, kp), whole, atol=0, rtol=0)   # deterministic
    assert lp.render(src, kp[:0]).shape == (0, 512, 512, 3)
    with pytest.raises(ValueError, match=r"\[T,21,3\]"):
        lp.render(src, kp[:, :20])


def test_reduced_precision_close_to_fp32(tiny):
    lp, src = tiny
    kp = src.x_s + 0.05
    ref = lp.warp_decode(src, kp)
    low = LP.LivePortrait(None, None, lp.warping, lp.spade, dtype=torch.bfloat16).warp_decode(src, kp)
    assert low.dtype == torch.float32
    assert 0 < float((low - ref).abs().max()) < 0.05
    with pytest.raises(ValueError, match="dtype"):
        LP.LivePortrait(None, None, None, None, dtype=torch.float64)


def test_to_uint8_truncates_like_parse_output():
    out = torch.tensor([0.0, 0.5, 0.999, 1.2, -0.1, 254.9 / 255]).reshape(1, 1, 2, 3).expand(1, 3, 2, 3)
    got = LP.LivePortrait.to_uint8(out)
    assert got.shape == (1, 2, 3, 3)
    np.testing.assert_array_equal(got[0, :, :, 0].ravel(), [0, 127, 254, 255, 0, 254])


def test_extract_source_shapes(renderer):
    img = (np.random.default_rng(0).random((256, 256, 3)) * 255).astype(np.uint8)
    src = renderer.extract_source(img)
    assert src.f_s.shape == (1, 32, 16, 64, 64)
    assert src.kp_c.shape == (1, 21, 3) and src.exp.shape == (1, 21, 3)
    assert src.scale.shape == (1, 1) and src.t.shape == (1, 3) and src.R.shape == (1, 3, 3)
    assert src.pitch.shape == src.yaw.shape == src.roll.shape == (1,)
    assert all(-97.5 <= float(a) <= 97.5 for a in (src.pitch, src.yaw, src.roll))
    torch.testing.assert_close(src.R, LP.get_rotation_matrix(src.pitch, src.yaw, src.roll))
    want = src.scale[:, :, None] * (src.kp_c @ src.R + src.exp)
    want[..., :2] += src.t[:, None, :2]
    torch.testing.assert_close(src.x_s, want)
    info = src.kp_info()
    shapes = {"pitch": (1, 1), "yaw": (1, 1), "roll": (1, 1), "t": (1, 3), "exp": (1, 63), "scale": (1, 1),
              "kp": (1, 63)}
    assert {k: v.shape for k, v in info.items()} == shapes
    again = renderer.extract_source(img)
    assert torch.equal(again.f_s, src.f_s) and torch.equal(again.x_s, src.x_s)
    with pytest.raises(ValueError, match="uint8"):
        renderer.extract_source(img[:128])


@pytest.mark.slow
def test_full_size_render_of_a_real_crop(renderer):
    """One 512x512 frame from a real reference crop (full-size networks): shapes, range, pose consistency."""
    from PIL import Image

    from baselines.kdtalker.crop import crop_source
    from kdbench.hdtf_mini import hdtf_mini_root
    from kdbench.weights import WeightsManager

    image = np.asarray(Image.open(hdtf_mini_root() / "ref" / "WDA_BenCardin1_000.png").convert("RGB"))
    crop = crop_source(image, WeightsManager())
    src = renderer.extract_source(crop.img256)
    # the source's own pose, expression and translation give back the source keypoints (tz dropped in both)
    same = renderer.keypoints_driving(src, src.pitch, src.yaw, src.roll, src.exp, src.t)
    torch.testing.assert_close(same, src.x_s, atol=1e-6, rtol=1e-6)
    kp = renderer.keypoints_driving(src, src.pitch, src.yaw + 10, src.roll, src.exp, src.t)
    assert float((kp - src.x_s).abs().max()) > 1e-3
    frames = renderer.render(src, kp, batch_size=1)
    assert frames.shape == (1, 512, 512, 3) and frames.dtype == np.uint8
    assert frames.std() > 1.0
