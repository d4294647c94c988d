"""Hostile input, round two, the data part: results files and run folders are input like any other,
the run store never writes over its inputs, clip ids read as what they are, identities follow content, and a
full disk is one line per clip. Every bad input is built here; each test asserts the exit code, the message and
that nothing else changed."""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from report_fixtures import make_doc, write_run

from kdbench.cli import main
from kdbench.dataset import MANIFEST_NAME, clip_id_problem, load_dataset
from kdbench.errors import DatasetError, KdbenchError
from kdbench.metric import Metric, MetricInfo, Output
from kdbench.registry import METRICS
from kdbench.runstore import RunStore
from kdbench.video import write_video


class _Level(Metric):
    """Mean grey level of the scored video: cheap and deterministic."""

    info = MetricInfo(name="_r2_level", version="1", description="mean level", outputs={"level": Output(None)})

    def score_clip(self, clip):
        return {"level": float(clip.frames.mean())}


if "_r2_level" not in METRICS.names():
    METRICS.register("_r2_level")(_Level)


def _snapshot(root: Path) -> dict[str, str]:
    """``{relative path: sha256 | '->link' | 'dir'}`` of everything under ``root``: "nothing else changed"."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "->" + str(p.readlink())
        elif p.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _video_run(folder: Path, clips: list[str], doc_clips: list[str] | None = None, **doc) -> Path:
    """A run folder with ``metrics.json`` (CPBD values for ``doc_clips``) and a 4-frame video per clip."""
    ids = doc_clips or clips
    write_run(folder, make_doc("kdtalker", {"cpbd": {"cpbd": [0.2 + 0.01 * i for i in range(len(ids))]}},
                               clips=ids, **doc))
    for i, cid in enumerate(clips):
        write_video(folder / "videos" / f"{cid}.mp4", np.full((4, 32, 32, 3), 40 * i, np.uint8), 25)
    return folder


# ----------------------------------------------------------------------------------------------------------
# 1. `kdbench report` trusts nothing in a run folder
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["per_clip", "failures", "not_applicable"])
def test_report_refuses_a_path_as_clip_id_and_writes_nothing(tmp_path, key, capsys):
    """A per-clip key ``../../../victim/precious`` would make the gallery unlink and replace
    ``victim/precious.mp4`` outside the report folder; the report refuses the results file instead."""
    bad = "../../../victim/precious"
    run = _video_run(tmp_path / "runs" / "kd", ["A_clip_000"])
    doc = json.loads((run / "metrics.json").read_text())
    entry = doc["metrics"]["cpbd"]
    entry.setdefault(key, {})[bad] = {"cpbd": 0.5} if key == "per_clip" else "forged"
    (run / "metrics.json").write_text(json.dumps(doc))
    victim = tmp_path / "victim" / "precious.mp4"
    victim.parent.mkdir()
    victim.write_bytes(b"precious")
    shutil.copy(run / "videos" / "A_clip_000.mp4", run / "videos" / "precious.mp4")  # the name the gallery links
    before = _snapshot(tmp_path)
    out = tmp_path / "out" / "r"
    assert main(["report", str(run), "--out", str(out), "--no-figures", "--ci", "none"]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {run / 'metrics.json'}: metrics.cpbd.{key}: {clip_id_problem(bad)}. A clip id is a file "
                   "name: was this file edited?\n")
    assert _snapshot(tmp_path) == before and victim.read_bytes() == b"precious" and not out.exists()
    # `kdbench check` reads results the same way: not comparable (2), never drift
    assert main(["check", str(run), "--baseline", str(run)]) == 2
    assert clip_id_problem(bad) in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["../x", ".hidden", "a\u202eb", "a\u200bb", "x "])
def test_gallery_skips_bad_clip_ids_even_from_results_not_read_from_disk(tmp_path, bad):
    """Defence in depth: :func:`build_gallery` on a results document that bypassed :func:`load_run`."""
    from reports.gallery import build_gallery
    from reports.runs import RunResult
    from reports.table import build_table

    run = _video_run(tmp_path / "runs" / "kd", ["A_clip_000"], doc_clips=["A_clip_000", bad])
    doc = json.loads((run / "metrics.json").read_text())
    g = build_gallery(build_table([RunResult(doc=doc, path=run)]), tmp_path / "out")
    assert [c.clip_id for c in g.clips] == ["A_clip_000"]
    assert sorted(p.name for p in (tmp_path / "out" / "gallery" / "kdtalker").iterdir()) == [
        "A_clip_000.jpg", "A_clip_000.mp4"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "runs"]


def test_gallery_ignores_a_video_that_links_out_of_its_run_folder(tmp_path):
    from reports.gallery import run_video
    from reports.runs import load_run

    run = _video_run(tmp_path / "runs" / "kd", ["A_clip_000"], doc_clips=["A_clip_000", "B_clip_000"])
    secret = tmp_path / "secret.mp4"
    shutil.copy(run / "videos" / "A_clip_000.mp4", secret)
    (run / "videos" / "B_clip_000.mp4").symlink_to(secret)
    r = load_run(run)
    assert run_video(r, "A_clip_000") == run / "videos" / "A_clip_000.mp4"
    assert run_video(r, "B_clip_000") is None


@pytest.mark.parametrize("link", ["table.md", "report.html", "gallery", "figures", "gallery/kdtalker/A_clip_000.mp4",
                                  "report"])
def test_report_never_writes_through_a_link_in_the_report_folder(tmp_path, link, capsys):
    """The default --out of one run is RUN_DIR/report, inside a folder that may come from elsewhere: a link
    planted there (a file, a folder on the way, or the report folder itself) is refused before anything is
    written."""
    run = _video_run(tmp_path / "runs" / "kd", ["A_clip_000"])
    outside = tmp_path / "home"
    outside.mkdir()
    (outside / "precious").write_bytes(b"precious")
    target = outside / "precious" if "." in Path(link).name else outside
    planted = run / "report" / link if link != "report" else run / "report"
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.symlink_to(target)
    before = _snapshot(tmp_path)
    assert main(["report", str(run), "--no-figures", "--ci", "none", "--format", "md,html"]) == 2
    err = capsys.readouterr().err
    folder = run / "report" if link != "report" else run
    assert err == (f"error: {planted} is a symbolic link (to {target}): the report writes only inside its folder "
                   f"{folder}, so it will not write through a link; remove the link or choose another --out\n")
    assert _snapshot(tmp_path) == before


def test_report_writes_inside_an_out_folder_that_is_itself_a_link(tmp_path):
    """A link the user gives as --out is the user's choice: the report is written where it leads."""
    run = _video_run(tmp_path / "runs" / "kd", ["A_clip_000"])
    real = tmp_path / "elsewhere"
    real.mkdir()
    (tmp_path / "out").symlink_to(real)
    assert main(["report", str(run), "--out", str(tmp_path / "out"), "--no-figures", "--ci", "none",
                 "--format", "md,html"]) == 0
    assert (real / "table.md").is_file() and (real / "gallery" / "kdtalker" / "A_clip_000.mp4").is_file()


