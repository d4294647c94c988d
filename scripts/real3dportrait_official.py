"""Run Real3D-Portrait's official ``inference/real3d_infer.py`` unmodified, as kdbench's worker prepares it.

    cd $KDBENCH_HOME/methods/real3dportrait/source
    PYTHONPATH=/path/to/kdbench $KDBENCH_HOME/methods/real3dportrait/venv/bin/python \\
        /path/to/kdbench/scripts/real3dportrait_official.py --frames OUT.npy -- --src_img R.png --drv_aud A.wav \\
        --drv_pose static --out_mode final --out_name OUT.mp4 --seed 7

``real3d_infer.py`` runs as ``__main__`` with the given arguments (it seeds itself with ``--seed``). This script
applies the same import-time compat fixes as the worker (Real3D-Portrait's spec), without which upstream cannot
run on this environment, and fills upstream's module-level HuBERT cache from ``checkpoints/hubert-large-ls960-ft``
(the files ``kdbench setup`` links), because upstream's own lookup is a hard-coded ``/home/tiger/...`` path, then
the Hugging Face hub. ``--frames`` saves the frames upstream hands to its video writer (``demo.mp4``) as
``uint8[T,512,512,3]`` RGB in a ``.npy`` file: exactly what the worker records, before upstream's H.264 encodes.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", help="save the frames written to demo.mp4 here (.npy)")
    p.add_argument("args", nargs=argparse.REMAINDER, help="real3d_infer.py's arguments (after --)")
    a = p.parse_args()
    args = a.args[1:] if a.args[:1] == ["--"] else a.args
    sys.path.insert(0, os.getcwd())
    from baselines.real3dportrait.spec import SPEC
    from baselines.real3dportrait.worker import HUBERT_DIR, Real3DPortraitHooks, _Recorder
    from kdbench.runtime import compat

    compat.PICKLE_POLICY["allow"] = Real3DPortraitHooks.pickle_allow  # the worker's allow-list (no pins here)
    compat.apply(SPEC.compat)
    import imageio
    import numpy as np
    from data_gen.utils.process_audio import extract_hubert
    from transformers import HubertModel, Wav2Vec2Processor

    extract_hubert.hubert_model = HubertModel.from_pretrained(HUBERT_DIR)
    extract_hubert.wav2vec2_processor = Wav2Vec2Processor.from_pretrained(HUBERT_DIR)
    recorded: list = []
    original = imageio.get_writer

    def get_writer(uri, *wargs, **kwargs):
        writer = original(uri, *wargs, **kwargs)
        return _Recorder(writer, recorded) if os.path.basename(str(uri)) == "demo.mp4" else writer

    imageio.get_writer = get_writer
    sys.argv = ["inference/real3d_infer.py", *args]
    runpy.run_path("inference/real3d_infer.py", run_name="__main__")
    if a.frames:
        np.save(a.frames, np.stack(recorded))


if __name__ == "__main__":
    main()
