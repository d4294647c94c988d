from src._fake import Net, load_folder


class UNet2DConditionModel(Net):
    @classmethod
    def from_pretrained(cls, path, subfolder=None):
        return load_folder(cls, path, "diffusion_pytorch_model.bin", subfolder)
