"""Fake ``src/utils/preprocess.py``: ``CropAndExtract`` loads facexlib's detector and landmark model as upstream's
``init_detection_model`` / ``init_alignment_model`` do (``torch.load`` of ``gfpgan/weights/*.pth``, cwd = the tree)."""
import torch


class CropAndExtract:
    def __init__(self, sadtalker_path, device):
        self.det = torch.load("gfpgan/weights/detection_Resnet50_Final.pth", map_location=device)
        self.fan = torch.load("gfpgan/weights/alignment_WFLW_4HG.pth", map_location=device)["state_dict"]
