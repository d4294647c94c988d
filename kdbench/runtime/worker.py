"""The persistent worker: runs inside a method's environment, loads the models once, serves clips.

Started by :mod:`kdbench.runtime.client` as ``<venv>/bin/python -u -m kdbench.runtime.worker --hooks MOD:CLS
--source DIR --device D --options JSON [--compat a,b] [--scratch DIR] [--links a,b]``. Protocol: JSON lines.
The worker's real stdout carries only protocol messages; anything upstream prints (Python or C level) goes to
stderr, which the client writes to a log file in the run folder.

1. ``{"event": "ready", "load_seconds": s, "python": v, "packages": {...}, "compat": {...}, "loads": [...],
   "peak_rss_mb": m}`` once the models are
   loaded (``load_seconds``: models built and weights loaded, device synchronised; not process start or imports
   of the worker itself).
2. Per request ``{"id", "image", "audio", "seed", "output"}`` one reply ``{"id", "ok": true, "video": output,
   "n_frames": n | null, "seconds": s, "peak_rss_mb": m}`` (the worker's own peak RSS) or
   ``{"id", "ok": false, "error": ..., "traceback": ...}``.
   ``seconds``: generation time measured around the hooks' ``generate`` with the device synchronised before
   both clock reads, after seeding and after copying the inputs. Each request runs in a fresh scratch folder
   (the cwd; inputs copied in, the source entries named by ``--links`` linked in), removed afterwards.
   Before generating, the worker seeds Python's ``random``, numpy and torch (when imported) with ``seed``
   (``WorkerHooks.seed``; a method whose script draws after seeding reproduces that state there).
3. End of stdin: the worker exits.

Standard library only (plus the hooks and upstream code): it runs on whatever Python the method needs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from . import compat


def seed_all(seed: int) -> list:
    """Seed every generator upstream code may draw from; returns the names seeded."""
    random.seed(seed)
    seeded = ["random"]
    np = sys.modules.get("numpy")
    if np is None:
        try:
            import numpy as np  # noqa: PLC0415
        except ImportError:
            np = None
    if np is not None:
        np.random.seed(seed % 2**32)
        seeded.append("numpy")
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)  # all devices, CUDA included
        seeded.append("torch")
    return seeded


def peak_rss_mb() -> float | None:
    """This worker's peak resident set size so far (MB; None where ``resource`` is missing, e.g. Windows)."""
    try:
        import resource
    except ImportError:
        return None
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / (1 << 20) if sys.platform == "darwin" else kb / 1024, 1)


def package_versions(names) -> dict:
    from importlib import metadata

    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    return out


def _discover(out_dir: Path):
    videos = sorted(out_dir.rglob("*.mp4"), key=lambda p: p.stat().st_mtime)
    return videos[-1] if videos else None


class Worker:
    def __init__(self, args):
        self.args = args
        self.source = Path(args.source).resolve()
        self.links = [x for x in (args.links or "").split(",") if x]
        self.scratch_root = Path(args.scratch) if args.scratch else None

    def start(self, proto) -> None:
        done = compat.apply([x for x in (self.args.compat or "").split(",") if x])
        sys.path.insert(0, str(self.source))
        os.chdir(self.source)
        module, _, attr = self.args.hooks.partition(":")
        cls = getattr(importlib.import_module(module), attr)
        compat.PICKLE_POLICY["allow"] = tuple(getattr(cls, "pickle_allow", ()))
        self.hooks = cls(self.source, self.args.device, json.loads(self.args.options or "{}"))
        t0 = time.perf_counter()
        self.hooks.load()
        self.hooks.synchronize()
        load_s = time.perf_counter() - t0
        msg = {"event": "ready", "load_seconds": load_s, "python": sys.version.split()[0], "pid": os.getpid(),
               "packages": package_versions(self.hooks.packages), "compat": done, "info": self.hooks.info(),
               "loads": compat.PICKLE_POLICY["loads"], "peak_rss_mb": peak_rss_mb(),
               "trust_unpinned": os.environ.get(compat.TRUST_UNPINNED_ENV) == "1"}
        self.send(proto, msg)

    @staticmethod
    def send(proto, msg) -> None:
        proto.write(json.dumps(msg) + "\n")
        proto.flush()

    def handle(self, req: dict) -> dict:
        if self.scratch_root is not None:
            self.scratch_root.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="clip-", dir=self.scratch_root))
        try:
            image = scratch / ("ref" + Path(req["image"]).suffix)
            audio = scratch / ("audio" + Path(req["audio"]).suffix)
            shutil.copyfile(req["image"], image)
            shutil.copyfile(req["audio"], audio)
            for name in self.links:
                os.symlink(self.source / name, scratch / name)
            out_dir = scratch / "out"
            out_dir.mkdir()
            os.chdir(scratch)
            self.hooks.seed(int(req.get("seed", 0)))
            self.hooks.synchronize()
            t0 = time.perf_counter()
            result = self.hooks.generate(image, audio, out_dir)
            self.hooks.synchronize()
            seconds = time.perf_counter() - t0
            n_frames = None
            if isinstance(result, dict):
                n_frames = result.get("n_frames")
                result = result.get("video")
            video = Path(result) if result else _discover(out_dir)
            if video is None or not Path(video).is_file():
                raise RuntimeError(f"the method wrote no video (looked for {result or out_dir / '*.mp4'})")
            Path(req["output"]).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(video), req["output"])
            return {"id": req.get("id"), "ok": True, "video": req["output"], "n_frames": n_frames, "seconds": seconds,
                    "peak_rss_mb": peak_rss_mb()}
        finally:
            os.chdir(self.source)
            shutil.rmtree(scratch, ignore_errors=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hooks", required=True, help="module:Class of the WorkerHooks subclass")
    p.add_argument("--source", required=True, help="upstream source tree")
    p.add_argument("--device", default="cpu")
    p.add_argument("--options", default="{}", help="JSON object of the method's options")
    p.add_argument("--compat", default="", help="comma-separated kdbench.runtime.compat fixes")
    p.add_argument("--links", default="", help="comma-separated source entries linked into each scratch folder")
    p.add_argument("--scratch", default=None, help="parent of the per-clip scratch folders (default: system tmp)")
    args = p.parse_args(argv)
    # protocol on the original stdout; fd 1 (print, C libraries, subprocesses) goes to stderr from now on
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    worker = Worker(args)
    worker.start(proto)
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        try:
            reply = worker.handle(req)
        except Exception as e:  # noqa: BLE001 - reported to the client; the worker serves the next clip
            traceback.print_exc()
            reply = {"id": req.get("id"), "ok": False, "error": f"{type(e).__name__}: {e}",
                     "traceback": traceback.format_exc()}
        worker.send(proto, reply)
    return 0


if __name__ == "__main__":
    sys.exit(main())
