"""Check that ``kdbench run --method real3dportrait`` produces the frames of Real3D-Portrait's official
``inference/real3d_infer.py``.

Needs ``kdbench setup real3dportrait`` done (``$KDBENCH_HOME``), with real weights or the random ones of
``scripts/real3dportrait_random_weights.py``; the official script gets ``TORCH_HOME`` at the tree's
``checkpoints/torch_home``, where setup links the ImageNet ResNet-34 that upstream's img2plane encoder loads while it
is built (kdbench's worker points ``torch.hub`` there itself). For the first clip of ``--dataset`` cut
to ``--seconds`` of audio it writes the reference image and audio exactly as kdbench's worker receives them and then,
one process at a time:

1. the official ``real3d_infer.py --src_img I --drv_aud A --drv_pose static --out_mode final --out_name O --seed S``
   through ``scripts/real3dportrait_official.py`` (upstream run unmodified as ``__main__``; the frames upstream hands
   to its video writer are kept losslessly);
2. ``kdbench run --method real3dportrait --seed S --device cpu`` (``--warmup 0``, ``--frame-size 512x512``, so
   that the normaliser does not resize; ``--keep-generated``, so the frames its worker handed over are kept
   losslessly);
3. kdbench's worker once more with the same seed, in a new process, keeping its lossless frames (the hand-over
   ``kdbench run`` normalises).

It compares (a) the frames ``kdbench run``'s worker handed over (``generated/``) and those of the second worker
with the official ones, bit for bit (before any lossy encode), (b) the
``kdbench run`` video with the official frames passed through kdbench's normaliser (the same encode), (c) the
``kdbench run`` video with the second worker run normalised the same way. Everything goes to ``OUT/report.json``.
Under 1 s of audio ``kdbench run`` refuses the clip and step 2 is skipped (steps 1 and 3 still compare the worker,
the code ``kdbench run`` drives, with the official script).

    KDBENCH_HOME=... python scripts/real3dportrait_equivalence.py --out /tmp/r3d-eq --seed 7 --seconds 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kdbench.audio import MIN_AUDIO_SECONDS  # noqa: E402
from kdbench.dataset import load_dataset  # noqa: E402
from kdbench.normalize import normalize_to_file  # noqa: E402
from kdbench.runtime.method import write_inputs  # noqa: E402
from kdbench.runtime.spec import env_for  # noqa: E402
from kdbench.video import read_video  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
from aniportrait_equivalence import make_dataset  # noqa: E402 (the same one-clip dataset)


def _timed(cmd: list[str], log: Path, **kw) -> dict:
    """Run ``cmd`` (output to ``log``); wall and CPU seconds of it and its children."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT, **kw)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall_seconds": round(time.perf_counter() - t0, 1),
            "cpu_seconds": round(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime, 1)}


