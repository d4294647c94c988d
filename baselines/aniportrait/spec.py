"""AniPortrait's pinned upstream, environment and weights layout (data for :mod:`kdbench.runtime`)."""

from __future__ import annotations

from kdbench.runtime.spec import UpstreamSpec

_SD = "pretrained_model/stable-diffusion-v1-5"
_VAE = "pretrained_model/sd-vae-ft-mse"
_ENC = "pretrained_model/image_encoder"
_W2V = "pretrained_model/wav2vec2-base-960h"

SPEC = UpstreamSpec(
    name="aniportrait",
    description="AniPortrait (audio-driven, 2024), official scripts/audio2vid.py pipeline at a pinned commit in "
                "its own environment (`kdbench setup aniportrait`); 512x512, 25 DDIM steps, cfg 3.5, 30 fps "
                "resampled to 25 by timestamp",
    repo="Zejun-Yang/AniPortrait",
    commit="7f6593fd971c95b65f603c15ef8ce2c3fc7f5404",
    python="3.11",
    requirements=(
        "torch==2.1.2",
        "torchvision==0.16.2",
        "diffusers==0.24.0",
        "transformers==4.30.2",
        "accelerate==0.21.0",
        "huggingface_hub==0.19.4",
        "numpy==1.24.4",
        "omegaconf==2.2.3",
        "einops==0.4.1",
        "av==12.0.0",
        "imageio==2.33.0",
        "imageio-ffmpeg==0.4.9",
        "opencv-python==4.8.1.78",
        "opencv-contrib-python==4.8.1.78",
        "Pillow==9.5.0",
        "scipy==1.11.4",
        "scikit-image==0.21.0",
        "mediapipe==0.10.11",
        "librosa==0.9.2",
        "ffmpeg-python==0.2.0",
        "tqdm==4.66.1",
        "setuptools>=75,<81",
    ),
    requirement_notes={
        "python": "3.11 (numpy 1.24.4, mediapipe 0.10.11 and torch 2.x have cp311 wheels; numpy 1.24.4 has none "
                  "for 3.12)",
        "torch": "2.1.2 instead of 2.0.1: PyPI's 2.0.1 is built for CUDA 11.7, without sm_90 kernels for H100/H200; "
                 "2.1.2 is the CUDA 12.1 build of the same era as diffusers 0.24.0",
        "torchvision": "0.16.2 to match torch",
        "xformers": "dropped: audio2vid.py never enables it (the pipeline uses PyTorch attention)",
        "opencv-contrib-python": "kept at upstream's 4.8.1.78: mediapipe depends on it, and an unpinned newer one "
                                 "would overwrite opencv-python's cv2 module",
        "resolution": "this list resolves on CPython 3.11.7 (pip install --dry-run --prefer-binary, 2026-11-28); "
                      "only antlr4-python3-runtime 4.9.3 (omegaconf's dependency) is an sdist (pure Python)",
        "setuptools": "<81 added: librosa 0.9.2 imports pkg_resources",
        "av": "12.0.0 instead of 11.0.0 (no cp311 wheel of 11.0.0)",
        "huggingface_hub": "0.19.4 pinned: diffusers 0.24.0 imports cached_download, removed in 0.26",
        "onnxruntime-gpu": "dropped: only the face re-enactment scripts use it",
        "gradio": "dropped (with gradio_client, clip, open-clip-torch, controlnet-aux, decord, torchdiffeq, torchsde, "
                  "torchmetrics, scikit-learn): only the web UI, training and "
                  "vid2vid/pose2vid scripts import them",
    },
    hooks="baselines.aniportrait.worker:AniPortraitHooks",
    weights={
        "aniportrait_denoising_unet": "pretrained_model/denoising_unet.pth",
        "aniportrait_reference_unet": "pretrained_model/reference_unet.pth",
        "aniportrait_pose_guider": "pretrained_model/pose_guider.pth",
        "aniportrait_motion_module": "pretrained_model/motion_module.pth",
        "aniportrait_audio2mesh": "pretrained_model/audio2mesh.pt",
        "aniportrait_audio2pose": "pretrained_model/audio2pose.pt",
        "aniportrait_film_net": "pretrained_model/film_net_fp16.pt",
        "sd15_unet_config": f"{_SD}/unet/config.json",
        "sd15_unet": f"{_SD}/unet/diffusion_pytorch_model.bin",
        "sd_vae_ft_mse_config": f"{_VAE}/config.json",
        "sd_vae_ft_mse": f"{_VAE}/diffusion_pytorch_model.bin",
        "sd_image_variations_encoder_config": f"{_ENC}/config.json",
        "sd_image_variations_encoder": f"{_ENC}/pytorch_model.bin",
        "wav2vec2_base_960h_config": f"{_W2V}/config.json",
        "wav2vec2_base_960h_preprocessor": f"{_W2V}/preprocessor_config.json",
        "wav2vec2_base_960h": f"{_W2V}/pytorch_model.bin",
    },
    optional_weights=("aniportrait_film_net",),
    compat=("torch_load_pinned_pickle",),
    options={"steps": 25, "cfg": 3.5, "size": 512, "acc": False, "fi_step": 3},
    grid="3:2,pad=2",
    paper_row="AniPortrait",
    licence="Apache-2.0 (code and weights, Zejun-Yang/AniPortrait; HF ZJYang/AniPortrait); SD-1.5 CreativeML "
            "OpenRAIL-M; sd-vae-ft-mse MIT; sd-image-variations CreativeML OpenRAIL-M; wav2vec2-base-960h Apache-2.0",
)
"""Options (``--set``) are ``audio2vid.py``'s flags: ``steps`` (``--steps``, 25), ``cfg`` (``--cfg``, 3.5), ``size``
(``-W``/``-H``, 512), ``acc`` (``-acc``: generate every ``fi_step``-th frame and interpolate with FILM; it yields
``(ceil(N/3) - 1) * 3 + 1`` frames instead of N, so the normaliser pads the last frame; CUDA only upstream),
``fi_step`` (``--fi_step``, 3). The output grid ``[reference | pose mesh | video]`` is cut by ``grid`` (panel 2,
make_grid padding 2) and resampled from 30 to 25 fps by the normaliser."""
