import torch

from src._fake import Net, load_folder


class UNet3DConditionModel(Net):
    @classmethod
    def from_pretrained_2d(cls, path, motion_module_path, subfolder=None, unet_additional_kwargs=None):
        assert unet_additional_kwargs["use_motion_module"]
        model = load_folder(cls, path, "diffusion_pytorch_model.bin", subfolder)
        model.motion = torch.nn.Parameter(torch.load(motion_module_path, map_location="cpu")["motion"])
        return model
