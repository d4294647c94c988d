"""Random Real3D-Portrait weights in the official formats, with the checkpoints' config rebuilt from the repository.

Run with Real3D-Portrait's environment from anywhere (``--source`` = the upstream tree, default the cwd):

    $KDBENCH_HOME/methods/real3dportrait/venv/bin/python /path/to/kdbench/scripts/real3dportrait_random_weights.py \\
        OUT_DIR --source $KDBENCH_HOME/methods/real3dportrait/source

The checkpoints' ``config.yaml`` ship only inside the Google Drive zip. This script rebuilds a self-consistent one
with upstream's own ``utils.commons.hparams.load_config``: the torso model's chain
``egs/os_avatar/real3d_orig/secc_img2plane_torso_orig.yaml -> secc_img2plane_orig.yaml -> img2plane_orig.yaml``,
with ``img2plane_orig.yaml``'s bases (``egs/ffhq/img2plane.yaml``, ``egs/ffhq/base.yaml``: not in the repository)
replaced by ``egs/os_avatar/img2plane.yaml`` (self-contained), and for the audio-to-SECC VAE
``egs/os_avatar/audio2motion_vae.yaml`` as it is (``use_pitch: true`` -> ``PitchContourVAEModel``). The merged
dicts are written as ``config.yaml`` into both checkpoint folders, both models are built from them with upstream's
classes (as ``GeneFace2Infer.load_audio2secc`` / ``load_secc2video`` build them), every parameter is perturbed
(trained weights have no exact zeros or ones; zero-initialised output layers would give flat frames) and saved as
``{'state_dict': {'model': state_dict}}``, the layout upstream's ``load_ckpt(model, dir, 'model', strict=True)``
reads. This config is reconstructed for the equality test; the real zip's own config is what users get.

Writes into OUT_DIR (names as in kdbench's weights manifest, one file per entry of the Real3D-Portrait spec):

- ``240210_real3dportrait_orig.zip``: ``240210_real3dportrait_orig/{audio2secc_vae,secc2plane_torso_orig}/``
  (``config.yaml``, ``model_ckpt_steps_{400000,100000}.ckpt``), and the same folder unzipped;
- ``pretrained_ckpts.zip``: ``pretrained_ckpts/mit_b0.pth`` (SegFormer-b0 state dict, read by ``mit_b0()``);
- ``BFM_model_front.mat``: a stand-in Basel-Face-Model file with the official keys and shapes (35709 vertices,
  from upstream's own ``deep_3drecon/ncc_code.npy``, the BFM mean shape normalised to 0..1; triangles by Delaunay
  triangulation; smooth random identity/expression bases). The real file needs a BFM registration;
- ``index_mp468_from_mesh35709.npy``: upstream's ``deep_3drecon/BFM/index_mp468_from_mesh35709_v3.1.npy``;
- ``hubert/``: ``facebook/hubert-large-ls960-ft``'s layout (config of HuBERT-large: 24 layers, 1024 wide; random
  weights as ``pytorch_model.bin``; the processor's feature-extractor and tokenizer files);
- ``torch_home/hub/checkpoints/resnet34-333f7ec4.pth`` (entry ``real3dportrait_resnet34_imagenet``): the ImageNet
  ResNet-34 that upstream's img2plane encoder loads through ``torch.utils.model_zoo`` when it is built
  (``encoder_weights='imagenet'``), random here; setup links it where the worker and the official script find it
  (the checkpoint replaces these weights right after);
- ``selfie_multiclass_256x256.tflite``: the stand-in segmenter of :mod:`scripts.real3dportrait_segmenter_standin`
  (unless ``--no-segmenter``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

A2M_CONFIG = "egs/os_avatar/audio2motion_vae.yaml"
TORSO_CHAIN = ("egs/os_avatar/real3d_orig/secc_img2plane_torso_orig.yaml",
               "egs/os_avatar/real3d_orig/secc_img2plane_orig.yaml",
               "egs/os_avatar/real3d_orig/img2plane_orig.yaml")
IMG2PLANE_BASE = "egs/os_avatar/img2plane.yaml"  # replaces img2plane_orig.yaml's missing egs/ffhq/* bases
ORIG = "240210_real3dportrait_orig"
STEPS = {"audio2secc_vae": 400000, "secc2plane_torso_orig": 100000}
N_VERTICES = 35709  # BFM front face
HUBERT_VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", "E", "T", "A", "O", "N", "I", "H", "S", "R", "D", "L", "U",
                "M", "W", "C", "F", "G", "Y", "P", "B", "V", "K", "'", "X", "J", "Q", "Z"]


def merged_configs(source: Path) -> tuple[dict, dict]:
    """(audio2secc config, torso config) as upstream's ``load_config`` merges them (cwd must be ``source``)."""
    import yaml
    from utils.commons.hparams import load_config

    a2m = load_config(A2M_CONFIG, [], set())
    with tempfile.TemporaryDirectory() as td:
        chain = Path(td) / "egs/os_avatar/real3d_orig"
        chain.mkdir(parents=True)
        for rel in TORSO_CHAIN:
            shutil.copy(source / rel, chain / Path(rel).name)
        orig = chain / "img2plane_orig.yaml"
        cfg = yaml.safe_load(orig.read_text())
        assert cfg["base_config"] == ["../../ffhq/img2plane.yaml", "../../ffhq/base.yaml"], cfg["base_config"]
        cfg["base_config"] = [IMG2PLANE_BASE]  # a path without a leading '.': load_config reads it from the cwd
        orig.write_text(yaml.safe_dump(cfg))
        chains: list = []
        torso = load_config(str(chain / Path(TORSO_CHAIN[0]).name), chains, set())
    assert len(chains) == 5, chains  # img2plane.yaml's base eg3d/base.yaml, img2plane.yaml, the three orig files
    for d in (a2m, torso):
        d.pop("base_config", None)
    return a2m, torso