def diff(x: np.ndarray, y: np.ndarray) -> dict:
    same_shape = x.shape == y.shape
    return {"equal": bool(same_shape and np.array_equal(x, y)), "shapes": [list(x.shape), list(y.shape)],
            "max_abs_diff": int(np.abs(x.astype(int) - y).max()) if same_shape else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--seconds", type=float, default=1.0,
                   help="audio length (1 s -> 28 frames, the shortest clip `kdbench run` accepts; under 1 s step 2 is "
                        "skipped: 0.1 s -> 4 frames, HuBERT's 4 features padded to 8, two per frame)")
    p.add_argument("--dataset", default="hdtf-mini", help="the first clip's portrait and audio are used")
    p.add_argument("--no-repeat", action="store_true", help="skip step 3 (the worker again with the same seed)")
    p.add_argument("--official-only", action="store_true",
                   help="run step 1 only and stop (then run again with --reuse for steps 2 and 3)")
    p.add_argument("--reuse", action="store_true",
                   help="keep the outputs of steps already done in OUT by an earlier (or a parallel) run of the same "
                        "commands: official/frames.npy, run/events.jsonl, worker_frames.npy")
    a = p.parse_args()
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    from baselines.real3dportrait.spec import SPEC

    env = env_for("real3dportrait")
    status = env.status(SPEC)
    assert status == "ready", f"real3dportrait is {status}: run `kdbench setup real3dportrait`"
    ds = load_dataset(make_dataset(Path(load_dataset(a.dataset).root), out, a.seconds))
    clip = ds.clips[0]
    audio = clip.load_audio()
    image, wav = write_inputs(out / "inputs", clip.load_ref_image(), audio)
    report: dict = {"clip": clip.clip_id, "seed": a.seed, "audio_seconds": len(audio) / 16000,
                    "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs",
                    "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "load_average_start": os.getloadavg()}

    # 1. the official script, on its own copy of the inputs (it writes <audio>_16k.wav next to the audio)
    off = out / "official"
    off.mkdir(exist_ok=True)
    for f in (image, wav):
        (off / f.name).write_bytes(f.read_bytes())
    frames_npy = off / "frames.npy"
    args = ["--src_img", str(off / image.name), "--drv_aud", str(off / wav.name), "--drv_pose", "static",
            "--out_mode", "final", "--out_name", str(off / "official.mp4"), "--seed", str(a.seed)]
    cmd = [str(env.python), str(ROOT / "scripts" / "real3dportrait_official.py"), "--frames", str(frames_npy), "--",
           *args]
    torch_home = env.source / "checkpoints" / "torch_home"  # where setup links the ImageNet ResNet-34
    report["official_cmd"] = f"cd {env.source} && PYTHONPATH={ROOT} TORCH_HOME={torch_home} " + " ".join(cmd)
    if a.reuse and frames_npy.exists():
        report["official"] = {"reused": str(frames_npy)}
    else:
        report["official"] = _timed(cmd, out / "official.log", cwd=env.source,  # TORCH_HOME: the linked ResNet-34
                                    env={**os.environ, "PYTHONPATH": str(ROOT), "TORCH_HOME": str(torch_home)})
    official = np.load(frames_npy)
    if a.official_only:
        (out / "report_official.json").write_text(json.dumps(report, indent=2))
        print(json.dumps(report, indent=2))
        return

    # 2. kdbench run
    run = out / "run"
    if a.seconds < MIN_AUDIO_SECONDS:  # kdbench refuses clips this short: only steps 1 and 3 (the same worker code)
        report["kdbench_run"] = {"skipped": f"kdbench run needs at least {MIN_AUDIO_SECONDS} s of audio"}
    kd = [sys.executable, "-m", "kdbench.cli", "run", "--method", "real3dportrait", "--dataset", str(ds.root), "--out",
          str(run), "--seed", str(a.seed), "--device", "cpu", "--warmup", "0", "--frame-size", "512x512",
          "--keep-generated", "-q"]
    report["kdbench_cmd"] = "PYTHONPATH=. " + " ".join(["kdbench", *kd[3:]])
    if "kdbench_run" in report:
        pass
    elif a.reuse and (run / "events.jsonl").exists():
        report["kdbench_run"] = {"reused": str(run)}
    else:
        report["kdbench_run"] = _timed(kd, out / "kdbench_run.log", cwd=ROOT,
                                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    if "skipped" not in report["kdbench_run"]:
        ev = next(json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()
                  if json.loads(x).get("clip_id") == clip.clip_id)
        report["kdbench_run"].update(generation_seconds=ev.get("seconds"), n_generated=ev.get("n_generated"),
                                     generated=ev.get("generated"))
        if ev.get("seconds") and ev.get("n_generated"):  # the run's FPS: frames / the worker's own generation clock
            report["kdbench_run"]["fps"] = round(ev["n_generated"] / ev["seconds"], 4)

    # 3. the worker again, same seed, new process: its lossless frames
    worker_npy = out / "worker_frames.npy"
    code = ("import sys, numpy as np; from pathlib import Path; sys.path.insert(0, sys.argv[1]);"
            "from kdbench.runtime.client import WorkerClient; from kdbench.runtime.spec import env_for;"
            "from kdbench.video import read_video; from baselines.real3dportrait.spec import SPEC;"
            "env = env_for('real3dportrait'); o = Path(sys.argv[2]);"
            "c = WorkerClient(env.python, env.source, SPEC.hooks, options=SPEC.options, compat=SPEC.compat, "
            "links=SPEC.scratch_links, log_path=o / 'worker.log', scratch=o / 'scratch'); c.start();"
            f"r = c.request(o / 'inputs/ref.png', o / 'inputs/audio.wav', o / 'worker.mkv', {a.seed});"
            "assert r['ok'], r; f, fps = read_video(r['video']); assert fps == 25, fps; np.save(sys.argv[3], f);"
            "c.close()")
    worker = None
    if not a.no_repeat:
        if a.reuse and worker_npy.exists():
            report["worker_again"] = {"reused": str(worker_npy)}
        else:
            report["worker_again"] = _timed([sys.executable, "-c", code, str(ROOT), str(out), str(worker_npy)],
                                            out / "worker_again.log", cwd=ROOT)
        worker = np.load(worker_npy)

    # comparisons
    normalised = {}
    for name, frames in (("official", official), ("worker_again", worker)):
        if frames is None:
            continue
        dest = out / f"{name}_normalised.mp4"
        normalize_to_file(dest, audio, (512, 512), frames=frames, fps=25.0)
        normalised[name] = read_video(dest)[0]
    mine = None if "skipped" in report["kdbench_run"] else read_video(run / "videos" / f"{clip.clip_id}.mp4")[0]
    report["official_frames"] = {"frames": len(official), "shape": list(official.shape[1:]),
                                 "std": float(official.std()),
                                 "frame_to_frame_mean_abs": float(np.abs(np.diff(official.astype(int), axis=0)).mean())}
    if worker is not None:
        report["worker_frames_vs_official_frames"] = diff(worker, official)
    kept = (run / report["kdbench_run"]["generated"]["file"]) if report["kdbench_run"].get("generated") else None
    if kept is not None:  # what kdbench run's worker handed to the normaliser, before any lossy encode
        report["kdbench_run_generated_vs_official_frames"] = diff(read_video(kept)[0], official)
    if mine is not None:
        report["kdbench_run_vs_official_normalised"] = diff(mine, normalised["official"])
        if worker is not None:
            report["kdbench_run_vs_worker_again_normalised"] = diff(mine, normalised["worker_again"])
        report["kdbench_run_frames"] = len(mine)
    report["load_average_end"] = os.getloadavg()
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
