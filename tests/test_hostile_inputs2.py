"""Hostile inputs, round two (issue 26 items 5, 6, 7, 9; issue 27 item 2.1): each test builds the bad input
itself and asserts the exit code and the message, and that nothing else changed.

- ``kdbench check`` with NaN, ±Infinity, ``true``, lists or numbers written as strings, in the results, the
  baseline or the tolerance file: exit 2 naming the file and the key (never drift, never ok).
- variable-frame-rate videos: resampled by their timestamps, recorded as ``vfr``.
- files with two video streams: the stream ffmpeg picks is scored and recorded.
- metric options: declared ranges, refused before anything runs; a ``--set`` key given twice; NaN/Infinity.
- ``kdbench check --help``'s example pastes into bash and copying methods have no FPS to drift.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from kdbench.cli import main
from kdbench.normalize import normalize_to_file, resample_indices, resample_indices_by_time
from kdbench.runstore import RunStore
from kdbench.video import is_vfr, pick_video_stream, probe_video, read_video

REPO = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------------------------------------
# 5. kdbench check: non-finite or non-numeric values are incomparable (2), named by file and key
# ----------------------------------------------------------------------------------------------------------
def _doc(mean, per_clip=None) -> dict:
    return {"schema": "kdbench.metrics/1", "run": {"method": "kdtalker"}, "dataset": {"manifest_id": "m"},
            "metrics": {"cpbd": {"status": "ok", "info": {"version": "1", "outputs": {"cpbd": {}}}, "options": {},
                                 "aggregate": {"cpbd": {"mean": mean, "std": 0.0, "n": 2}}, "failures": {},
                                 "per_clip": per_clip or {"a": {"cpbd": 0.5}, "b": {"cpbd": 0.5}}}}}


def _write(tmp_path: Path, name: str, doc: dict) -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(doc, allow_nan=True))  # NaN / Infinity as the bare tokens Python's json writes
    return p


BAD_VALUES = [(math.nan, "NaN"), (math.inf, "Infinity"), (-math.inf, "-Infinity"), (True, "true"),
              ([0.5], "[0.5]"), ("0.5", '"0.5"')]


@pytest.mark.parametrize("value, shown", BAD_VALUES, ids=[s for _, s in BAD_VALUES])
@pytest.mark.parametrize("side", ["results", "baseline"])
def test_check_a_bad_value_on_either_side_exits_2_naming_file_and_key(tmp_path, capsys, value, shown, side):
    good, bad = _write(tmp_path, "good.json", _doc(0.5)), _write(tmp_path, "bad.json", _doc(value))
    res, base = (bad, good) if side == "results" else (good, bad)
    before = bad.read_bytes()
    assert main(["check", str(res), "--baseline", str(base)]) == 2
    out = capsys.readouterr().out
    assert f"  - bad value: {side} {bad}: metrics.cpbd.aggregate.cpbd.mean is {shown}, not a finite number " \
           "(or null)" in out
    assert out.rstrip().endswith("exit 2: inputs not comparable (regenerate the baseline if the change is intended).")
    assert bad.read_bytes() == before
    # --json says the same and is valid JSON (no bare NaN token)
    assert main(["check", str(res), "--baseline", str(base), "--json"]) == 2
    rep = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"bare {c} in --json"))
    assert rep["status"] == "incomparable" and rep["exit_code"] == 2
    assert any(f"metrics.cpbd.aggregate.cpbd.mean is {shown}" in r for r in rep["incomparable"])


def test_check_nan_against_nan_is_not_ok(tmp_path, capsys):
    a, b = _write(tmp_path, "a.json", _doc(math.nan)), _write(tmp_path, "b.json", _doc(math.nan))
    assert main(["check", str(a), "--baseline", str(b)]) == 2
    out = capsys.readouterr().out
    assert f"bad value: results {a}: metrics.cpbd.aggregate.cpbd.mean is NaN" in out
    assert f"bad value: baseline {b}: metrics.cpbd.aggregate.cpbd.mean is NaN" in out


def test_check_bad_per_clip_values_and_counts(tmp_path, capsys):
    good = _write(tmp_path, "good.json", _doc(0.5))
    clips = _write(tmp_path, "clips.json", _doc(0.5, {"a": {"cpbd": math.nan}, "b": {"cpbd": "0.5"}}))
    assert main(["check", str(clips), "--baseline", str(good)]) == 0  # per-clip values are not compared...
    capsys.readouterr()
    assert main(["check", str(clips), "--baseline", str(good), "--per-clip"]) == 2  # ...unless asked
    out = capsys.readouterr().out
    assert f"bad value: results {clips}: metrics.cpbd.per_clip.a.cpbd is NaN, not a finite number (or null)" in out
    assert f"bad value: results {clips}: metrics.cpbd.per_clip.b.cpbd is \"0.5\", not a finite number" in out
    doc = _doc(0.5)
    doc["metrics"]["cpbd"]["aggregate"]["cpbd"]["n"] = 2.5
    n = _write(tmp_path, "n.json", doc)
    assert main(["check", str(n), "--baseline", str(good)]) == 2
    assert "metrics.cpbd.aggregate.cpbd.n is 2.5, not a count (an integer >= 0)" in capsys.readouterr().out


@pytest.mark.parametrize("toml, fragment", [
    ("[default]\natol = nan\n", "[default] atol must be a finite number >= 0, got nan"),
    ("[fps]\nrtol = inf\n", "[fps] rtol must be a finite number >= 0, got inf"),
    ("[cpbd.cpbd]\nclip_atol = -inf\n", "[cpbd.cpbd] clip_atol must be a finite number >= 0, got -inf"),
    ("[cpbd]\natol = \"0.1\"\n", "[cpbd] atol must be a finite number >= 0, got '0.1'"),
    ("[cpbd]\natol = true\n", "[cpbd] atol must be a finite number >= 0, got True"),
    ("[cpbd]\ncheck = \"no\"\n", "[cpbd] check must be true or false, got 'no'"),
])
def test_tolerance_file_with_nan_or_inf_exits_2_naming_file_and_key(tmp_path, capsys, toml, fragment):
    same = _write(tmp_path, "same.json", _doc(0.5))
    tol = tmp_path / "tol.toml"
    tol.write_text(toml)
    assert main(["check", str(same), "--baseline", str(same), "--tolerance", str(tol)]) == 2
    out = capsys.readouterr().out
    assert f"  - tolerance file {tol}: {fragment}" in out
    assert main(["check", str(same), "--baseline", str(same), "--tolerance", str(tol), "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["status"] == "incomparable"  # complete, not truncated


# ----------------------------------------------------------------------------------------------------------
# issue 27, 2.1: copying methods have no FPS, in eval, in a baseline, in a drift check; the help example pastes
# ----------------------------------------------------------------------------------------------------------
def test_check_help_example_is_valid_shell_and_names_the_committed_baseline(capsys):
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    text = capsys.readouterr().out
    lines = [ln.strip() for ln in text[text.index("examples:"):text.index("exit status:")].splitlines()[1:]
             if ln.strip()]
    assert "kdbench check runs/static --baseline ci/baselines/static-hdtf-mini.json   # the committed baseline" in lines
    for line in lines:  # each line parses as a shell command (a comment at most), and with kdbench's parser
        subprocess.run(["bash", "-n", "-c", line], check=True)
        lex = shlex.shlex(line, posix=True, punctuation_chars=True)
        lex.whitespace_split = True
        argv = list(lex)
        argv = argv[:next((i for i, a in enumerate(argv) if a in (">", ">>", "|", "&&", ";")), len(argv))]
        assert argv[0] == "kdbench"
        from kdbench.cli import build_parser

        build_parser().parse_args(argv[1:])


def test_committed_baseline_has_no_fps_for_the_copying_static_row():
    doc = json.loads((REPO / "ci" / "baselines" / "static-hdtf-mini.json").read_text())
    assert doc["run"]["method"] == "static" and doc["run"]["copies_input"] is True
    fps = doc["metrics"]["fps"]
    assert fps["status"] == "skipped" and "copies its input" in fps["skip_reason"] and not fps["aggregate"]


def test_check_does_not_compare_fps_of_a_copying_method(tmp_path, capsys):
    """A baseline from an older eval (FPS of a file copy, 3e6) against a run with another copy speed: not drift."""
    def static(fps: float) -> dict:
        d = _doc(0.5)
        d["run"] = {"method": "static"}
        d["metrics"]["fps"] = {"status": "ok", "info": {"version": "1", "outputs": {"fps": {}}}, "options": {},
                               "aggregate": {"fps": {"mean": fps, "n": 2}}, "failures": {}}
        return d

    base, res = _write(tmp_path, "base.json", static(3.05e6)), _write(tmp_path, "res.json", static(5.27e6))
    assert main(["check", str(res), "--baseline", str(base)]) == 0
    out = capsys.readouterr().out
    assert "unchecked (static copies its input: no FPS)" in out and "exit 0: all 1 compared value(s)" in out
    # a generating method's FPS is still compared
    for p in (base, res):
        d = json.loads(p.read_text())
        d["run"]["method"] = "kdtalker"
        p.write_text(json.dumps(d))
    assert main(["check", str(res), "--baseline", str(base)]) == 1


# ----------------------------------------------------------------------------------------------------------
# 9. metric options: declared ranges, checked before anything runs
# ----------------------------------------------------------------------------------------------------------
def test_every_metric_option_declares_its_range():
    from kdbench.options import undeclared_ranges
    from kdbench.registry import METRICS

    missing = {n: undeclared_ranges(METRICS.get(n)) for n in METRICS.names() if not n.startswith("_")}
    assert not {n: m for n, m in missing.items() if m}, missing


@pytest.mark.parametrize("sets, message", [
    (["cpbd.stride=0"], "option out of range: cpbd.stride=0 is out of range: it must be >= 1"),
    (["cpbd.stride=-1"], "cpbd.stride=-1 is out of range: it must be >= 1"),
    (["cpbd.max_frames=-5"], "cpbd.max_frames=-5 is out of range: it must be >= 1"),
    (["cpbd.workers=0"], "cpbd.workers=0 is out of range: it must be in [1, 256]"),
    (["cpbd.workers=-3"], "cpbd.workers=-3 is out of range: it must be in [1, 256]"),
    (["cpbd.workers=1e9"], "cpbd.workers=1000000000.0 is out of range: it must be in [1, 256]"),
    (["cpbd.size=0"], "cpbd.size=0 is out of range: it must be in [64, 8192]"),
    (["cpbd.grey=rgb"], "cpbd.grey='rgb' is not one of 'pil', 'skimage'"),
    (["csim_dlib.upsample=-1"], "csim_dlib.upsample=-1 is out of range: it must be in [0, 8]"),
    (["fid.batch_size=0"], "fid.batch_size=0 is out of range: it must be in [1, 4096]"),
    (["lse.conf_th=1.5"], "lse.conf_th=1.5 is out of range: it must be in [0, 1]"),
    (["lse.facedet_scale=0"], "lse.facedet_scale=0 is out of range: it must be in (0, 4]"),
    (["diversity.conf_threshold=NaN"], "option not a finite number: diversity.conf_threshold='NaN' must be a "
                                       "finite number (NaN and Infinity are refused)"),
    (["lse.conf_th=Infinity"], "lse.conf_th='Infinity' must be a finite number"),
    (["pose_offline.cnn_conf_threshold=-Infinity"], "pose_offline.cnn_conf_threshold='-Infinity' must be a finite"),
    (["cpbd.workers=2", "cpbd.workers=4"], "--set cpbd.workers is given twice ('cpbd.workers=2' and "
                                           "'cpbd.workers=4'): give each option once"),
])
def test_bad_metric_options_exit_2_before_anything_runs(tiny_dataset, tmp_path, capsys, sets, message):
    run = tmp_path / "run"
    assert main(["run", "--method", "static", "--dataset", str(tiny_dataset), "--out", str(run), "-q"]) == 0
    files = sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    metrics = sorted({s.split(".")[0] for s in sets})
    argv = ["eval", str(run), "--metrics", ",".join(metrics), "-q"] + [a for s in sets for a in ("--set", s)]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*")) == files  # no metrics.json, nothing written


def test_option_checks_in_the_api_too():
    from kdbench.errors import KdbenchError
    from kdbench.options import Range, check_option_types

    with pytest.raises(KdbenchError, match=r"m.x=nan must be a finite number"):
        check_option_types("m", {"x": math.nan}, {"x": 1.0})
    with pytest.raises(KdbenchError, match=r"m.x=\[1, inf\] must be a finite number"):
        check_option_types("m", {"x": [1, math.inf]}, {"x": None})
    with pytest.raises(KdbenchError, match=r"m.n=0 is out of range: it must be >= 1"):
        check_option_types("m", {"n": "0"}, {"n": 5}, ranges={"n": Range(1)})
    assert check_option_types("m", {"n": "3", "p": "nan"}, {"n": 5, "p": "a"}, ranges={"n": Range(1)}) == {
        "n": 3, "p": "nan"}  # text options may be any text
    from kdbench.config import parse_value

    assert parse_value("NaN") == "NaN" and parse_value("-Infinity") == "-Infinity" and parse_value("1e9") == 1e9


def test_nan_never_reaches_metrics_json_as_a_bare_token(tiny_dataset, tmp_path, capsys):
    """A method option with no declared kind still cannot carry NaN: --set keeps it as the text "NaN"."""
    from kdbench.config import parse_sets

    assert parse_sets(["x=NaN"]) == {"x": "NaN"}
    assert json.dumps(parse_sets(["x=NaN", "y=Infinity"]), allow_nan=False)


# ----------------------------------------------------------------------------------------------------------
# 6. variable frame rate: resampled by timestamp
# ----------------------------------------------------------------------------------------------------------
def _index_frames(n: int, size=(64, 64)) -> np.ndarray:
    """Frame i shows i in binary: 8 vertical stripes, stripe b white when bit b of i is set (survives lossy coding
    and resizing)."""
    w, h = size
    bits = (np.arange(n)[:, None] >> np.arange(8)[None, :]) & 1  # [n, 8]
    cols = np.repeat(bits, w // 8, axis=1).astype(np.uint8) * 255  # [n, w]
    return np.broadcast_to(cols[:, None, :, None], (n, h, w, 3)).copy()


def _indices(frames: np.ndarray) -> np.ndarray:
    """The index each frame of :func:`_index_frames` shows."""
    n, h, w, _ = frames.shape
    stripes = frames[..., 0].reshape(n, h, 8, w // 8).mean(axis=(1, 3)) > 128  # [n, 8]
    return (stripes * (1 << np.arange(8))).sum(axis=1)


def write_vfr(path: Path, times_ms, size=(64, 64)) -> Path:
    """An H.264 mp4 whose frame i (:func:`_index_frames`) is presented at ``times_ms[i]`` (a 1 ms time base)."""
    frames = _index_frames(len(times_ms), size)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = size[0], size[1], "yuv420p"
        vs.time_base = vs.codec_context.time_base = Fraction(1, 1000)
        vs.options = {"crf": "0"}
        for f, t in zip(frames, times_ms, strict=True):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts, vf.time_base = int(t), Fraction(1, 1000)
            for p in vs.encode(vf):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
    return path


def _uneven_times(n: int = 50, seed: int = 1) -> np.ndarray:
    """``n`` timestamps (ms) averaging 25 fps (40 ms) with intervals from 10 to 70 ms."""
    d = np.random.default_rng(seed).integers(10, 71, n - 1)
    d = np.rint(d * ((n - 1) * 40 / d.sum())).astype(int)
    return np.concatenate([[0], np.cumsum(d)])


def _nearest(times_s: np.ndarray, n_out: int) -> np.ndarray:
    """Reference rule, independent of kdbench: for i/25 s the frame with the nearest timestamp, later on a tie."""
    out = []
    for i in range(n_out):
        dist = np.abs(times_s - i / 25)
        out.append(int(np.flatnonzero(dist <= dist.min() + 1e-12)[-1]))
    return np.array(out)


def test_vfr_is_detected_from_timestamps_and_resampled_by_them(tmp_path, tiny_dataset):
    from kdbench.audio import read_audio

    times = _uneven_times()
    src = write_vfr(tmp_path / "vfr.mp4", times)
    info = probe_video(src)
    assert info.vfr and info.n_frames == 50 and abs(info.fps - 25) < 0.1  # averages 25 fps: looks conforming
    expected = _nearest(times / 1000, 50)
    by_index = resample_indices(50, info.fps, 50)
    assert (expected != by_index).sum() >= 25  # what ignoring the timestamps scores instead
    assert np.array_equal(resample_indices_by_time([Fraction(int(t), 1000) for t in times], 50), expected)
    audio = read_audio(tiny_dataset / "gt" / "A_clip_000.mp4")
    rep = normalize_to_file(tmp_path / "out.mp4", audio, (64, 64), video_path=src)
    assert rep.vfr and rep.resampled and rep.reencoded and rep.n_frames == 50
    got, fps = read_video(tmp_path / "out.mp4")
    assert fps == 25 and np.array_equal(_indices(got), expected)
    assert not probe_video(tmp_path / "out.mp4").vfr


def test_vfr_through_eval_videos_is_recorded(tmp_path, tiny_dataset, capsys):
    vids = tmp_path / "theirs"
    vids.mkdir()
    write_vfr(vids / "A_clip_000.mp4", _uneven_times())
    write_vfr(vids / "B_clip_000.mp4", np.arange(50) * 40)  # constant 25 fps: kept as it is
    out = tmp_path / "ext"
    assert main(["eval", "--videos", str(vids), "--dataset", str(tiny_dataset), "--out", str(out), "--metrics", "fps",
                 "-q", "--device", "cpu"]) == 0
    ev = RunStore(out).clip_events()
    assert ev["A_clip_000"]["normalizer"]["vfr"] is True and ev["A_clip_000"]["normalizer"]["resampled"] is True
    assert ev["B_clip_000"]["normalizer"]["vfr"] is False and ev["B_clip_000"]["normalizer"]["reencoded"] is False


def test_constant_rate_timestamps_are_not_vfr():
    assert not is_vfr(np.arange(200) * 512)  # mp4 at 25 fps, 1/12800
    assert not is_vfr(np.rint(np.arange(300) * 1000 / 30))  # Matroska 1 ms ticks at 30 fps: 33/34 ms
    assert not is_vfr(np.arange(100) * 1001)  # 29.97 fps, 1/30000
    assert is_vfr(_uneven_times())


def test_timestamps_going_backwards_fail_the_clip_saying_why(tmp_path, monkeypatch):
    import kdbench.video as kv
    from kdbench.errors import KdbenchError

    src = write_vfr(tmp_path / "ok.mp4", np.arange(50) * 40)
    _, _, t = kv.read_video_timed(src)
    assert [float(x) for x in t[:3]] == [0.0, 0.04, 0.08]
    real = kv._iter_decoded

    def backwards(path, max_frames=None):  # a broken file's timing: frame 10 presented before frame 9
        for i, (f, ts) in enumerate(real(path, max_frames)):
            yield f, (ts - Fraction(1) if i == 10 else ts)

    monkeypatch.setattr(kv, "_iter_decoded", backwards)
    with pytest.raises(KdbenchError, match=r"frame timestamps go backwards at frame 10 \(0.360 s, then -0.600 s\)"):
        kv.read_video_timed(src)


# ----------------------------------------------------------------------------------------------------------
# 7. two video streams: the one ffmpeg picks, recorded
# ----------------------------------------------------------------------------------------------------------
def write_two_streams(path: Path, default: str = "muxer") -> Path:
    """Stream 0: a 32x32 still (level 200); stream 1: 64x64 frames encoding their index. ``default``: which
    stream carries the *default* disposition ("muxer": whatever the mp4 muxer sets, the first; "1"; "both")."""
    from av.stream import Disposition

    with av.open(str(path), "w") as out:
        still = out.add_stream("libx264", rate=25)
        moving = out.add_stream("libx264", rate=25)
        for s, side in ((still, 32), (moving, 64)):
            s.width = s.height = side
            s.pix_fmt, s.options = "yuv420p", {"crf": "0"}
        if default == "1":
            still.disposition, moving.disposition = Disposition(0), Disposition.default
        elif default == "both":
            still.disposition = moving.disposition = Disposition.default
        frames = _index_frames(50)
        for i in range(50):
            for s, f in ((still, np.full((32, 32, 3), 200, np.uint8)), (moving, frames[i])):
                for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    out.mux(p)
        for s in (still, moving):
            for p in s.encode():
                out.mux(p)
    return path


def _ffmpeg_choice(path: Path) -> int | None:
    """The input stream ``ffmpeg -i path OUT`` maps (the imageio-ffmpeg binary of the test extra), else None."""
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    res = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path), "-frames:v", "1",
                          "-f", "null", "-"], capture_output=True, text=True)
    m = re.search(r"Stream #0:(\d+) -> #0:0", res.stderr)
    return int(m.group(1)) if m else None


@pytest.mark.parametrize("default, chosen", [("muxer", 0), ("1", 1), ("both", 1)])
def test_two_video_streams_the_one_ffmpeg_picks_is_read_and_recorded(tmp_path, tiny_dataset, default, chosen):
    from kdbench.audio import read_audio

    src = write_two_streams(tmp_path / "two.mp4", default)
    ff = _ffmpeg_choice(src)
    assert ff in (None, chosen)  # the same choice as ffmpeg itself
    with av.open(str(src)) as c:
        assert len(c.streams.video) == 2 and pick_video_stream(c).index == chosen
    info = probe_video(src)
    assert (info.stream, info.n_video_streams, info.width) == (chosen, 2, 64 if chosen else 32)
    frames, _ = read_video(src)
    assert frames.shape[1] == (64 if chosen else 32)
    audio = read_audio(tiny_dataset / "gt" / "A_clip_000.mp4")
    rep = normalize_to_file(tmp_path / "out.mp4", audio, (64, 64), video_path=src)
    assert rep.stream == chosen and rep.n_video_streams == 2
    got, _ = read_video(tmp_path / "out.mp4")
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert len(c.streams.video) == 1  # the normalised video holds the scored stream only
    if chosen:
        assert np.array_equal(_indices(got), np.arange(50))
    else:
        assert np.allclose(got.reshape(50, -1).mean(axis=1), 200, atol=1)


def test_two_video_streams_through_eval_videos_record_the_stream(tmp_path, tiny_dataset):
    vids = tmp_path / "theirs"
    vids.mkdir()
    write_two_streams(vids / "A_clip_000.mp4", "1")
    out = tmp_path / "ext"
    assert main(["eval", "--videos", str(vids), "--dataset", str(tiny_dataset), "--out", str(out), "--metrics", "fps",
                 "-q", "--device", "cpu"]) == 0
    rec = RunStore(out).clip_events()["A_clip_000"]["normalizer"]
    assert (rec["stream"], rec["n_video_streams"]) == (1, 2)
