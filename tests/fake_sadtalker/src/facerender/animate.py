"""Fake ``src/facerender/animate.py``: ``AnimateFromCoeff`` loads the mapping net as upstream's ``load_cpk_mapping``
(``torch.load`` of ``mapping_00229-model.pth.tar``, then its ``"mapping"`` state dict)."""
import torch


class AnimateFromCoeff:
    def __init__(self, sadtalker_path, device):
        self.mapping = torch.load(sadtalker_path["mappingnet_checkpoint"], map_location=torch.device(device))["mapping"]
