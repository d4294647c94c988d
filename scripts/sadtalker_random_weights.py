"""Random SadTalker weights in the official formats, for checking kdbench's adapter against ``inference.py``.

Run inside SadTalker's environment (``$KDBENCH_HOME/methods/sadtalker/venv/bin/python``) with the upstream tree as
cwd; it builds every network with upstream's own classes and the shipped configs (seeded, PyTorch's default
initialisation) and saves them exactly as the release files are laid out, so the official loaders read them with
``strict=True``:

- ``SadTalker_V0.0.2_256.safetensors``: ``face_3drecon.*`` (Deep3DFaceRecon ResNet-50), ``audio2pose.*``,
  ``audio2exp.*``, ``generator.*``, ``kp_extractor.*``, ``he_estimator.*``
- ``mapping_00229-model.pth.tar`` / ``mapping_00109-model.pth.tar``: ``{"mapping": state_dict, "epoch": N}``
- ``alignment_WFLW_4HG.pth``: ``{"state_dict": AWing FAN}``; ``detection_Resnet50_Final.pth``: RetinaFace state dict

RetinaFace with random weights finds no face, and SadTalker then stops (``bboxes[0]`` of an empty array). So its
three heads are planted (``--plant-detector``, default on): the box and landmark heads output 0 (boxes = the
anchors) and only the 256-pixel anchors of the stride-32 level score as faces (logit +10 against 0), so the
detector returns fixed, image-independent 256-pixel boxes. Everything else stays random.

The AWing FAN gets its own seed (``--fan-seed``, default 4): upstream's ``calculate_points`` reads the heatmap at
``argmax + 1``, which is out of bounds when a landmark's peak is the heatmap's last pixel (index 4095). Trained
weights never peak in that corner; random ones often put one of the 98 peaks there: with seeds 0-3 SadTalker's
preprocessing of the first hdtf-mini portrait (``WDA_BenCardin1_000``: crop, then landmarks of the crop) raises
IndexError, with seed 4 it does not (other portraits may need another seed).

    cd $KDBENCH_HOME/methods/sadtalker/source
    ../venv/bin/python /path/to/kdbench/scripts/sadtalker_random_weights.py --home $KDBENCH_HOME [--seed 0]

writes ``$KDBENCH_HOME/weights/<name>/<file>`` (the weights manager's cache layout).

Order: ``kdbench setup sadtalker`` first (it builds the environment and source tree this script runs in, and stops
at "not ready: fetch the missing weights"), then this script, then ``KDBENCH_ALLOW_UNVERIFIED=1 kdbench setup
sadtalker`` again to link the files (random weights cannot match the published sha256 pins: they are recorded as
unverified, and the worker loads them tensors-only), and ``KDBENCH_ALLOW_UNVERIFIED=1 kdbench run --method sadtalker
...``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

NAMES = {
    "sadtalker_256": "SadTalker_V0.0.2_256.safetensors",
    "sadtalker_mapping_00229": "mapping_00229-model.pth.tar",
    "sadtalker_mapping_00109": "mapping_00109-model.pth.tar",
    "facexlib_alignment_wflw": "alignment_WFLW_4HG.pth",
    "facexlib_detection_resnet50": "detection_Resnet50_Final.pth",
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--home", required=True, help="KDBENCH_HOME to write weights/<name>/<file> into")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fan-seed", type=int, default=4,
                   help="seed of the AWing FAN's initialisation (default 4; see the note on calculate_points)")
    p.add_argument("--no-plant-detector", action="store_true", help="leave RetinaFace fully random")
    a = p.parse_args()
    sys.path.insert(0, os.getcwd())
    sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # this kdbench checkout (not installed in the venv)
    from kdbench.runtime import compat

    compat.apply(["torchvision_functional_tensor", "torch_load_pinned_pickle"])
    import safetensors.torch
    import torch
    import yaml
    from facexlib.detection.retinaface import RetinaFace
    from src.audio2exp_models.networks import SimpleWrapperV2
    from src.audio2pose_models.audio2pose import Audio2Pose
    from src.face3d.models import networks
    from src.face3d.util.my_awing_arch import FAN
    from src.facerender.modules.generator import OcclusionAwareSPADEGenerator
    from src.facerender.modules.keypoint_detector import HEEstimator, KPDetector
    from src.facerender.modules.mapping import MappingNet
    from yacs.config import CfgNode

    torch.manual_seed(a.seed)
    out = {n: Path(a.home) / "weights" / n / f for n, f in NAMES.items()}
    for path in out.values():
        path.parent.mkdir(parents=True, exist_ok=True)

    tensors = {}

    def add(prefix: str, module: torch.nn.Module) -> None:
        for k, v in module.state_dict().items():
            tensors[f"{prefix}.{k}"] = v.detach().clone().contiguous()

    add("face_3drecon", networks.define_net_recon(net_recon="resnet50", use_last_fc=False, init_path=""))
    with open("src/config/auido2pose.yaml") as f:
        cfg_pose = CfgNode.load_cfg(f)
    add("audio2pose", Audio2Pose(cfg_pose, None, device="cpu"))
    add("audio2exp", SimpleWrapperV2())
    with open("src/config/facerender.yaml") as f:
        mp = yaml.safe_load(f)["model_params"]
    common = mp["common_params"]
    add("generator", OcclusionAwareSPADEGenerator(**mp["generator_params"], **common))
    add("kp_extractor", KPDetector(**mp["kp_detector_params"], **common))
    add("he_estimator", HEEstimator(**mp["he_estimator_params"], **common))
    safetensors.torch.save_file(tensors, str(out["sadtalker_256"]))

    for name, epoch, yaml_name in [("sadtalker_mapping_00229", 229, "facerender.yaml"),
                                   ("sadtalker_mapping_00109", 109, "facerender_still.yaml")]:
        with open(f"src/config/{yaml_name}") as f:
            params = yaml.safe_load(f)["model_params"]["mapping_params"]
        torch.save({"mapping": MappingNet(**params).state_dict(), "epoch": epoch}, out[name])

    torch.manual_seed(a.fan_seed)
    torch.save({"state_dict": FAN(num_modules=4, num_landmarks=98, device="cpu").state_dict()},
               out["facexlib_alignment_wflw"])

    det = RetinaFace(network_name="resnet50", half=False, device="cpu")
    if not a.no_plant_detector:
        with torch.no_grad():
            for level in range(3):
                for head in (det.BboxHead[level], det.LandmarkHead[level], det.ClassHead[level]):
                    head.conv1x1.weight.zero_()
                    head.conv1x1.bias.zero_()
            # ClassHead outputs (anchor, [background, face]); level 2 = stride 32, anchor 0 = 256 pixels
            det.ClassHead[2].conv1x1.bias[1] = 10.0
    torch.save(det.state_dict(), out["facexlib_detection_resnet50"])
    for n, path in out.items():
        print(f"{n}: {path} ({path.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
