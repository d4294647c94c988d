"""Stand-in for transformers: the CLIP image encoder from a folder."""
from src._fake import Net, load_folder


class CLIPVisionModelWithProjection(Net):
    @classmethod
    def from_pretrained(cls, path):
        return load_folder(cls, path, "pytorch_model.bin")
