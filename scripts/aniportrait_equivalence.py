"""Check that ``kdbench run --method aniportrait`` produces the frames of AniPortrait's official ``audio2vid.py``.

Needs ``kdbench setup aniportrait`` done (``$KDBENCH_HOME``), with real weights or the random ones of
``scripts/aniportrait_random_weights.py``. For the first clip of ``--dataset`` it writes the reference image and
audio exactly as kdbench's worker receives them and then, one process at a time:

1. the official ``python -m scripts.audio2vid --config CLIP.yaml -W S -H S --seed SEED --steps N --cfg C`` through
   ``scripts/aniportrait_official.py`` (unmodified script; Python's ``random`` seeded where upstream seeds torch;
   the grid frames upstream hands to its libx264 encoder are kept losslessly). CLIP.yaml is the shipped
   ``configs/prompts/animation_audio.yaml`` with ``test_cases: {ref.png: [audio.wav]}`` and, on the CPU,
   ``weight_dtype: fp32`` (CPU kernels lack fp16 convolutions; kdbench's worker uses fp32 on the CPU too);
2. ``kdbench run --method aniportrait --seed SEED --set size=S --set steps=N --set cfg=C --device cpu``
   (``--warmup 0``, ``--frame-size SxS`` so that the normaliser does not resize);
3. kdbench's worker once more with the same seed, in a new process, keeping its lossless 30 fps grid
   (the hand-over ``kdbench run`` normalises).

It compares (a) the worker's raw grid with the official grid, bit for bit (panel 2, the generated video, reported
separately), (b) the ``kdbench run`` video with the official grid passed through kdbench's normaliser (panel 2 cut,
30 -> 25 fps by timestamp, the same libx264 encode), (c) the ``kdbench run`` video with the second worker run
normalised the same way (same seed twice). Everything goes to ``OUT/report.json``.

    KDBENCH_HOME=... python scripts/aniportrait_equivalence.py --out /tmp/ap-eq --seed 42 --size 128 --steps 3 \\
        --seconds 5.2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from baselines.aniportrait.spec import SPEC  # noqa: E402
from kdbench.audio import read_audio, write_wav  # noqa: E402
from kdbench.dataset import load_dataset  # noqa: E402
from kdbench.normalize import GridCrop, normalize_to_file  # noqa: E402
from kdbench.runtime.method import write_inputs  # noqa: E402
from kdbench.runtime.spec import env_for  # noqa: E402
from kdbench.video import read_video  # noqa: E402


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _timed(cmd: list[str], log: Path, **kw) -> dict:
    """Run ``cmd`` (output to ``log``); wall and CPU seconds, and the peak RSS of the largest child so far."""
    t0, c0 = time.perf_counter(), _children_cpu()
    with open(log, "w") as f:
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT, **kw)
    return {"wall_seconds": round(time.perf_counter() - t0, 1), "cpu_seconds": round(_children_cpu() - c0, 1),
            "max_rss_gib_so_far": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, 2)}


def make_dataset(src: Path, out: Path, seconds: float) -> Path:
    """A one-clip dataset: the first portrait of ``src`` with the first ``seconds`` of its audio."""
    from PIL import Image

    ds = out / "ds"
    (ds / "ref").mkdir(parents=True, exist_ok=True)
    (ds / "audio").mkdir(exist_ok=True)
    ref = sorted((src / "ref").glob("*.png"))[0]
    Image.open(ref).save(ds / "ref" / ref.name)
    write_wav(ds / "audio" / f"{ref.stem}.wav", read_audio(src / "audio" / f"{ref.stem}.wav")[:int(seconds * 16000)])
    return ds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--size", type=int, default=128, help="-W/-H (a multiple of 8; 128 or more)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--cfg", type=float, default=3.5)
    p.add_argument("--seconds", type=float, default=5.2, help="audio length (AniPortrait needs more than 5 s)")
    p.add_argument("--dataset", default="hdtf-mini", help="the first clip's portrait and audio are used")
    p.add_argument("--reuse-official", action="store_true",
                   help="keep OUT/official_grid.npy from an earlier run of this script with the same settings")
    p.add_argument("--no-repeat", action="store_true", help="skip step 3 (the worker again with the same seed)")
    a = p.parse_args()
    import yaml

    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = env_for("aniportrait")
    assert env.status() == "ready", f"aniportrait is {env.status()}: run `kdbench setup aniportrait`"
    src = load_dataset(a.dataset).root
    ds = load_dataset(make_dataset(Path(src), out, a.seconds))
    clip = ds.clips[0]
    audio = clip.load_audio()
    image, wav = write_inputs(out / "inputs", clip.load_ref_image(), audio)
    report: dict = {"clip": clip.clip_id, "seed": a.seed, "size": a.size, "steps": a.steps, "cfg": a.cfg,
                    "audio_seconds": len(audio) / 16000, "load_average_start": os.getloadavg()}

    # 1. the official script
    cfg = yaml.safe_load((env.source / "configs/prompts/animation_audio.yaml").read_text())
    cfg["test_cases"] = {str(image): [str(wav)]}
    cfg["weight_dtype"] = "fp32"
    clip_yaml = out / "clip.yaml"
    clip_yaml.write_text(yaml.safe_dump(cfg))
    grid_npy = out / "official_grid.npy"
    args = ["--config", str(clip_yaml), "-W", str(a.size), "-H", str(a.size), "--seed", str(a.seed), "--steps",
            str(a.steps), "--cfg", str(a.cfg)]
    cmd = [str(env.python), str(ROOT / "scripts" / "aniportrait_official.py"), "--frames", str(grid_npy), "--",
           *args]
    report["official_cmd"] = f"cd {env.source} && PYTHONPATH={ROOT} " + " ".join(cmd)
    if a.reuse_official and grid_npy.exists():
        report["official"] = {"reused": str(grid_npy)}
    else:
        report["official"] = _timed(cmd, out / "official.log", cwd=env.source,
                                    env={**os.environ, "PYTHONPATH": str(ROOT)})
    official = np.load(grid_npy)
    report["official"]["fps"] = float(grid_npy.with_suffix(".fps").read_text())
    mp4s = sorted((env.source / "output").rglob(f"ref_audio_{a.size}x{a.size}_*.mp4"), key=lambda q: q.stat().st_mtime)
    if mp4s:
        mp4s[-1].replace(out / "official.mp4")

    # 2. kdbench run
    run = out / "run"
    kd = [sys.executable, "-m", "kdbench.cli", "run", "--method", "aniportrait", "--dataset", str(ds.root), "--out",
          str(run), "--seed", str(a.seed), "--device", "cpu", "--set", f"size={a.size}", "--set", f"steps={a.steps}",
          "--set", f"cfg={a.cfg}", "--warmup", "0", "--frame-size", f"{a.size}x{a.size}", "-q"]
    report["kdbench_cmd"] = "PYTHONPATH=. " + " ".join(["kdbench", *kd[3:]])
    report["kdbench_run"] = _timed(kd, out / "kdbench_run.log", cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    ev = next(json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()
              if json.loads(x).get("clip_id") == clip.clip_id)
    report["kdbench_run"].update(generation_seconds=ev["seconds"], n_generated=ev["n_generated"],
                                 normalizer=ev.get("normalizer"))

    # 3. the worker again, same seed, new process: its lossless grid
    worker_npy = out / "worker_grid.npy"
    code = ("import sys, numpy as np; from pathlib import Path; sys.path.insert(0, sys.argv[1]);"
            "from kdbench.runtime.client import WorkerClient; from kdbench.runtime.spec import env_for;"
            "from kdbench.video import read_video; from baselines.aniportrait.spec import SPEC;"
            "env = env_for('aniportrait'); o = Path(sys.argv[2]);"
            f"c = WorkerClient(env.python, env.source, SPEC.hooks, options={{**SPEC.options, 'size': {a.size}, "
            f"'steps': {a.steps}, 'cfg': {a.cfg}}}, compat=SPEC.compat, log_path=o / 'worker.log', "
            "scratch=o / 'scratch'); c.start();"
            f"r = c.request(o / 'inputs/ref.png', o / 'inputs/audio.wav', o / 'worker.mp4', {a.seed});"
            "f, fps = read_video(r['video']); assert fps == 30, fps; np.save(sys.argv[3], f); c.close()")
    worker = None
    if not a.no_repeat:
        report["worker_again"] = _timed([sys.executable, "-c", code, str(ROOT), str(out), str(worker_npy)],
                                        out / "worker_again.log", cwd=ROOT)
        worker = np.load(worker_npy)

    # comparisons
    s = a.size
    panel = (slice(None), slice(2, 2 + s), slice(2 * (s + 2) + 2, 3 * (s + 2)))  # make_grid(nrow=3), padding 2
    grid = GridCrop.parse(SPEC.grid)
    normalised = {}
    for name, frames in (("official", official), ("worker_again", worker)):
        if frames is None:
            continue
        dest = out / f"{name}_normalised.mp4"
        normalize_to_file(dest, audio, (s, s), frames=frames, fps=30.0, grid=grid)
        normalised[name] = read_video(dest)[0]
    mine = read_video(run / "videos" / f"{clip.clip_id}.mp4")[0]

    def diff(x, y) -> dict:
        same_shape = x.shape == y.shape
        return {"equal": bool(same_shape and np.array_equal(x, y)), "shapes": [list(x.shape), list(y.shape)],
                "max_abs_diff": int(np.abs(x.astype(int) - y).max()) if same_shape else None}

    report["official_grid"] = {"frames": len(official), "shape": list(official.shape[1:]),
                               "panel2_std": float(official[panel].std()),
                               "panel2_frame_to_frame_mean_abs": float(np.abs(np.diff(official[panel].astype(int),
                                                                                      axis=0)).mean())}
    if (out / "official.mp4").exists():  # upstream's own lossy encode of the same grid: why it is not compared
        report["official_mp4_vs_official_grid"] = diff(read_video(out / "official.mp4")[0], official)
    report["kdbench_run_vs_official_normalised"] = diff(mine, normalised["official"])
    if worker is not None:
        report["worker_grid_vs_official_grid"] = diff(worker, official)
        report["worker_panel2_vs_official_panel2"] = diff(worker[panel], official[panel])
        report["kdbench_run_vs_worker_again_normalised"] = diff(mine, normalised["worker_again"])
    report["kdbench_run_frames"] = len(mine)
    report["load_average_end"] = os.getloadavg()
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
