"""A variable-frame-rate GT video: the metrics that compare with GT get its frames resampled by timestamp onto the
25 fps grid (as the normaliser does for generated videos), their per-clip records say ``gt_vfr``, and
``kdbench data verify`` warns about it. A constant-rate GT video is read exactly as before."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from kdbench.cli import main
from kdbench.clip import EvalClip
from kdbench.dataset import derive_from_layout, verify_dataset
from kdbench.scoring import score_one
from kdbench.video import probe_video, read_video, remux_with_audio
from tests.conftest import tone
from tests.test_hostile_inputs2 import _indices, _nearest, write_vfr

# 10 frames 20 ms apart, then 20 frames 90 ms apart: 30 frames over 2.02 s (the encoder gives the last frame the
# stream's nominal 1/25 s), so 50 frames at 25 fps: the first part thinned out, the second repeated
TIMES_MS = np.concatenate([np.arange(10) * 20, 180 + np.arange(1, 21) * 90])
LAST_MS = 40
N_OUT = math.floor((TIMES_MS[-1] + LAST_MS) * 25 / 1000)


def _vfr_dataset(tmp_path: Path) -> Path:
    """A dataset folder (``gt/``) with a VFR GT video ``V_clip_000`` and a constant 25 fps one ``C_clip_000``, both
    with a 2 s audio track."""
    root = tmp_path / "ds"
    (root / "gt").mkdir(parents=True)
    remux_with_audio(write_vfr(tmp_path / "v.mp4", TIMES_MS), root / "gt" / "V_clip_000.mp4", tone(2.0))
    remux_with_audio(write_vfr(tmp_path / "c.mp4", np.arange(50) * 40), root / "gt" / "C_clip_000.mp4", tone(2.0))
    return root


def _clip(ds, cid: str) -> EvalClip:
    spec = ds.get(cid)
    return EvalClip(spec=spec, video_path=spec.gt_video, event={"status": "ok", "clip_id": cid})


def test_vfr_gt_frames_are_chosen_by_timestamp(tmp_path):
    ds = derive_from_layout(_vfr_dataset(tmp_path))
    clip = _clip(ds, "V_clip_000")
    info = probe_video(clip.spec.gt_video)
    assert info.vfr and info.n_frames == 30 and abs(info.duration_s - 2.02) < 1e-9
    assert N_OUT == 50
    expected = _nearest(TIMES_MS / 1000, N_OUT)  # independent of kdbench: nearest timestamp to i/25 s, later on a tie
    assert expected[:6].tolist() == [0, 2, 4, 6, 8, 9] and expected[-3:].tolist() == [28, 28, 29]
    raw, _ = read_video(clip.spec.gt_video)
    assert np.array_equal(_indices(raw), np.arange(30))  # the file holds the 30 frames in order
    got = clip.gt_frames
    assert clip.gt_vfr is True
    assert got.shape == (N_OUT, 64, 64, 3)  # floor(duration * 25) frames, not resized
    assert np.array_equal(_indices(got), expected)
    assert np.array_equal(got, raw[expected])  # the decoded frames themselves, bit for bit
    # what reading it as it is would have given: 30 frames, most of them at other times
    assert (np.arange(30) != expected[:30]).sum() >= 20


def test_constant_rate_gt_is_read_as_it_is(tmp_path, tiny_dataset):
    for root, cid in ((tiny_dataset, "A_clip_000"), (_vfr_dataset(tmp_path), "C_clip_000")):
        clip = _clip(derive_from_layout(root), cid)
        assert clip.gt_vfr is False
        raw, _ = read_video(clip.spec.gt_video)
        assert clip.gt_frames.shape == raw.shape and np.array_equal(clip.gt_frames, raw)
    clip = _clip(derive_from_layout(tiny_dataset), "C_clip_000")  # no GT video
    assert clip.gt_vfr is None and clip.gt_frames is None


def _metric(needs_gt: bool):
    def score_clip(clip):
        return {"n_gt_frames": len(clip.gt_frames) if needs_gt else 0}

    return SimpleNamespace(info=SimpleNamespace(needs_gt=needs_gt), score_clip=score_clip, cpu_pool=False)


def test_per_clip_records_say_gt_vfr(tmp_path):
    ds = derive_from_layout(_vfr_dataset(tmp_path))
    active = {"gt_metric": _metric(True), "other": _metric(False)}
    recs = {}
    for cid in ("V_clip_000", "C_clip_000"):
        spec = ds.get(cid)
        out = score_one(active, spec, {"status": "ok", "clip_id": cid}, spec.gt_video)
        assert {k: v[0] for k, v in out.items()} == {"gt_metric": "ok", "other": "ok"}, out
        recs[cid] = {k: v[1] for k, v in out.items()}
    assert recs["V_clip_000"]["gt_metric"] == {"n_gt_frames": 50, "gt_vfr": True}
    assert recs["V_clip_000"]["other"] == {"n_gt_frames": 0}  # it does not use GT frames
    assert recs["C_clip_000"]["gt_metric"] == {"n_gt_frames": 50}  # constant rate: records as before


def test_data_verify_warns_about_a_vfr_gt_video(tmp_path, capsys):
    root = _vfr_dataset(tmp_path)
    rep = verify_dataset(derive_from_layout(root))
    gt = root.resolve() / "gt" / "V_clip_000.mp4"
    assert rep.ok and rep.problems == []
    assert len(rep.warnings) == 1
    w = rep.warnings[0]
    assert w.startswith(f"V_clip_000: GT video {gt} has a variable frame rate (uneven timestamps, 30 frames over "
                        "2.020 s)")
    assert "resample it by its timestamps to 50 frames at 25 fps" in w
    assert main(["data", "verify", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"WARNING: {w}" in out and out.count("WARNING:") == 1
    assert main(["data", "verify", str(root), "--json"]) == 0
    assert '"warnings": [' in capsys.readouterr().out
