"""Worker hooks for AniPortrait: upstream's own classes and functions, built once, called per clip as
``scripts/audio2vid.py`` does (``python -m scripts.audio2vid --config configs/prompts/animation_audio.yaml``).

Runs inside AniPortrait's environment with the source tree on ``sys.path`` (standard library + upstream only).
``load`` = the model construction of ``audio2vid.main`` (Audio2Mesh, Audio2Pose, VAE, reference UNet, denoising
UNet + motion module, pose guider, CLIP image encoder, DDIM with ``inference_v2.yaml``'s zero-SNR settings,
``Pose2VideoPipeline``, the mediapipe landmark extractor, FILM when ``acc``); ``frames`` = the body of its loop for
one ``test_cases`` entry: landmarks of the reference, wav2vec2 features at upstream's hard-coded 30 fps, mesh
from Audio2Mesh, audio-driven head pose from Audio2Pose (``pose_temp`` is commented out in the shipped config), the
projected mesh frames, the pipeline, FILM, and the ``[reference | pose mesh | video]`` grid ``save_videos_grid``
writes. The grid frames are handed over losslessly (FFV1) at 30 fps; kdbench's normaliser cuts panel 2 (make_grid
padding 2, ``UpstreamSpec.grid``) and resamples 30 -> 25 fps by timestamp.

Seeding: upstream calls ``torch.manual_seed(seed)`` once and passes the default CPU generator to the pipeline;
the default :meth:`WorkerHooks.seed` gives each clip exactly that state. Upstream draws the Audio2Pose identity
from the *unseeded* ``random.randint(0, 99)``; here Python's ``random`` is seeded with the same seed first, so the
pose id is reproducible (``random.seed(S); random.randint(0, 99)``), which upstream cannot be.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from kdbench.runtime.hooks import FrameHooks

FPS = 30  # audio2vid.py --fps default; 30 is also hard-coded in prepare_audio_feature and the pose chunking
CONFIG = "configs/prompts/animation_audio.yaml"
CHUNK_SECONDS = 5  # audio2vid.py: Audio2Pose runs on 5 s chunks, the last two merged


class AniPortraitHooks(FrameHooks):
    fps = FPS
    packages = ("torch", "torchvision", "numpy", "diffusers", "transformers", "mediapipe", "omegaconf", "av",
                "librosa", "opencv-python", "imageio-ffmpeg")

    def _dev(self) -> str:
        return str(self.device) if str(self.device).startswith("cuda") else "cpu"

    def load(self) -> None:
        o = self.options
        dev = self._dev()
        self.size = int(o["size"])
        if self.size % 8 or self.size <= 0:
            raise ValueError(f"size={self.size}: the VAE needs a multiple of 8 pixels (the paper's setting is 512)")
        if o["acc"] and dev == "cpu":
            raise ValueError("acc (FILM frame interpolation) is hard-wired to CUDA and fp16 upstream "
                             "(src/utils/frame_interpolation.py); run it with --device cuda or leave acc off")
        # audio2vid.py imports these at module level, long before it seeds. Importing src.utils.audio_util imports
        # librosa, whose pkg_resources import draws from Python's random: imported in frames(), after the per-clip
        # seeding, it moved the Audio2Pose id (random.seed(42); randint(0, 99) gave 14 instead of upstream's 81).
        import src.utils.audio_util  # noqa: F401
        import src.utils.pose_util  # noqa: F401
        import torch
        from diffusers import AutoencoderKL, DDIMScheduler
        from omegaconf import OmegaConf
        from src.audio_models.model import Audio2MeshModel
        from src.audio_models.pose_model import Audio2PoseModel
        from src.models.pose_guider import PoseGuider
        from src.models.unet_2d_condition import UNet2DConditionModel
        from src.models.unet_3d import UNet3DConditionModel
        from src.pipelines.pipeline_pose2vid_long import Pose2VideoPipeline
        from src.utils.draw_util import FaceMeshVisualizer
        from src.utils.mp_utils import LMKExtractor
        from transformers import CLIPVisionModelWithProjection

        config = OmegaConf.load(CONFIG)
        # upstream's fp16 on the GPU; CPU kernels lack fp16 convolutions, so CPU runs (tests) are fp32
        dtype = torch.float16 if config.weight_dtype == "fp16" and dev != "cpu" else torch.float32
        self.dtype = dtype
        audio_infer_config = OmegaConf.load(config.audio_inference_config)
        self.wav2vec_path = os.path.abspath(audio_infer_config["a2m_model"]["model_path"])
        self.a2m_model = Audio2MeshModel(audio_infer_config["a2m_model"])
        self.a2m_model.load_state_dict(torch.load(audio_infer_config["pretrained_model"]["a2m_ckpt"],
                                                  weights_only=True), strict=False)
        self.a2m_model.to(dev).eval()
        self.a2p_model = Audio2PoseModel(audio_infer_config["a2p_model"])
        self.a2p_model.load_state_dict(torch.load(audio_infer_config["pretrained_model"]["a2p_ckpt"],
                                                  weights_only=True), strict=False)
        self.a2p_model.to(dev).eval()

        vae = AutoencoderKL.from_pretrained(config.pretrained_vae_path).to(dev, dtype=dtype)
        reference_unet = UNet2DConditionModel.from_pretrained(config.pretrained_base_model_path,
                                                              subfolder="unet").to(dtype=dtype, device=dev)
        infer_config = OmegaConf.load(config.inference_config)
        denoising_unet = UNet3DConditionModel.from_pretrained_2d(
            config.pretrained_base_model_path, config.motion_module_path, subfolder="unet",
            unet_additional_kwargs=infer_config.unet_additional_kwargs).to(dtype=dtype, device=dev)
        pose_guider = PoseGuider(noise_latent_channels=320, use_ca=True).to(device=dev, dtype=dtype)
        image_enc = CLIPVisionModelWithProjection.from_pretrained(config.image_encoder_path).to(dtype=dtype,
                                                                                                device=dev)
        scheduler = DDIMScheduler(**OmegaConf.to_container(infer_config.noise_scheduler_kwargs))
        # each state dict is a temporary, as upstream's inline torch.load: a named one would stay alive (GBs) to the end
        denoising_unet.load_state_dict(torch.load(config.denoising_unet_path, map_location="cpu", weights_only=True),
                                       strict=False)
        reference_unet.load_state_dict(torch.load(config.reference_unet_path, map_location="cpu", weights_only=True))
        pose_guider.load_state_dict(torch.load(config.pose_guider_path, map_location="cpu", weights_only=True))
        self.pipe = Pose2VideoPipeline(vae=vae, image_encoder=image_enc, reference_unet=reference_unet,
                                       denoising_unet=denoising_unet, pose_guider=pose_guider, scheduler=scheduler)
        self.pipe = self.pipe.to(dev, dtype=dtype)
        self.pose_temp = config.get("pose_temp")
        if self.pose_temp is not None:
            self.pose_temp = os.path.abspath(self.pose_temp)
        self.lmk_extractor = LMKExtractor()
        self.vis = FaceMeshVisualizer(forehead_edge=False)
        self.frame_inter_model = None
        if o["acc"]:
            from src.utils.frame_interpolation import init_frame_interpolation_model

            self.frame_inter_model = init_frame_interpolation_model()

    def frames(self, image: Path, audio: Path):
        """``uint8[T, S+4, 3*(S+2)+2, 3]`` RGB: the grid frames ``save_videos_grid`` makes for this image and audio
        (S = ``size``; T = ceil(seconds * 30), fewer with ``acc``)."""
        import cv2
        import numpy as np
        import torch
        import torchvision
        from einops import repeat
        from PIL import Image
        from src.utils.audio_util import prepare_audio_feature
        from src.utils.pose_util import project_points, smooth_pose_seq
        from torchvision import transforms

        dev, o = self._dev(), self.options
        width = height = self.size
        ref_image_pil = Image.open(image).convert("RGB")
        ref_image_np = cv2.cvtColor(np.array(ref_image_pil), cv2.COLOR_RGB2BGR)
        ref_image_np = cv2.resize(ref_image_np, (height, width))
        face_result = self.lmk_extractor(ref_image_np)
        if face_result is None:
            raise ValueError("No face detected in the reference image (mediapipe FaceLandmarker)")
        lmks = face_result["lmks"].astype(np.float32)
        ref_pose = self.vis.draw_landmarks((ref_image_np.shape[1], ref_image_np.shape[0]), lmks, normed=True)

        sample = prepare_audio_feature(str(audio), wav2vec_model_path=self.wav2vec_path)
        sample["audio_feature"] = torch.from_numpy(sample["audio_feature"]).float().to(dev)
        sample["audio_feature"] = sample["audio_feature"].unsqueeze(0)
        pred = self.a2m_model.infer(sample["audio_feature"], sample["seq_len"])
        pred = pred.squeeze().detach().cpu().numpy()
        pred = pred.reshape(pred.shape[0], -1, 3)
        pred = pred + face_result["lmks3d"]

        if self.pose_temp is not None:
            pose_seq = np.load(self.pose_temp)
            mirrored = np.concatenate((pose_seq, pose_seq[-2:0:-1]), axis=0)
            pose_seq = np.tile(mirrored, (sample["seq_len"] // len(mirrored) + 1, 1))[:sample["seq_len"]]
        else:
            id_seed = torch.LongTensor([random.randint(0, 99)]).to(dev)  # seeded by WorkerHooks.seed
            sr = 16000
            chunk_size = sr * CHUNK_SECONDS
            audio_chunks = list(sample["audio_feature"].split(chunk_size, dim=1))
            if len(audio_chunks) < 2:
                raise ValueError(f"AniPortrait's audio-driven pose needs more than {CHUNK_SECONDS} s of audio "
                                 "(audio2vid.py merges its last two 5 s chunks and fails on a single one)")
            seq_len_list = ([CHUNK_SECONDS * FPS] * (len(audio_chunks) - 1)
                            + [sample["seq_len"] % (CHUNK_SECONDS * FPS)])
            audio_chunks[-2] = torch.cat((audio_chunks[-2], audio_chunks[-1]), dim=1)
            seq_len_list[-2] = seq_len_list[-2] + seq_len_list[-1]
            del audio_chunks[-1]
            del seq_len_list[-1]
            pose_seq = []
            for chunk, seq_len in zip(audio_chunks, seq_len_list, strict=True):
                pose_seq_chunk = self.a2p_model.infer(chunk, seq_len, id_seed)
                pose_seq_chunk = pose_seq_chunk.squeeze().detach().cpu().numpy()
                pose_seq_chunk[:, :3] *= 0.5
                pose_seq.append(pose_seq_chunk)
            pose_seq = np.concatenate(pose_seq, 0)
            pose_seq = smooth_pose_seq(pose_seq, 7)

        projected_vertices = project_points(pred, face_result["trans_mat"], pose_seq, [height, width])
        pose_images = [self.vis.draw_landmarks((width, height), verts, normed=False) for verts in projected_vertices]
        pose_transform = transforms.Compose([transforms.Resize((height, width)), transforms.ToTensor()])
        pose_tensor_list = [pose_transform(Image.fromarray(cv2.cvtColor(p, cv2.COLOR_BGR2RGB))) for p in pose_images]
        sub_step = int(o["fi_step"]) if o["acc"] else 1
        pose_list = np.array([cv2.resize(p, (width, height)) for p in pose_images[::sub_step]])
        pose_tensor = torch.stack(pose_tensor_list, dim=0).transpose(0, 1).unsqueeze(0)

        generator = torch.default_generator  # what torch.manual_seed(args.seed) returns upstream
        video = self.pipe(ref_image_pil, pose_list, ref_pose, width, height, len(pose_list), int(o["steps"]),
                          float(o["cfg"]), generator=generator).videos
        if self.frame_inter_model is not None:
            from src.utils.frame_interpolation import batch_images_interpolation_tool

            video = batch_images_interpolation_tool(video, self.frame_inter_model, inter_frames=int(o["fi_step"]) - 1)
        ref_image_tensor = pose_transform(ref_image_pil).unsqueeze(1).unsqueeze(0)
        ref_image_tensor = repeat(ref_image_tensor, "b c f h w -> b c (repeat f) h w", repeat=video.shape[2])
        video = torch.cat([ref_image_tensor, pose_tensor[:, :, :video.shape[2]], video], dim=0)
        # save_videos_grid(video, path, n_rows=3): per frame make_grid(nrow=3), then (x * 255).astype(uint8)
        frames = []
        for x in video.permute(2, 0, 1, 3, 4):  # "b c t h w -> t b c h w"
            g = torchvision.utils.make_grid(x, nrow=3)
            frames.append((g.transpose(0, 1).transpose(1, 2).squeeze(-1) * 255).numpy().astype(np.uint8))
        return np.stack(frames)
