"""LSE of one hdtf-mini clip: kdbench vs the syncnet-python 0.2.3 pipeline, same weights; speed AND values.

    python benchmarks/lse.py [--protocol s3fd|files] [--device cpu|cuda] [--frames N] [--repeat N]

Both sides score the real HDTF clip ``gt/WDA_KatieHill_000.mp4`` (512x512, 25 fps, 8 s) end to end: decode, S3FD on
every frame, tracking, 224x224 crops, SyncNet, LSE-C/LSE-D. The reference is
``syncnet_python.SyncNetPipeline.inference`` (ffmpeg re-encode to AVI, JPEG frames, scene detection, per-frame S3FD,
XVID crops, JPEG re-extraction, ``SyncNetInstance.evaluate``); it needs an ``ffmpeg`` executable, taken from PATH or
from the ``imageio-ffmpeg`` package. Each side runs in a fresh child process of this script (same input, same weight
files), so that its peak resident memory (VmHWM) is its own; the first clip's wall time includes loading the weights
(and starting CUDA). ``--repeat N`` scores the clip N more times in the same process and prints the median of those
warm runs: the per-clip cost when many clips are evaluated. CPU time (user + system, ffmpeg children included) is
printed too: on a machine shared with other jobs the wall-time ratio moves with their load, the CPU-time ratio much
less.

Weights: the real ``syncnet_v2`` / ``sfd_face`` when the weights manager has them, else random weights in the
official formats with a planted face output (tests/lse_fixtures.py) so that S3FD fires and tracks exist.
With random weights the scores mean nothing, but they still test equality.

Values: both sides use syncnet-python's tracker and summary (max LSE-C, min LSE-D over tracks). With
``--protocol files`` kdbench runs the reference's own file round trips (ffmpeg AVI re-encode, JPEG frames, XVID
crops) and the benchmark FAILS (exit 1) unless every track's LSE-C/LSE-D agree within 1e-4 and the offsets are
equal. With ``--protocol s3fd`` (kdbench's fast in-memory default: decoded frames, exact audio, no re-encodes)
the two sides score different inputs; the benchmark prints the difference, it is not expected to be zero.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
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


def path_with_ffmpeg(folder: Path, path: str) -> str:
    """``path`` (a PATH value) with an ``ffmpeg`` on it, which syncnet-python calls by name: as is when it has one,
    else with imageio-ffmpeg's executable linked into ``folder/bin`` put first. Also used by eval_all.py."""
    if shutil.which("ffmpeg", path=path):
        return path
    try:
        import imageio_ffmpeg
    except ImportError:
        sys.exit("the reference pipeline needs ffmpeg: install it or `pip install imageio-ffmpeg`")
    d = folder / "bin"
    d.mkdir(parents=True, exist_ok=True)
    if not (d / "ffmpeg").exists():
        (d / "ffmpeg").symlink_to(imageio_ffmpeg.get_ffmpeg_exe())
    return str(d) + os.pathsep + path


