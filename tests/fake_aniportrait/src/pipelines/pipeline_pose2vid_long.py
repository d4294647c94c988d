from types import SimpleNamespace

import numpy as np
import torch


class Pose2VideoPipeline:
    def __init__(self, vae, image_encoder, reference_unet, denoising_unet, pose_guider, scheduler):
        self.nets = [vae, image_encoder, reference_unet, denoising_unet, pose_guider]
        self.scheduler = scheduler

    def to(self, device, dtype=None):
        for n in self.nets:
            n.to(device, dtype)
        return self

    def __call__(self, ref_image, pose_images, ref_pose_image, width, height, video_length, num_inference_steps,
                 guidance_scale, generator=None, **kwargs):
        vae, enc, ref_unet, unet, guider = self.nets
        ref = torch.from_numpy(np.asarray(ref_image.resize((width, height)), np.float32) / 255).permute(2, 0, 1)
        pose = torch.from_numpy(np.stack(pose_images).astype(np.float32) / 255).permute(0, 3, 1, 2)
        latents = torch.randn((video_length, 3, height, width), generator=generator)
        with torch.no_grad():
            cond = ref_unet(enc(ref[None])) + guider(pose)
            for _ in range(num_inference_steps):
                eps = unet(latents + cond) + unet.motion
                latents = latents - (1.0 / num_inference_steps) * guidance_scale * 0.1 * eps
            video = torch.sigmoid(vae(latents))
        return SimpleNamespace(videos=video.permute(1, 0, 2, 3).unsqueeze(0).float().cpu())
