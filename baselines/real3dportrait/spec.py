"""Real3D-Portrait's pinned upstream, environment and weights layout (data for :mod:`kdbench.runtime`)."""

from __future__ import annotations

from kdbench.runtime.spec import UpstreamSpec

_ORIG = "checkpoints/240210_real3dportrait_orig"
_HUBERT = "checkpoints/hubert-large-ls960-ft"
_BFM = "deep_3drecon/BFM"


SPEC = UpstreamSpec(
    name="real3dportrait",
    description="Real3D-Portrait (ICLR 2024), official inference/real3d_infer.py at a pinned commit in its own "
                "environment (`kdbench setup real3dportrait`); audio-driven, static head pose "
                "(--drv_pose static), final 512x512 video (--out_mode final)",
    repo="yerfor/Real3DPortrait",
    commit="a9d70c7ee81bc9349f0f5e558f406f75194bd776",
    python="3.11",
    requirements=(
        "torch==2.14.1",
        "torchvision==0.29.1",
        "numpy==2.4.6",
        "scipy==1.17.1",
        "scikit-learn==1.9.1",
        "scikit-image==0.26.0",
        "opencv-python-headless==5.0.0.93",
        "librosa==0.11.0",
        "soundfile==0.14.0",
        "imageio==2.38.1",
        "imageio-ffmpeg==0.8.1",
        "einops==0.8.2",
        "PyYAML==6.0.4",
        "tqdm",
        "mediapipe==0.10.31",
        "mmcv-lite==2.1.0",
        "timm==0.9.2",
        "kornia==0.5.0",
        "trimesh==5.2.0",
        "torchshow==0.5.1",
        "praat-parselmouth==0.4.7",
        "pyloudnorm==0.1.1",
        "webrtcvad-wheels==2.0.14.post1",
        "moviepy==1.0.3",
        "transformers==4.46.3",
        "huggingface_hub==0.36.2",
        "pretrainedmodels==0.7.4",
        "six",
        "iopath",
    ),
    requirement_notes={
        "python": "3.11 instead of 3.9: the shared torch 2.14.1 (Hopper/Blackwell kernels) and current wheels",
        "torch": "2.14.1 instead of 2.0.1+cu117 (no sm_90 kernels); shared with the other baselines (--share-site)",
        "torchvision": "0.29.1 to match torch (upstream 0.15.2)",
        "numpy": "2.4.6 (upstream: unpinned, 1.x era): the shared torch, OpenCV 5 and SciPy are numpy 2 builds; "
                 "the two numpy 1 names upstream uses are restored by the numpy2_removed_names compat fix",
        "pytorch3d": "upstream: conda or `pip install git+...pytorch3d@stable`; no wheel fits torch 2.14 / "
                     "Python 3.11, so `kdbench setup` compiles v0.7.9's mesh rasterizer only (native build "
                     "pytorch3d_rasterizer: rasterize_meshes, plus interp_face_attrs with CUDA; a few minutes, "
                     "cached per torch/CUDA/Python) and installs pytorch3d's Python package with it. Inference "
                     "uses only MeshRasterizer, FoVPerspectiveCameras, Meshes and interpolate_face_attributes "
                     "(deep_3drecon/util/mesh_renderer.py)",
        "mmcv-lite": "2.1.0 instead of mmcv 2.1.0 (CUDA ops, source build): inference imports only "
                     "mmcv.cnn.ConvModule (modules/real3d/segformer.py), pure PyTorch, which mmcv-lite has",
        "mediapipe": "0.10.31 (upstream: unpinned; its Colab 0.10.7): the first release without a numpy<2 pin "
                     "that still has the tasks API upstream uses (FaceLandmarker, ImageSegmenter)",
        "kornia": "0.5.0 as upstream (only kornia.geometry.camera.pixel2cam is imported)",
        "timm": "0.9.2 as upstream's Colab (segformer's DropPath/trunc_normal_)",
        "transformers": "4.46.3 instead of unpinned (Colab 4.33.2, whose tokenizers has no numpy 2 support); "
                        "HubertModel + Wav2Vec2Processor only",
        "huggingface_hub": "0.36.2: transformers 4.46 needs < 1.0 (the shared site has 1.x)",
        "opencv-python-headless": "5.0.0.93 headless instead of opencv_python (no GUI is used)",
        "librosa": "0.11.0 instead of 0.9.2 (0.9.2 needs numpy 1)",
        "praat-parselmouth": "0.4.7 (upstream 0.4.3 has no cp311 wheel); F0 for the audio-to-motion VAE",
        "webrtcvad-wheels": "2.0.14.post1: the prebuilt webrtcvad (imported by utils/audio)",
        "pretrainedmodels": "0.7.4 as upstream's Colab (imported by modules/img2plane/deeplabv3 at import time; "
                            "six is its undeclared dependency)",
        "resolution": "this list installs on CPython 3.11.7 on top of the shared site of torch 2.14.1 (2026-11-28); "
                      "with it every module real3d_infer.py imports loads, pytorch3d (built as noted) included",
        "dropped": "gradio, dlib, faiss-cpu, tensorboard, lpips, pytorch_lightning, s3prl, pyaudio, dearpygui, "
                   "decord and the TTS/training extras: real3d_infer.py imports none of them",
    },
    build_requirements=("wheel", "setuptools>=75,<81", "ninja"),
    build_isolation=False,
    native_builds=("pytorch3d_rasterizer",),
    hooks="baselines.real3dportrait.worker:Real3DPortraitHooks",
    weights={
        "real3dportrait_orig": _ORIG,
        "real3dportrait_pretrained_ckpts": "checkpoints/pretrained_ckpts",
        "real3dportrait_bfm_model_front": f"{_BFM}/BFM_model_front.mat",
        "real3dportrait_bfm_index_mp468": f"{_BFM}/index_mp468_from_mesh35709.npy",
        # read by torch.utils.model_zoo while img2plane is built (the worker sets torch.hub's dir to its folder;
        # the official script reads it with TORCH_HOME=<source>/checkpoints/torch_home)
        "real3dportrait_resnet34_imagenet": "checkpoints/torch_home/hub/checkpoints/resnet34-333f7ec4.pth",
        "hubert_large_ls960_ft_config": f"{_HUBERT}/config.json",
        "hubert_large_ls960_ft_preprocessor": f"{_HUBERT}/preprocessor_config.json",
        "hubert_large_ls960_ft_model": f"{_HUBERT}/pytorch_model.bin",
        "hubert_large_ls960_ft_vocab": f"{_HUBERT}/vocab.json",
        "hubert_large_ls960_ft_tokenizer_config": f"{_HUBERT}/tokenizer_config.json",
        "hubert_large_ls960_ft_special_tokens": f"{_HUBERT}/special_tokens_map.json",
        # a blob of the upstream tree itself (> 4 MiB: absent from some mirrors and partial clones); when fetched,
        # the pinned copy replaces the tree's, else the tree's own file is used
        "real3dportrait_selfie_segmenter": "data_gen/utils/mp_feature_extractors/selfie_multiclass_256x256.tflite",
    },
    optional_weights=("real3dportrait_selfie_segmenter",),
    compat=("numpy2_removed_names", "torch_load_pinned_pickle", "ffmpeg_on_path", "cuda_to_cpu",
            "mesh_renderer_cpu_device", "mediapipe_mask_2d", "torchshow_window_title"),
    scratch_links=("checkpoints", "data_gen", "deep_3drecon"),
    options={"temperature": 0.2, "mouth_amp": 0.45, "blink_mode": "period", "map_to_init_pose": True},
    paper_row="Real3DPortrait",
    audio_loader="ffmpeg_wav16k",
    licence="MIT (code, yerfor/Real3DPortrait); checkpoints from its Google Drive (same terms); BFM 2009 "
            "(Basel Face Model: registration with the University of Basel, non-commercial); "
            "facebook/hubert-large-ls960-ft Apache-2.0",
)
"""Options (``--set``) are ``real3d_infer.py``'s flags with its defaults: ``temperature`` (0.2, sampling temperature
of the audio-to-motion VAE), ``mouth_amp`` (0.45), ``blink_mode`` (``period``: a blink every 5 s of random length 8-12
frames, drawn from the seeded ``random``; or ``none``), ``map_to_init_pose`` (true). ``--drv_pose static`` and
``--out_mode final`` are always used; the paper gives no settings."""
