"""LSE of one hdtf-mini clip: kdbench (in memory, batched) vs the syncnet-python 0.2.3 pipeline, same weights.

    python benchmarks/lse.py [--device cpu|cuda] [--frames N] [--protocol s3fd|full]

Both sides score the real HDTF clip ``gt/WDA_KatieHill_000.mp4`` (512x512, 25 fps, 8 s) end to end: decode,
S3FD on every frame, tracking, 224x224 crops, SyncNet, LSE-C/LSE-D. The reference is
``syncnet_python.SyncNetPipeline.inference`` (ffmpeg re-encode to AVI, JPEG frames, scene detection, per-frame
S3FD, XVID crops, JPEG re-extraction, ``SyncNetInstance.evaluate``); it needs an ``ffmpeg`` executable, taken
from PATH or from the ``imageio-ffmpeg`` package. Each side runs in a fresh child process of this script
(same input, same weight files), so that its peak resident memory (VmHWM) is its own; wall time includes
loading the weights. CPU time (user + system, ffmpeg children included) is printed too: on a machine shared
with other jobs the wall-time ratio moves with their load, the CPU-time ratio much less.

Weights: the real ``syncnet_v2`` / ``sfd_face`` when the weights manager has them, else random weights in the
official formats with a planted face output (tests/lse_fixtures.py) so that S3FD fires and tracks exist.
With random weights the scores mean nothing; they are printed to show both sides score the same track
(the reference's lossy AVI/JPEG/XVID round trips make them differ slightly).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _ffmpeg_dir(tmp: Path) -> str | None:
    if shutil.which("ffmpeg"):
        return None
    try:
        import imageio_ffmpeg
    except ImportError:
        sys.exit("the reference pipeline needs ffmpeg: install it or `pip install imageio-ffmpeg`")
    d = tmp / "bin"
    d.mkdir(exist_ok=True)
    (d / "ffmpeg").symlink_to(imageio_ffmpeg.get_ffmpeg_exe())
    return str(d)


def run_kdbench(video: str, weights: dict, device: str, protocol: str, min_track: int) -> dict:
    from kdbench.clip import EvalClip
    from kdbench.dataset import ClipSpec
    from kdbench.weights import WeightsManager
    from metrics.lse import LSEMetric

    t0 = time.perf_counter()
    wm = WeightsManager(overrides=weights)
    metric = LSEMetric(options={"protocol": protocol, "min_track": min_track}, device=device, weights=wm)
    clip = EvalClip(spec=ClipSpec(clip_id="bench"), video_path=Path(video))
    _ = clip.frames, clip.audio
    stages = {"decode": time.perf_counter() - t0}
    if protocol == "s3fd":
        t = time.perf_counter()
        metric.detections(clip)  # cached in clip.cache, reused by score_clip
        stages["s3fd"] = time.perf_counter() - t
    t = time.perf_counter()
    rec = metric.score_clip(clip)
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
    stages["track+crop+syncnet"] = time.perf_counter() - t
    return {
        "seconds": time.perf_counter() - t0,
        "stages": stages,
        "lse_c": rec["lse_c"],
        "lse_d": rec["lse_d"],
        "av_offset": rec["av_offset"],
        "n_tracks": rec["n_tracks"],
    }


def run_reference(video: str, weights: dict, device: str, min_track: int) -> dict:
    import logging

    logging.disable(logging.WARNING)
    import contextlib
    import io

    from syncnet_python import SyncNetPipeline

    t0 = time.perf_counter()
    pipe = SyncNetPipeline(
        {
            "s3fd_weights": str(weights["sfd_face"]),
            "syncnet_weights": str(weights["syncnet_v2"]),
            "min_track": min_track,
        },
        device=device,
    )
    with contextlib.redirect_stdout(io.StringIO()):
        offsets, confs, dists, best_conf, best_dist, _, has_face = pipe.inference(video, None)
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
    return {
        "seconds": time.perf_counter() - t0,
        "lse_c": confs,
        "lse_d": dists,
        "av_offset": offsets,
        "n_tracks": len(confs),
    }


def _child(args) -> None:
    weights = json.loads(args.weights_json)
    if args.side == "kdbench":
        out = run_kdbench(args.video, weights, args.device, args.protocol, args.min_track)
    else:
        out = run_reference(args.video, weights, args.device, args.min_track)
    import resource

    out["peak_rss_mb"] = _peak_rss_mb()
    ru, rc = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    out["cpu_s"] = ru.ru_utime + ru.ru_stime + rc.ru_utime + rc.ru_stime  # incl. ffmpeg children
    print("RESULT " + json.dumps(out, default=float))


def _weights(tmp: Path) -> tuple[dict, str]:
    from kdbench.errors import KdbenchError
    from kdbench.weights import WeightsManager

    wm = WeightsManager()
    try:
        return {"syncnet_v2": str(wm.path("syncnet_v2")), "sfd_face": str(wm.path("sfd_face"))}, "official"
    except KdbenchError:
        from tests import lse_fixtures as fx

        return (
            {
                "syncnet_v2": str(fx.save_state(fx.random_syncnet_state(0), tmp / "syncnet_v2.model")),
                "sfd_face": str(fx.save_state(fx.random_s3fd_state(0), tmp / "sfd_face.pth")),
            },
            "random (official format, planted face output; KDBENCH_ALLOW_UNVERIFIED=1)",
        )


def _run_side(side: str, args, video: str, weights: dict, env: dict) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--side",
        side,
        "--video",
        video,
        "--weights-json",
        json.dumps(weights),
        "--device",
        args.device,
        "--protocol",
        args.protocol,
        "--min-track",
        str(args.min_track),
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(ROOT))
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise SystemExit(f"{side} run failed (rc {p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--protocol", default="s3fd", choices=["s3fd"])
    ap.add_argument("--frames", type=int, default=0, help="score only the first N frames (0: the whole clip)")
    ap.add_argument("--min-track", type=int, default=50, help="min_track for both sides (syncnet-python: 50)")
    ap.add_argument("--side", choices=["kdbench", "reference"], help=argparse.SUPPRESS)
    ap.add_argument("--video", help=argparse.SUPPRESS)
    ap.add_argument("--weights-json", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:
        return _child(args)

    from kdbench.hdtf_mini import hdtf_mini_root

    src = hdtf_mini_root() / "gt" / "WDA_KatieHill_000.mp4"
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        video = str(src)
        if args.frames:
            from kdbench.audio import read_audio
            from kdbench.video import read_video, write_video

            frames, fps = read_video(src, max_frames=args.frames)
            video = str(
                write_video(tmp / "clip.mp4", frames, fps, audio=read_audio(src)[: args.frames * 640])
            )
        weights, kind = _weights(tmp)
        env = dict(os.environ, KDBENCH_ALLOW_UNVERIFIED="1")
        ff = _ffmpeg_dir(tmp)
        if ff:
            env["PATH"] = ff + os.pathsep + env.get("PATH", "")
        import torch

        print(
            f"clip: {src.name} ({args.frames or 'all'} frames), device: {args.device}, "
            f"torch threads: {torch.get_num_threads()}, cpus: {os.cpu_count()}"
        )
        print(f"weights: {kind}")
        k = _run_side("kdbench", args, video, weights, env)
        r = _run_side("reference", args, video, weights, env)
    print(f"{'':12s}{'wall s':>10s}{'CPU s':>10s}{'peak RSS MB':>14s}  tracks  LSE-C / LSE-D / offset")
    for name, x in (("kdbench", k), ("reference", r)):
        row = f"{name:12s}{x['seconds']:10.2f}{x['cpu_s']:10.2f}{x['peak_rss_mb']:14.0f}  {x['n_tracks']:6d}"
        print(f"{row}  {x['lse_c']} / {x['lse_d']} / {x['av_offset']}")
    print("kdbench stages (s): " + ", ".join(f"{n} {v:.2f}" for n, v in k["stages"].items()))
    print(
        f"speed-up (reference / kdbench): wall {r['seconds'] / k['seconds']:.2f}x, CPU time "
        f"{r['cpu_s'] / k['cpu_s']:.2f}x; peak memory ratio {r['peak_rss_mb'] / k['peak_rss_mb']:.2f}x"
    )


if __name__ == "__main__":
    main()
