import torch
import torch.nn.functional as F


class VAEModel(torch.nn.Module):
    """audio features -> 64 expression coefficients per frame, sampled with ``temperature`` from torch's generator."""

    def __init__(self, audio_in_dim=16):
        super().__init__()
        self.enc = torch.nn.Linear(audio_in_dim * 2, 64)

    def forward(self, batch, ret, train=False, temperature=1.0):
        x = batch["hubert"].reshape(1, -1, 2 * batch["hubert"].shape[-1])
        mu = self.enc(x)
        pred = mu + temperature * torch.randn(mu.shape, device=mu.device) * batch["mouth_amp"]
        ret["pred"] = pred
        return pred


class SECC2Video(torch.nn.Module):
    """(reference image, driving code, camera) -> one 512x512 frame in [-1, 1]."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)
        self.code = torch.nn.Linear(64 + 25, 3)

    def forward(self, img, code, camera):
        x = F.interpolate(img, (64, 64), mode="bilinear", align_corners=False)
        y = self.conv(x) + self.code(torch.cat([code, camera], -1))[:, :, None, None]
        return torch.tanh(F.interpolate(y, (512, 512), mode="bilinear", align_corners=False))
