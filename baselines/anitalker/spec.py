"""AniTalker's pinned upstream, environment and weights layout (data for :mod:`kdbench.runtime`)."""

from __future__ import annotations

from kdbench.runtime.spec import UpstreamSpec

SPEC = UpstreamSpec(
    name="anitalker",
    description="AniTalker (ACM MM 2024), official code at a pinned commit in its own environment "
                "(`kdbench setup anitalker`); HuBERT audio-only model, 50 diffusion steps",
    repo="X-LANCE/AniTalker",
    commit="738c5625af24c59a84612b0b840d931470fa3987",
    python="3.11",
    requirements=(
        "torch==2.14.1",
        "torchvision==0.29.1",
        "pytorch-lightning==1.6.5",
        "torchmetrics==0.5.0",
        "scipy==1.9.3",
        "numpy==1.23.4",
        "tqdm==4.66.4",
        "espnet==202301",
        "moviepy==1.0.3",
        "python_speech_features==0.6",
        "transformers==4.26.1",
        "librosa==0.10.1",
        "setuptools>=75,<81",
    ),
    requirement_notes={
        "python": "3.11 instead of 3.9.0: torch builds with Hopper kernels (sm_90) and current wheels of the rest",
        "torch": "2.14.1 instead of 1.8.0 (CUDA 11.1, no sm_90 kernels); needs the torch.load compat fix",
        "torchvision": "0.29.1 to match torch (upstream: unpinned)",
        "numpy": "1.23.4 instead of 1.19.5 (no cp311 wheel)",
        "scipy": "1.9.3 instead of 1.5.4 (no cp311 wheel)",
        "transformers": "4.26.1 instead of 4.19.2 (tokenizers 0.12.1 has no cp311 wheel)",
        "librosa": "0.10.1 pinned (upstream: unpinned, pulled in by espnet)",
        "python_speech_features": "0.6 pinned (upstream: unpinned)",
        "gradio": "dropped: only the web UI imports it",
        "dlib": "dropped: only the data preprocessing imports it",
        "setuptools": "<81 added: pytorch-lightning 1.6.5 imports pkg_resources",
        "pip": "pytorch-lightning 1.6.5's metadata (`torch>=1.8.*`) is refused by pip >= 24.1: the venv's own pip "
               "(23.x on Python 3.11) or uv installs it",
    },
    build_requirements=("wheel", "setuptools>=75,<81", "cython<3.1", "numpy==1.23.4"),
    hooks="baselines.anitalker.worker:AniTalkerHooks",
    weights={
        "anitalker_stage1": "ckpts/stage1.ckpt",
        "anitalker_stage2_audio_only_hubert": "ckpts/stage2_audio_only_hubert.ckpt",
        "anitalker_hubert_config": "ckpts/chinese-hubert-large/config.json",
        "anitalker_hubert_preprocessor": "ckpts/chinese-hubert-large/preprocessor_config.json",
        "anitalker_hubert_model": "ckpts/chinese-hubert-large/pytorch_model.bin",
    },
    compat=("torch_load_pinned_pickle", "torch_qr"),
    options={"step_t": 50, "infer_type": "hubert_audio_only", "face_sr": False},
    paper_row="AniTalker",
    licence="Apache-2.0 (code and weights, X-LANCE/AniTalker; HF taocode/anitalker_ckpts)",
)
"""Options (``--set``) are ``demo.py``'s flags with the README's recommended model: ``step_t`` (``--step_T``, 50),
``infer_type`` (only ``hubert_audio_only`` has its weights in the manifest), ``face_sr`` (GFPGAN super-resolution;
not installed, refused)."""
