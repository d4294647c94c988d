"""Random-weight stand-ins for the insightface buffalo_l models, with the official ONNX interfaces.

Used by ``tests/test_csim.py`` and ``benchmarks/csim.py`` (the real pack cannot be downloaded here):

* :func:`export_recognizer` — like ``w600k_r50.onnx``: input ``input.1`` ``float32[N,3,112,112]``
  (dynamic batch), one output ``float32[N,512]``; a small conv net with random weights.
* :func:`export_detector` — like SCRFD ``det_10g.onnx``: input ``input.1`` ``float32[1,3,H,W]``
  (dynamic H, W), 9 outputs ``score_8/16/32 [N,1]``, ``bbox_8/16/32 [N,4]``, ``kps_8/16/32 [N,10]``
  (2 anchors per location), optionally with a leading batch axis. Random weights, biased so that a
  handful of anchors pass the 0.5 score threshold on a face image, boxes of a few strides and
  keypoints around the ArcFace template layout: the decoding, NMS, face choice and alignment paths
  all get exercised.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np

TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                     [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32)


def _export(module, example, path: Path, input_names, output_names, dynamic_axes) -> Path:
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (example,), str(path), dynamo=False, input_names=input_names,
                          output_names=output_names, dynamic_axes=dynamic_axes, opset_version=17)
    return path


def export_recognizer(path: Path, seed: int = 0, mxnet_style: bool = False) -> Path:
    """A random ArcFace-like recogniser ONNX at ``path`` (~0.3 MB).

    ``mxnet_style`` renames the first two nodes ``_minus0``/``_mul0`` (as MXNet-converted packs do), so
    insightface reads the input normalisation as mean 0, std 1.
    """
    import onnx
    import torch

    torch.manual_seed(seed)

    class Recognizer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = torch.nn.Conv2d(3, 8, 3, 2, 1)
            self.c2 = torch.nn.Conv2d(8, 16, 3, 2, 1)
            self.pool = torch.nn.AdaptiveAvgPool2d(4)
            self.fc = torch.nn.Linear(256, 512)

        def forward(self, x):
            if mxnet_style:
                x = (x - 127.5) * 0.0078125
            x = torch.relu(self.c2(torch.relu(self.c1(x))))
            return self.fc(self.pool(x).flatten(1))

    _export(Recognizer(), torch.zeros(1, 3, 112, 112), path, ["input.1"], ["fc1"],
            {"input.1": {0: "batch"}, "fc1": {0: "batch"}})
    if mxnet_style:
        model = onnx.load(str(path))
        names = {"Sub": "_minus0", "Mul": "_mul0"}
        for node in model.graph.node[:8]:
            if node.op_type in names:
                node.name = names.pop(node.op_type)
        onnx.save(model, str(path))
    return path


def export_detector(path: Path, seed: int = 0, batched: bool = False, score_bias: float = -2.5,
                    score_scale: float = 10.0) -> Path:
    """A random SCRFD-like detector ONNX (9 outputs, strides 8/16/32, 2 anchors, 5 keypoints)."""
    import torch

    torch.manual_seed(seed)
    kps_offsets = torch.from_numpy((TEMPLATE - 56.0) / 16.0).reshape(-1)  # in stride units

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.feat = torch.nn.Conv2d(3, 8, 3, 1, 1)
            self.score = torch.nn.Conv2d(8, 2, 1)
            self.bbox = torch.nn.Conv2d(8, 8, 1)
            self.kps = torch.nn.Conv2d(8, 20, 1)
            with torch.no_grad():
                self.score.weight.mul_(score_scale)
                self.score.bias.fill_(score_bias)
                self.bbox.bias.fill_(2.0)
                self.kps.weight.mul_(0.2)
                self.kps.bias.copy_(torch.cat([kps_offsets, kps_offsets]))

    class Detector(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.strides = (8, 16, 32)
            self.heads = torch.nn.ModuleList([Head() for _ in self.strides])

        def forward(self, x):
            scores, boxes, kps = [], [], []
            for stride, head in zip(self.strides, self.heads, strict=True):
                f = torch.tanh(head.feat(torch.nn.functional.avg_pool2d(x, stride, stride)))
                # (1, C, h, w) -> (h*w*anchors, C/anchors): location-major, anchors consecutive
                scores.append(torch.sigmoid(head.score(f)).permute(0, 2, 3, 1).reshape(-1, 1))
                dist = torch.nn.functional.softplus(head.bbox(f)) + 1.0
                boxes.append(dist.permute(0, 2, 3, 1).reshape(-1, 4))
                kps.append(head.kps(f).permute(0, 2, 3, 1).reshape(-1, 10))
            outs = scores + boxes + kps
            return tuple(o.unsqueeze(0) for o in outs) if batched else tuple(outs)

    names = [f"{k}_{s}" for k in ("score", "bbox", "kps") for s in (8, 16, 32)]
    dyn = {"input.1": {2: "height", 3: "width"}, **{n: {(1 if batched else 0): "anchors"} for n in names}}
    return _export(Detector(), torch.zeros(1, 3, 640, 640), path, ["input.1"], names, dyn)


def fake_pack(folder: Path, seed: int = 0) -> Path:
    """A folder laid out like buffalo_l (``det_10g.onnx``, ``w600k_r50.onnx``) with random models."""
    folder.mkdir(parents=True, exist_ok=True)
    export_detector(folder / "det_10g.onnx", seed=seed)
    export_recognizer(folder / "w600k_r50.onnx", seed=seed)
    return folder


def fake_pack_zip(folder: Path, zip_path: Path) -> Path:
    """``buffalo_l.zip`` holding the pack's ONNX files at top level (what the weights manager extracts)."""
    with zipfile.ZipFile(zip_path, "w") as z:
        for p in sorted(folder.glob("*.onnx")):
            z.write(p, p.name)
    return zip_path


def insightface_root(folder: Path, root: Path, name: str = "fakepack") -> Path:
    """Copy a pack where ``FaceAnalysis(name=name, root=root)`` finds it (``root/models/name``)."""
    dest = root / "models" / name
    dest.mkdir(parents=True, exist_ok=True)
    for p in folder.glob("*.onnx"):
        shutil.copy(p, dest / p.name)
    return root