# ----------------------------------------------------------------------------------------------------------
# 2. The run store never writes into or over its inputs
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["D", "D/videos", "D/videos/sub", "link"])
def test_eval_videos_refuses_an_out_that_would_overwrite_the_input_videos(tiny_dataset, tmp_path, layout, capsys):
    d = tmp_path / "D"
    (d / "videos").mkdir(parents=True)
    for cid in ("A_clip_000", "B_clip_000"):
        shutil.copy(tiny_dataset / "gt" / f"{cid}.mp4", d / "videos" / f"{cid}.mp4")
    videos = d / "videos"
    if layout == "link":  # the input named through a link: still the same folder
        (tmp_path / "mine").symlink_to(videos)
        videos = tmp_path / "mine"
    out = d if layout in ("D", "link") else tmp_path / layout
    before = _snapshot(tmp_path)
    assert main(["eval", "--videos", str(videos), "--dataset", str(tiny_dataset), "--out", str(out),
                 "--metrics", "_r2_level", "-q", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    where = {"D": "would write its videos into", "D/videos": "is", "D/videos/sub": "lies inside",
             "link": "would write its videos into"}[layout]
    shown = f"{videos} (resolved: {d / 'videos'})" if layout == "link" else str(videos)
    assert err == (f"error: --out {out} {where} the --videos folder {shown}: the run store writes {out / 'videos'}"
                   f"/<clip_id>.mp4 and {out / 'config.json'}, so the input files would be overwritten by their "
                   f"normalised copies. Nothing was written; choose an --out outside {videos}\n")
    assert _snapshot(tmp_path) == before  # input videos byte-identical, no run folder, nothing else


def test_eval_videos_next_to_its_output_is_fine(tiny_dataset, tmp_path):
    """--videos D/mine --out D: the run store writes D/videos and D/config.json, never D/mine."""
    d = tmp_path / "D"
    (d / "mine").mkdir(parents=True)
    shutil.copy(tiny_dataset / "gt" / "A_clip_000.mp4", d / "mine" / "A_clip_000.mp4")
    before = (d / "mine" / "A_clip_000.mp4").read_bytes()
    assert main(["eval", "--videos", str(d / "mine"), "--dataset", str(tiny_dataset), "--out", str(d),
                 "--metrics", "_r2_level", "-q", "--device", "cpu"]) == 0
    assert (d / "mine" / "A_clip_000.mp4").read_bytes() == before
    assert sorted(p.name for p in (d / "mine").iterdir()) == ["A_clip_000.mp4"]


def test_run_refuses_an_out_whose_videos_are_the_datasets_files(tiny_dataset, tmp_path, capsys):
    """A manifest whose GT videos live in DATASET/videos: `run --out DATASET` would replace them."""
    (tiny_dataset / "gt").rename(tiny_dataset / "videos")
    rows = [{"clip_id": c, "gt_video": f"videos/{c}.mp4"} for c in ("A_clip_000", "B_clip_000")]
    (tiny_dataset / MANIFEST_NAME).write_text("".join(json.dumps(r) + "\n" for r in rows))
    before = _snapshot(tmp_path)
    assert main(["run", "--method", "real", "--dataset", str(tiny_dataset), "--out", str(tiny_dataset), "-q",
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: --out {tiny_dataset} would overwrite gt_video of clip 'A_clip_000' "
                   f"{tiny_dataset / 'videos' / 'A_clip_000.mp4'}: the run store writes {tiny_dataset / 'videos'}"
                   "/<clip_id>.mp4 and config.json, env.json, events.jsonl, metrics.json there. Nothing was "
                   "written; choose an --out outside the dataset folder\n")
    assert _snapshot(tmp_path) == before


# ----------------------------------------------------------------------------------------------------------
# 8. A report mixes neither runs nor datasets
# ----------------------------------------------------------------------------------------------------------
def test_report_refuses_a_metrics_json_of_another_dataset_than_its_run(tmp_path, capsys):
    run = _video_run(tmp_path / "kd", ["A_clip_000"], manifest_id="1111111111111111", dataset="other")
    (run / "config.json").write_text(json.dumps({"method": "kdtalker", "dataset": {
        "name": "tiny", "root": str(tmp_path), "manifest_id": "2222222222222222"}}))
    before = _snapshot(tmp_path)
    assert main(["report", str(run), "--out", str(tmp_path / "out"), "--no-figures", "--ci", "none"]) == 2
    assert capsys.readouterr().err == (
        f"error: {run / 'metrics.json'} scored dataset manifest_id 1111111111111111 (other), but its run folder's "
        "config.json was generated on manifest_id 2222222222222222 (tiny): the results belong to another run. "
        "Re-run `kdbench eval` on this folder, or report the folder they came from\n")
    assert _snapshot(tmp_path) == before


def test_report_across_datasets_needs_allow_mixed_and_then_marks_no_best(tmp_path, capsys):
    a = write_run(tmp_path / "a", make_doc("kdtalker", {"cpbd": {"cpbd": [0.3, 0.3, 0.3]}},
                                           manifest_id="aaaaaaaaaaaaaaaa", dataset="set-a"))
    b = write_run(tmp_path / "b", make_doc("sadtalker", {"cpbd": {"cpbd": [0.1, 0.1, 0.1]}},
                                           manifest_id="bbbbbbbbbbbbbbbb", dataset="set-b"))
    out = tmp_path / "out"
    assert main(["report", str(a), str(b), "--out", str(out), "--no-figures", "--ci", "none", "--format", "md"]) == 2
    assert capsys.readouterr().err == (
        f"error: the runs were scored on different datasets — set-a (manifest_id aaaaaaaaaaaaaaaa): {a}; set-b "
        f"(manifest_id bbbbbbbbbbbbbbbb): {b}: one table across them would rank values over different clips. Report "
        "each dataset separately, or pass --allow-mixed (the caption then names each run's manifest_id and no value "
        "is marked best)\n")
    assert not out.exists()
    assert main(["report", str(a), str(b), "--out", str(out), "--no-figures", "--ci", "none", "--format", "md",
                 "--allow-mixed"]) == 0
    md = (out / "table.md").read_text()
    assert "**" not in md.split("\n\n")[1] and "manifest_id DIFFERS between runs" in md
    # one dataset: the best value is bold, as before
    c = write_run(tmp_path / "c", make_doc("sadtalker", {"cpbd": {"cpbd": [0.1, 0.1, 0.1]}},
                                           manifest_id="aaaaaaaaaaaaaaaa", dataset="set-a"))
    assert main(["report", str(a), str(c), "--out", str(tmp_path / "o2"), "--no-figures", "--ci", "none",
                 "--format", "md"]) == 0
    assert "**0.300" in (tmp_path / "o2" / "table.md").read_text()


# ----------------------------------------------------------------------------------------------------------
# 10. A dataset's identity follows the content its manifest does not pin
# ----------------------------------------------------------------------------------------------------------
def test_unpinned_manifest_rows_hash_their_files_so_a_swap_is_incomparable(tiny_dataset, tmp_path, capsys):
    rows = [{"clip_id": c, "gt_video": f"gt/{c}.mp4"} for c in ("A_clip_000", "B_clip_000")]
    (tiny_dataset / MANIFEST_NAME).write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = load_dataset(tiny_dataset)
    assert not ds.pinned and ds.manifest == tiny_dataset / MANIFEST_NAME
    assert all(c.unpinned == {"gt_video"} and len(c.sha256["gt_video"]) == 64 for c in ds.clips)
    assert main(["data", "verify", str(tiny_dataset)]) == 1
    out = capsys.readouterr().out
    assert "PROBLEM: A_clip_000: gt_video has no sha256 in the manifest" in out
    assert (f"NOTE: 2 file(s) have no sha256 in {tiny_dataset / MANIFEST_NAME}: their checksums were computed from the "
            "files when the dataset was loaded (so the manifest_id changes with their content), but a change made "
            f"before cannot be detected. Pin them with `kdbench data freeze {tiny_dataset / MANIFEST_NAME} --force`."
            ) in out
    run1, run2 = tmp_path / "run1", tmp_path / "run2"
    for run in (run1, run2):
        if run == run2:  # swap the two clips' files: same names, same manifest, other content
            a, b = tiny_dataset / "gt" / "A_clip_000.mp4", tiny_dataset / "gt" / "B_clip_000.mp4"
            a.rename(tmp_path / "tmp.mp4")
            b.rename(a)
            (tmp_path / "tmp.mp4").rename(b)
            assert load_dataset(tiny_dataset).manifest_id != ds.manifest_id
        assert main(["run", "--method", "real", "--dataset", str(tiny_dataset), "--out", str(run), "-q",
                     "--device", "cpu"]) == 0
        assert main(["eval", str(run), "--metrics", "_r2_level", "-q", "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["check", str(run2), "--baseline", str(run1)]) == 2  # incomparable, not drift
    assert "manifest_id" in capsys.readouterr().out
    # and run1's results no longer match the dataset they name
    assert main(["eval", str(run1), "--metrics", "_r2_level", "-q", "--device", "cpu"]) == 2
    assert "changed since the run" in capsys.readouterr().err


def test_freezing_the_same_content_keeps_the_identity(tiny_dataset):
    rows = [{"clip_id": "A_clip_000", "gt_video": "gt/A_clip_000.mp4"}]
    (tiny_dataset / MANIFEST_NAME).write_text(json.dumps(rows[0]) + "\n")
    loose = load_dataset(tiny_dataset)
    assert main(["data", "freeze", str(tiny_dataset), "--force"]) == 0
    frozen = load_dataset(tiny_dataset)
    assert frozen.pinned and frozen.manifest_id == loose.manifest_id


# ----------------------------------------------------------------------------------------------------------
# 11. Broken weights data and a full disk: one clear line
# ----------------------------------------------------------------------------------------------------------
def _norm_arrays() -> dict[str, np.ndarray]:
    from baselines.kdtalker.pipeline import NORM_KEYS

    return {f"{k}_{s}": np.zeros(3, np.float32) for k in NORM_KEYS for s in ("mean", "std")}


@pytest.mark.parametrize("case", ["object", "strings", "garbage", "missing"])
def test_kdtalker_norm_file_that_is_not_one_names_the_file_and_key(tmp_path, case):
    pytest.importorskip("torch", reason="baselines.kdtalker needs torch (kdbench[metrics])")
    from baselines.kdtalker.pipeline import MotionNorm

    path = tmp_path / "norm.npz"
    arrays = _norm_arrays()
    if case == "object":
        arrays["exp_mean"] = np.array([{"a": 1}, None], dtype=object)
    elif case == "strings":
        arrays["t_std"] = np.array(["x", "y"])
    elif case == "missing":
        del arrays["kp_std"]
    np.savez(path, **arrays)
    if case == "garbage":
        path.write_bytes(b"not a zip at all")
    with pytest.raises(KdbenchError) as e:
        MotionNorm.from_npz(path)
    why = {"object": "exp_mean is an object array (pickled Python objects, which kdbench never loads): Object "
                     "arrays cannot be loaded when allow_pickle=False",
           "strings": "t_std holds <U1 values, not numbers",
           "missing": "it lacks kp_std",
           "garbage": "it cannot be read as an npz archive"}[case]
    assert str(e.value).startswith(f"{path} is not KDTalker's norm.npz: {why}")
    assert str(e.value).endswith("Fetch the original with `kdbench weights fetch kdtalker_norm` (or point "
                                 "KDBENCH_WEIGHT_KDTALKER_NORM at it)")
    assert "Traceback" not in str(e.value)


def test_full_disk_while_writing_videos_is_one_line_per_clip_and_exit_1(tiny_dataset, tmp_path, monkeypatch, capsys):
    """The first clip is written, then the disk is full: each other clip fails with one line naming its video,
    no traceback, and `kdbench run` exits 1 (clips are missing); re-running after freeing space finishes them."""
    import kdbench.video as kv

    real_write = kv.write_video
    calls = []

    def full_after_one(path, *a, **k):
        calls.append(path)
        if len(calls) > 1:  # PyAV reports ENOSPC when closing the file, without the final name
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(path, *a, **k)

    monkeypatch.setattr(kv, "write_video", full_after_one)
    out = tmp_path / "run"
    assert main(["run", "--method", "static", "--dataset", str(tiny_dataset), "--out", str(out), "-q",
                 "--device", "cpu"]) == 1
    cap = capsys.readouterr()
    for cid in ("B_clip_000", "C_clip_000"):
        assert (f"  failed {cid}: cannot write {out / 'videos' / (cid + '.mp4')}: No space left on device; free space, "
                "then re-run the same command (finished clips are kept)\n") in cap.out
    assert cap.err == (f"error: 2 clip(s) could not be written to {out} (see above); free space and re-run the same "
                       "command to finish them\n")
    assert "Traceback" not in cap.out + cap.err
    events = RunStore(out).clip_events()
    assert events["A_clip_000"]["status"] == "ok" and events["B_clip_000"]["write_error"] is True
    assert "traceback" not in events["B_clip_000"]
    assert sorted(p.name for p in (out / "videos").iterdir()) == ["A_clip_000.mp4"]  # no temporary file left
    monkeypatch.setattr(kv, "write_video", real_write)
    assert main(["run", "--method", "static", "--dataset", str(tiny_dataset), "--out", str(out), "-q",
                 "--device", "cpu"]) == 0
    assert "2 generated, 1 already done, 0 failed" in capsys.readouterr().out


def test_full_disk_names_the_file_for_json_and_events(tiny_dataset, tmp_path, monkeypatch, capsys):
    """Writes that fail at write/close carry no file name; the error line names it (README: "error naming
    the path"). events.jsonl is tried against /dev/full, a real ENOSPC from the kernel."""
    out = tmp_path / "run"
    real_write_text = Path.write_text

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    assert main(["run", "--method", "static", "--dataset", str(tiny_dataset), "--out", str(out), "-q",
                 "--device", "cpu"]) == 2
    assert capsys.readouterr().err == f"error: No space left on device: {out / 'config.json'}\n"
    assert sorted(p.name for p in out.iterdir()) == ["videos"] and not any((out / "videos").iterdir())
    monkeypatch.setattr(Path, "write_text", real_write_text)
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    store = RunStore(tmp_path / "r2")
    store.root.mkdir()
    store.events_path.symlink_to("/dev/full")
    with pytest.raises(OSError) as e:
        store.append_event({"clip_id": "A_clip_000", "status": "ok"})
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(store.events_path)


# ----------------------------------------------------------------------------------------------------------
# 12. `data verify` and clip ids
# ----------------------------------------------------------------------------------------------------------
def test_verify_refuses_a_gt_video_much_shorter_than_its_audio(tmp_path, make_video, capsys):
    root = tmp_path / "ds"
    (root / "gt").mkdir(parents=True)
    make_video("short.mp4", 2, 25, (64, 64), audio_s=8.0).rename(root / "gt" / "short.mp4")
    make_video("fine.mp4", 50, 25, (64, 64), audio_s=2.0).rename(root / "gt" / "fine.mp4")
    before = _snapshot(root)
    assert main(["data", "verify", str(root)]) == 1
    out = capsys.readouterr().out
    assert ("PROBLEM: short: GT video is 0.08 s (2 frames at 25 fps) but its audio track is 8.00 s: they differ by "
            "more than 5 frames, so the video does not show what its audio says (damaged or badly cut)\n") in out
    assert "PROBLEM: fine" not in out and "FAILED: 1 problem(s)" in out
    assert _snapshot(root) == before


HIDDEN = {"rlo": "A\u202e000_clip", "zwsp": "A_clip\u200b_000", "line-sep": "A_clip\u2028_000",
          "nbsp": "A_clip\xa0000", "bom": "\ufeffA_clip_000", "isolate": "A\u2066clip", "trailing-space": "A_clip_000 ",
          "leading-space": " A_clip_000", "surrogate": "A\ud800"}


@pytest.mark.parametrize("name", list(HIDDEN))
def test_clip_ids_with_invisible_or_direction_changing_characters_are_refused(tiny_dataset, name, capsys):
    bad = HIDDEN[name]
    rows = [{"clip_id": "B_clip_000", "gt_video": "gt/B_clip_000.mp4"},
            {"clip_id": bad, "gt_video": "gt/A_clip_000.mp4"}]
    (tiny_dataset / MANIFEST_NAME).write_text("".join(json.dumps(r) + "\n" for r in rows))
    why = clip_id_problem(bad)
    if name.endswith("space"):
        assert why == f"clip id {bad!r} starts or ends with a space (one id could be shown as another)"
    else:
        c = next(ch for ch in bad if not ch.isascii())
        assert f"contains U+{ord(c):04X} (" in why and "one id could be shown as another" in why
        assert "\\u" in why  # shown escaped: the message itself cannot be spoofed
    before = _snapshot(tiny_dataset)
    assert main(["data", "verify", str(tiny_dataset)]) == 2
    assert capsys.readouterr().err == (f"error: {tiny_dataset / MANIFEST_NAME}:2: {why}; rename the clip (letters, "
                                       "digits, '_', '-', '.' inside the name)\n")
    assert _snapshot(tiny_dataset) == before


def test_plain_spaces_and_letters_of_any_script_stay_valid():
    for ok in ("A clip 000", "Émilie_001", "王_002", "clip-3.v2"):
        assert clip_id_problem(ok) is None, ok


def test_a_layout_file_name_with_a_hidden_character_is_refused(tiny_dataset):
    (tiny_dataset / "gt" / "A_clip_000.mp4").rename(tiny_dataset / "gt" / "A_clip\u200b_000.mp4")
    with pytest.raises(DatasetError, match=r"clip id 'A_clip\\u200b_000' contains U\+200B \(ZERO WIDTH SPACE\)"):
        load_dataset(tiny_dataset)


def test_raw_line_separators_inside_json_values_are_valid_rows(tiny_dataset):
    rows = [{"clip_id": "A_clip_000", "gt_video": "gt/A_clip_000.mp4", "note": "said:\u2028hello\u2029\x85bye"},
            {"clip_id": "B_clip_000", "gt_video": "gt/B_clip_000.mp4"}]
    text = "".join(json.dumps(r, ensure_ascii=False) + "\r\n" for r in rows)  # raw, and Windows line ends
    assert "\u2028" in text
    (tiny_dataset / MANIFEST_NAME).write_text(text, newline="")
    ds = load_dataset(tiny_dataset)
    assert [c.clip_id for c in ds.clips] == ["A_clip_000", "B_clip_000"]
    assert ds.get("A_clip_000").extra["note"] == "said:\u2028hello\u2029\x85bye"


def test_a_duplicated_clip_id_names_the_id_and_both_lines(tiny_dataset, capsys):
    rows = [{"clip_id": "A_clip_000", "gt_video": "gt/A_clip_000.mp4"},
            {"clip_id": "B_clip_000", "gt_video": "gt/B_clip_000.mp4"},
            {"clip_id": "A_clip_000", "gt_video": "gt/B_clip_000.mp4"}]
    (tiny_dataset / MANIFEST_NAME).write_text("\n" + "".join(json.dumps(r) + "\n" for r in rows))
    assert main(["data", "verify", str(tiny_dataset)]) == 2
    assert capsys.readouterr().err == (f"error: {tiny_dataset / MANIFEST_NAME}:4: clip id 'A_clip_000' is listed "
                                       "twice (first on line 2); each clip id names one clip\n")


def test_fps_of_external_videos_is_skipped_for_the_right_reason(tiny_dataset, tmp_path):
    videos = tmp_path / "theirs"
    videos.mkdir()
    shutil.copy(tiny_dataset / "gt" / "A_clip_000.mp4", videos / "A_clip_000.mp4")
    out = tmp_path / "run"
    assert main(["eval", "--videos", str(videos), "--dataset", str(tiny_dataset), "--out", str(out),
                 "--metrics", "fps", "-q", "--device", "cpu"]) == 0
    fps = json.loads((out / "metrics.json").read_text())["metrics"]["fps"]
    assert fps["status"] == "skipped"
    assert fps["skip_reason"] == (f"the videos were made outside kdbench (`kdbench eval --videos {videos.resolve()}`) "
                                  "and carry no generation timing; FPS is measured only by `kdbench run`")


def test_fps_of_a_replaying_method_keeps_its_reason(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    assert main(["run", "--method", "real", "--dataset", str(tiny_dataset), "--out", str(out), "-q",
                 "--device", "cpu", "--limit", "1"]) == 0
    assert main(["eval", str(out), "--metrics", "fps", "-q", "--device", "cpu"]) == 0
    fps = json.loads((out / "metrics.json").read_text())["metrics"]["fps"]
    assert fps["skip_reason"].startswith("the method replays its inputs")


def test_a_refused_payload_leaves_no_first_use_pin(tmp_path):
    """A tofu weight whose file carries a pickle payload: the loader refuses it, nothing runs, and the sha256 pinned
    when it was first looked up is removed again (a refused file must not stay trusted as "the first one seen");
    the pin of a file that loads stays."""
    import pickle
    import subprocess

    import torch

    from kdbench.checkpoint import UnsafeCheckpoint
    from kdbench.weights import WeightEntry, WeightsManager
    from metrics.checkpoints import load_state_dict

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (subprocess.call, (["touch", str(marker)],))

    home = tmp_path / "home"
    manifest = {n: WeightEntry(name=n, file=f"{n}.pth", url=f"https://example.invalid/{n}.pth")
                for n in ("bad", "good")}
    wm = WeightsManager(home=home, manifest=manifest)
    for n, obj in (("bad", {"w": torch.zeros(2), "cfg": Payload()}), ("good", {"w": torch.zeros(2)})):
        wm.cache_path(n).parent.mkdir(parents=True)
        torch.save(obj, wm.cache_path(n))
    assert pickle.loads(pickle.dumps(Payload())) == 0 and marker.exists()  # control: the payload really runs
    marker.unlink()
    bad_pin, good_pin = (home / "weights" / n / ".pinned_sha256" for n in ("bad", "good"))

    path = wm.path("bad")  # first use: verified as tofu, pinned
    assert bad_pin.read_text() == hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(UnsafeCheckpoint, match="not unpickled"):
        load_state_dict(path)
    assert not marker.exists() and not bad_pin.exists()

    assert set(load_state_dict(wm.path("good"))) == {"w"} and good_pin.is_file()