def _sync(device: str) -> None:
    """Wait for the GPU's queued work, so that the clock measures it."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def run_kdbench(video: str, weights: dict, device: str, protocol: str, min_track: int, repeat: int) -> dict:
    # everything the scoring imports lazily is imported before the clock starts, as the reference's imports are
    import cv2  # noqa: F401
    import python_speech_features  # noqa: F401
    import scipy.signal  # noqa: F401

    import metrics.face_tracks  # noqa: F401
    import metrics.s3fd  # noqa: F401
    import metrics.syncnet_net  # noqa: F401
    from kdbench.clip import EvalClip
    from kdbench.dataset import ClipSpec
    from kdbench.numerics import ieee_fp32, on_gpu
    from kdbench.weights import WeightsManager
    from metrics.lse import LSEMetric

    def one_clip() -> tuple[dict, dict]:
        t0 = time.perf_counter()
        clip = EvalClip(spec=ClipSpec(clip_id="bench"), video_path=Path(video))
        _ = clip.frames, clip.audio
        stages = {"decode": time.perf_counter() - t0}
        if protocol == "s3fd":
            t = time.perf_counter()
            with ieee_fp32() if on_gpu(device) else contextlib.nullcontext():  # as inside score_clip
                metric.detections(clip)  # cached in clip.cache, reused by score_clip
            _sync(device)
            stages["s3fd"] = time.perf_counter() - t
        t = time.perf_counter()
        rec = metric.score_clip(clip)
        _sync(device)
        stages["track+crop+syncnet" if protocol == "s3fd" else "ffmpeg+s3fd+scenes+track+crop+syncnet"] = (
            time.perf_counter() - t
        )
        return rec, stages

    t0 = time.perf_counter()
    wm = WeightsManager(overrides=weights)
    metric = LSEMetric(
        options={"protocol": protocol, "min_track": min_track, "tracker": "syncnet-python", "track_rule": "best"},
        device=device,
        weights=wm,
    )
    rec, stages = one_clip()  # first clip: loads the networks (and starts CUDA)
    cold = time.perf_counter() - t0
    warm = []
    for _ in range(repeat):
        t = time.perf_counter()
        _, stages = one_clip()
        warm.append(time.perf_counter() - t)
    return {
        "seconds": cold,
        "warm": warm,
        "stages": stages,
        "lse_c": [t["lse_c"] for t in rec["tracks"]],
        "lse_d": [t["lse_d"] for t in rec["tracks"]],
        "av_offset": [t["av_offset"] for t in rec["tracks"]],
        "n_tracks": rec["n_tracks"],
    }


def run_reference(video: str, weights: dict, device: str, min_track: int, repeat: int) -> dict:
    import logging

    logging.disable(logging.WARNING)
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
    def one_clip():
        with contextlib.redirect_stdout(io.StringIO()):
            out = pipe.inference(video, None)
        _sync(device)
        return out

    offsets, confs, dists, best_conf, best_dist, _, has_face = one_clip()
    cold = time.perf_counter() - t0
    warm = []
    for _ in range(repeat):
        t = time.perf_counter()
        one_clip()
        warm.append(time.perf_counter() - t)
    return {
        "seconds": cold,
        "warm": warm,
        "lse_c": confs,
        "lse_d": dists,
        "av_offset": [int(o) for o in offsets],
        "n_tracks": len(confs),
    }


def _child(args) -> None:
    weights = json.loads(args.weights_json)
    if args.side == "kdbench":
        out = run_kdbench(args.video, weights, args.device, args.protocol, args.min_track, args.repeat)
    else:
        out = run_reference(args.video, weights, args.device, args.min_track, args.repeat)
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
        "--repeat",
        str(args.repeat),
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(ROOT))
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise SystemExit(f"{side} run failed (rc {p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--protocol", default="s3fd", choices=["s3fd", "files"],
                    help="kdbench's LSE protocol: s3fd (in memory, the default) or files (the reference's round trips)")
    ap.add_argument("--frames", type=int, default=0, help="score only the first N frames (0: the whole clip)")
    ap.add_argument("--min-track", type=int, default=50, help="min_track for both sides (syncnet-python: 50)")
    ap.add_argument("--repeat", type=int, default=0,
                    help="score the clip N more times in the same process (networks loaded, CUDA started) and "
                         "report the median of those warm runs too: the per-clip cost of a many-clip evaluation")
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
        env["PATH"] = path_with_ffmpeg(tmp, env.get("PATH", ""))
        import torch

        print(
            f"clip: {src.name} ({args.frames or 'all'} frames), device: {args.device}, "
            f"torch threads: {torch.get_num_threads()}, cpus: {os.cpu_count()}"
        )
        print(f"weights: {kind}")
        k = _run_side("kdbench", args, video, weights, env)
        r = _run_side("reference", args, video, weights, env)
    print(f"{'':12s}{'wall s':>10s}{'CPU s':>10s}{'peak RSS MB':>14s}  tracks  LSE-C / LSE-D / offset per track")
    for name, x in ((f"kdbench {args.protocol}", k), ("reference", r)):
        row = f"{name:12s}{x['seconds']:10.2f}{x['cpu_s']:10.2f}{x['peak_rss_mb']:14.0f}  {x['n_tracks']:6d}"
        per_track = zip(x["lse_c"], x["lse_d"], x["av_offset"], strict=True)
        vals = ", ".join(f"{c:.6f} / {d:.6f} / {o:+d}" for c, d, o in per_track)
        print(f"{row}  {vals}")
    equal = compare_values(k, r)
    print("kdbench stages (s): " + ", ".join(f"{n} {v:.2f}" for n, v in k["stages"].items()))
    print(
        f"speed-up (reference / kdbench), first clip incl. loading: wall {r['seconds'] / k['seconds']:.2f}x, CPU "
        f"time {r['cpu_s'] / k['cpu_s']:.2f}x (all runs); peak memory ratio {r['peak_rss_mb'] / k['peak_rss_mb']:.2f}x"
    )
    if args.repeat:
        kw, rw = statistics.median(k["warm"]), statistics.median(r["warm"])
        print(
            f"warm clip (median of {args.repeat}, networks loaded): kdbench {kw:.2f} s, reference {rw:.2f} s, "
            f"speed-up {rw / kw:.2f}x"
        )
    if args.protocol == "files" and not equal:
        sys.exit("VALUES DIFFER: protocol files must equal the reference within 1e-4 (see above)")


def compare_values(k: dict, r: dict, tol: float = 1e-4) -> bool:
    """Print how far kdbench's per-track values are from the reference's; True when equal within ``tol``."""
    if k["n_tracks"] != r["n_tracks"]:
        print(f"values: {k['n_tracks']} track(s) vs the reference's {r['n_tracks']}: NOT EQUAL")
        return False
    dc = max((abs(a - b) for a, b in zip(k["lse_c"], r["lse_c"], strict=True)), default=0.0)
    dd = max((abs(a - b) for a, b in zip(k["lse_d"], r["lse_d"], strict=True)), default=0.0)
    same_offsets = k["av_offset"] == r["av_offset"]
    equal = dc <= tol and dd <= tol and same_offsets
    verdict = "EQUAL (within 1e-4, same offsets)" if equal else "NOT EQUAL"
    print(f"values: max |LSE-C diff| {dc:.3g}, max |LSE-D diff| {dd:.3g}, offsets "
          f"{'equal' if same_offsets else 'differ'}: {verdict}")
    return equal


if __name__ == "__main__":
    main()
