from src._fake import Net


class PoseGuider(Net):
    def __init__(self, noise_latent_channels=320, use_ca=True):
        super().__init__(3)
