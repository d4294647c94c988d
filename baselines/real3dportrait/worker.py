"""Worker hooks for Real3D-Portrait: upstream's own ``GeneFace2Infer``, built once, called per clip as
``inference/real3d_infer.py`` calls it.

Runs inside Real3D-Portrait's environment with the source tree on ``sys.path`` (standard library + upstream only).
``load`` = the construction ``real3d_infer.py``'s ``__main__`` does (``GeneFace2Infer(a2m_ckpt, head_ckpt='',
torso_ckpt)``: audio-to-SECC VAE, SECC-to-plane torso model, mediapipe segmenter, SECC renderer, 3DMM helpers), with
HuBERT (``facebook/hubert-large-ls960-ft``) loaded once from the files ``kdbench setup`` links into
``checkpoints/hubert-large-ls960-ft`` and handed to upstream's module-level cache (``extract_hubert.hubert_model`` /
``wav2vec2_processor``), so neither upstream's hard-coded ``/home/tiger/...`` path nor the Hugging Face hub is read;
``torch.hub`` is pointed at ``checkpoints/torch_home/hub``, where setup links the ImageNet ResNet-34 that the
img2plane encoder loads while it is built, so that is not downloaded either.
``frames`` = ``GeneFace2Infer.infer_once(inp)`` with the ``inp`` its ``__main__`` builds from
``--src_img I --drv_aud A --drv_pose static --out_mode final --seed S`` and the options; the frames upstream hands
to its video writer (``imageio.get_writer('demo.mp4')``) are recorded as they are written and reach kdbench's
normaliser losslessly (FFV1), not through upstream's two H.264 encodes (imageio, then ``ffmpeg -shortest``).

Traps of the command line that kdbench never falls into: ``--drv_pose`` defaults to an example video (the head
pose would be copied from it), ``--out_mode`` to a five-panel debug video, and ``--seed`` to the clock.
``infer_once`` seeds ``random``, torch and numpy itself with ``inp['seed']``: the run's seed is passed there.
Upstream writes ``<audio>_16k.wav`` next to the input audio and ``infer_out/tmp/*`` under the cwd: both land in
the worker's per-clip scratch folder (the cwd), where ``checkpoints``, ``data_gen`` and ``deep_3drecon`` are
linked because upstream opens them by relative path.
"""

from __future__ import annotations

import os
from pathlib import Path

from kdbench.runtime.hooks import FrameHooks

FPS = 25  # real3d_infer.py writes fps=25 (HuBERT's 50 Hz features, two per frame)
A2M_CKPT = "checkpoints/240210_real3dportrait_orig/audio2secc_vae"  # real3d_infer.py --a2m_ckpt default
TORSO_CKPT = "checkpoints/240210_real3dportrait_orig/secc2plane_torso_orig"  # --torso_ckpt default
HUBERT_DIR = "checkpoints/hubert-large-ls960-ft"  # kdbench's link of HF facebook/hubert-large-ls960-ft
#: torch.hub folder where kdbench links torchvision's ImageNet ResNet-34 (``checkpoints/resnet34-333f7ec4.pth``),
#: which upstream's img2plane encoder loads through ``torch.utils.model_zoo`` while it is built
TORCH_HUB_DIR = "checkpoints/torch_home/hub"
MIN_FACE_AREA_PERCENT = 0.2  # --min_face_area_percent default
BLINK_MODES = ("period", "none")  # real3d_infer.py: "none | period"


