"""``kdbench eval``'s pipeline: decoding on a background thread, CPBD over worker processes beside the other
metrics, seconds per metric and decode in metrics.json — and the same numbers whatever the worker count."""

from __future__ import annotations

import numpy as np

from kdbench.dataset import load_dataset
from kdbench.evaluate import evaluate_run
from kdbench.runner import run_method
from kdbench.runstore import RunStore
from kdbench.scoring import prefetch
from metrics.cpbd import CPBDMetric, cpbd_frames


def test_cpbd_workers_give_the_same_values(hdtf_mini):
    from kdbench.video import read_video

    frames, _ = read_video(hdtf_mini / "gt" / "WDA_KatieHill_000.mp4", max_frames=6)
    frames = frames[:, ::4, ::4]  # 128x128: cheap, still real texture
    want = cpbd_frames(frames, None)
    m = CPBDMetric(options={"workers": 2, "size": None})
    got = m._frames_values(frames, None)
    assert got.tolist() == want.tolist()  # bit-identical, in frame order
    assert m._pool is not None  # really computed in worker processes


def test_eval_same_numbers_any_worker_count_and_timing(tiny_dataset, tmp_path):
    ds = load_dataset(tiny_dataset)
    run = tmp_path / "run"
    run_method("static", ds, run, progress=False, warmup=0, frame_size=(64, 64))
    docs = [evaluate_run(run, ["cpbd", "fps"], {"cpbd.workers": w, "cpbd.size": None}, out=tmp_path / f"m{w}.json",
                         progress=False) for w in (1, 2)]
    a, b = (d["metrics"]["cpbd"] for d in docs)
    assert a["per_clip"] == b["per_clip"] and len(a["per_clip"]) == 3
    assert a["aggregate"] == b["aggregate"]
    t = docs[1]["timing"]
    assert t["decode_s"] > 0 and t["metrics"]["cpbd"] > 0 and set(t["metrics"]) == {"cpbd"}  # static: no FPS
    assert docs[1]["metrics"]["fps"]["status"] == "skipped" and "fps" not in t["metrics"]
    assert docs[1]["metrics"]["cpbd"]["seconds"] == t["metrics"]["cpbd"]


def test_prefetch_decodes_ahead_and_leaves_bad_videos_to_the_metrics(tiny_dataset, tmp_path):
    ds = load_dataset(tiny_dataset)
    run = tmp_path / "run"
    run_method("static", ds, run, progress=False, warmup=0, frame_size=(64, 64))
    store = RunStore(run)
    spec = ds.get("A_clip_000")
    clip, sec = prefetch(spec, {"status": "ok"}, store.video_path("A_clip_000"), need_gt=True)
    assert "_decoded" in clip.__dict__ and "gt_frames" in clip.__dict__ and sec > 0
    assert clip.frames.shape == (50, 64, 64, 3) and np.array_equal(clip.gt_frames.shape, (50, 64, 64, 3))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    clip, _ = prefetch(spec, {"status": "ok"}, bad, need_gt=False)
    assert "_decoded" not in clip.__dict__  # not decodable: the metric that reads it records the failure