def perturb(model, seed: int) -> dict:
    """``model``'s state dict after adding N(0, 0.02 * (std or 1)) noise to every floating parameter."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            scale = float(p.std()) if p.numel() > 1 and float(p.std()) > 0 else 1.0
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.02 * scale)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def write_checkpoints(source: Path, out: Path, seed: int) -> Path:
    """``out/240210_real3dportrait_orig/`` with both configs and checkpoints; returns that folder."""
    import torch
    import yaml
    from utils.commons.hparams import hparams, set_hparams

    a2m_cfg, torso_cfg = merged_configs(source)
    orig = out / ORIG
    for sub, cfg in (("audio2secc_vae", a2m_cfg), ("secc2plane_torso_orig", torso_cfg)):
        (orig / sub).mkdir(parents=True, exist_ok=True)
        (orig / sub / "config.yaml").write_text(yaml.safe_dump(cfg))

    # GeneFace2Infer.load_audio2secc
    set_hparams(str(orig / "audio2secc_vae" / "config.yaml"), print_hparams=False)
    from modules.audio2motion.vae import PitchContourVAEModel

    assert hparams["audio_type"] == "hubert" and hparams["use_pitch"] is True
    torch.manual_seed(seed)
    a2m = PitchContourVAEModel(copy.deepcopy(hparams), in_out_dim=64, audio_in_dim=1024)
    _save(perturb(a2m, seed), orig / "audio2secc_vae" / f"model_ckpt_steps_{STEPS['audio2secc_vae']}.ckpt")
    # GeneFace2Infer.load_secc2video with a torso checkpoint
    set_hparams(str(orig / "secc2plane_torso_orig" / "config.yaml"), print_hparams=False)
    from modules.real3d.secc_img2plane_torso import OSAvatarSECC_Img2plane_Torso

    torch.manual_seed(seed + 1)
    torso = OSAvatarSECC_Img2plane_Torso()
    _save(perturb(torso, seed + 1),
          orig / "secc2plane_torso_orig" / f"model_ckpt_steps_{STEPS['secc2plane_torso_orig']}.ckpt")
    return orig


def _save(state: dict, path: Path) -> None:
    import torch

    torch.save({"state_dict": {"model": state}, "global_step": int(path.stem.rsplit("_", 1)[1])}, path)


def write_mit_b0(out: Path, seed: int) -> Path:
    """``out/pretrained_ckpts/mit_b0.pth``: a SegFormer-b0 (``mit_b0``'s architecture) state dict."""
    from functools import partial

    import torch
    from modules.real3d.segformer import MixVisionTransformer
    from torch import nn

    torch.manual_seed(seed)
    net = MixVisionTransformer(patch_size=4, embed_dims=[32, 64, 160, 256], num_heads=[1, 2, 5, 8],
                               mlp_ratios=[4, 4, 4, 4], qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6),
                               depths=[2, 2, 2, 2], sr_ratios=[8, 4, 2, 1], drop_rate=0.0, drop_path_rate=0.1)
    path = out / "pretrained_ckpts" / "mit_b0.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return path


