"""SadTalker's pinned upstream, environment and weights layout (data for :mod:`kdbench.runtime`)."""

from __future__ import annotations

from kdbench.runtime.spec import UpstreamSpec

SPEC = UpstreamSpec(
    name="sadtalker",
    description="SadTalker (CVPR 2023), official code at a pinned commit in its own environment "
                "(`kdbench setup sadtalker`); crop, 256, pose style 0, no enhancer unless --set",
    repo="OpenTalker/SadTalker",
    commit="cd4c0465ae0b54a6f85af57f5c65fec9fe23e7f8",
    python="3.11",
    requirements=(
        "torch==2.14.1",
        "torchvision==0.29.1",
        "numpy==1.23.4",
        "face_alignment==1.3.5",
        "imageio==2.19.3",
        "imageio-ffmpeg==0.4.7",
        "librosa==0.9.2",
        "numba==0.58.1",
        "resampy==0.3.1",
        "pydub==0.25.1",
        "scipy==1.10.1",
        "kornia==0.6.8",
        "tqdm",
        "yacs==0.1.8",
        "pyyaml",
        "joblib==1.1.0",
        "scikit-image==0.20.0",
        "basicsr==1.4.2",
        "facexlib==0.3.0",
        "gfpgan==1.3.8",
        "av",
        "safetensors",
        "setuptools>=75,<81",
    ),
    requirement_notes={
        "python": "3.11 instead of 3.8: torch builds with Hopper/Blackwell kernels (sm_90+) need Python >= 3.9; "
                  "numpy 1.23.4 and scipy 1.10.1 still have cp311 wheels",
        "torch": "2.14.1 instead of 1.12.1+cu113: CUDA <= 11.7 builds have no sm_90 kernels (pytorch#90761); "
                 "needs the torch.load and torchvision compat fixes",
        "torchvision": "0.29.1 to match torch 2.14.1 (upstream 0.13.1)",
        "scikit-image": "0.20.0 instead of 0.19.3: 0.19.3 has no cp311 wheel",
        "numba": "0.58.1 pinned (upstream: unpinned): the last release that supports numpy 1.23",
        "gfpgan": "1.3.8 pinned (upstream: unpinned)",
        "gradio": "dropped: only the web UI imports it",
        "setuptools": "<81 added: librosa 0.9.2 imports pkg_resources",
    },
    build_requirements=("cython<3.1", "wheel", "setuptools>=75,<81", "numpy==1.23.4"),
    build_isolation=False,
    hooks="baselines.sadtalker.worker:SadTalkerHooks",
    weights={
        "sadtalker_256": "checkpoints/SadTalker_V0.0.2_256.safetensors",
        "sadtalker_512": "checkpoints/SadTalker_V0.0.2_512.safetensors",
        "sadtalker_mapping_00229": "checkpoints/mapping_00229-model.pth.tar",
        "sadtalker_mapping_00109": "checkpoints/mapping_00109-model.pth.tar",
        "facexlib_alignment_wflw": "gfpgan/weights/alignment_WFLW_4HG.pth",
        "facexlib_detection_resnet50": "gfpgan/weights/detection_Resnet50_Final.pth",
        "gfpgan_v1_4": "gfpgan/weights/GFPGANv1.4.pth",
        "facexlib_parsenet": "gfpgan/weights/parsing_parsenet.pth",
    },
    optional_weights=("sadtalker_512", "sadtalker_mapping_00109", "gfpgan_v1_4", "facexlib_parsenet"),
    compat=("ffmpeg_on_path", "torchvision_functional_tensor", "torch_load_pinned_pickle", "imageio_plugins_spec"),
    scratch_links=("gfpgan",),
    options={"preprocess": "crop", "size": 256, "pose_style": 0, "still": False, "expression_scale": 1.0,
             "enhancer": None, "batch_size": 2},
    paper_row="SadTalker",
    licence="Apache-2.0 (code); weights: SadTalker release v0.0.2-rc, facexlib (MIT), GFPGAN (Apache-2.0)",
)
"""Options (``--set``) are inference.py's flags with its defaults; the KDTalker paper gives no settings.
``sadtalker_512`` is needed for ``size=512``, ``sadtalker_mapping_00109`` for ``preprocess=full|extfull``,
``gfpgan_v1_4`` + ``facexlib_parsenet`` for ``enhancer=gfpgan``."""
