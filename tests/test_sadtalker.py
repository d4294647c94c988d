"""SadTalker through kdbench equals its official ``inference.py`` (opt-in: needs `kdbench setup sadtalker`).

Set ``KDBENCH_TEST_SADTALKER=1`` with ``KDBENCH_HOME`` holding a ready SadTalker (real weights, or the random ones
of ``scripts/sadtalker_random_weights.py``). One clip: the first hdtf-mini portrait with 1.2 s of its audio, on CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(os.environ.get("KDBENCH_TEST_SADTALKER") != "1",
                                reason="set KDBENCH_TEST_SADTALKER=1 (needs `kdbench setup sadtalker` in KDBENCH_HOME)")

ROOT = Path(__file__).resolve().parents[1]


def test_kdbench_frames_equal_the_official_inference(hdtf_mini, tmp_path):
    from PIL import Image

    from kdbench.audio import read_audio, write_wav
    from kdbench.runtime.spec import env_for

    assert env_for("sadtalker").status() == "ready"
    ds = tmp_path / "ds"
    (ds / "ref").mkdir(parents=True)
    (ds / "audio").mkdir()
    src = sorted((hdtf_mini / "ref").glob("*.png"))[0]
    Image.open(src).save(ds / "ref" / src.name)
    write_wav(ds / "audio" / f"{src.stem}.wav", read_audio(hdtf_mini / "audio" / f"{src.stem}.wav")[:19200])
    subprocess.run([sys.executable, str(ROOT / "scripts" / "sadtalker_equivalence.py"), "--seed", "3", "--dataset",
                    str(ds), "--out", str(tmp_path / "eq")], check=True)
    rep = json.loads((tmp_path / "eq" / "report.json").read_text())
    assert rep["official_raw"]["frames"] == 30 and rep["frames"] == [30, 30]
    assert rep["kdbench_vs_official_equal"] == [True, True]
    assert rep["kdbench_run1_vs_run2_equal"] is True
    assert rep["frames_std"] > 0 and np.isfinite(rep["fps"])
