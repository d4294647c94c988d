"""Hostile input: every class of bad input is built here (tiny videos, wavs, images, manifests, results) and
the exact outcome is asserted — exit code, message, per-clip failure reason, and files left untouched.

The policy these tests pin is the README's "What kdbench does with bad input".
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import level_frames, tone

from kdbench.audio import SILENCE_DBFS, check_audio, loudness_dbfs, write_wav
from kdbench.cli import failure_groups, main, os_error_message
from kdbench.dataset import MANIFEST_NAME, load_dataset, read_manifest, verify_dataset
from kdbench.errors import ClipFailure, DatasetError, KdbenchError
from kdbench.metric import Metric, MetricInfo, Output
from kdbench.normalize import normalize_frames, normalize_to_file
from kdbench.registry import METRICS
from kdbench.runstore import RunStore
from kdbench.video import probe_video, read_video, write_video


class _MeanLevel(Metric):
    """Mean grey level of the scored video (no GT needed): cheap, deterministic."""

    info = MetricInfo(name="_bad_mean", version="1", description="mean level", outputs={"level": Output(None)})

    def score_clip(self, clip):
        return {"level": float(clip.frames.mean())}


class _GtLevel(Metric):
    """Needs a GT video: mean absolute level difference to it."""

    info = MetricInfo(name="_bad_gt", version="1", description="GT diff", outputs={"d": Output(False)}, needs_gt=True)

    def score_clip(self, clip):
        return {"d": float(np.abs(clip.frames.astype(float).mean() - clip.gt_frames.astype(float).mean()))}


if "_bad_mean" not in METRICS.names():
    METRICS.register("_bad_mean")(_MeanLevel)
    METRICS.register("_bad_gt")(_GtLevel)


def _events(run_dir: Path) -> dict[str, dict]:
    return RunStore(run_dir).clip_events()


def _err(capsys) -> str:
    return capsys.readouterr().err


def _faststart_truncated(src: Path, dst: Path, keep: float = 0.7) -> Path:
    """A copy of ``src`` with its index at the front (as streaming tools write it), cut to ``keep`` of its bytes."""
    tmp = dst.with_name("fs_" + dst.name)
    with av.open(str(src)) as inp, av.open(str(tmp), "w", options={"movflags": "faststart"}) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for pkt in inp.demux():
            if pkt.dts is None:
                continue
            pkt.stream = streams[pkt.stream.index]
            out.mux(pkt)
    data = tmp.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    tmp.unlink()
    return dst


# ----------------------------------------------------------------------------------------------------------
# No silent numbers: padding and aspect ratio
# ----------------------------------------------------------------------------------------------------------
def test_padding_within_tolerance_is_recorded_beyond_it_the_clip_fails(tiny_dataset, tmp_path, capsys):
    vids = tmp_path / "theirs"
    vids.mkdir()
    # the dataset's audio is 2 s = 50 frames; A is 3 frames short (padded), B 20 frames short (fails)
    write_video(vids / "A_clip_000.mp4", level_frames(47, (64, 64)), 25, crf=0)
    write_video(vids / "B_clip_000.mp4", level_frames(30, (64, 64)), 25, crf=0)
    out = tmp_path / "ext"
    assert main(["eval", "--videos", str(vids), "--dataset", str(tiny_dataset), "--out", str(out),
                 "--metrics", "_bad_mean", "-q", "--device", "cpu"]) == 0
    ev = _events(out)
    assert ev["A_clip_000"]["status"] == "ok" and ev["A_clip_000"]["normalizer"]["padded"] == 3
    assert ev["B_clip_000"]["status"] == "failed"
    assert ev["B_clip_000"]["error"] == ("video is 20 frames (0.80 s) shorter than its audio: it covers 30 of 50 "
                                         "frames at 25 fps, more than the 5-frame padding tolerance "
                                         "(--max-pad-frames)")
    assert not (out / "videos" / "B_clip_000.mp4").exists()
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["normalizer"] == {"max_pad_frames": 5, "letterbox": False, "padded": {"A_clip_000": 3},
                                 "letterboxed": []}
    assert "padded with repeated last frames: A_clip_000 (3)" in capsys.readouterr().out
    # the report says so under the table
    from reports.table import build_table

    md = build_table([out]).to_markdown()
    assert "1 clip(s) padded with repeated last frames (frames per clip: A_clip_000: 3; tolerance 5 frames)" in md
    # a larger tolerance is an option, recorded in the config
    out2 = tmp_path / "ext2"
    assert main(["eval", "--videos", str(vids), "--dataset", str(tiny_dataset), "--out", str(out2),
                 "--metrics", "_bad_mean", "--max-pad-frames", "20", "-q", "--device", "cpu"]) == 0
    assert _events(out2)["B_clip_000"]["normalizer"]["padded"] == 20
    assert RunStore(out2).config()["normalizer"] == {"max_pad_frames": 20, "letterbox": False}


def test_other_aspect_ratio_fails_with_both_sizes_or_is_letterboxed_when_asked(tiny_dataset, tmp_path):
    vids = tmp_path / "wide"
    vids.mkdir()
    write_video(vids / "A_clip_000.mp4", np.full((50, 64, 96, 3), 200, np.uint8), 25, crf=0)  # 3:2 into 64x64
    out = tmp_path / "ext"
    main(["eval", "--videos", str(vids), "--dataset", str(tiny_dataset), "--out", str(out),
          "--metrics", "_bad_mean", "-q", "--device", "cpu"])
    err = _events(out)["A_clip_000"]["error"]
    assert err.startswith("video is 96x64 (aspect 1.500) but the dataset's frame size is 64x64 (aspect 1.000)")
    assert "--letterbox" in err
    out2 = tmp_path / "boxed"
    assert main(["eval", "--videos", str(vids), "--dataset", str(tiny_dataset), "--out", str(out2),
                 "--metrics", "_bad_mean", "--letterbox", "-q", "--device", "cpu"]) == 0
    ev = _events(out2)["A_clip_000"]
    assert ev["status"] == "ok" and ev["normalizer"]["letterboxed"] is True
    frames, _ = read_video(out2 / "videos" / "A_clip_000.mp4")
    assert frames.shape[1:3] == (64, 64)
    # scaled to 64x43 and centred: black bars above and below, the picture in the middle
    assert frames[:, :8].max() <= 16 and frames[:, -8:].max() <= 16
    assert abs(float(frames[:, 28:36].mean()) - 200) < 3
    assert json.loads((out2 / "metrics.json").read_text())["normalizer"]["letterboxed"] == ["A_clip_000"]


def test_rounding_of_sizes_is_not_an_aspect_change():
    with pytest.raises(ClipFailure, match="66x64"):
        normalize_frames(level_frames(5, (66, 64)), 25.0, 5, (64, 64))  # 3 % (two pixels) wider than square
    for src in ((65, 64), (64, 63), (129, 128), (1000, 1008)):  # one pixel, or under 1 %: a plain resize
        out, info = normalize_frames(level_frames(5, src), 25.0, 5, (64, 64))
        assert out.shape == (5, 64, 64, 3) and info["resized"] and not info["letterboxed"], src


def test_frame_size_is_the_datasets_and_odd_or_mixed_sizes_name_the_clip(tmp_path, tiny_dataset, capsys):
    assert load_dataset(tiny_dataset).frame_size() == (64, 64)
    rows = [{"clip_id": "x1", "ref_image": "r.png", "audio": "a.wav", "frame_size": [63, 64]},
            {"clip_id": "x2", "ref_image": "r.png", "audio": "a.wav", "frame_size": [63, 64]}]
    root = tmp_path / "odd"
    root.mkdir()
    from PIL import Image

    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(root / "r.png")
    write_wav(root / "a.wav", tone(1.2))
    (root / MANIFEST_NAME).write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DatasetError, match=r"clip x1 of dataset 'odd' is 63x64.*--frame-size 62x64"):
        load_dataset(root).frame_size()
    out = tmp_path / "run"
    assert main(["run", "--method", "static", "--dataset", str(root), "--out", str(out),
                 "-q", "--device", "cpu"]) == 2
    assert "clip x1" in _err(capsys) and not out.exists()
    assert main(["run", "--method", "static", "--dataset", str(root), "--out", str(out), "-q",
                 "--device", "cpu", "--frame-size", "64x64"]) == 0
    rows[1]["frame_size"] = [128, 128]
    (root / MANIFEST_NAME).write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DatasetError, match=r"mixes frame sizes \(63x64: x1; 128x128: x2\); pass --frame-size"):
        load_dataset(root).frame_size()


# ----------------------------------------------------------------------------------------------------------
# Changed files, verify, silence
# ----------------------------------------------------------------------------------------------------------
def test_a_file_changed_since_the_manifest_fails_its_clip_in_run_and_eval(tiny_dataset, tmp_path):
    assert main(["data", "freeze", str(tiny_dataset)]) == 0
    ds = load_dataset(tiny_dataset)
    assert ds.pinned
    out = tmp_path / "run"
    assert main(["run", "--method", "static", "--dataset", str(tiny_dataset), "--out", str(out),
                 "-q", "--device", "cpu"]) == 0
    # after the run, A's GT video is replaced: eval must not score clip A against the new file
    gt_a = tiny_dataset / "gt" / "A_clip_000.mp4"
    shutil.copy(tiny_dataset / "gt" / "B_clip_000.mp4", gt_a)
    assert main(["eval", str(out), "--metrics", "_bad_mean,_bad_gt", "-q", "--device", "cpu"]) == 0
    doc = json.loads((out / "metrics.json").read_text())
    for name in ("_bad_mean", "_bad_gt"):
        why = doc["metrics"][name]["failures"]["A_clip_000"]
        assert why.startswith("gt_video ") and f"{gt_a.name} changed since the manifest was written" in why
    assert set(doc["metrics"]["_bad_mean"]["per_clip"]) == {"B_clip_000", "C_clip_000"}
    # and a new run uses no changed file either
    out2 = tmp_path / "run2"
    assert main(["run", "--method", "static", "--dataset", str(tiny_dataset), "--out", str(out2),
                 "-q", "--device", "cpu"]) == 0
    assert "changed since the manifest" in _events(out2)["A_clip_000"]["error"]
    assert _events(out2)["B_clip_000"]["status"] == "ok"


def test_verify_on_a_folder_says_it_has_no_pinned_checksums(tiny_dataset, capsys):
    assert main(["data", "verify", str(tiny_dataset)]) == 0
    out = capsys.readouterr().out
    assert "has no manifest.jsonl: its checksums are computed from the files themselves" in out
    assert f"kdbench data freeze {tiny_dataset}" in out and "readable (checksums not pinned)" in out
    assert main(["data", "freeze", str(tiny_dataset)]) == 0
    assert main(["data", "freeze", str(tiny_dataset)]) == 2  # never overwrites pinned checksums silently
    assert "pass --force" in _err(capsys)
    assert main(["data", "verify", str(tiny_dataset)]) == 0
    out = capsys.readouterr().out
    assert "NOTE" not in out and "matching its sha256" in out


def test_near_silent_audio_threshold():
    rng = np.random.default_rng(0)
    t = np.arange(32000) / 16000
    dither = rng.integers(-1, 2, 32000).astype(np.int16)
    hum = (80 * np.sin(2 * np.pi * 50 * t)).astype(np.int16)  # a faint 50 Hz hum, -55 dBFS
    for audio, level in ((dither, -92), (hum, -55)):
        assert loudness_dbfs(audio) == pytest.approx(level, abs=1.5)
        with pytest.raises(KdbenchError, match=f"near-silent: .* below the {SILENCE_DBFS:g} dBFS threshold"):
            check_audio(audio)
    with pytest.raises(KdbenchError, match="all samples are zero"):
        check_audio(np.zeros(32000, np.int16))
    check_audio(tone(2.0))
    check_audio((hum * 10).astype(np.int16))  # -35 dBFS: audible, passes


def test_real_speech_is_far_above_the_silence_threshold(hdtf_mini):
    for wav in sorted((hdtf_mini / "audio").glob("*.wav")):
        from kdbench.audio import read_audio

        assert loudness_dbfs(read_audio(wav)) > SILENCE_DBFS + 20, wav.name


def _bad_folder(tmp_path: Path, make_video) -> Path:
    """A folder dataset with one good clip and one clip per kind of bad file."""
    from PIL import Image

    root = tmp_path / "bad"
    for d in ("gt", "ref", "audio"):
        (root / d).mkdir(parents=True)
    good = make_video("good.mp4", 50, 25, (64, 64), audio_s=2.0)
    shutil.copy(good, root / "gt" / "good_000.mp4")
    (root / "gt" / "empty_000.mp4").write_bytes(b"")  # zero bytes
    (root / "gt" / "junk_000.mp4").write_bytes(b"this is not a video" * 50)
    _faststart_truncated(good, root / "gt" / "trunc_000.mp4")
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(root / "ref" / "img_000.png")
    (root / "ref" / "badimg_000.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    (root / "ref" / "zeroimg_000.png").write_bytes(b"")
    (root / "ref" / "dither_000.png").write_bytes((root / "ref" / "img_000.png").read_bytes())
    for cid in ("badimg_000", "zeroimg_000", "img_000"):
        write_wav(root / "audio" / f"{cid}.wav", tone(2.0))
    write_wav(root / "audio" / "dither_000.wav", np.random.default_rng(1).integers(-2, 3, 32000).astype(np.int16))
    return root


EXPECTED_REASONS = {
    "empty_000": "is empty (0 bytes)",
    "junk_000": "the file is damaged, truncated or not a valid video file",
    "trunc_000": "is truncated: its header declares 50 frames",
    "badimg_000": "damaged or not an image",
    "zeroimg_000": "is empty (0 bytes)",
    "dither_000": "audio is near-silent",
}


def test_damaged_files_fail_their_own_clip_and_verify_reports_each(tmp_path, make_video, capsys):
    root = _bad_folder(tmp_path, make_video)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    ds = load_dataset(root)  # loading never raises for one bad file
    assert len(ds) == 8
    rep = verify_dataset(ds)
    assert not rep.ok
    for cid, why in EXPECTED_REASONS.items():
        assert any(p.startswith(f"{cid}: ") and why in p for p in rep.problems), (cid, rep.problems)
    assert not any(p.startswith(("good_000", "img_000")) for p in rep.problems)
    assert not any("Errno" in p or "Traceback" in p for p in rep.problems)
    assert main(["data", "verify", str(root)]) == 1
    out = tmp_path / "run"
    assert main(["run", "--method", "static", "--dataset", str(root), "--out", str(out),
                 "-q", "--device", "cpu"]) == 0
    ev = _events(out)
    assert {c for c, e in ev.items() if e["status"] == "ok"} == {"good_000", "img_000"}
    for cid, why in EXPECTED_REASONS.items():
        assert ev[cid]["status"] == "failed" and why in ev[cid]["error"] and "traceback" not in ev[cid], cid
    assert "Traceback" not in capsys.readouterr().err
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before  # inputs untouched


def test_a_truncated_video_says_truncated_not_short_audio(tmp_path, make_video):
    src = make_video("full.mp4", 50, 25, (64, 64), audio_s=2.0)
    bad = _faststart_truncated(src, tmp_path / "cut.mp4", keep=0.9)
    for read in (probe_video, read_video):
        with pytest.raises(KdbenchError, match="is truncated: its header declares 50 frames"):
            read(bad)
    from kdbench.audio import read_audio

    with pytest.raises(KdbenchError, match=r"is truncated: its header declares 2.00 s of audio, only 1\.\d\d s"):
        read_audio(bad)
    moov_at_end = tmp_path / "cut2.mp4"
    moov_at_end.write_bytes(src.read_bytes()[:-300])
    with pytest.raises(KdbenchError, match="damaged, truncated or not a valid video file") as e:
        probe_video(moov_at_end)
    assert "Errno" not in str(e.value)
    with pytest.raises(KdbenchError, match="damaged, truncated or not a valid video file"):
        normalize_to_file(tmp_path / "o.mp4", tone(2.0), (64, 64), video_path=moov_at_end)


# ----------------------------------------------------------------------------------------------------------
# Manifests and results files
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("row, message", [
    ({"clip_id": 5}, ":2: field clip_id must be a non-empty string, got 5"),
    ({"clip_id": "b", "fps": "fast"}, ":2: field fps must be a number > 0, got 'fast'"),
    ({"clip_id": "b", "fps": -25}, ":2: field fps must be a number > 0, got -25"),
    ({"clip_id": "b", "n_frames": "200"}, ":2: field n_frames must be an integer >= 1 or null, got '200'"),
    ({"clip_id": "b", "sha256": ["x"]}, ":2: field sha256 must map file roles to hex strings"),
    ({"clip_id": "b", "gt_video": 3}, ":2: field gt_video must be a path string, got 3"),
    ({"clip_id": "b", "frame_size": [512]}, ":2: field frame_size must be [width, height] in pixels"),
    (["b"], ":2: a row must be a JSON object, got list"),
])
def test_manifest_fields_of_the_wrong_type_name_the_line_and_field(tmp_path, row, message, capsys):
    path = tmp_path / MANIFEST_NAME
    path.write_text(json.dumps({"clip_id": "a", "audio": "a.wav"}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(DatasetError) as e:
        read_manifest(path)
    assert str(e.value) == f"{path}{message}" or str(e.value).startswith(f"{path}{message}")
    assert main(["data", "ls", str(tmp_path)]) == 2
    assert message in _err(capsys)


def test_a_non_utf8_manifest_is_an_error_not_a_traceback(tmp_path, capsys):
    (tmp_path / MANIFEST_NAME).write_bytes(b'{"clip_id": "caf\xe9"}\n')
    assert main(["data", "verify", str(tmp_path)]) == 2
    assert "is not UTF-8 text (byte 16)" in _err(capsys)


def _results(tmp_path: Path, name: str, doc) -> Path:
    p = tmp_path / name
    p.write_bytes(doc if isinstance(doc, bytes) else json.dumps(doc).encode())
    return p


def _doc(mean: float) -> dict:
    return {"schema": "kdbench.metrics/1", "run": {"method": "static"}, "dataset": {"manifest_id": "m"},
            "metrics": {"cpbd": {"status": "ok", "info": {"version": "1", "outputs": {"cpbd": {}}},
                                 "aggregate": {"cpbd": {"mean": mean, "n": 1}}, "failures": {}}}}


@pytest.mark.parametrize("bad, fragment", [
    (b"\xff\xfe\x00garbage", "is not UTF-8 text"),
    (b'{"metrics": ', "is not valid JSON"),
    (json.dumps({"metrics": {"cpbd": "oops"}}).encode(), "malformed input"),
    (json.dumps([1, 2]).encode(), "does not hold a JSON object"),
])
def test_check_exits_2_for_unreadable_or_malformed_results_never_1(tmp_path, capsys, bad, fragment):
    base = _results(tmp_path, "base.json", _doc(0.5))
    res = _results(tmp_path, "res.json", bad)
    assert main(["check", str(res), "--baseline", str(base)]) == 2
    assert fragment in capsys.readouterr().out
    assert main(["report", str(res), "--out", str(tmp_path / "rep"), "--no-figures"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_check_exits_1_for_drift_only_and_2_for_a_crash(tmp_path, monkeypatch, capsys):
    base = _results(tmp_path, "base.json", _doc(0.5))
    assert main(["check", str(_results(tmp_path, "same.json", _doc(0.5))), "--baseline", str(base)]) == 0
    assert main(["check", str(_results(tmp_path, "drift.json", _doc(0.9))), "--baseline", str(base)]) == 1
    import reports.check

    def boom(*a, **k):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(reports.check, "check", boom)
    assert main(["check", str(base), "--baseline", str(base)]) == 2
    assert "simulated bug" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------
# CLI values, unwritable folders
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, fragment", [
    (["run", "--method", "static", "--limit", "-1"], "--limit: must be >= 1, got -1"),
    (["run", "--method", "static", "--limit", "0"], "--limit: must be >= 1, got 0"),
    (["run", "--method", "static", "--warmup", "-2"], "--warmup: must be >= 0"),
    (["run", "--method", "static", "--max-pad-frames", "-1"], "--max-pad-frames: must be >= 0"),
    (["run", "--method", "static", "--frame-size", "big"], "'big' is not WxH"),
    (["run", "--method", "static", "--frame-size", "63x64"], "must be even numbers >= 2"),
    (["run", "--method", "static", "--frame-size", "0x0"], "must be even numbers >= 2"),
    (["run", "--method", "static", "--grid", "three"], "bad --grid 'three': expected COLS[xROWS]:INDEX"),
    (["run", "--method", "static", "--grid", "3:7"], "panel 7 is out of range 0..2"),
    (["run", "--method", "static", "--grid", "0:0"], "a grid needs at least 2 panels"),
    (["eval", "runs/x", "--metrics", ""], "give comma-separated metric names"),
    (["eval", "runs/x", "--metrics", "lse,"], "give comma-separated metric names"),
    (["eval", "runs/x", "--metrics", "lse,nope"], "unknown metric(s) nope"),
    (["report", "runs/x", "--precision", "-1"], "must be 0..12 decimals, got -1"),
])
def test_out_of_range_cli_values_are_errors(argv, fragment, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = _err(capsys)
    assert fragment in err and "Traceback" not in err


def test_a_run_folder_with_non_utf8_files_is_an_error_not_a_bug_report(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--method", "static", "--dataset", str(tiny_dataset), "--out", str(out), "--limit", "1",
                 "-q", "--device", "cpu"]) == 0
    (out / "config.json").write_bytes(b"\xff\xfe" + (out / "config.json").read_bytes())
    assert main(["eval", str(out), "--metrics", "_bad_mean", "-q", "--device", "cpu"]) == 2
    err = _err(capsys)
    assert "UTF-8" in err and "internal error" not in err and "Traceback" not in err
    assert f"{out / 'config.json'} is not UTF-8 text" in err  # the file is named


def test_unwritable_out_and_kdbench_home_are_named(tiny_dataset, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert main(["run", "--method", "static", "--dataset", str(tiny_dataset), "--out", str(blocker / "run"),
                 "-q", "--device", "cpu"]) == 2
    err = _err(capsys)
    assert str(blocker) in err and "Traceback" not in err
    home = tmp_path / "home"
    monkeypatch.setenv("KDBENCH_HOME", str(home))
    msg = os_error_message(PermissionError(13, "Permission denied", str(home / "weights" / "x.pth")))
    assert msg == (f"Permission denied: {home / 'weights' / 'x.pth'}. kdbench keeps weights, data and caches under "
                   f"KDBENCH_HOME={home}: set KDBENCH_HOME to a writable folder")
    other = os_error_message(PermissionError(13, "Permission denied", str(tmp_path / "runs")))
    assert other.endswith("Choose a folder you can write to (--out), or fix the permissions")


# ----------------------------------------------------------------------------------------------------------
# Not applicable vs failed
# ----------------------------------------------------------------------------------------------------------
def test_clips_without_gt_are_not_applicable_not_failed(tiny_dataset, tmp_path, capsys):
    real = tmp_path / "real"
    assert main(["run", "--method", "real", "--dataset", str(tiny_dataset), "--out", str(real), "-q",
                 "--device", "cpu"]) == 0
    assert "1 failed" not in capsys.readouterr().out
    assert _events(real)["C_clip_000"]["status"] == "not_applicable"
    assert main(["eval", str(real), "--metrics", "_bad_mean", "-q", "--device", "cpu"]) == 0
    m = json.loads((real / "metrics.json").read_text())["metrics"]["_bad_mean"]
    assert m["failures"] == {} and list(m["not_applicable"]) == ["C_clip_000"]
    assert m["aggregate"]["level"]["n"] == 2 and m["aggregate"]["level"]["n_failed"] == 0
    assert m["aggregate"]["level"]["n_not_applicable"] == 1
    static = tmp_path / "static"
    main(["run", "--method", "static", "--dataset", str(tiny_dataset), "--out", str(static), "-q", "--device", "cpu"])
    assert main(["eval", str(static), "--metrics", "_bad_gt", "-q", "--device", "cpu"]) == 0
    g = json.loads((static / "metrics.json").read_text())["metrics"]["_bad_gt"]
    assert g["failures"] == {} and g["not_applicable"] == {"C_clip_000": "no GT video for this clip"}
    from reports.table import build_table

    text = build_table([real], other=True).to_markdown()
    assert "(n=2, 1 n/a)" in text
    assert "1 clip(s) not applicable: not generated: no GT video for this clip" in text


# ----------------------------------------------------------------------------------------------------------
# Small things a newcomer hit
# ----------------------------------------------------------------------------------------------------------
def test_failures_are_grouped_by_reason_with_counts():
    fails = {f"c{i}": "no face detected" for i in range(5)} | {"d0": "audio is silent", "d1": "audio is silent"}
    assert failure_groups(fails) == ["5 clip(s): no face detected (c0, c1, c2 …)",
                                     "2 clip(s): audio is silent (d0, d1)"]
    missing = {c: f"no video {c}.mp4 in theirs" for c in ("x_000", "y_000")}
    assert failure_groups(missing | {"a": "no face"}) == ["2 clip(s): no video <clip>.mp4 in theirs (x_000, y_000)",
                                                          "1 clip(s): no face (a)"]


def test_ls_metrics_fits_the_terminal_and_long_has_the_details(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "100")
    assert main(["ls", "metrics"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 100
    assert "lse" in out and "--long" in out
    assert main(["ls", "metrics", "--long"]) == 0
    long = capsys.readouterr().out
    assert max(len(line) for line in long.splitlines()) <= 100
    assert "  version: " in long and "  weights: syncnet_v2" in long


def test_check_help_names_the_committed_baseline(capsys):
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    out = capsys.readouterr().out
    assert "ci/baselines/static-hdtf-mini.json" in out and "tests/baselines" not in out
    assert (Path(__file__).resolve().parent.parent / "ci" / "baselines" / "static-hdtf-mini.json").is_file()


def test_kdbench_data_may_name_hdtf_mini_itself_or_its_parent(hdtf_mini, tmp_path, monkeypatch):
    import kdbench.hdtf_mini as hm

    copy = tmp_path / "data" / "hdtf-mini"
    for rel in hm.FILES:
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(hdtf_mini / rel, copy / rel)
    monkeypatch.setattr(hm, "_shared_root", lambda: tmp_path / "nowhere")
    monkeypatch.setenv("KDBENCH_HOME", str(tmp_path / "home"))
    for env in (copy, copy.parent):
        monkeypatch.setenv("KDBENCH_DATA", str(env))
        assert hm.hdtf_mini_root(download=False) == copy
    monkeypatch.setenv("KDBENCH_DATA", str(tmp_path / "empty"))
    with pytest.raises(DatasetError, match="set KDBENCH_DATA to the hdtf-mini folder or the folder that contains it"):
        hm.hdtf_mini_root(download=False)
