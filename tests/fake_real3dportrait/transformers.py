"""Fake ``transformers`` for the fake Real3D-Portrait tree: HubertModel / Wav2Vec2Processor read a local folder;
a hub name (what upstream falls back to) fails, as it does offline."""

import json
import os
from types import SimpleNamespace

import torch


def _local(path):
    if not os.path.isdir(str(path)):
        raise OSError(f"fake transformers: {path!r} is not a local folder (would download from the hub)")
    return str(path)


class HubertModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(400, 16)

    @classmethod
    def from_pretrained(cls, path):
        m = cls()
        m.load_state_dict(torch.load(os.path.join(_local(path), "pytorch_model.bin"), map_location="cpu"))
        return m

    def forward(self, input_values):
        t = (input_values.shape[1] - 80) // 320  # HuBERT: kernel 400, stride 320
        frames = torch.stack([input_values[0, i * 320:i * 320 + 400] for i in range(t)])[None]
        return SimpleNamespace(last_hidden_state=torch.tanh(self.proj(frames)))


class Wav2Vec2Processor:
    def __init__(self, config):
        self.config = config

    @classmethod
    def from_pretrained(cls, path):
        folder = _local(path)
        for name in ("vocab.json", "tokenizer_config.json", "special_tokens_map.json"):  # the tokenizer half
            assert os.path.isfile(os.path.join(folder, name)), name
        with open(os.path.join(folder, "preprocessor_config.json")) as f:
            return cls(json.load(f))

    def __call__(self, speech, return_tensors, sampling_rate):
        assert sampling_rate == self.config["sampling_rate"]
        x = torch.tensor(speech, dtype=torch.float32)[None]
        return SimpleNamespace(input_values=(x - x.mean()) / torch.sqrt(x.var() + 1e-7))
