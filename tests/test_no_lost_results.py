"""Hostile input, result-safety part (issue #11): nothing already computed is lost or silently replaced.

metrics.json is merged, never truncated; a bad option or a missing GPU fails before anything is written;
events.jsonl survives a torn write; resume regenerates damaged videos; config mismatches name the settings.
"""

from __future__ import annotations

import json
import os

import pytest

from kdbench.cli import main
from kdbench.dataset import load_dataset
from kdbench.errors import KdbenchError
from kdbench.runner import run_method
from kdbench.runstore import RunStore, config_diff


@pytest.fixture
def run_dir(tiny_dataset, tmp_path):
    """A finished 3-clip ``static`` run at 32x32 (cheap to score)."""
    out = tmp_path / "run"
    run_method("static", load_dataset(tiny_dataset), out, progress=False, warmup=0, frame_size=(32, 32))
    return out


def _eval(run_dir, *args) -> int:
    return main(["eval", str(run_dir), "-q", "--device", "cpu", *args])


# --- metrics.json: add or replace, keep the rest ---------------------------------------------------------------
def test_eval_of_one_metric_keeps_the_others(run_dir):
    assert _eval(run_dir, "--metrics", "cpbd", "--set", "cpbd.size=64") == 0
    first = json.loads((run_dir / "metrics.json").read_text())
    cpbd = first["metrics"]["cpbd"]
    assert cpbd["status"] == "ok" and set(cpbd["per_clip"]) == {"A_clip_000", "B_clip_000", "C_clip_000"}
    assert _eval(run_dir, "--metrics", "fps") == 0
    doc = json.loads((run_dir / "metrics.json").read_text())
    assert set(doc["metrics"]) == {"cpbd", "fps"}
    assert doc["metrics"]["cpbd"] == cpbd  # untouched, with its own evaluation record
    assert cpbd["evaluated"]["device"] == "cpu"
    assert doc["metrics"]["fps"]["status"] == "skipped"  # static copies its input: no FPS, but recorded as such
    # re-scoring cpbd with other options replaces cpbd only
    assert _eval(run_dir, "--metrics", "cpbd", "--set", "cpbd.size=64", "--set", "cpbd.stride=2") == 0
    doc2 = json.loads((run_dir / "metrics.json").read_text())
    assert doc2["metrics"]["cpbd"]["options"]["stride"] == 2 and doc2["metrics"]["fps"] == doc["metrics"]["fps"]


def test_a_crash_during_eval_leaves_metrics_json_as_it_was(run_dir, monkeypatch):
    assert _eval(run_dir, "--metrics", "fps") == 0
    before = (run_dir / "metrics.json").read_bytes()
    from kdbench.registry import METRICS

    def boom(self, clip):
        raise KeyboardInterrupt

    monkeypatch.setattr(METRICS.get("cpbd"), "score_clip", boom)
    assert _eval(run_dir, "--metrics", "cpbd", "--set", "cpbd.size=64") == 130
    assert (run_dir / "metrics.json").read_bytes() == before
    assert [p.name for p in run_dir.iterdir() if ".tmp" in p.name] == []
    killed = run_dir / ".metrics.tmp999999999.json"  # what an eval killed mid-write leaves
    killed.write_text("{")
    assert _eval(run_dir, "--metrics", "fps") == 0 and not killed.exists()


def test_unreadable_old_metrics_json_is_set_aside_not_overwritten(run_dir):
    (run_dir / "metrics.json").write_text("{not json")
    assert _eval(run_dir, "--metrics", "fps") == 0
    assert (run_dir / "metrics.json.unreadable").read_text() == "{not json"
    assert set(json.loads((run_dir / "metrics.json").read_text())["metrics"]) == {"fps"}
    other = json.loads((run_dir / "metrics.json").read_text())
    other["run"]["config_hash"] = "0123456789abcdef"  # results of another run written to this path
    other["created"] = "2026-01-02T03:04:05Z"
    (run_dir / "metrics.json").write_text(json.dumps(other))
    assert _eval(run_dir, "--metrics", "fps") == 0
    assert json.loads((run_dir / "metrics.json.20260102T030405Z.other-run").read_text()) == other


