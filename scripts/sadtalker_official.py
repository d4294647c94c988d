"""Run SadTalker's official ``inference.py`` unmodified, with the seeds kdbench's worker sets.

    cd $KDBENCH_HOME/methods/sadtalker/source
    PYTHONPATH=/path/to/kdbench $KDBENCH_HOME/methods/sadtalker/venv/bin/python \\
        /path/to/kdbench/scripts/sadtalker_official.py --seed 7 -- --driven_audio A.wav --source_image R.png \\
        --result_dir OUT --cpu

Upstream seeds nothing (pose CVAE ``torch.randn``, blink ``random.choice``). kdbench's worker seeds Python's
``random``, numpy and torch with the run's seed after the models are loaded, right before the clip's first step
(face preprocessing); this script does the same by seeding when ``CropAndExtract.generate`` is first called, so
model construction (which draws from torch's generator for initialisation) happens before seeding in both. It
applies the same import-time compat fixes as the worker (SadTalker's spec), without which upstream cannot run
on this environment. Nothing else is changed: ``inference.py`` runs as ``__main__`` with the given arguments.
"""

from __future__ import annotations

import argparse
import os
import random
import runpy
import sys


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("args", nargs=argparse.REMAINDER, help="inference.py's arguments (after --)")
    a = p.parse_args()
    args = a.args[1:] if a.args[:1] == ["--"] else a.args
    sys.path.insert(0, os.getcwd())
    from baselines.sadtalker.spec import SPEC
    from baselines.sadtalker.worker import SadTalkerHooks
    from kdbench.runtime import compat

    compat.PICKLE_POLICY["allow"] = SadTalkerHooks.pickle_allow  # the worker's allow-list (no pins here)
    compat.apply(SPEC.compat)
    import numpy as np
    import torch
    from src.utils.preprocess import CropAndExtract

    original = CropAndExtract.generate
    state = {"seeded": False}

    def generate(self, *args, **kwargs):
        if not state["seeded"]:
            random.seed(a.seed)
            np.random.seed(a.seed % 2**32)
            torch.manual_seed(a.seed)
            state["seeded"] = True
        return original(self, *args, **kwargs)

    CropAndExtract.generate = generate
    sys.argv = ["inference.py", *args]
    runpy.run_path("inference.py", run_name="__main__")


if __name__ == "__main__":
    main()
