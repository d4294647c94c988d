"""Random AniTalker weights in the official formats, for the equivalence check of the ``anitalker`` method.

Run with AniTalker's environment (``$KDBENCH_HOME/methods/anitalker/venv/bin/python``) from its source tree:

    cd $KDBENCH_HOME/methods/anitalker/source
    ../venv/bin/python /path/to/kdbench/scripts/anitalker_random_weights.py OUT_DIR

Writes ``OUT_DIR/stage1.ckpt`` (a flat state dict of ``LIA_Model``, which ``load_lightning_model`` copies key by
key), ``OUT_DIR/stage2_audio_only_hubert.ckpt`` (``LitModel``'s state dict, loaded with ``strict=True``) and
``OUT_DIR/chinese-hubert-large/`` (a HuBERT-large config — 24 layers, 1024 wide, as the stage-2 model's 25 hidden
states need — with random weights, and the feature extractor's config), each built by the upstream classes. Copy
them into the weights cache (``$KDBENCH_HOME/weights/<name>/<file>``; ``kdbench weights ls --long`` shows each
path). Order: ``kdbench setup anitalker`` first (it builds the environment and source tree this script runs in, and
stops at "not ready: fetch the missing weights"), then this script and the copy, then ``KDBENCH_ALLOW_UNVERIFIED=1
kdbench setup anitalker`` again to link the files (random weights cannot match the published sha256 pins: they are
recorded as unverified, and the worker loads them tensors-only), and ``KDBENCH_ALLOW_UNVERIFIED=1 kdbench run
--method anitalker ...``.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(out: Path) -> None:
    sys.path.insert(0, str(Path.cwd() / "code"))
    import torch
    from LIA_Model import LIA_Model
    from templates import LitModel, ffhq256_autoenc
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(1234)
    lia = LIA_Model(motion_dim=20, fusion_type="weighted_sum")
    torch.save(lia.state_dict(), out / "stage1.ckpt")

    conf = ffhq256_autoenc()
    conf.seed = None
    conf.decoder_layers, conf.infer_type, conf.motion_dim = 2, "hubert_audio_only", 20
    conf.face_location = conf.face_scale = conf.mfcc = False
    model = LitModel(conf)
    with torch.no_grad():  # trained EMA weights differ from the online ones: make them differ here too
        for p in model.ema_model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    torch.save(model.state_dict(), out / "stage2_audio_only_hubert.ckpt")

    hub = out / "chinese-hubert-large"
    config = HubertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                          feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True,
                          feat_proj_layer_norm=True)
    HubertModel(config).save_pretrained(hub)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=True).save_pretrained(hub)
    print(f"wrote {sorted(p.name for p in out.rglob('*') if p.is_file())} to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
