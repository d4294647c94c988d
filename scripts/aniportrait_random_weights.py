"""Random AniPortrait weights in the official formats, for checking kdbench's ``aniportrait`` method against the
official ``scripts/audio2vid.py``.

Run with AniPortrait's environment from its source tree (the shipped configs are read from the cwd):

    cd $KDBENCH_HOME/methods/aniportrait/source
    ../venv/bin/python /path/to/kdbench/scripts/aniportrait_random_weights.py --home $KDBENCH_HOME

Order: ``kdbench setup aniportrait`` first (it builds the environment and source tree this script runs in, and stops
at "not ready: fetch the missing weights"), then this script, then ``KDBENCH_ALLOW_UNVERIFIED=1 kdbench setup
aniportrait`` again to link the files (random weights cannot match the published sha256 pins: they are recorded as
unverified, and the worker loads them tensors-only), and ``KDBENCH_ALLOW_UNVERIFIED=1 kdbench run --method
aniportrait ...``.

It writes ``$KDBENCH_HOME/weights/<name>/<file>`` (the weights manager's cache layout) for every entry of
``baselines.aniportrait.spec.SPEC.weights`` except FILM (optional, CUDA-only); ``kdbench setup aniportrait`` then
links them into the ``pretrained_model/`` layout the configs read. Every network is built by upstream's own classes
(or diffusers'/transformers' ones, as the configs name them) and saved in the release format:

- ``stable-diffusion-v1-5/unet/{config.json,diffusion_pytorch_model.bin}``: ``save_pretrained`` of a
  ``UNet2DConditionModel`` with SD-1.5's block types and widths (320, 640, 1280, 1280) - the pose guider's
  hard-coded feature widths (``noise_latent_channels`` x 1, 2, 4, 4) are added to these blocks - but one resnet
  per block (``layers_per_block=1`` instead of 2) to keep the CPU check small;
- ``reference_unet.pth``, ``denoising_unet.pth`` (without the motion modules, loaded ``strict=False``),
  ``motion_module.pth`` (only ``*motion_modules.*``), ``pose_guider.pth``: ``torch.save(state_dict)``;
- ``sd-vae-ft-mse``, ``image_encoder`` (CLIP vision with projection to the UNet's 768-wide cross-attention),
  ``wav2vec2-base-960h`` (+ ``preprocessor_config.json``): ``save_pretrained``, tiny widths;
- ``audio2mesh.pt``, ``audio2pose.pt``: state dicts of ``Audio2MeshModel`` / ``Audio2PoseModel`` built from
  ``configs/inference/inference_audio.yaml`` (their ``model_path`` pointed at the tiny wav2vec2).

Upstream zero-initialises several output layers (pose guider ``final_proj``, the motion modules' ``proj_out``,
``Audio2MeshModel.out_fn``); trained weights are not zero there, so every all-zero parameter gets N(0, 0.02) noise:
otherwise the pose, the temporal attention and the lip motion would not reach the frames and the check would not
see them. The reference UNet, the denoising UNet and the SD UNet get different random values, as trained weights do.
Load the files with ``KDBENCH_ALLOW_UNVERIFIED=1`` (no published checksums to compare against).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

UNET = {  # SD-1.5's unet/config.json, with layers_per_block 1 instead of 2
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "center_input_sample": False, "flip_sin_to_cos": True,
    "freq_shift": 0, "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3, "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 1, "downsample_padding": 1, "mid_block_scale_factor": 1, "act_fn": "silu",
    "norm_num_groups": 32, "norm_eps": 1e-5, "cross_attention_dim": 768, "attention_head_dim": 8,
}


def perturb_zeros(module, generator) -> int:
    """Add N(0, 0.02) noise to every all-zero parameter (upstream's zero-initialised output layers); returns their
    number."""
    import torch

    n = 0
    with torch.no_grad():
        for p in module.parameters():
            if p.numel() and not p.any():
                p.add_(torch.randn(p.shape, generator=generator) * 0.02)
                n += 1
    return n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--home", required=True, help="KDBENCH_HOME to write weights/<name>/<file> into")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    sys.path.insert(0, os.getcwd())
    sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # this kdbench checkout (not installed in the venv)
    import torch
    from diffusers import AutoencoderKL
    from omegaconf import OmegaConf
    from src.audio_models.model import Audio2MeshModel
    from src.audio_models.pose_model import Audio2PoseModel
    from src.models.pose_guider import PoseGuider
    from src.models.unet_2d_condition import UNet2DConditionModel
    from src.models.unet_3d import UNet3DConditionModel
    from transformers import (
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Model,
    )

    from baselines.aniportrait.spec import SPEC

    home = Path(a.home)
    out = {n: home / "weights" / n / Path(rel).name for n, rel in SPEC.weights.items()
           if n not in SPEC.optional_weights}
    for path in out.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed + 1)

    sd_unet = UNet2DConditionModel(**UNET)
    sd_unet.save_pretrained(out["sd15_unet"].parent, safe_serialization=False)  # config.json + the .bin
    (out["sd15_unet"].parent / "config.json").replace(out["sd15_unet_config"])
    torch.save(UNet2DConditionModel(**UNET).state_dict(), out["aniportrait_reference_unet"])

    vae = AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(32, 32, 64, 64),
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        latent_channels=4, layers_per_block=1, norm_num_groups=32, sample_size=256)
    vae.save_pretrained(out["sd_vae_ft_mse"].parent, safe_serialization=False)
    (out["sd_vae_ft_mse"].parent / "config.json").replace(out["sd_vae_ft_mse_config"])

    enc = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                                         num_attention_heads=4, image_size=224, patch_size=32,
                                                         projection_dim=UNET["cross_attention_dim"]))
    enc.save_pretrained(out["sd_image_variations_encoder"].parent, safe_serialization=False)
    (out["sd_image_variations_encoder"].parent / "config.json").replace(out["sd_image_variations_encoder_config"])

    w2v_dir = out["wav2vec2_base_960h"].parent
    Wav2Vec2Model(Wav2Vec2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                                 conv_dim=(32,) * 7, feat_extract_norm="group", do_stable_layer_norm=False)
                  ).save_pretrained(w2v_dir, safe_serialization=False)
    (w2v_dir / "config.json").replace(out["wav2vec2_base_960h_config"])
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=False).save_pretrained(w2v_dir)
    (w2v_dir / "preprocessor_config.json").replace(out["wav2vec2_base_960h_preprocessor"])

    # the audio models read config.json from model_path: a folder with the three wav2vec2 files together
    staged = home / "weights" / ".aniportrait-wav2vec2"
    staged.mkdir(exist_ok=True)
    for name in ("wav2vec2_base_960h_config", "wav2vec2_base_960h_preprocessor", "wav2vec2_base_960h"):
        link = staged / out[name].name
        link.unlink(missing_ok=True)
        link.symlink_to(out[name])
    audio_cfg = OmegaConf.load("configs/inference/inference_audio.yaml")
    for key, cls, name in (("a2m_model", Audio2MeshModel, "aniportrait_audio2mesh"),
                           ("a2p_model", Audio2PoseModel, "aniportrait_audio2pose")):
        model = cls({**OmegaConf.to_container(audio_cfg[key]), "model_path": str(staged)})
        perturb_zeros(model, gen)
        torch.save(model.state_dict(), out[name])

    infer = OmegaConf.load("configs/inference/inference_v2.yaml")
    # from_pretrained_2d needs <dir>/config.json next to the weights: build it from a staged copy of the SD UNet
    sd_dir = home / "weights" / ".aniportrait-sd15-unet"
    sd_dir.mkdir(exist_ok=True)
    for src, dst in ((out["sd15_unet_config"], "config.json"), (out["sd15_unet"], out["sd15_unet"].name)):
        (sd_dir / dst).unlink(missing_ok=True)
        (sd_dir / dst).symlink_to(src)
    denoising = UNet3DConditionModel.from_pretrained_2d(sd_dir, "/nonexistent",
                                                        unet_additional_kwargs=infer.unet_additional_kwargs)
    with torch.no_grad():  # the trained denoising UNet differs from SD-1.5's
        for prm in denoising.parameters():
            prm.add_(torch.randn(prm.shape, generator=gen) * 0.01)
    perturb_zeros(denoising, gen)
    state = denoising.state_dict()
    torch.save({k: v for k, v in state.items() if "motion_modules." in k}, out["aniportrait_motion_module"])
    torch.save({k: v for k, v in state.items() if "motion_modules." not in k}, out["aniportrait_denoising_unet"])
    del denoising, state

    guider = PoseGuider(noise_latent_channels=320, use_ca=True)
    perturb_zeros(guider, gen)
    torch.save(guider.state_dict(), out["aniportrait_pose_guider"])
    for n, path in out.items():
        print(f"{n}: {path} ({path.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