def bool_text(value) -> str:
    """``map_to_init_pose`` as upstream's argparse gives it (the strings ``'True'`` / ``'False'``)."""
    if isinstance(value, bool):
        return str(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return "True"
    if text in ("false", "0", "no"):
        return "False"
    raise ValueError(f"map_to_init_pose={value!r}: use true or false")


class _Recorder:
    """An imageio writer that also keeps a copy of every frame appended (``uint8[H,W,3]`` RGB)."""

    def __init__(self, writer, frames: list):
        self._writer = writer
        self._frames = frames

    def append_data(self, im, meta=None):
        import numpy as np

        self._frames.append(np.array(im, dtype=np.uint8, copy=True))
        return self._writer.append_data(im) if meta is None else self._writer.append_data(im, meta)

    def __getattr__(self, name):
        return getattr(self._writer, name)


class Real3DPortraitHooks(FrameHooks):
    fps = FPS
    packages = ("torch", "torchvision", "numpy", "pytorch3d", "mmcv-lite", "mediapipe", "transformers", "timm",
                "kornia", "librosa", "praat-parselmouth", "scipy", "opencv-python-headless", "imageio",
                "imageio-ffmpeg")

    def _check_options(self) -> None:
        o = self.options
        if o["blink_mode"] not in BLINK_MODES:
            raise ValueError(f"blink_mode={o['blink_mode']!r}: real3d_infer.py knows {' | '.join(BLINK_MODES)}")
        bool_text(o["map_to_init_pose"])
        for k in ("temperature", "mouth_amp"):
            float(o[k])

    def _device(self) -> str:
        import torch

        dev = str(self.device)
        if dev.startswith("cuda"):
            if dev not in ("cuda", "cuda:0"):
                raise ValueError(f"--device {dev}: Real3D-Portrait hard-codes 'cuda' / 'cuda:0' (HuBERT, the 3DMM "
                                 "fitting); choose the GPU with CUDA_VISIBLE_DEVICES=N and --device cuda")
            return "cuda"
        if torch.cuda.is_available():
            raise ValueError("--device cpu on a machine with CUDA: Real3D-Portrait calls .cuda() unconditionally, so "
                             "it would still use the GPU; hide it (CUDA_VISIBLE_DEVICES=) to run on the CPU")
        return "cpu"

    def load(self) -> None:
        self._check_options()
        dev = self._device()
        import torch
        from data_gen.utils.process_audio import extract_hubert
        from transformers import HubertModel, Wav2Vec2Processor

        torch.hub.set_dir(str(self.source / TORCH_HUB_DIR))  # the linked ResNet-34, never a download
        hubert = str(self.source / HUBERT_DIR)
        extract_hubert.hubert_model = HubertModel.from_pretrained(hubert)
        extract_hubert.wav2vec2_processor = Wav2Vec2Processor.from_pretrained(hubert)
        from inference.real3d_infer import GeneFace2Infer

        # GeneFace2Infer.example_run: cls(inp['a2m_ckpt'], inp['head_ckpt'], inp['torso_ckpt'], inp=inp)
        self.model = GeneFace2Infer(A2M_CKPT, "", TORSO_CKPT, device=dev, inp={"head_torso_threshold": None})
        extract_hubert.hubert_model.to("cuda:0" if dev == "cuda" else "cpu")  # where upstream moves it per clip
        self._seed = 0

    def seed(self, seed: int) -> None:
        """``infer_once`` seeds ``random``, torch and numpy with ``inp['seed']`` before drawing anything."""
        super().seed(seed)
        self._seed = int(seed)

    def inp(self, image: Path, audio: Path, out_name: Path) -> dict:
        """The ``inp`` dict ``real3d_infer.py``'s ``__main__`` builds for ``--src_img image --drv_aud audio
        --drv_pose static --out_mode final --out_name out_name --seed S`` and the options."""
        o = self.options
        return {
            "a2m_ckpt": A2M_CKPT, "head_ckpt": "", "torso_ckpt": TORSO_CKPT,
            "src_image_name": str(image), "bg_image_name": "", "drv_audio_name": str(audio),
            "drv_pose_name": "static", "blink_mode": o["blink_mode"], "temperature": float(o["temperature"]),
            "mouth_amp": float(o["mouth_amp"]), "out_name": str(out_name), "out_mode": "final",
            "map_to_init_pose": bool_text(o["map_to_init_pose"]), "head_torso_threshold": None, "seed": self._seed,
            "min_face_area_percent": MIN_FACE_AREA_PERCENT, "low_memory_usage": False,
        }

    def frames(self, image: Path, audio: Path):
        """``uint8[T,512,512,3]`` RGB: the frames ``infer_once`` writes to its video for this image and audio
        (T = HuBERT frames, padded to a multiple of 8, halved: 28 for 1 s of audio)."""
        import imageio
        import numpy as np

        recorded: list = []
        original = imageio.get_writer

        def get_writer(uri, *args, **kwargs):
            writer = original(uri, *args, **kwargs)
            return _Recorder(writer, recorded) if os.path.basename(str(uri)) == "demo.mp4" else writer

        imageio.get_writer = get_writer  # upstream does `import imageio; imageio.get_writer(...)` at call time
        try:
            self.model.infer_once(self.inp(image, audio, Path("infer_out") / "kdbench_result.mp4"))
        finally:
            imageio.get_writer = original
        if not recorded:
            raise RuntimeError("Real3D-Portrait wrote no frames (its video writer was never given one)")
        return np.stack(recorded)
