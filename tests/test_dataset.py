"""Datasets: derived manifests, manifest_id, and every verification failure the issue names."""

from __future__ import annotations

import json
import shutil

import pytest

from kdbench.dataset import MANIFEST_NAME, load_dataset, read_manifest, verify_dataset
from kdbench.errors import DatasetError
from kdbench.files import sha256_file


def test_hdtf_mini_is_the_real_material(hdtf_mini):
    ds = load_dataset("hdtf-mini")
    assert [c.clip_id for c in ds.clips] == ["WDA_BenCardin1_000", "WDA_KatieHill_000", "WRA_MarkwayneMullin_000",
                                             "WRA_MikeJohanns1_000"]
    katie = ds.get("WDA_KatieHill_000")
    assert katie.n_frames == 200 and katie.ref_image is None and katie.audio is None  # both come from the GT video
    assert katie.sha256["gt_video"] == "1fbb4cfd64eedc49b170c441714a9c4fd5e2c2f8a11592070ad89fbd257f2817"
    assert katie.load_ref_image().shape == (512, 512, 3)
    assert len(katie.load_audio()) == 128000  # 8 s at 16 kHz
    rep = verify_dataset(ds)
    assert rep.ok, rep.problems
    assert rep.summary["fps"] == [25.0] and rep.summary["n_with_gt"] == 1


def test_manifest_roundtrip_keeps_id(tiny_dataset):
    ds = load_dataset(tiny_dataset)
    path = ds.write_manifest()
    again = load_dataset(tiny_dataset)  # now read from manifest.jsonl
    assert path.name == MANIFEST_NAME and [c.clip_id for c in again.clips] == [c.clip_id for c in ds.clips]
    assert again.manifest_id == ds.manifest_id
    assert len(again.limit(1)) == 1 and again.limit(1).manifest_id != ds.manifest_id


def _verify_problems(root):
    return verify_dataset(read_manifest(root / MANIFEST_NAME)).problems


def test_verify_catches_changed_missing_and_mismatched_files(tiny_dataset, make_video):
    ds = load_dataset(tiny_dataset)
    ds.write_manifest()
    assert _verify_problems(tiny_dataset) == []
    # a changed file: sha256 mismatch
    with open(tiny_dataset / "ref" / "C_clip_000.png", "ab") as f:
        f.write(b"\0")
    # a missing file
    (tiny_dataset / "audio" / "C_clip_000.wav").unlink()
    # a GT video with the wrong fps and frame count (same name, different content)
    other = make_video("B30.mp4", 30, fps=30, size=(64, 64), audio_s=1.0)
    shutil.copy(other, tiny_dataset / "gt" / "B_clip_000.mp4")
    problems = "\n".join(_verify_problems(tiny_dataset))
    assert "C_clip_000: ref_image sha256 mismatch" in problems
    assert "C_clip_000: audio missing" in problems
    assert "B_clip_000: gt_video sha256 mismatch" in problems
    assert "B_clip_000: GT video is 30 fps, manifest says 25" in problems
    assert "B_clip_000: GT video has 30 frames, manifest says 50" in problems


def test_verify_reports_video_without_audio(tmp_path, make_video):
    root = tmp_path / "ds"
    (root / "gt").mkdir(parents=True)
    make_video("X_v_000.mp4", 25).rename(root / "gt" / "X_v_000.mp4")
    problems = verify_dataset(load_dataset(root)).problems
    assert problems == ["X_v_000: GT video has no audio track"]


def test_bad_manifests_give_clear_errors(tmp_path):
    (tmp_path / MANIFEST_NAME).write_text('{"clip_id": "a"}\nnot json\n')
    with pytest.raises(DatasetError, match=":2: not valid JSON"):
        read_manifest(tmp_path / MANIFEST_NAME)
    (tmp_path / MANIFEST_NAME).write_text('{"clip_id": "a"}\n{"clip_id": "a"}\n')
    with pytest.raises(DatasetError, match="twice"):
        read_manifest(tmp_path / MANIFEST_NAME)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="not a dataset"):
        load_dataset(empty)
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset("no-such-dataset")


def test_prepare_hdtf_from_a_raw_clip_with_annotations(tmp_path, make_video):
    from conftest import level_frames, tone

    from kdbench.hdtf_prepare import prepare_hdtf, scaled_crop
    from kdbench.video import probe_video, write_video

    raw = tmp_path / "raw"
    raw.mkdir()
    # a not-yet-cropped 1280x720 "download" at 30 fps, 3 s, listed at 360p in the annotations
    write_video(raw / "WDA_Test_000.mp4", level_frames(90, (128, 72)), 30, audio=tone(3.0), crf=0)
    ann = tmp_path / "HDTF_dataset"
    ann.mkdir()
    (ann / "WDA_video_url.txt").write_text("\ufeffTest https://www.youtube.com/watch?v=abc\n")
    (ann / "WDA_annotion_time.txt").write_text("Test.mp4 00:00-00:03\n")
    (ann / "WDA_crop_wh.txt").write_text("Test_0.mp4 100 160 20 160\n")
    (ann / "WDA_resolution.txt").write_text("Test.mp4 360\n")
    assert scaled_crop((100, 160, 20, 160), 360, 72) == (20, 32, 4, 32)
    ds = prepare_hdtf(raw, tmp_path / "out", annotations=ann, seconds=2.0, size=64, progress=False)
    (clip,) = ds.clips
    info = probe_video(clip.gt_video)
    assert (clip.clip_id, info.fps, info.n_frames, info.width, info.height) == ("WDA_Test_000", 25.0, 50, 64, 64)
    assert clip.extra["crop_xywh"] == [20, 32, 4, 32] and clip.extra["youtube_url"].endswith("v=abc")
    assert len(clip.load_audio()) == 32000
    assert verify_dataset(load_dataset(tmp_path / "out")).ok
    row = json.loads((tmp_path / "out" / MANIFEST_NAME).read_text().splitlines()[0])
    assert row["sha256"]["gt_video"] == sha256_file(clip.gt_video)


def test_hdtf_mini_download_checks_every_sha256(tmp_path, monkeypatch, hdtf_mini):
    """Outside this repo hdtf-mini is fetched from upstream; here the 'upstream' is a local copy (file:// URLs)."""
    from kdbench import hdtf_mini as hm

    files = {rel: ((hdtf_mini / rel).as_uri(), sha) for rel, (_, sha) in list(hm.FILES.items())[:2]}
    monkeypatch.setattr(hm, "FILES", files)
    dest = hm.download_hdtf_mini(tmp_path / "cache")
    for rel in files:
        assert sha256_file(dest / rel) == files[rel][1]
    bad = {"ref/x.png": ((hdtf_mini / "ref" / "WDA_BenCardin1_000.png").as_uri(), "0" * 64)}
    monkeypatch.setattr(hm, "FILES", bad)
    with pytest.raises(DatasetError, match="expected 0000"):
        hm.download_hdtf_mini(tmp_path / "cache2")
    assert not (tmp_path / "cache2" / "ref" / "x.png").exists()
