"""Fake ``transformers`` for the fake AniTalker tree: HubertModel.from_pretrained draws its module initialisation
from the CPU generator (as the real one does) and returns 3 hidden states at 50 Hz."""

from types import SimpleNamespace

import torch


class HubertModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(320, 8)
        self.feature_extractor = SimpleNamespace(_freeze_parameters=lambda: None)

    @classmethod
    def from_pretrained(cls, path):
        m = cls()
        m.load_state_dict(torch.load(f"{path}/pytorch_model.bin", map_location="cpu"))
        return m

    def forward(self, input_values, output_hidden_states=True):
        frames = input_values[:, : input_values.shape[1] // 320 * 320].reshape(1, -1, 320)
        h = self.proj(frames)
        return SimpleNamespace(hidden_states=(h, torch.tanh(h), h * 0.5))


class Wav2Vec2FeatureExtractor:
    @classmethod
    def from_pretrained(cls, path):
        return cls()

    def __call__(self, wav, sampling_rate, padding, do_normalize, return_tensors):
        x = torch.tensor(wav, dtype=torch.float32)[None]
        return SimpleNamespace(input_values=(x - x.mean()) / (x.std() + 1e-7))
