"""Stand-in for diffusers: AutoencoderKL (from a folder) and a DDIM scheduler that keeps its settings."""
from src._fake import Net, load_folder


class AutoencoderKL(Net):
    @classmethod
    def from_pretrained(cls, path):
        return load_folder(cls, path, "diffusion_pytorch_model.bin")


class DDIMScheduler:
    def __init__(self, **kwargs):
        assert kwargs["prediction_type"] == "v_prediction"
        self.kwargs = kwargs
