"""Weights manager: offline errors, checksum refusal, opt-in unverified use, packaged files, downloads."""

from __future__ import annotations

import hashlib
import subprocess

import pytest

from kdbench.errors import WeightsChecksumError, WeightsMissing
from kdbench.files import git_blob_sha1
from kdbench.weights import WeightEntry, WeightsManager, load_manifest


def _manager(tmp_path, **entry):
    e = WeightEntry(name="toy", file="toy.bin", **entry)
    return WeightsManager(home=tmp_path, manifest={"toy": e})


def test_manifest_has_every_entry_the_metrics_and_kdtalker_need():
    m = load_manifest()
    assert m["syncnet_v2"].git_sha1 == "d714bbf3b30324ced69e3815fc41ae6dc519303c"
    assert m["sfd_face"].git_sha1 == "2bdf053a994371d57f6f535cb2682dc3e2990e89"
    assert m["hopenet_robust_alpha1"].gdrive == "1m25PrSE7g9D2q2XJVMR6IA7RaCvWSzCR"
    assert m["kdtalker_norm"].sha256 == "9422e503e75df9d1bd455d8e0f9f5e2826b12956cdedbb5566097c0151bddafb"
    for e in m.values():
        assert e.file and e.license and e.used_by, e.name
        assert sum(bool(x) for x in (e.url or e.package, e.gdrive, e.hf_repo)) >= 1, e.name


def test_git_blob_sha1_matches_git(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"kdbench weights\n" * 100)
    want = subprocess.run(["git", "hash-object", str(p)], capture_output=True, text=True, check=True).stdout.strip()
    assert git_blob_sha1(p) == want


def test_missing_weights_offline_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("KDBENCH_OFFLINE", "1")
    wm = _manager(tmp_path, url="https://example.org/toy.bin", sha256="0" * 64)
    with pytest.raises(WeightsMissing) as e:
        wm.path("toy")
    msg = str(e.value)
    assert "kdbench weights fetch toy" in msg and "https://example.org/toy.bin" in msg
    assert str(tmp_path / "weights" / "toy" / "toy.bin") in msg and "KDBENCH_WEIGHT_TOY" in msg
    with pytest.raises(WeightsMissing, match="KDBENCH_OFFLINE=1"):
        wm.fetch("toy", progress=False)
    with pytest.raises(WeightsMissing, match="no weights entry"):
        wm.path("nope")


def test_checksum_mismatch_is_refused_unless_allowed(tmp_path, monkeypatch):
    monkeypatch.delenv("KDBENCH_ALLOW_UNVERIFIED", raising=False)
    wm = _manager(tmp_path, url="x", sha256="0" * 64)
    p = wm.cache_path("toy")
    p.parent.mkdir(parents=True)
    p.write_bytes(b"not the real weights")
    with pytest.raises(WeightsChecksumError, match="KDBENCH_ALLOW_UNVERIFIED"):
        wm.path("toy")
    monkeypatch.setenv("KDBENCH_ALLOW_UNVERIFIED", "1")
    wm = _manager(tmp_path, url="x", sha256="0" * 64)
    assert wm.path("toy") == p
    rec = wm.record()["toy"]
    assert rec["verified"] is False and rec["sha256"] == hashlib.sha256(b"not the real weights").hexdigest()


def test_matching_checksum_verifies_and_is_cached(tmp_path):
    data = b"weights!"
    wm = _manager(tmp_path, url="x", sha256=hashlib.sha256(data).hexdigest())
    p = wm.cache_path("toy")
    p.parent.mkdir(parents=True)
    p.write_bytes(data)
    assert wm.path("toy") == p and wm.record()["toy"]["verified"] is True
    assert (p.parent / ".toy.bin.verified.json").is_file()  # next time no re-hash of big files


def test_override_path_is_still_verified(tmp_path, monkeypatch):
    monkeypatch.delenv("KDBENCH_ALLOW_UNVERIFIED", raising=False)
    other = tmp_path / "mine.bin"
    other.write_bytes(b"abc")
    monkeypatch.setenv("KDBENCH_WEIGHT_TOY", str(other))
    wm = _manager(tmp_path, url="x", sha256=hashlib.sha256(b"abc").hexdigest())
    assert wm.path("toy") == other
    wm = _manager(tmp_path, url="x", git_sha1="0" * 40)
    with pytest.raises(WeightsChecksumError, match="git blob sha1"):
        wm.path("toy")


def test_packaged_dlib_detector_resolves_and_matches_published_blob():
    wm = WeightsManager()
    p = wm.path("mmod_human_face_detector")  # shipped by face_recognition_models, checked against dlib's git blob
    assert p.name == "mmod_human_face_detector.dat"
    assert wm.record()["mmod_human_face_detector"]["verified"] is True


def test_fetch_downloads_with_progress_and_pins_unpinned_files(tmp_path):
    src = tmp_path / "upstream.bin"
    src.write_bytes(b"v1 weights")
    wm = _manager(tmp_path / "home", url=src.as_uri())
    p = wm.fetch("toy", progress=False)
    assert p.read_bytes() == b"v1 weights"
    pin = p.parent / ".pinned_sha256"
    assert pin.read_text() == hashlib.sha256(b"v1 weights").hexdigest()
    p.write_bytes(b"tampered")  # trust on first use: a later change is caught
    with pytest.raises(WeightsChecksumError, match="pinned at first use"):
        _manager(tmp_path / "home", url=src.as_uri()).path("toy")


def test_zip_entries_are_extracted(tmp_path):
    import zipfile

    src = tmp_path / "pack.zip"
    with zipfile.ZipFile(src, "w") as z:
        z.writestr("pack/model.onnx", b"onnx")
    wm = WeightsManager(home=tmp_path / "home", manifest={
        "pack": WeightEntry(name="pack", file="pack.zip", url=src.as_uri(), extract=True)})
    folder = wm.fetch("pack", progress=False)
    assert (folder / "model.onnx").read_bytes() == b"onnx"


def test_extracted_pack_folder_can_be_given_directly(tmp_path, monkeypatch):
    folder = tmp_path / "buffalo_l"
    folder.mkdir()
    (folder / "w600k_r50.onnx").write_bytes(b"onnx")
    monkeypatch.setenv("KDBENCH_WEIGHT_PACK", str(folder))
    wm = WeightsManager(home=tmp_path / "home", manifest={
        "pack": WeightEntry(name="pack", file="pack.zip", url="x", extract=True)})
    assert wm.path("pack") == folder
    rec = wm.record()["pack"]
    assert rec["sha256"].startswith("folder:") and rec["verified"] is False and rec["trust"] == "tofu"
