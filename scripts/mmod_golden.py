"""Compute dlib's MMOD CNN detections on every checked frame once, for ``tests/data/mmod_golden.json``.

dlib's CPU detector costs ~8 s per 512x512 frame at upsample 1 on this machine, too slow for CI on
200 frames; the golden file holds its output (boxes + confidences) so CI compares the PyTorch port
(``metrics/mmod.py``) with it on all frames. Inputs come from ``tests/mmod_cases.py`` (deterministic;
each frame's sha256 is recorded), with the dlib version and the sha256 of the .dat file.

    PYTHONPATH=. python scripts/mmod_golden.py [--workers 2] [--out tests/data/mmod_golden.json]

Needs dlib and ../shared/data (hdtf-mini). Results are written as they arrive (resumable: entries
already in the output with the same frame sha and settings are kept).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

_DET = None


def _detect(args: tuple[str, str, np.ndarray, int]) -> tuple[str, int, list, float]:
    global _DET
    import dlib

    path, name, frame, upsample = args
    if _DET is None:
        _DET = dlib.cnn_face_detection_model_v1(path)
    t = time.perf_counter()
    dets = _DET(np.ascontiguousarray(frame), upsample)
    dt = time.perf_counter() - t
    return name, upsample, [[d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom(), float(d.confidence)]
                            for d in dets], dt


def main(argv: list[str] | None = None) -> int:
    import dlib

    from kdbench.hdtf_mini import hdtf_mini_root
    from kdbench.weights import WeightsManager
    from tests import mmod_cases as C

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "data" / "mmod_golden.json")
    ap.add_argument("--only", default="", help="comma-separated name prefixes (e.g. ref,hard,crop128)")
    a = ap.parse_args(argv)

    dat = str(WeightsManager().path("mmod_human_face_detector"))
    inputs = C.all_inputs(hdtf_mini_root(download=False))
    doc = json.loads(a.out.read_text()) if a.out.is_file() else {}
    doc.update(dlib_version=dlib.__version__, dat_sha256=hashlib.sha256(Path(dat).read_bytes()).hexdigest(),
               dat_bytes=Path(dat).stat().st_size, inputs_module="tests/mmod_cases.py")
    frames = doc.setdefault("frames", {})
    jobs = []
    prefixes = tuple(p for p in a.only.split(",") if p)
    # cheap inputs first, then the GT frames
    for name in sorted(inputs, key=lambda n: (n.startswith("gt/"), n)):
        if prefixes and not name.startswith(prefixes):
            continue
        f = inputs[name]
        entry = frames.setdefault(name, {})
        if entry.get("sha256") != C.sha256(f):
            entry.clear()
            entry.update(sha256=C.sha256(f), shape=list(f.shape))
        for up in C.upsamples_for(name):
            if f"upsample{up}" not in entry:
                jobs.append((dat, name, f, up))
    print(f"{len(jobs)} detector calls, {a.workers} workers", flush=True)

    def save() -> None:
        doc["frames"] = dict(sorted(frames.items()))
        tmp = a.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
        os.replace(tmp, a.out)

    t0 = time.time()
    with ProcessPoolExecutor(a.workers, mp_context=multiprocessing.get_context("spawn")) as ex:
        futs = [ex.submit(_detect, j) for j in jobs]
        for i, fut in enumerate(as_completed(futs)):
            name, up, dets, dt = fut.result()
            frames[name][f"upsample{up}"] = dets
            if i % 4 == 0 or i == len(futs) - 1:
                save()
            print(f"[{i + 1}/{len(futs)}] {name} up={up}: {len(dets)} det(s) {dt:.1f}s "
                  f"(elapsed {time.time() - t0:.0f}s)", flush=True)
    save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
