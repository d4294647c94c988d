"""``benchmarks/eval_all.py``'s pure parts on tiny inputs: the clip cut and frame export both sides read, the value
checks, the timing table and ratios, and the reuse of a saved reference side. No timing is asserted."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_eval_all", ROOT / "benchmarks" / "eval_all.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_prepare_clip_cuts_frames_and_audio_and_export_writes_them(bench, make_video, tmp_path):
    import cv2

    from kdbench.audio import read_audio
    from kdbench.video import probe_video

    src = make_video("src.mp4", 40, 25, (64, 48), audio_s=1.6, step=6)
    whole = bench.prepare_clip(src, tmp_path / "a" / "whole.mp4", None)
    assert whole.read_bytes() == src.read_bytes()  # the full clip is scored as it is, not re-encoded
    assert bench.prepare_clip(src, tmp_path / "a" / "all.mp4", 40).read_bytes() == src.read_bytes()

    cut = bench.prepare_clip(src, tmp_path / "b" / "cut.mp4", 30)
    assert probe_video(cut).n_frames == 30
    audio = read_audio(cut)
    assert len(audio) == 30 * 640 and np.array_equal(audio, read_audio(src)[: 30 * 640])  # FLAC: exact samples

    n = bench.export_frames(cut, tmp_path / "png")
    files = sorted((tmp_path / "png").glob("*.png"))
    assert n == 30 and [f.name for f in files[:2]] == ["000001.png", "000002.png"] and len(files) == 30
    decoded = list(bench.cv2_frames(cut))
    assert len(decoded) == 30
    assert all(np.array_equal(cv2.imread(str(f)), d) for f, d in zip(files, decoded, strict=True))  # PNG: lossless
    # frame i of the synthetic clip is a flat grey of level 6 i: the cut keeps the first frames, in order
    means = np.array([d.mean() for d in decoded])
    assert np.abs(means - 6 * np.arange(30)).max() < 2.5

    sha, count = bench.frames_digest(cut)
    assert count == 30 and sha == bench.frames_digest(cut)[0] and sha != bench.frames_digest(src)[0]
    assert bench.export_frames(cut, tmp_path / "png5", max_frames=5) == 5


def test_lse_min_track(bench):
    assert bench.lse_min_track(200) is None and bench.lse_min_track(101) is None
    assert bench.lse_min_track(100) == 50 and bench.lse_min_track(25) == 12


def _kdb_values(**over):
    v = {"lse": {"lse_c": 1.5, "lse_d": 8.0, "av_offset": 2, "tracks": []},
         "diversity": {"diversity": 0.25, "n_faces": 30},
         "fid": {"fid": 1e-7},
         "cpbd": {"cpbd": 0.395},
         "csim": {"csim": 0.9, "n_frames_no_face": 0},
         "fps": {"fps": None}}
    v.update(over)
    return v


def _ref_tools(**over):
    t = {"syncnet": {"lse_c": 1.4, "lse_d": 8.2, "tracks": [{"lse_c": 1.4, "lse_d": 8.2, "av_offset": -2}]},
         "hopenet": {"diversity": 0.25 + 3e-7, "n_faces": 30},
         "pytorch_fid": {"fid": -2e-7},
         "cpbd": {"cpbd": 0.395},
         "insightface": {"csim": 0.9 + 2e-6, "n_frames_no_face": 0}}
    t.update(over)
    return {k: {"values": v, "wall_s": 1.0} for k, v in t.items()}


def test_compare_values_checks_what_is_equivalent(bench):
    rows = bench.compare_values(_kdb_values(), _ref_tools(), "s3fd")
    by = {(r["metric"], r["quantity"]): r for r in rows}
    assert set(by) == {("lse", "lse_c"), ("lse", "lse_d"), ("diversity", "diversity"), ("diversity", "n_faces"),
                       ("fid", "fid"), ("cpbd", "cpbd"), ("csim", "csim"), ("csim", "n_frames_no_face")}
    # s3fd scores other inputs than the package: printed, never a verdict
    assert by["lse", "lse_d"]["ok"] is None and by["lse", "lse_d"]["diff"] == pytest.approx(0.2)
    assert all(r["ok"] for k, r in by.items() if k[0] != "lse")
    assert by["fid", "fid"]["diff"] == pytest.approx(3e-7)
    assert "printed only" in bench.format_values(rows) and "DIFFERENT" not in bench.format_values(rows)

    # CPBD must be identical, diversity within 1e-5; a face count that differs is a difference
    bad = bench.compare_values(_kdb_values(cpbd={"cpbd": 0.395 + 1e-12}, diversity={"diversity": 0.3, "n_faces": 29}),
                               _ref_tools(), "s3fd")
    assert {(r["metric"], r["quantity"]) for r in bad if r["ok"] is False} == {
        ("cpbd", "cpbd"), ("diversity", "diversity"), ("diversity", "n_faces")}
    assert "DIFFERENT" in bench.format_values(bad)

    # protocol files: LSE is checked (1e-4) and so is the offset of the package's one track
    files = bench.compare_values(_kdb_values(lse={"lse_c": 1.40005, "lse_d": 8.2, "av_offset": -2}), _ref_tools(),
                                 "files")
    lse = {r["quantity"]: r["ok"] for r in files if r["metric"] == "lse"}
    assert lse == {"lse_c": True, "lse_d": True, "av_offset": True}
    off = bench.compare_values(_kdb_values(lse={"lse_c": 1.4, "lse_d": 8.2, "av_offset": 3}), _ref_tools(), "files")
    assert [r["ok"] for r in off if r["quantity"] == "av_offset"] == [False]

    # a metric that failed on one side has no value: a difference, not a crash
    none = bench.compare_values(_kdb_values(csim={"failed": "no face"}), _ref_tools(), "s3fd")
    assert [r["ok"] for r in none if r["quantity"] == "csim"] == [False]


def test_timing_table_and_ratios(bench):
    kdb = {"wall_s": 50.0, "timing": {"metrics": {"lse": 10.0, "diversity": 20.0, "fid": 8.0, "cpbd": 5.0,
                                                  "csim": 2.0, "fps": 0.01}, "decode_s": 1.5}}
    ref = {"wall_s": 1000.0, "tools": {"syncnet": {"wall_s": 40.0}, "hopenet": {"wall_s": 800.0},
                                       "pytorch_fid": {"wall_s": 80.0}, "cpbd": {"wall_s": 60.0},
                                       "insightface": {"wall_s": 20.0}}}
    rows = bench.timing_rows(kdb, ref)
    ratio = {r["metric"]: r["ratio"] for r in rows}
    assert ratio == {"lse": 4.0, "diversity": 40.0, "fid": 10.0, "cpbd": 12.0, "csim": 10.0, "fps": None,
                     "whole run": 20.0}
    text = bench.format_timing(rows, kdb)
    assert "20.0x" in text and "40.0x" in text and "metrics sum to 45.0 s" in text
    fps_line = next(line for line in text.splitlines() if line.startswith("fps"))
    assert "—" in fps_line and "none (timed inside kdbench run)" in fps_line
    # a reused reference without some tool: its row shows no ratio instead of failing
    partial = bench.timing_rows(kdb, {"wall_s": 40.0, "tools": {"syncnet": {"wall_s": 40.0}}})
    assert {r["metric"]: r["ratio"] for r in partial}["diversity"] is None


def test_saved_reference_is_reused_only_for_the_same_frames(bench, tmp_path):
    saved = {"input": {"n_frames": 50, "frames_sha256": "ab" * 32},
             "reference": {"wall_s": 10.0, "tools": {"cpbd": {"wall_s": 10.0, "values": {"cpbd": 0.4}}}}}
    assert bench.check_saved_reference(json.loads(json.dumps(saved)), "ab" * 32, 50)["wall_s"] == 10.0
    with pytest.raises(SystemExit, match="other frames"):
        bench.check_saved_reference(saved, "cd" * 32, 50)
    with pytest.raises(SystemExit, match="other frames"):
        bench.check_saved_reference(saved, "ab" * 32, 200)
    with pytest.raises(SystemExit, match="no reference results"):
        bench.check_saved_reference({"input": saved["input"]}, "ab" * 32, 50)


def test_cli_refuses_bad_options_before_any_work(bench, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(["--frames", "10"])
    assert e.value.code == 2 and "at least 1 s of audio" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        bench.main(["--reference-json", str(tmp_path / "missing.json")])
    assert e.value.code == 2 and "does not exist" in capsys.readouterr().err
