"""Fake scripts/audio2vid.py: the real script's flags and order of operations (build the models, then
torch.manual_seed, then per test case: landmarks, 30 fps audio features, Audio2Mesh, Audio2Pose on 5 s chunks with
an unseeded random.randint pose id, projected mesh frames, the pipeline with the seeded generator, the
[reference | mesh | video] grid by save_videos_grid(n_rows=3) at --fps), on the fake models."""
import argparse
import random
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler
from einops import repeat
from omegaconf import OmegaConf
from PIL import Image
from src.audio_models.model import Audio2MeshModel
from src.audio_models.pose_model import Audio2PoseModel
from src.models.pose_guider import PoseGuider
from src.models.unet_2d_condition import UNet2DConditionModel
from src.models.unet_3d import UNet3DConditionModel
from src.pipelines.pipeline_pose2vid_long import Pose2VideoPipeline
from src.utils.audio_util import prepare_audio_feature
from src.utils.draw_util import FaceMeshVisualizer
from src.utils.mp_utils import LMKExtractor
from src.utils.pose_util import project_points, smooth_pose_seq
from src.utils.util import save_videos_grid
from torchvision import transforms
from transformers import CLIPVisionModelWithProjection


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=str, default="./configs/prompts/animation_audio.yaml")
    parser.add_argument("-W", type=int, default=512)
    parser.add_argument("-H", type=int, default=512)
    parser.add_argument("-L", type=int)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cfg", type=float, default=3.5)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--fps", type=int, default=30)
    return parser.parse_args()