@pytest.mark.parametrize("option, fragment", [
    ("cpbd.stride=abc", "cpbd.stride='abc' must be an integer"),
    ("cpbd.max_frames=abc", "cpbd.max_frames='abc' must be an integer or null"),
    ("cpbd.size=2.5", "cpbd.size=2.5 must be an integer or null"),
    ("fid.cache=maybe", "fid.cache='maybe' must be true/false"),
    ("lse.conf_th=high", "lse.conf_th='high' must be a number"),
])
def test_wrong_option_type_is_rejected_before_scoring(run_dir, capsys, option, fragment):
    assert _eval(run_dir, "--metrics", "fps") == 0
    before = (run_dir / "metrics.json").read_bytes()
    metric = option.split(".")[0]
    assert _eval(run_dir, "--metrics", f"{metric},fps", "--set", option) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Nothing was run or written" in err
    assert (run_dir / "metrics.json").read_bytes() == before


def test_wrong_option_type_with_videos_creates_no_folder(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "ext"
    rc = main(["eval", "--videos", str(tiny_dataset / "gt"), "--dataset", str(tiny_dataset), "--out", str(out),
               "--metrics", "cpbd", "--set", "cpbd.stride=abc", "-q"])
    assert rc == 2 and "must be an integer" in capsys.readouterr().err and not out.exists()


def test_wrong_method_option_type_creates_no_run_folder(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "kdt"
    rc = main(["run", "--method", "kdtalker", "--dataset", str(tiny_dataset), "--out", str(out),
               "--set", "ddim_steps=abc", "-q"])
    assert rc == 2 and "kdtalker.ddim_steps='abc' must be an integer" in capsys.readouterr().err
    assert not out.exists()


# --- events.jsonl survives a crash mid-write ---------------------------------------------------------------------
def test_torn_last_line_is_repaired_and_the_next_event_gets_its_own_line(run_dir):
    store = RunStore(run_dir)
    n = len(store.events())
    with open(store.events_path, "ab") as f:
        f.write(b'{"clip_id": "B_clip_000", "sta')  # killed mid-write
    store.append_event({"event": "note", "n": 1})  # an append before any repair: never on the torn line
    lines = store.events_path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and lines[-2] == b'{"event": "note", "n": 1}' and lines[-3].endswith(b'"sta')
    assert len(store.events()) == n + 1
    with open(store.events_path, "ab") as f:
        f.write(b'{"clip_id": "A_cl')
    RunStore(run_dir).open(store.config())  # next open repairs
    data = store.events_path.read_bytes()
    assert data.endswith(b'{"event": "note", "n": 1}\n')
    for line in data.splitlines()[:-2] + data.splitlines()[-1:]:
        json.loads(line)


# --- resume trusts only the videos it wrote -------------------------------------------------------------------------
def test_resume_regenerates_damaged_or_missing_videos(tiny_dataset, run_dir):
    ds = load_dataset(tiny_dataset)
    store = RunStore(run_dir)
    ev = store.clip_events()
    for cid in ("A_clip_000", "B_clip_000"):
        assert ev[cid]["video_size"] == store.video_path(cid).stat().st_size and len(ev[cid]["video_sha256"]) == 64
    a, b = store.video_path("A_clip_000"), store.video_path("B_clip_000")
    good_a = a.read_bytes()
    st = a.stat()
    damaged = bytearray(good_a)
    damaged[len(damaged) // 2] ^= 0xFF  # same size, one byte flipped, mtime restored
    a.write_bytes(bytes(damaged))
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    b.unlink()
    dead_tmp = run_dir / "videos" / ".A_clip_000.tmp999999999.mp4"  # a killed run's temporary file
    dead_tmp.write_bytes(b"half a video")
    dead_kept = run_dir / "generated" / ".B_clip_000.tmp999999999.npy"  # and one of --keep-generated
    dead_kept.parent.mkdir()
    dead_kept.write_bytes(b"half the frames")
    s = run_method("static", ds, run_dir, progress=False, warmup=0, frame_size=(32, 32))
    assert s.resumed == ["C_clip_000"] and sorted(s.ok) == ["A_clip_000", "B_clip_000"]
    assert a.read_bytes() != bytes(damaged) and b.is_file() and not dead_tmp.exists() and not dead_kept.exists()
    ev = RunStore(run_dir).clip_events()
    assert all(store.video_problem(c, ev[c]) is None for c in ("A_clip_000", "B_clip_000"))
    s = run_method("static", ds, run_dir, progress=False, warmup=0, frame_size=(32, 32))
    assert s.resumed == ["A_clip_000", "B_clip_000", "C_clip_000"] and s.ok == []


def test_eval_refuses_to_score_a_video_changed_since_generation(run_dir):
    v = RunStore(run_dir).video_path("A_clip_000")
    v.write_bytes(v.read_bytes()[:-10])
    assert _eval(run_dir, "--metrics", "cpbd", "--set", "cpbd.size=64") == 0
    cpbd = json.loads((run_dir / "metrics.json").read_text())["metrics"]["cpbd"]
    assert "A_clip_000" not in cpbd["per_clip"] and "re-run `kdbench run`" in cpbd["failures"]["A_clip_000"]
    assert set(cpbd["per_clip"]) == {"B_clip_000", "C_clip_000"}


# --- devices and config mismatches -----------------------------------------------------------------------------------
@pytest.fixture
def no_gpu(monkeypatch):
    torch = pytest.importorskip("torch", reason="the device checks need torch (kdbench[metrics])")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_device_cuda_without_gpu_fails_before_the_run_folder_exists(tiny_dataset, tmp_path, capsys, no_gpu):
    out = tmp_path / "r"
    rc = main(["run", "--method", "static", "--dataset", str(tiny_dataset), "--out", str(out), "--device", "cuda",
               "-q"])
    assert rc == 2 and not out.exists()
    assert "--device cuda: no usable CUDA GPU on this machine" in capsys.readouterr().err


def test_eval_device_cuda_without_gpu_is_an_error_not_a_cpu_run(run_dir, capsys, no_gpu):
    assert _eval(run_dir, "--metrics", "fps") == 0
    before = (run_dir / "metrics.json").read_bytes()
    assert main(["eval", str(run_dir), "-q", "--metrics", "fps", "--device", "cuda"]) == 2
    assert "no usable CUDA GPU" in capsys.readouterr().err and (run_dir / "metrics.json").read_bytes() == before


def test_unknown_device_and_missing_gpu_index_are_errors(monkeypatch):
    torch = pytest.importorskip("torch", reason="the device checks need torch (kdbench[metrics])")
    from kdbench.envinfo import resolve_device

    with pytest.raises(KdbenchError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(KdbenchError, match=r"has 1 CUDA device\(s\): use cuda:0..cuda:0"):
        resolve_device("cuda:3")
    assert resolve_device("cuda:0") == "cuda:0" and resolve_device("cpu") == "cpu"


def test_config_mismatch_names_the_settings_that_differ(tiny_dataset, run_dir, capsys):
    rc = main(["run", "--method", "static", "--dataset", str(tiny_dataset), "--out", str(run_dir),
               "--frame-size", "48x48", "--seed", "3", "--device", "cpu", "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and "frame_size: [32, 32] → [48, 48]" in err and "seed: 0 → 3" in err and "hash" not in err
    assert config_diff({"device": "cuda", "options": {"ddim_steps": 50}, "config_hash": "a"},
                       {"device": "cpu", "options": {"ddim_steps": 5}, "config_hash": "b"}) == [
        "device: 'cuda' → 'cpu'", "options.ddim_steps: 50 → 5"]


def test_option_text_is_parsed_when_it_has_the_right_kind():
    from kdbench.options import check_option_types

    defaults = {"n": 1, "b": True, "x": 0.5, "s": "a", "m": None}
    assert check_option_types("m", {"n": "5", "b": "false", "x": "2", "s": "7", "m": "abc"}, defaults) == {
        "n": 5, "b": False, "x": 2, "s": "7", "m": "abc"}
    with pytest.raises(KdbenchError, match=r"m\.n='5\.5' must be an integer \(default 1\); m\.b=2 must be true/false"):
        check_option_types("m", {"n": "5.5", "b": 2}, defaults)
