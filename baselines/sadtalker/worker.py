"""Worker hooks for SadTalker: upstream's own classes, built once, called per clip as ``inference.py`` calls them.

Runs inside SadTalker's environment with the upstream tree on ``sys.path`` (standard library + upstream only).
``load`` = ``inference.py``'s model construction (``init_path``, ``CropAndExtract``, ``Audio2Coeff``,
``AnimateFromCoeff``); ``generate`` = the body of its ``main`` for one image and one audio with no reference
eye-blink or pose video, and the same options. The worker seeds ``random``/numpy/torch before each clip
(upstream draws ``torch.randn`` in the pose CVAE and Python ``random`` for blinks, unseeded).
"""

from __future__ import annotations

import os
from pathlib import Path
from time import strftime

from kdbench.runtime.hooks import WorkerHooks


class SadTalkerHooks(WorkerHooks):
    packages = ("torch", "torchvision", "numpy", "scipy", "scikit-image", "librosa", "kornia", "facexlib",
                "basicsr", "gfpgan", "safetensors", "imageio", "imageio-ffmpeg", "face-alignment", "av")

    def _device(self) -> str:
        return "cuda" if str(self.device).startswith("cuda") else "cpu"

    def load(self) -> None:
        import torch
        from src.facerender.animate import AnimateFromCoeff
        from src.test_audio2coeff import Audio2Coeff
        from src.utils.init_path import init_path
        from src.utils.preprocess import CropAndExtract

        if str(self.device).startswith("cuda:"):
            torch.cuda.set_device(torch.device(self.device))
        o = self.options
        # inference.py: init_path(args.checkpoint_dir='./checkpoints', <script dir>/src/config, size, old_version,
        # preprocess); the cwd is the source tree here, as for `python inference.py` run from it
        self.paths = init_path(str(self.source / "checkpoints"), str(self.source / "src" / "config"), int(o["size"]),
                               False, o["preprocess"])
        dev = self._device()
        self.preprocess_model = CropAndExtract(self.paths, dev)
        self.audio_to_coeff = Audio2Coeff(self.paths, dev)
        self.animate_from_coeff = AnimateFromCoeff(self.paths, dev)

    def generate(self, image: Path, audio: Path, out_dir: Path):
        from src.generate_batch import get_data
        from src.generate_facerender_batch import get_facerender_data

        o, dev = self.options, self._device()
        save_dir = os.path.join(str(out_dir), strftime("%Y_%m_%d_%H.%M.%S"))
        os.makedirs(save_dir, exist_ok=True)
        first_frame_dir = os.path.join(save_dir, "first_frame_dir")
        os.makedirs(first_frame_dir, exist_ok=True)
        first_coeff_path, crop_pic_path, crop_info = self.preprocess_model.generate(
            str(image), first_frame_dir, o["preprocess"], source_image_flag=True, pic_size=int(o["size"]))
        if first_coeff_path is None:
            raise RuntimeError("SadTalker: can't get the coeffs of the input (no face found in the reference image)")
        batch = get_data(first_coeff_path, str(audio), dev, None, still=bool(o["still"]))
        coeff_path = self.audio_to_coeff.generate(batch, save_dir, int(o["pose_style"]), None)
        data = get_facerender_data(coeff_path, crop_pic_path, first_coeff_path, str(audio), int(o["batch_size"]),
                                   None, None, None, expression_scale=float(o["expression_scale"]),
                                   still_mode=bool(o["still"]), preprocess=o["preprocess"], size=int(o["size"]))
        result = self.animate_from_coeff.generate(data, save_dir, str(image), crop_info, enhancer=o["enhancer"],
                                                  background_enhancer=None, preprocess=o["preprocess"],
                                                  img_size=int(o["size"]))
        return {"video": result, "n_frames": int(data["frame_num"])}
