"""Fake AniTalker demo.py: the real script's order of operations for --infer_type hubert_audio_only (load stage 1,
encode the image, build LitModel with the seed, load stage 2, HuBERT from_pretrained + features, noise, diffusion,
render frame by frame to PNGs), on the fake models. Keeps its PNG frames (the real one deletes them after muxing)."""

import argparse
import os

import librosa
import numpy as np
import torch
from LIA_Model import LIA_Model
from PIL import Image
from templates import LitModel, ffhq256_autoenc
from torchvision import transforms


def img_preprocessing(img_path, size):
    img = Image.open(img_path).convert("RGB").resize((size, size))
    img = np.transpose(np.asarray(img), (2, 0, 1)) / 255.0
    return (torch.from_numpy(img).unsqueeze(0).float() - 0.5) * 2.0


def main(args):
    frames_dir = os.path.join(args.result_path, "frames")
    os.makedirs(frames_dir, exist_ok=True)
    lia = LIA_Model(motion_dim=20, fusion_type="weighted_sum")
    lia.load_lightning_model(args.stage1_checkpoint_path)
    conf = ffhq256_autoenc()
    conf.seed, conf.decoder_layers, conf.infer_type, conf.motion_dim = args.seed, 2, args.infer_type, 20
    img_source = img_preprocessing(args.test_image_path, 256)
    start, direction, feats = lia.get_start_direction_code(img_source, img_source, img_source, img_source)
    model = LitModel(conf)
    model.load_state_dict(torch.load(args.stage2_checkpoint_path, map_location="cpu"), strict=True)
    if os.path.exists(args.test_hubert_path):
        ws = np.load(args.test_hubert_path)
    else:
        from transformers import HubertModel, Wav2Vec2FeatureExtractor

        audio_model = HubertModel.from_pretrained("ckpts/chinese-hubert-large")
        fe = Wav2Vec2FeatureExtractor.from_pretrained("ckpts/chinese-hubert-large")
        audio, _ = librosa.load(args.test_audio_path, sr=16000)
        iv = fe(audio, sampling_rate=16000, padding=True, do_normalize=True, return_tensors="pt").input_values
        with torch.no_grad():
            out = audio_model(iv, output_hidden_states=True)
            ws = np.squeeze(np.array([h.numpy() for h in out.hidden_states]), 1)
            ws = np.pad(ws, ((0, 0), (0, 1), (0, 0)), "edge")
    frame_end = int(ws.shape[1] / 2)
    audio_driven = torch.Tensor(ws[:, : frame_end * 2, :]).unsqueeze(0).float()
    noisy_t = torch.randn((1, frame_end, 20))
    dirs = model.render(start, direction, audio_driven, None, None, None, noisy_t, args.step_T, False)
    dirs = dirs.detach().cpu().numpy()
    for i in range(dirs.shape[1]):
        recon = lia.render(start, torch.Tensor(dirs[:, i, :]), feats).clamp(-1, 1)
        transforms.ToPILImage()(((recon.detach() + 1) / 2).squeeze(0)).save(os.path.join(frames_dir, f"{i:06d}.png"))


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--infer_type", default="hubert_audio_only")
    p.add_argument("--test_image_path")
    p.add_argument("--test_audio_path")
    p.add_argument("--test_hubert_path", default="./none.npy")
    p.add_argument("--result_path", default="./results/")
    p.add_argument("--stage1_checkpoint_path", default="ckpts/stage1.ckpt")
    p.add_argument("--stage2_checkpoint_path", default="ckpts/stage2_audio_only_hubert.ckpt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--step_T", type=int, default=50)
    main(p.parse_args())