def main():
    args = parse_args()
    config = OmegaConf.load(args.config)
    dtype = torch.float32  # the real script: fp16 on CUDA (this fake runs on CPU)
    audio_cfg = OmegaConf.load(config.audio_inference_config)
    a2m_model = Audio2MeshModel(audio_cfg["a2m_model"])
    a2m_model.load_state_dict(torch.load(audio_cfg["pretrained_model"]["a2m_ckpt"]), strict=False)
    a2m_model.eval()
    a2p_model = Audio2PoseModel(audio_cfg["a2p_model"])
    a2p_model.load_state_dict(torch.load(audio_cfg["pretrained_model"]["a2p_ckpt"]), strict=False)
    a2p_model.eval()
    vae = AutoencoderKL.from_pretrained(config.pretrained_vae_path).to("cpu", dtype=dtype)
    reference_unet = UNet2DConditionModel.from_pretrained(config.pretrained_base_model_path, subfolder="unet")
    infer_config = OmegaConf.load(config.inference_config)
    denoising_unet = UNet3DConditionModel.from_pretrained_2d(
        config.pretrained_base_model_path, config.motion_module_path, subfolder="unet",
        unet_additional_kwargs=infer_config.unet_additional_kwargs)
    pose_guider = PoseGuider(noise_latent_channels=320, use_ca=True)
    image_enc = CLIPVisionModelWithProjection.from_pretrained(config.image_encoder_path)
    scheduler = DDIMScheduler(**OmegaConf.to_container(infer_config.noise_scheduler_kwargs))
    generator = torch.manual_seed(args.seed)
    width, height = args.W, args.H
    denoising_unet.load_state_dict(torch.load(config.denoising_unet_path, map_location="cpu"), strict=False)
    reference_unet.load_state_dict(torch.load(config.reference_unet_path, map_location="cpu"))
    pose_guider.load_state_dict(torch.load(config.pose_guider_path, map_location="cpu"))
    pipe = Pose2VideoPipeline(vae=vae, image_encoder=image_enc, reference_unet=reference_unet,
                              denoising_unet=denoising_unet, pose_guider=pose_guider, scheduler=scheduler)
    pipe = pipe.to("cpu", dtype=dtype)
    date_str, time_str = datetime.now().strftime("%Y%m%d"), datetime.now().strftime("%H%M")
    save_dir = Path(f"output/{date_str}/{time_str}--seed_{args.seed}-{args.W}x{args.H}")
    save_dir.mkdir(exist_ok=True, parents=True)
    lmk_extractor = LMKExtractor()
    vis = FaceMeshVisualizer(forehead_edge=False)
    for ref_image_path in config["test_cases"].keys():
        for audio_path in config["test_cases"][ref_image_path]:
            ref_name, audio_name = Path(ref_image_path).stem, Path(audio_path).stem
            ref_image_pil = Image.open(ref_image_path).convert("RGB")
            ref_image_np = cv2.cvtColor(np.array(ref_image_pil), cv2.COLOR_RGB2BGR)
            ref_image_np = cv2.resize(ref_image_np, (args.H, args.W))
            face_result = lmk_extractor(ref_image_np)
            lmks = face_result["lmks"].astype(np.float32)
            ref_pose = vis.draw_landmarks((ref_image_np.shape[1], ref_image_np.shape[0]), lmks, normed=True)
            sample = prepare_audio_feature(audio_path, wav2vec_model_path=audio_cfg["a2m_model"]["model_path"])
            sample["audio_feature"] = torch.from_numpy(sample["audio_feature"]).float().unsqueeze(0)
            pred = a2m_model.infer(sample["audio_feature"], sample["seq_len"])
            pred = pred.squeeze().detach().cpu().numpy()
            pred = pred.reshape(pred.shape[0], -1, 3) + face_result["lmks3d"]
            id_seed = torch.LongTensor([random.randint(0, 99)])
            chunk_duration, sr, fps = 5, 16000, 30
            audio_chunks = list(sample["audio_feature"].split(sr * chunk_duration, dim=1))
            seq_len_list = ([chunk_duration * fps] * (len(audio_chunks) - 1)
                            + [sample["seq_len"] % (chunk_duration * fps)])
            audio_chunks[-2] = torch.cat((audio_chunks[-2], audio_chunks[-1]), dim=1)
            seq_len_list[-2] = seq_len_list[-2] + seq_len_list[-1]
            del audio_chunks[-1]
            del seq_len_list[-1]
            pose_seq = []
            for audio, seq_len in zip(audio_chunks, seq_len_list, strict=True):
                chunk = a2p_model.infer(audio, seq_len, id_seed).squeeze().detach().cpu().numpy()
                chunk[:, :3] *= 0.5
                pose_seq.append(chunk)
            pose_seq = smooth_pose_seq(np.concatenate(pose_seq, 0), 7)
            projected_vertices = project_points(pred, face_result["trans_mat"], pose_seq, [height, width])
            pose_images = [vis.draw_landmarks((width, height), v, normed=False) for v in projected_vertices]
            pose_transform = transforms.Compose([transforms.Resize((height, width)), transforms.ToTensor()])
            pose_tensor_list = [pose_transform(Image.fromarray(cv2.cvtColor(p, cv2.COLOR_BGR2RGB)))
                                for p in pose_images]
            pose_list = np.array([cv2.resize(p, (width, height)) for p in pose_images])
            pose_tensor = torch.stack(pose_tensor_list, dim=0).transpose(0, 1).unsqueeze(0)
            video = pipe(ref_image_pil, pose_list, ref_pose, width, height, len(pose_list), args.steps, args.cfg,
                         generator=generator).videos
            ref_image_tensor = pose_transform(ref_image_pil).unsqueeze(1).unsqueeze(0)
            ref_image_tensor = repeat(ref_image_tensor, "b c f h w -> b c (repeat f) h w", repeat=video.shape[2])
            video = torch.cat([ref_image_tensor, pose_tensor[:, :, :video.shape[2]], video], dim=0)
            save_path = f"{save_dir}/{ref_name}_{audio_name}_{args.H}x{args.W}_{int(args.cfg)}_{time_str}.mp4"
            save_videos_grid(video, save_path, n_rows=3, fps=args.fps)


if __name__ == "__main__":
    main()
