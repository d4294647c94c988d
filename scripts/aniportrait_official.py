"""Run AniPortrait's official ``scripts/audio2vid.py`` unmodified (``python -m scripts.audio2vid``), keeping the grid
frames it hands to its video encoder.

    cd $KDBENCH_HOME/methods/aniportrait/source
    PYTHONPATH=/path/to/kdbench $KDBENCH_HOME/methods/aniportrait/venv/bin/python \\
        /path/to/kdbench/scripts/aniportrait_official.py --frames OUT.npy -- --config CLIP.yaml -W 128 -H 128 \\
        --seed 42 --steps 3

What is added around the unmodified script, and why:

- The Audio2Pose identity is ``random.randint(0, 99)`` from Python's *unseeded* ``random`` upstream, so no two
  official runs agree. Python's ``random`` is seeded with ``--seed`` right where upstream seeds torch
  (``torch.manual_seed(args.seed)``, after the models are built), as kdbench's worker does per clip.
- ``.cuda()`` is hard-coded: without CUDA the ``cuda_to_cpu`` compat fix keeps it on the CPU; ``ffmpeg_on_path``
  puts imageio-ffmpeg's binary on PATH for the final ``ffmpeg`` audio mux; plus the method's own compat fixes.
- ``save_videos_from_pil`` (called by ``save_videos_grid``) is wrapped: the ``uint8`` grid frames it receives, i.e.
  exactly what upstream encodes to its lossy libx264 mp4, are also saved to ``--frames`` as
  ``uint8[T, H, W, 3]`` RGB (one array per call: ``OUT.npy``, then ``OUT-1.npy``, ...), and the fps to
  ``OUT.fps``. The mp4 is still written as upstream does.
"""

from __future__ import annotations

import argparse
import os
import random
import runpy
import sys
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", required=True, help="where to save the grid frames (.npy)")
    p.add_argument("args", nargs=argparse.REMAINDER, help="audio2vid.py's arguments (after --)")
    a = p.parse_args()
    args = a.args[1:] if a.args[:1] == ["--"] else a.args
    seed = int(args[args.index("--seed") + 1]) if "--seed" in args else 42  # audio2vid.py's default
    sys.path.insert(0, os.getcwd())
    from baselines.aniportrait.spec import SPEC
    from baselines.aniportrait.worker import AniPortraitHooks
    from kdbench.runtime import compat

    compat.PICKLE_POLICY["allow"] = AniPortraitHooks.pickle_allow  # the worker's allow-list (no pins here)
    compat.apply([*SPEC.compat, "cuda_to_cpu", "ffmpeg_on_path"])
    import numpy as np
    import torch
    from src.utils import util

    manual_seed = torch.manual_seed

    def seeded(s):
        if s == seed:
            random.seed(s)
        return manual_seed(s)

    torch.manual_seed = seeded
    frames_out = Path(a.frames)
    calls = []
    save_videos_from_pil = util.save_videos_from_pil

    def keep(pil_images, path, fps=8):
        target = frames_out if not calls else frames_out.with_name(f"{frames_out.stem}-{len(calls)}.npy")
        np.save(target, np.stack([np.asarray(im) for im in pil_images]))
        target.with_suffix(".fps").write_text(str(fps))
        calls.append(target)
        return save_videos_from_pil(pil_images, path, fps)

    util.save_videos_from_pil = keep
    sys.argv = ["audio2vid", *args]
    runpy.run_module("scripts.audio2vid", run_name="__main__", alter_sys=True)
    print(f"grid frames: {', '.join(map(str, calls))}")


if __name__ == "__main__":
    main()
