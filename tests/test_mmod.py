"""The PyTorch MMOD face detector (metrics/mmod.py) against dlib's ``cnn_face_detection_model_v1``.

dlib's CNN detector costs 8+ s per 512x512 frame here, so its detections on every checked frame were
computed once by ``scripts/mmod_golden.py`` into ``tests/data/mmod_golden.json`` (with dlib's version and
the sha256 of the .dat file and of every input frame; inputs from ``tests/mmod_cases.py``). CI compares the
port with that golden on the reference images, the hard cases and a fixed subset of the GT clip's frames
(all 200 with ``KDBENCH_MMOD_ALL_FRAMES=1``), and runs live dlib where it is cheap: its bilinear
``resize_image`` (the pyramid's building block, compared bit for bit) and the whole detector on a 128x128
face.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from kdbench.weights import WeightsManager
from metrics import mmod as M
from metrics.mmod_format import DlibFormatError, _Reader, read_mmod
from tests import mmod_cases as C

GOLDEN = Path(__file__).parent / "data" / "mmod_golden.json"
CI_GT_FRAMES = (0, 37, 99, 150, 199)  # the fixed subset checked in CI; all with KDBENCH_MMOD_ALL_FRAMES=1
ALL_FRAMES = os.environ.get("KDBENCH_MMOD_ALL_FRAMES") == "1"


@pytest.fixture(scope="module")
def dat() -> str:
    return str(WeightsManager().path("mmod_human_face_detector"))


@pytest.fixture(scope="module")
def detector(dat) -> M.MmodDetector:
    return M.load_mmod(dat)


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN.read_text())


@pytest.fixture(scope="module")
def inputs(hdtf_mini) -> dict[str, np.ndarray]:
    return C.all_inputs(hdtf_mini)


def assert_same(got: list, ref: list, where: str) -> float:
    """Same count, identical integer boxes, |Δconfidence| <= 1e-4; returns the largest |Δconfidence|."""
    assert [tuple(d[:4]) for d in got] == [tuple(d[:4]) for d in ref], where
    dc = max([abs(a[4] - b[4]) for a, b in zip(got, ref, strict=True)] or [0.0])
    assert dc <= 1e-4, f"{where}: |Δconfidence| = {dc}"
    return dc


# ------------------------------------------------------------------------------------- the file
def test_reader_primitives():
    # ints: control byte (count | 0x80 if negative) + little-endian bytes; floats: mantissa, exponent;
    # strings: length + bytes; bools: '1'/'0'
    r = _Reader(bytes([0x01, 0x05, 0x81, 0x05, 0x02, 0x34, 0x12, 0x01, 0x03, 0x81, 0x01]) + b"\x01\x03abc1")
    assert (r.int(), r.int(), r.int(), r.float(), r.str(), r.bool()) == (5, -5, 0x1234, 1.5, "abc", True)
    with pytest.raises(DlibFormatError, match="end of file"):
        r.int()
    with pytest.raises(DlibFormatError, match="control byte"):
        _Reader(bytes([0x00])).int()


def test_dat_structure(dat):
    net = read_mmod(dat)
    assert [tuple(layer.weight.shape) for layer in net.layers] == [
        (16, 3, 5, 5), (32, 16, 5, 5), (32, 32, 5, 5), (45, 32, 5, 5), (45, 45, 5, 5), (45, 45, 5, 5), (1, 45, 9, 9)]
    assert [layer.stride for layer in net.layers] == [(2, 2)] * 3 + [(1, 1)] * 4
    assert [layer.padding for layer in net.layers] == [(0, 0)] * 3 + [(2, 2)] * 3 + [(4, 4)]
    assert [layer.scale is not None for layer in net.layers] == [True] * 6 + [False]
    assert [layer.relu for layer in net.layers] == [True] * 6 + [False]
    assert [layer.bn_eps for layer in net.layers[:6]] == [pytest.approx(1e-4, rel=1e-12)] * 6
    assert net.layer_names.count("con") == 7 and net.layer_names.count("affine") == 6
    assert net.windows == [(80, 80)]
    assert net.nms_iou == 0.3382761351109955 and net.nms_covered == 1.0
    np.testing.assert_array_equal(net.means, np.array([122.782, 117.001, 104.298], np.float32))
    assert (net.pyramid_padding, net.pyramid_outer_padding) == (10, 11)
    assert sum(layer.weight.size + layer.bias.size for layer in net.layers) == 180_711


def test_damaged_files_are_refused(dat, tmp_path):
    data = Path(dat).read_bytes()
    cut = tmp_path / "cut.dat"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DlibFormatError, match="end of file"):
        read_mmod(cut)
    extra = tmp_path / "extra.dat"
    extra.write_bytes(data + b"\x00")
    with pytest.raises(DlibFormatError, match="trailing"):
        read_mmod(extra)
    other = tmp_path / "other.dat"
    other.write_bytes(b"\x01\x01" + b"\x01\x0aloss_other" + data[14:])
    with pytest.raises(DlibFormatError, match="loss_mmod_"):
        read_mmod(other)


# ------------------------------------------------------------------------------------- geometry
def test_geometry():
    assert M.pyramid_up_size(512, 512) == (1025, 1026)
    assert M.pyramid_up_size(256, 320) == (513, 642)
    x = np.array([-2.5, -1.5, -0.5, -0.49999999999999994, 0.5, 1.5, 2.5, 0.49999999999999994, 7.0])
    np.testing.assert_array_equal(M.lround(x), [-3, -2, -1, 0, 1, 2, 3, 0, 7])
    rects, nr, nc = M.tiled_pyramid_rects(1025, 1026, 10, 11)
    assert (nr, nc) == (3737, 1048) and rects[0] == (11, 11, 1036, 1035)
    assert [r[3] - r[1] + 1 for r in rects[:4]] == [1025, 854, 711, 592]  # floor(5/6 * rows)
    assert min(r[3] - r[1] + 1 for r in rects) >= 5
    for a in range(len(rects)):  # levels never overlap
        for b in range(a):
            ra, rb = rects[a], rects[b]
            assert max(ra[0], rb[0]) > min(ra[2], rb[2]) or max(ra[1], rb[1]) > min(ra[3], rb[3])
    kept = np.array([[0, 0, 9, 9]])
    assert M.box_overlaps(kept, np.array([2, 2, 5, 5]), 0.9, 1.0) is False     # covered 100%: not > 1.0
    assert M.box_overlaps(kept, np.array([0, 0, 9, 10]), 0.9, 1.0) is True     # IoU 100/110 > 0.9
    assert M.box_overlaps(kept, np.array([10, 0, 19, 9]), 0.0, 1.0) is False   # touching, no overlap


@pytest.mark.parametrize("shape", [(1025, 1026, 854, 855), (37, 41, 30, 34), (256, 256, 513, 514), (7, 9, 5, 7)])
def test_resize_is_dlibs_bit_for_bit(shape):
    dlib = pytest.importorskip("dlib", reason="dlib is the reference (dlib-bin, in kdbench[metrics])")
    h, w, ho, wo = shape
    rng = np.random.default_rng(h * w)
    x = rng.standard_normal((h, w)).astype(np.float32)
    np.testing.assert_array_equal(M.resize_float(torch.from_numpy(x), ho, wo).numpy(), dlib.resize_image(x, ho, wo))
    u = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    got = M.resize_rgb_u8(torch.from_numpy(u).permute(2, 0, 1).contiguous(), ho, wo).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(got, dlib.resize_image(u, ho, wo))
    # the compiled CPU kernels (metrics/mmod_cpu.py) give the same bits
    cpu = pytest.importorskip("metrics.mmod_cpu", reason="numba not installed: the torch path is used")
    np.testing.assert_array_equal(cpu.resize_hwc(x, ho, wo), dlib.resize_image(x, ho, wo))
    np.testing.assert_array_equal(cpu.resize_hwc(u, ho, wo), dlib.resize_image(u, ho, wo))


@pytest.mark.parametrize("size,upsample", [((96, 80), 1), ((40, 52), 2), ((3, 4), 1)])
def test_cpu_canvas_equals_torch_canvas(detector, size, upsample):
    """The compiled CPU pre-processing builds the torch path's tiled-pyramid canvas to the bit (odd sizes,
    upsampling twice, a frame too small for any pyramid level)."""
    pytest.importorskip("metrics.mmod_cpu", reason="numba not installed: the torch path is used")
    frames = np.random.default_rng(size[0]).integers(0, 256, (2, *size, 3), dtype=np.uint8)
    got, rects = detector._to_tensor_cpu(frames, upsample)
    img = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()
    for _ in range(upsample):
        img = M.pyramid_up(img)
    ref, ref_rects = detector.to_tensor(img)
    assert rects == ref_rects
    if rects:
        assert got.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(got, ref)


def test_network_equals_the_files_layers_one_by_one(detector, inputs):
    """The speed-ups of the network (bn_con folded into the convolutions, the last 9x9 one-filter convolution
    split into kernel rows, channels-last, zero-padded filters) give the scores of the file's layers applied as
    written — conv, then ``x * g + b``, then ReLU — computed here in float64, to float32 rounding."""
    import torch.nn.functional as F

    face = inputs["crop128"]  # a 128x128 face: its tiled pyramid has scores of both signs
    x, _ = detector.to_tensor(torch.from_numpy(np.stack([face, face[:, ::-1]])).permute(0, 3, 1, 2).contiguous())
    ref = x.double()
    for layer in detector.spec.layers:
        ref = F.conv2d(ref, torch.from_numpy(layer.weight).double(), torch.from_numpy(layer.bias).double(),
                       stride=layer.stride, padding=layer.padding)
        if layer.scale is not None:
            ref = ref * torch.from_numpy(layer.scale).double().view(1, -1, 1, 1) \
                + torch.from_numpy(layer.shift).double().view(1, -1, 1, 1)
        if layer.relu:
            ref = ref.relu()
    with torch.no_grad():
        got = detector(x)
    assert got.shape == ref.shape
    assert isinstance(detector.convs[-1], M.RowSplitConv)
    assert (ref > 0).any() and (ref < 0).any()  # scores of both signs: the comparison is not all zeros
    np.testing.assert_allclose(got.double().numpy(), ref.numpy(), rtol=0, atol=2e-5 * float(ref.abs().max()))


def test_row_split_convolution_is_the_convolution():
    """``RowSplitConv`` on its own, with unequal padding and a non-square kernel, against ``F.conv2d``."""
    import torch.nn.functional as F

    rng = np.random.default_rng(3)
    w = rng.standard_normal((1, 5, 7, 3)).astype(np.float32)
    b = rng.standard_normal(1).astype(np.float32)
    x = torch.from_numpy(rng.standard_normal((2, 5, 20, 11)).astype(np.float32))
    for pad in [(0, 0), (3, 1), (2, 0)]:
        ref = F.conv2d(x.double(), torch.from_numpy(w).double(), torch.from_numpy(b).double(), padding=pad)
        got = M.RowSplitConv(w, b, pad)(x)
        assert got.shape == ref.shape
        np.testing.assert_allclose(got.double().numpy(), ref.numpy(), rtol=0, atol=1e-4)


# ------------------------------------------------------------------------------------- detections
def test_live_dlib_on_a_small_face(detector, dat, inputs):
    dlib = pytest.importorskip("dlib", reason="dlib is the reference (dlib-bin, in kdbench[metrics])")
    face = inputs["crop128"]
    ref_det = dlib.cnn_face_detection_model_v1(dat)
    for up in (0, 1):
        ref = [(d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom(), d.confidence)
               for d in ref_det(face, up)]
        assert len(ref) == 1
        assert_same(detector.detect([face], up)[0], ref, f"crop128 upsample={up}")


def test_golden_matches_its_inputs(golden, inputs, dat):
    assert golden["dat_sha256"] == hashlib.sha256(Path(dat).read_bytes()).hexdigest()
    assert set(golden["frames"]) == set(inputs), "regenerate with scripts/mmod_golden.py"
    for name, entry in golden["frames"].items():
        assert entry["sha256"] == C.sha256(inputs[name]), f"{name}: the input bytes changed"
        assert {f"upsample{u}" for u in C.upsamples_for(name)} <= set(entry), name


def _checked(golden: dict) -> list[tuple[str, int]]:
    out = []
    for name, entry in golden["frames"].items():
        if name.startswith("gt/") and not ALL_FRAMES and int(name[3:]) not in CI_GT_FRAMES:
            continue
        out += [(name, int(k[8:])) for k in entry if k.startswith("upsample")]
    return out


def test_port_equals_dlib_golden(detector, golden, inputs):
    """Same detections as dlib on the reference images, the hard cases and GT frames (batched by size)."""
    todo = _checked(golden)
    assert len(todo) >= 26
    worst = 0.0
    for up in sorted({u for _, u in todo}):
        names = [n for n, u in todo if u == up]
        got = detector.detect([inputs[n] for n in names], up, batch_size=4)
        for n, g in zip(names, got, strict=True):
            worst = max(worst, assert_same(g, golden["frames"][n][f"upsample{up}"], f"{n} upsample={up}"))
    # the cases mean something: faces found where there are faces, none where there are none
    found = {n: len(golden["frames"][n]["upsample1"]) for n in golden["frames"] if not n.startswith("gt/")}
    assert found["hard/blank"] == 0 and found["hard/noise"] == 0
    assert found["hard/two_faces"] == 2
    assert all(found[n] >= 1 for n in found if n not in ("hard/blank", "hard/noise"))
    assert worst < 1e-4


def test_diversity_with_port_equals_dlib(detector, golden, inputs, random_hopenet):
    """Hopenet diversity from the port's detections == from dlib's (golden), same Hopenet weights."""
    from metrics import diversity as D
    from metrics.hopenet_net import load_hopenet

    names = [f"gt/{i:03d}" for i in CI_GT_FRAMES]
    frames = np.stack([inputs[n] for n in names])
    ours = detector.detect(list(frames), 1)
    ref = [[tuple(d) for d in golden["frames"][n]["upsample1"]] for n in names]
    model = load_hopenet(random_hopenet)
    a = D.clip_record(D.extract_face_logits(frames, model=model, detections=ours))
    b = D.clip_record(D.extract_face_logits(frames, model=model, detections=ref))
    assert a["n_faces"] == b["n_faces"] == len(names)
    for k in ("diversity", "diversity_yaw", "diversity_pitch", "diversity_roll", "pose_std_deg"):
        assert abs(a[k] - b[k]) <= 1e-6, k


@pytest.fixture(scope="module")
def random_hopenet(tmp_path_factory) -> Path:
    from metrics.hopenet_net import Hopenet

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("hopenet") / "hopenet_robust_alpha1.pkl"
    torch.save(Hopenet().eval().state_dict(), path)
    return path
