"""Check that ``kdbench run --method sadtalker`` produces the frames of SadTalker's official ``inference.py``.

Needs ``kdbench setup sadtalker`` done (``$KDBENCH_HOME``), with real weights or the random ones of
``scripts/sadtalker_random_weights.py``. For the first hdtf-mini clip it writes the reference image and audio
exactly as kdbench's worker receives them, runs the official ``inference.py`` (``scripts/sadtalker_official.py``:
unmodified, same seeds), runs ``kdbench run`` twice with the same seed (or takes ``--runs`` already made), and
compares decoded frames: kdbench's videos against the official video passed through the same normaliser, and
the two kdbench runs against each other.

    KDBENCH_HOME=... python scripts/sadtalker_equivalence.py --seed 7 --out /tmp/st-eq [--runs RUN1 RUN2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kdbench.dataset import load_dataset  # noqa: E402
from kdbench.normalize import normalize_to_file  # noqa: E402
from kdbench.runner import default_frame_size, run_method  # noqa: E402
from kdbench.runtime.method import write_inputs  # noqa: E402
from kdbench.runtime.spec import env_for  # noqa: E402
from kdbench.video import read_video  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", required=True)
    p.add_argument("--dataset", default="hdtf-mini")
    p.add_argument("--official", help="an official video already made with the command this script prints (on the "
                                       "same inputs: OUT/inputs/ref.png, OUT/inputs/audio.wav)")
    p.add_argument("--runs", nargs=2, help="two kdbench run folders made with --seed, --limit 1, --device cpu")
    a = p.parse_args()
    out = Path(a.out)
    env = env_for("sadtalker")
    assert env.status() == "ready", f"sadtalker is {env.status()}: run `kdbench setup sadtalker`"
    ds = load_dataset(a.dataset)
    clip = ds.clips[0]
    ref, audio = clip.load_ref_image(), clip.load_audio()
    image, wav = write_inputs(out / "inputs", ref, audio)

    t0 = time.perf_counter()
    official_dir = out / "official"
    cmd = [str(env.python), str(ROOT / "scripts" / "sadtalker_official.py"), "--seed", str(a.seed), "--",
           "--driven_audio", str(wav), "--source_image", str(image), "--result_dir", str(official_dir), "--cpu"]
    if not a.official:
        with open(out / "official.log", "w") as log:
            subprocess.run(cmd, cwd=env.source, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True, stdout=log,
                           stderr=subprocess.STDOUT)
    official_s = None if a.official else time.perf_counter() - t0
    official_mp4 = Path(a.official) if a.official else next(official_dir.glob("*.mp4"))
    size = default_frame_size(ds)
    normalize_to_file(out / "official_normalised.mp4", audio, size, video_path=official_mp4)

    runs = [Path(r) for r in a.runs] if a.runs else []
    for i in range(len(runs), 2):
        runs.append(out / f"run{i + 1}")
        run_method("sadtalker", ds, runs[-1], seed=a.seed, device="cpu", limit=1, progress=False)
    official_raw, fps = read_video(official_mp4)
    official, _ = read_video(out / "official_normalised.mp4")
    mine = [read_video(r / "videos" / f"{clip.clip_id}.mp4")[0] for r in runs]
    events = [json.loads(x) for x in (runs[0] / "events.jsonl").read_text().splitlines()]
    ev = next(e for e in events if e.get("clip_id") == clip.clip_id)
    load = next(e for e in events if e.get("event") == "load")
    report = {
        "clip": clip.clip_id, "seed": a.seed, "official_cmd": " ".join(cmd), "official_seconds_total": official_s,
        "official_raw": {"frames": len(official_raw), "fps": fps, "size": list(official_raw.shape[1:3])},
        "normalised_size": list(size),
        "kdbench_vs_official_equal": [bool(np.array_equal(m, official)) for m in mine],
        "kdbench_vs_official_max_abs_diff": [int(np.abs(m.astype(int) - official).max()) for m in mine],
        "kdbench_run1_vs_run2_equal": bool(np.array_equal(mine[0], mine[1])),
        "frames": [len(m) for m in mine], "frames_std": float(official.std()),
        "generation_seconds": ev["seconds"], "n_generated": ev["n_generated"],
        "fps": ev["n_generated"] / ev["seconds"], "load_seconds": load["seconds"],
        "load_wall_seconds": load.get("wall_seconds"),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
