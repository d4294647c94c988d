"""FVD through kdbench equals StyleGAN-V's own ``compute_fvd`` on the same clips (opt-in: needs StyleGAN-V's code).

Set ``KDBENCH_STYLEGANV_SRC`` to a folder holding StyleGAN-V's ``src/`` (only ``src/metrics``, ``src/dnnlib``,
``src/training/dataset.py``, ``src/training/layers.py`` and ``src/torch_utils`` are imported), e.g.::

    git clone https://github.com/universome/stylegan-v /tmp/stylegan-v-full   # or any copy of the repository
    mkdir -p /tmp/stylegan-v && cd /tmp/stylegan-v-full && \\
        git archive HEAD src/metrics src/dnnlib src/training/dataset.py src/training/layers.py src/torch_utils \\
        | tar -x -C /tmp/stylegan-v
    KDBENCH_STYLEGANV_SRC=/tmp/stylegan-v pytest tests/test_fvd_stylegan_v.py

StyleGAN-V's path is run as its ``calc_metrics_for_dataset.py`` runs ``fvd2048_16f`` (two folders of videos as PNG
frames, ``generator_as_dataset=True``), with the real set's window at offset 0
(``load_n_consecutive_random_offset=False``, its generated side's setting; its default draws an unseeded random
offset). The detector is a random-weight I3D of the **real architecture** (12.7 M parameters, 224x224) scripted
and saved with ``torch.jit.save`` (``scripts/i3d_random_weights.py``), put in StyleGAN-V's detector cache under its
Dropbox URL so nothing is downloaded. omegaconf (imported by StyleGAN-V's dataset module) is stood in for when it is
not installed: the run passes its dataset config as a plain ``dnnlib.EasyDict``.
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest

SRC = os.environ.get("KDBENCH_STYLEGANV_SRC")
pytestmark = pytest.mark.skipif(
    not SRC or not (Path(SRC) / "src" / "metrics" / "frechet_video_distance.py").is_file(),
    reason="set KDBENCH_STYLEGANV_SRC to a folder with StyleGAN-V's src/ (see this module's docstring)")

torch = pytest.importorskip("torch", reason="FVD's I3D needs torch (a metrics dependency)")

from test_fvd import i3d_module, make_clip, write_video_dir  # noqa: E402

from kdbench.weights import WeightsManager  # noqa: E402
from metrics import fvd as kv  # noqa: E402


def stylegan_v():
    """StyleGAN-V's metric_utils and frechet_video_distance modules, imported from $KDBENCH_STYLEGANV_SRC."""
    if SRC not in sys.path:
        sys.path.insert(0, SRC)
    try:
        import omegaconf  # noqa: F401
    except ImportError:
        shim = types.ModuleType("omegaconf")
        shim.DictConfig = dict
        shim.OmegaConf = type("OmegaConf", (), {"create": staticmethod(lambda d: d)})
        sys.modules["omegaconf"] = shim
    from src.metrics import frechet_video_distance, metric_utils

    return metric_utils, frechet_video_distance


class Recorder:
    """The scripted detector, recording every feature batch StyleGAN-V computes (per side, in its order)."""

    def __init__(self, model):
        self.model, self.calls = model, []

    def __call__(self, x, **kwargs):
        assert kwargs == kv.DETECTOR_KWARGS and x.dtype == torch.uint8 and x.ndim == 5
        out = self.model(x, **kwargs)
        self.calls.append(out.detach().cpu().numpy().astype(np.float32))
        return out


@pytest.fixture(scope="module")
def real_i3d(tmp_path_factory) -> Path:
    return i3d_module().save_random_i3d(tmp_path_factory.mktemp("i3d") / "i3d_torchscript.pt", 1.0, 0, 224)


def test_kdbench_equals_stylegan_v_compute_fvd(real_i3d, tmp_path, monkeypatch):
    from kdbench.hdtf_mini import hdtf_mini_root
    from kdbench.video import read_video

    metric_utils, fvd_mod = stylegan_v()
    from src import dnnlib

    frames, _ = read_video(hdtf_mini_root(download=False) / "gt" / "WDA_KatieHill_000.mp4", max_frames=80)
    frames = np.ascontiguousarray(frames[:, ::2, ::2])  # 256x256: StyleGAN-V's batch table has 256, 8 videos
    gts = {f"clip{k}": frames[20 * k:20 * k + 20] for k in range(3)}
    gens = {"clip0": np.repeat(frames[:1], 20, 0), "clip1": frames[22:42], "clip2": frames[40:60, :, ::-1]}
    for side, vids in (("real", gts), ("fake", gens)):
        for cid, f in vids.items():
            write_video_dir(tmp_path / side, cid, np.ascontiguousarray(f))

    # StyleGAN-V: calc_metrics_for_dataset's options, fvd2048_16f
    device = torch.device("cpu")
    detector = Recorder(torch.jit.load(str(real_i3d)).eval())
    url = "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1"
    monkeypatch.setitem(metric_utils._feature_detector_cache, (url, device), detector)
    cfg = dnnlib.EasyDict(max_num_frames=10000)
    common = dict(class_name="src.training.dataset.VideoFramesFolderDataset", cfg=cfg, resolution=256,
                  use_labels=False)
    opts = metric_utils.MetricOptions(
        dataset_kwargs=dnnlib.EasyDict(path=str(tmp_path / "real"), xflip=False,
                                       load_n_consecutive_random_offset=False, **common),
        gen_dataset_kwargs=dnnlib.EasyDict(path=str(tmp_path / "fake"), xflip=False, **common),
        generator_as_dataset=True, num_gpus=1, rank=0, device=device, cache=False)
    with torch.no_grad():
        want = fvd_mod.compute_fvd(opts, max_real=2048, num_gen=2048, num_frames=16)
    ref_real, ref_fake = detector.calls  # one batch each (3 videos < 8)

    # kdbench on the same clips, decoded frames in memory
    wm = WeightsManager(home=tmp_path / "home", overrides={"i3d_torchscript": real_i3d})
    metric = kv.FVDMetric(weights=wm)
    records = {cid: metric.score_clip(make_clip(cid, np.ascontiguousarray(gens[cid]), gts[cid])) for cid in gts}
    got = metric.aggregate(records)["fvd"]["mean"]
    got_real = np.concatenate([metric._gt[c] for c in sorted(gts)])
    got_fake = np.concatenate([metric._gen[c] for c in sorted(gts)])
    np.testing.assert_allclose(got_real, ref_real, rtol=1e-5, atol=1e-5 * np.abs(ref_real).max())
    np.testing.assert_allclose(got_fake, ref_fake, rtol=1e-5, atol=1e-5 * np.abs(ref_fake).max())
    assert want > 0 and abs(got - want) <= 1e-5 * want, (got, want)
    feat_rel = max(np.abs(a - b).max() / np.abs(b).max() for a, b in ((got_real, ref_real), (got_fake, ref_fake)))
    print(f"\nFVD kdbench {got!r} StyleGAN-V {want!r} rel {abs(got - want) / want:.2e}; features max rel "
          f"{feat_rel:.2e}")  # shown with pytest -s (docs/fvd.md)