def write_resnet34(out: Path, seed: int) -> Path:
    """``out/torch_home/hub/checkpoints/resnet34-333f7ec4.pth`` (torchvision ResNet-34 keys), random."""
    import torch
    import torchvision

    torch.manual_seed(seed)
    path = out / "torch_home" / "hub" / "checkpoints" / "resnet34-333f7ec4.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torchvision.models.resnet34().state_dict(), path)
    return path


def write_bfm(source: Path, out: Path, seed: int) -> tuple[Path, Path]:
    """A stand-in ``BFM_model_front.mat`` (official keys, shapes and 1-based indices) and the mp468 index file."""
    import numpy as np
    from scipy.io import savemat
    from scipy.spatial import Delaunay

    rng = np.random.default_rng(seed)
    ncc = np.load(source / "deep_3drecon" / "ncc_code.npy").astype(np.float64).T  # [N, 3], 0..1
    assert ncc.shape == (N_VERTICES, 3), ncc.shape
    shape = (ncc - 0.5) * np.array([1.6, 1.9, 1.2])  # about the BFM's size in its units (decimetres)
    tri = Delaunay(shape[:, :2]).simplices.astype(np.int64)  # [F, 3], 0-based
    n_faces = len(tri)
    assert n_faces > 27838, n_faces  # the eye faces upstream's SECC renderer deletes must exist
    point_buf = np.zeros((N_VERTICES, 8), np.int64)  # 1-based faces of each vertex, 0 = none (a zero normal)
    fill = np.zeros(N_VERTICES, np.int64)
    for f, verts in enumerate(tri):
        for v in verts:
            if fill[v] < 8:
                point_buf[v, fill[v]] = f + 1
                fill[v] += 1

    def smooth_basis(k: int, amp: float) -> np.ndarray:
        """[3N, k]: per vertex, amp * sin(w.p + phase) along a random direction, for k random (w, phase)."""
        w = rng.uniform(-3, 3, (k, 3))
        phase = rng.uniform(0, 2 * np.pi, k)
        d = rng.standard_normal((k, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        disp = amp * np.sin(ncc @ w.T * 2 * np.pi / 3 + phase)[:, :, None] * d[None]  # [N, k, 3]
        return disp.transpose(0, 2, 1).reshape(3 * N_VERTICES, k)

    keypoints = np.sort(rng.choice(N_VERTICES, 68, replace=False)) + 1
    front = np.arange(0, N_VERTICES, 2)
    model = {
        "meanshape": shape.reshape(1, -1).astype(np.float32),
        "meantex": rng.uniform(80, 200, (1, 3 * N_VERTICES)).astype(np.float32),
        "idBase": smooth_basis(80, 0.02).astype(np.float32),
        "exBase": smooth_basis(64, 0.02).astype(np.float32),
        "texBase": smooth_basis(80, 5.0).astype(np.float32),
        "point_buf": point_buf.astype(np.float64),
        "tri": (tri + 1).astype(np.float64),
        "keypoints": keypoints[None].astype(np.float64),
        "frontmask2_idx": (front + 1)[:, None].astype(np.float64),
        "tri_mask2": (tri[np.all(np.isin(tri, front), axis=1)] + 1).astype(np.float64),
        "skinmask": np.ones((1, N_VERTICES), np.float64),
    }
    mat = out / "BFM_model_front.mat"
    savemat(mat, model)
    idx = out / "index_mp468_from_mesh35709.npy"
    shutil.copy(source / "deep_3drecon" / "BFM" / "index_mp468_from_mesh35709_v3.1.npy", idx)
    return mat, idx


def write_hubert(out: Path, seed: int) -> Path:
    """``out/hubert/``: facebook/hubert-large-ls960-ft's files, random weights."""
    import torch
    from transformers import (
        HubertConfig,
        HubertModel,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Processor,
    )

    hub = out / "hubert"
    hub.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = HubertConfig(vocab_size=32, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                          intermediate_size=4096, feat_extract_norm="layer", do_stable_layer_norm=True,
                          conv_bias=True, feat_proj_layer_norm=True)
    HubertModel(config).save_pretrained(hub, safe_serialization=False)
    vocab = hub / "vocab.json"
    vocab.write_text(json.dumps({t: i for i, t in enumerate(HUBERT_VOCAB)}))
    tok = Wav2Vec2CTCTokenizer(str(vocab), unk_token="<unk>", pad_token="<pad>", word_delimiter_token="|")
    fe = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                  return_attention_mask=True)
    Wav2Vec2Processor(feature_extractor=fe, tokenizer=tok).save_pretrained(hub)
    return hub


def zip_folder(folder: Path, dest: Path) -> Path:
    """``dest`` holding ``folder`` under its own name (as upstream's Drive zips hold their top folder)."""
    with zipfile.ZipFile(dest, "w") as z:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(folder.parent).as_posix())
    return dest


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="folder to write into (created)")
    p.add_argument("--source", type=Path, default=Path.cwd(), help="Real3D-Portrait source tree (default: cwd)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-segmenter", action="store_true", help="do not write the stand-in segmenter")
    a = p.parse_args(argv)
    source, out = a.source.resolve(), a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(source))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from kdbench.runtime import compat

    compat.apply(["numpy2_removed_names", "torch_load_full_pickle"])
    os.environ["TORCH_HOME"] = str(out / "torch_home")
    write_resnet34(out, a.seed + 10)
    write_mit_b0(out, a.seed + 11)
    work = Path(tempfile.mkdtemp(prefix="r3d-weights-"))
    try:  # upstream reads checkpoints/pretrained_ckpts/mit_b0.pth and the egs/ configs relative to the cwd
        (work / "checkpoints").mkdir()
        os.symlink(out / "pretrained_ckpts", work / "checkpoints" / "pretrained_ckpts")
        os.symlink(source / "egs", work / "egs")
        os.chdir(work)
        orig = write_checkpoints(source, out, a.seed)
    finally:
        os.chdir(out)
        shutil.rmtree(work, ignore_errors=True)
    zip_folder(orig, out / f"{ORIG}.zip")
    zip_folder(out / "pretrained_ckpts", out / "pretrained_ckpts.zip")
    write_bfm(source, out, a.seed + 20)
    write_hubert(out, a.seed + 30)
    if not a.no_segmenter:
        from scripts.real3dportrait_segmenter_standin import write_standin

        write_standin(out / "selfie_multiclass_256x256.tflite", seed=a.seed + 40)
    print(f"wrote {sorted(str(p.relative_to(out)) for p in out.rglob('*') if p.is_file())}")


if __name__ == "__main__":
    main()
