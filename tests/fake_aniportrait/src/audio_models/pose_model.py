import torch

from .model import Audio2MeshModel


class Audio2PoseModel(Audio2MeshModel):
    def __init__(self, config):
        super().__init__(config)
        self.id_embed = torch.nn.Embedding(100, config["out_dim"])

    def infer(self, input_value, seq_len, id_seed=None):
        out = super().infer(input_value, seq_len)
        return out + self.id_embed(id_seed).unsqueeze(1)
