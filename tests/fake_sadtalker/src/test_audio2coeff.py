"""Fake ``src/test_audio2coeff.py``: ``Audio2Coeff`` reads the safetensors checkpoint (never unpickled)."""
import safetensors.torch


class Audio2Coeff:
    def __init__(self, sadtalker_path, device):
        self.state = safetensors.torch.load_file(sadtalker_path["checkpoint"])
