"""Worker hooks for AniTalker: upstream's own classes and functions, built once, called per clip as ``demo.py`` does.

Runs inside AniTalker's environment with ``<source>/code`` on ``sys.path`` (standard library + upstream only).
``load`` = ``demo.py``'s model construction (``LIA_Model`` + ``load_lightning_model``, ``LitModel`` + the stage-2
state dict, the HuBERT model and feature extractor); ``generate`` = the body of its ``main`` for
``--infer_type hubert_audio_only`` with the HuBERT features extracted online (never a stale ``--test_hubert_path``
file), the default control signals, ``--step_T`` = ``step_t``, and the frames ``saved_image`` would write.

Seeding: ``demo.py --seed S`` seeds in ``LitModel.__init__`` (``pl.seed_everything(S)``), which then draws the
model's parameter initialisation and its ``x_T`` buffer, and ``HubertModel.from_pretrained`` draws its module
initialisation, before the diffusion noise ``th.randn`` is drawn. :meth:`seed` reproduces exactly that state (once
per seed: it builds the same throwaway modules) so each clip's noise is the one ``demo.py`` draws with that seed.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from kdbench.runtime.hooks import NUMPY_PICKLE_GLOBALS, FrameHooks

MOTION_DIM = 20  # demo.py --motion_dim ("Do not change")
IMAGE_SIZE = 256  # demo.py --image_size ("Do not change")
DECODER_LAYERS = 2  # demo.py --decoder_layers
FPS = 25


class AniTalkerHooks(FrameHooks):
    fps = FPS
    packages = ("torch", "torchvision", "numpy", "scipy", "pytorch-lightning", "espnet", "transformers", "librosa",
                "moviepy", "imageio-ffmpeg")
    # stage1.ckpt is read by upstream's load_lightning_model: a Lightning checkpoint's hyper-parameters are an
    # argparse.Namespace or Lightning's AttributeDict (a dict), its loop counters numpy scalars
    pickle_allow = NUMPY_PICKLE_GLOBALS + ("argparse:Namespace", "pytorch_lightning.utilities.parsing:AttributeDict")

    # -- helpers -----------------------------------------------------------------------------------------------
    def _dev(self) -> str:
        return str(self.device) if str(self.device).startswith("cuda") else "cpu"

    def _conf(self, seed: int | None):
        """``demo.py``'s ``conf`` for ``--infer_type hubert_audio_only``."""
        from templates import ffhq256_autoenc

        conf = ffhq256_autoenc()
        conf.seed = seed
        conf.decoder_layers = DECODER_LAYERS
        conf.infer_type = self.options["infer_type"]
        conf.motion_dim = MOTION_DIM
        conf.face_location = False
        conf.face_scale = False
        conf.mfcc = False
        return conf

    @property
    def _ckpts(self) -> Path:
        return self.source / "ckpts"

    # -- load once ---------------------------------------------------------------------------------------------
    def load(self) -> None:
        sys.path.insert(0, str(self.source / "code"))
        import torch
        from LIA_Model import LIA_Model
        from templates import LitModel
        from transformers import HubertModel, Wav2Vec2FeatureExtractor

        o = self.options
        if o["infer_type"] != "hubert_audio_only":
            raise ValueError(f"infer_type={o['infer_type']!r}: kdbench runs the recommended hubert_audio_only model "
                             "(the only stage-2 checkpoint in its weights manifest)")
        if o["face_sr"]:
            raise ValueError("face_sr needs GFPGAN, which kdbench does not install for AniTalker; leave it off "
                             "(the paper's comparison is at 256x256, upscaled by kdbench's normaliser)")
        dev = self._dev()
        self.lia = LIA_Model(motion_dim=MOTION_DIM, fusion_type="weighted_sum")
        self.lia.load_lightning_model(str(self._ckpts / "stage1.ckpt"))
        self.lia.to(dev)
        self.model = LitModel(self._conf(None))
        # a plain state dict of tensors: loaded without unpickling anything else (demo.py's own call relies on
        # torch's default; stage 1 and HuBERT are read by upstream's loaders with the compat default)
        state = torch.load(str(self._ckpts / "stage2_audio_only_hubert.ckpt"), map_location="cpu", weights_only=True)
        self.model.load_state_dict(state, strict=True)
        self.model.ema_model.eval()
        self.model.ema_model.to(dev)
        self.hubert_path = str(self._ckpts / "chinese-hubert-large")
        self.audio_model = HubertModel.from_pretrained(self.hubert_path).to(dev)
        self.feature_extractor = Wav2Vec2FeatureExtractor.from_pretrained(self.hubert_path)
        self.audio_model.feature_extractor._freeze_parameters()
        self.audio_model.eval()
        self._rng: dict[int, tuple] = {}

    # -- seeding -----------------------------------------------------------------------------------------------
    def seed(self, seed: int) -> None:
        """The generators' state ``demo.py --seed seed`` has when it draws the diffusion noise."""
        import numpy as np
        import torch

        if seed not in self._rng:
            import gc

            from templates import LitModel
            from transformers import HubertModel

            LitModel(self._conf(seed))  # pl.seed_everything(seed), then its parameter init and x_T
            HubertModel.from_pretrained(self.hubert_path)  # module construction draws from the CPU generator
            gc.collect()  # the two throwaway models (about 1.7 GB with the real weights) go before generating
            cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
            self._rng[seed] = (random.getstate(), np.random.get_state(), torch.get_rng_state(), cuda)
        py, npy, cpu, cuda = self._rng[seed]
        random.setstate(py)
        np.random.set_state(npy)
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)

    # -- per clip ----------------------------------------------------------------------------------------------
    def frames(self, image: Path, audio: Path):
        """``uint8[T,256,256,3]`` RGB: the frames ``demo.py`` saves as PNGs for this image and audio."""
        import demo
        import librosa
        import numpy as np
        import torch
        from torchvision import transforms

        dev, o = self._dev(), self.options
        img_source = demo.img_preprocessing(str(image), IMAGE_SIZE).to(dev)
        start, direction, feats = self.lia.get_start_direction_code(img_source, img_source, img_source, img_source)

        wav, _ = librosa.load(str(audio), sr=16000)
        input_values = self.feature_extractor(wav, sampling_rate=16000, padding=True, do_normalize=True,
                                              return_tensors="pt").input_values.to(dev)
        with torch.no_grad():
            outputs = self.audio_model(input_values, output_hidden_states=True)
            ws_feats = [h.detach().cpu().numpy() for h in outputs.hidden_states]
            ws = np.squeeze(np.array(ws_feats), 1)
            ws = np.pad(ws, ((0, 0), (0, 1), (0, 0)), "edge")  # align the audio length with video frame
        frame_end = int(ws.shape[1] / 2)
        audio_driven = torch.Tensor(ws[:, 0:frame_end * 2, :]).unsqueeze(0).float().to(dev)

        noisy_t = torch.randn((1, frame_end, MOTION_DIM)).to(dev)
        yaw = torch.zeros(1, frame_end, 1).to(dev) + 0.25  # demo.py defaults (unused without --control_flag)
        pitch = torch.zeros(1, frame_end, 1).to(dev) + 0
        roll = torch.zeros(1, frame_end, 1).to(dev) + 0
        pose = torch.clamp(torch.cat((yaw, pitch, roll), dim=-1), -1, 1)
        location = torch.zeros(1, frame_end, 1).to(dev) + 0.5
        scale = torch.zeros(1, frame_end, 1).to(dev) + 0.5
        directions = self.model.render(start, direction, audio_driven, location, scale, pose, noisy_t,
                                       int(o["step_t"]), control_flag=False)
        directions = directions.detach().cpu().numpy()
        to_pil = transforms.ToPILImage()
        out = np.empty((directions.shape[1], IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
        for i in range(directions.shape[1]):
            recon = self.lia.render(start, torch.Tensor(directions[:, i, :]).to(dev), feats).clamp(-1, 1)
            out[i] = np.asarray(to_pil(((recon.detach() + 1) / 2).cpu().squeeze(0)))
        return out
