"""Weights pinned to published hashes, and what a baseline worker may unpickle.

- the manifest holds the research note's sha256 / sizes / revisions, read back through `kdbench weights ls`;
- a user manifest whose entry name or file is a path is refused before anything is written;
- a pinned size is checked before hashing;
- `weights verify` without names groups by method and exits 0 when nothing present is corrupt;
- the worker's torch.load guard (kdbench.runtime.compat.torch_load_pinned_pickle): full unpickling only for a file
  whose sha256 the parent verified against a pin (and unchanged since); a tofu or unknown file with a pickle
  payload is refused unless KDBENCH_TRUST_UNPINNED=1; the allow-list loads the official formats;
- the SadTalker worker (a fake tree with upstream's load calls) never runs a payload without the flag.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kdbench.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_weights_ls_shows_the_published_pins_revisions_sizes_and_licences(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("KDBENCH_HOME", str(tmp_path))
    monkeypatch.delenv("KDBENCH_WEIGHTS_MANIFEST", raising=False)
    assert main(["weights", "ls", "--long"]) == 0
    out = capsys.readouterr().out
    blocks: dict[str, str] = {}
    cur = ""
    for line in out.splitlines():  # one block per entry: its name, then indented "field: value" lines
        if line and not line.startswith(" "):
            cur = line.strip()
            blocks[cur] = ""
        elif line.startswith(" ") and blocks:
            blocks[cur] += " " + line.strip()
    # values from the research note (LFS pointers of the official repositories and of mirrors)
    assert "sha256:961e8696f888fce4f3f3a6c3d5b3267cf5b343100b238e79b2659bff2c605442" in blocks["syncnet_v2"]
    assert "size: 54.6 MB" in blocks["syncnet_v2"] and "pin: sha256+git-blob (mirror)" in blocks["syncnet_v2"]
    pose = blocks["aniportrait_audio2pose"]
    assert "sha256:e61ffd104f8d1fe40476de1a8df9050559315976c830e5fdead1c31d1c5661f3" in pose
    assert "revision: dae1484" in pose and "pin: sha256 (official)" in pose and "fdfff04e" in pose
    assert "sha256:6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2" in blocks["pt_inception"]
    assert "sha256:c211f5d6de003516bf1bbda9f47049a4c9c99133b1ab565c6961e5af16477bff" in blocks["sadtalker_256"]
    assert "size: 725.1 MB" in blocks["sadtalker_256"] and "Apache-2.0" in blocks["sadtalker_256"]
    assert "revision: ce4cbd2" in blocks["anitalker_stage2_audio_only_hubert"]
    hubert = blocks["hubert_large_ls960_ft_model"]
    assert "pin: sha256-prefix (ambiguous)" in hubert and "AMBIGUOUS" in hubert and "revision: d36ebff" in hubert
    assert "pin: sha256 (low)" in blocks["sd15_unet"] and "revision: main (none pinned)" in blocks["sd15_unet"]
    assert "pin: tofu" in blocks["kdtalker"] and "licence: KDTalker: CC BY-NC 4.0" in blocks["kdtalker"]
    resnet = blocks["real3dportrait_resnet34_imagenet"]  # torchvision's file-name prefix, never a full unpickle
    assert "pin: sha256-prefix (official)" in resnet and "checksum: sha256-prefix:333f7ec4" in resnet
    assert "58 entries: 37 pinned to a published checksum, 21 trusted on first use (tofu)" in out

    assert main(["weights", "ls"]) == 0  # the table: pin, revision, size and licence columns
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["name", "present", "used_by", "pin", "revision", "size", "licence"]
    row = next(x for x in table if x.startswith("aniportrait_pose_guider "))
    assert row.split()[3:8] == ["sha256", "(official)", "71ec340", "670.2", "MB"]


def test_every_hf_entry_with_a_hash_has_a_revision_and_download_asks_for_it(monkeypatch, tmp_path):
    from kdbench import weights

    m = weights.load_manifest(weights.MANIFEST)
    unpinned = sorted(n for n, e in m.items() if e.hf_repo and (e.sha256 or e.sha256_prefix) and not e.hf_revision)
    assert unpinned == ["sd15_unet", "sd_image_variations_encoder"]  # the note knows no commit of these repos
    asked = {}

    class Commit:
        def __init__(self, c):
            self.commit_id = c

    class Api:
        def list_repo_commits(self, repo):
            return [Commit("dae1484" + "0" * 33), Commit("425c4c8" + "1" * 33)]

    def hf_hub_download(repo_id, filename, revision):
        asked.update(repo=repo_id, file=filename, revision=revision)
        raise OSError("offline")

    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, "HfApi", Api)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    monkeypatch.delenv("KDBENCH_OFFLINE", raising=False)
    monkeypatch.delenv("KDBENCH_WEIGHTS_MIRROR", raising=False)
    wm = weights.WeightsManager(home=tmp_path, manifest=m)
    with pytest.raises(weights.WeightsMissing, match="download failed"):
        wm.fetch("aniportrait_audio2pose", progress=False)
    assert asked == {"repo": "ZJYang/AniPortrait", "file": "audio2pose.pt", "revision": "dae1484" + "0" * 33}


@pytest.mark.parametrize("entry, why", [
    ('[x]\nfile = "../../../escaped"\nurl = "http://127.0.0.1:9/x"\n',
     "file '../../../escaped' is not a plain file name"),
    ('["a/../../escaped"]\nfile = "f"\nurl = "http://127.0.0.1:9/x"\n', "name 'a/../../escaped' is not a plain file"),
    ('[x]\nfile = ".."\nurl = "http://127.0.0.1:9/x"\n', "file '..' is not a plain file name"),
    ('[x]\nfile = "f"\nsha256 = "abc"\n', "sha256 = 'abc' is not 64 lowercase hex digits"),
    ('[x]\nfile = "f"\nscript = "rm -rf"\n', "unknown keys script"),
])
def test_a_user_manifest_with_paths_for_names_is_refused_before_anything_is_written(entry, why, tmp_path, capsys,
                                                                                    monkeypatch):
    home = tmp_path / "a" / "b" / "home"
    home.mkdir(parents=True)
    manifest = tmp_path / "evil.toml"
    manifest.write_text(entry)
    monkeypatch.setenv("KDBENCH_HOME", str(home))
    monkeypatch.setenv("KDBENCH_WEIGHTS_MANIFEST", str(manifest))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(["weights", "fetch", "-q"]) == 2
    err = capsys.readouterr().err
    assert why in err and str(manifest) in err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written anywhere


def test_a_pinned_size_is_checked_before_hashing(tmp_path, monkeypatch):
    from kdbench import weights

    f = tmp_path / "weights" / "w" / "w.pth"
    f.parent.mkdir(parents=True)
    f.write_bytes(b"x" * 10)
    e = weights.WeightEntry(name="w", file="w.pth", url="https://example.invalid/w", sha256="0" * 64, size=11)

    def no_hash(path):
        raise AssertionError("hashed although the size already differs")

    monkeypatch.setattr(weights, "sha256_file", no_hash)
    with pytest.raises(weights.WeightsChecksumError, match=r"size 10 bytes != pinned 11"):
        weights.WeightsManager(home=tmp_path, manifest={"w": e}).path("w")


def test_verify_without_names_groups_by_method_and_exits_0_unless_a_present_file_is_corrupt(tmp_path, capsys,
                                                                                            monkeypatch):
    from kdbench.weights import WeightEntry
    from tests.baseline_fixtures import write_manifest

    good, bad = b"good weights", b"bad weights"
    import hashlib

    entries = {"a1": WeightEntry(name="a1", file="a1.pth", url="https://example.invalid/a1", used_by=("alpha",),
                                 sha256=hashlib.sha256(good).hexdigest()),
               "a2": WeightEntry(name="a2", file="a2.pth", url="https://example.invalid/a2", used_by=("alpha",)),
               "b1": WeightEntry(name="b1", file="b1.pth", url="https://example.invalid/b1", used_by=("beta",),
                                 sha256=hashlib.sha256(good).hexdigest())}
    monkeypatch.setenv("KDBENCH_WEIGHTS_MANIFEST", str(write_manifest(tmp_path / "m.toml", entries)))
    monkeypatch.setenv("KDBENCH_HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "weights" / "a1").mkdir(parents=True)
    (tmp_path / "home" / "weights" / "a1" / "a1.pth").write_bytes(good)
    assert main(["weights", "verify"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "alpha:", "  ok       a1", "  not fetched (1), needed for alpha: `kdbench weights fetch a2`",
        "beta:", "  not fetched (1), needed for beta: `kdbench weights fetch b1`",
        "no present file is corrupt (missing files are only needed by the methods and metrics named above)"]
    (tmp_path / "home" / "weights" / "b1").mkdir()
    (tmp_path / "home" / "weights" / "b1" / "b1.pth").write_bytes(bad)
    assert main(["weights", "verify"]) == 1
    out = capsys.readouterr().out
    assert "  FAILED   b1: weights 'b1' at" in out and "fail verification: sha256" in out
    assert out.splitlines()[-1] == "FAILED: a present file differs from its pin (delete it and fetch it again)"


# --- the worker's torch.load guard -------------------------------------------------------------------------------
torch = pytest.importorskip("torch", reason="the guard patches torch.load (kdbench[metrics])")

GUARD = """
import json, sys
from kdbench.runtime import compat
compat.torch_load_pinned_pickle()
import torch
out = []
for path, allow in json.loads(sys.argv[1]):
    compat.PICKLE_POLICY["allow"] = tuple(allow)
    n = len(compat.PICKLE_POLICY["loads"])
    try:
        obj = torch.load(path, map_location="cpu")
        out.append({"ok": sorted(obj) if isinstance(obj, dict) else type(obj).__name__})
    except Exception as e:
        out.append({"error": type(e).__name__, "message": str(e)})
    out[-1]["loads"] = compat.PICKLE_POLICY["loads"][n:]
print(json.dumps(out))
"""


class Payload:
    """A pickle payload: unpickling it runs ``exec``, which creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def _guarded_loads(items: list[tuple[Path, tuple]], pins: dict | None = None, trust: bool = False) -> list[dict]:
    """``torch.load`` of each ``(path, allow-list)`` in one worker-like process with the guard applied."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("KDBENCH_TRUST_UNPINNED", None)
    env.pop("KDBENCH_WORKER_PINS", None)
    if pins is not None:
        (items[0][0].parent / "pins.json").write_text(json.dumps(pins))
        env["KDBENCH_WORKER_PINS"] = str(items[0][0].parent / "pins.json")
    if trust:
        env["KDBENCH_TRUST_UNPINNED"] = "1"
    arg = json.dumps([[str(p), list(a)] for p, a in items])
    out = subprocess.run([sys.executable, "-c", GUARD, arg], env=env, capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _guarded_load(path: Path, pins: dict | None = None, allow: tuple = (), trust: bool = False) -> dict:
    return _guarded_loads([(path, allow)], pins, trust)[0]


def _pin(path: Path, full: bool = True) -> dict:
    """The record the parent passes for ``path``: pinned by a whole published digest (``full``) or tofu."""
    from kdbench.files import sha256_file

    st = path.stat()
    return {os.path.realpath(path): {"name": "w", "sha256": sha256_file(path), "size": st.st_size,
                                     "mtime_ns": st.st_mtime_ns, "inode": st.st_ino, "pin_full": full,
                                     "trust": "pinned" if full else "tofu"}}


def test_a_payload_in_an_unpinned_checkpoint_never_runs_without_the_flag(tmp_path):
    marker = tmp_path / "marker"
    ckpt = tmp_path / "w.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "payload": Payload(marker)}, ckpt)
    for pins, why in ((None, "it is not a manifest file verified by kdbench"),
                      (_pin(ckpt, full=False), "it is trusted on first use (no published checksum)")):
        got = _guarded_load(ckpt, pins)
        assert got["error"] == "UnpinnedPickle" and not marker.exists()
        assert got["message"].startswith(f"{os.path.realpath(ckpt)}: not unpickled, because it matches no published "
                                         f"pin: {why}, and it holds objects outside the method's allow-list")
        assert "re-run with --trust-unpinned (or KDBENCH_TRUST_UNPINNED=1)" in got["message"]
        assert "builtins.exec" in got["message"]
    got = _guarded_load(ckpt, trust=True)  # the user accepted the risk: it runs, and the load is recorded
    assert marker.read_text() == "ran" and got["ok"] == ["payload", "state_dict"]
    assert got["loads"][0]["mode"] == "full pickle (UNPINNED, --trust-unpinned)"


def test_a_pinned_checkpoint_is_unpickled_fully_and_a_changed_one_is_not(tmp_path):
    import argparse

    ckpt = tmp_path / "w.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "hparams": argparse.Namespace(lr=1)}, ckpt)
    pins = _pin(ckpt)
    got = _guarded_load(ckpt, pins)  # Namespace is not on the (empty) allow-list: only the pin lets it load
    assert got["ok"] == ["hparams", "state_dict"]
    assert got["loads"] == [{"file": os.path.realpath(ckpt), "name": "w", "sha256": pins[os.path.realpath(ckpt)][
        "sha256"], "mode": "full pickle (pinned)"}]
    torch.save({"state_dict": {"w": torch.ones(2)}, "hparams": argparse.Namespace(lr=2)}, ckpt)  # after verification
    got = _guarded_load(ckpt, pins)
    assert got["error"] == "UnpinnedPickle"
    assert "its size, mtime or inode changed after kdbench verified it" in got["message"]


def test_the_allow_lists_load_the_official_formats_tensors_only(tmp_path):
    """What the random-weight scripts (scripts/*_random_weights.py) and the fake upstreams write, and what the
    official checkpoints hold besides tensors (numpy scalars of training loops, Lightning's hyper-parameters)."""
    import argparse

    import numpy as np

    from baselines.aniportrait.worker import AniPortraitHooks
    from baselines.anitalker.worker import AniTalkerHooks
    from baselines.real3dportrait.worker import Real3DPortraitHooks
    from baselines.sadtalker.worker import SadTalkerHooks

    sd = {"layer.weight": torch.randn(2, 2)}
    formats = {
        SadTalkerHooks: [{"mapping": sd, "epoch": 229}, {"state_dict": sd}, sd],  # sadtalker_random_weights.py
        AniTalkerHooks: [sd, {"state_dict": sd, "epoch": np.int64(3), "global_step": np.int64(9),
                              "hyper_parameters": argparse.Namespace(motion_dim=20, lr=1e-4)}],
        AniPortraitHooks: [sd],  # aniportrait_random_weights.py: torch.save(state_dict)
        Real3DPortraitHooks: [{"state_dict": sd, "global_step": np.int64(400000),
                               "checkpoint_callback_best": np.float64(0.5)}],
    }
    marker = tmp_path / "marker"
    items, expected = [], []
    for i, (hooks, objs) in enumerate(formats.items()):
        for j, obj in enumerate(objs):
            items.append((tmp_path / f"{i}-{j}.pth", hooks.pickle_allow))
            torch.save(obj, items[-1][0])
            expected.append({"ok": sorted(obj)})
        items.append((tmp_path / f"{i}-payload.pth", hooks.pickle_allow))
        torch.save({"state_dict": sd, "payload": Payload(marker)}, items[-1][0])
        expected.append({"error": "UnpinnedPickle"})
    got = _guarded_loads(items)  # one process, as a worker loads several files
    for (f, _), want, g in zip(items, expected, got, strict=True):
        assert {k: g.get(k) for k in want} == want, (f.name, g)
        assert g["loads"][0]["mode"] == "weights_only"
    assert not marker.exists()


@pytest.mark.skipif(not all(__import__("importlib").util.find_spec(m) for m in ("torchvision", "imageio",
                                                                                 "safetensors")),
                    reason="SadTalker's compat fixes need torchvision, imageio and safetensors (test extra)")
def test_sadtalker_worker_never_runs_a_payload_without_the_flag(tmp_path):
    """The SadTalker hooks on a fake tree whose loaders call torch.load as upstream's do; one weight (the mapping
    net, not pinned: the worker gets no pins) carries a payload."""
    import shutil

    import safetensors.torch

    from baselines.sadtalker.spec import SPEC
    from kdbench.errors import KdbenchError
    from kdbench.runtime.client import WorkerClient

    src = tmp_path / "src"
    shutil.copytree(Path(__file__).with_name("fake_sadtalker"), src)
    (src / "checkpoints").mkdir()
    (src / "gfpgan" / "weights").mkdir(parents=True)
    safetensors.torch.save_file({"w": torch.zeros(2)}, str(src / "checkpoints" / "SadTalker_V0.0.2_256.safetensors"))
    torch.save({"w": torch.zeros(2)}, src / "gfpgan" / "weights" / "detection_Resnet50_Final.pth")
    torch.save({"state_dict": {"w": torch.zeros(2)}}, src / "gfpgan" / "weights" / "alignment_WFLW_4HG.pth")
    marker = tmp_path / "marker"
    mapping = src / "checkpoints" / "mapping_00229-model.pth.tar"
    torch.save({"mapping": {"w": torch.zeros(2)}, "epoch": 229}, mapping)

    def start(env=None):
        client = WorkerClient(Path(sys.executable), src, SPEC.hooks, options=SPEC.options, compat=SPEC.compat,
                              log_path=tmp_path / "w.log", scratch=tmp_path / "s", env=env)
        try:
            return client.start()
        finally:
            client.close()

    ready = start()  # the official format loads tensors-only
    assert [(Path(x["file"]).name, x["mode"]) for x in ready["loads"]] == [
        ("detection_Resnet50_Final.pth", "weights_only"), ("alignment_WFLW_4HG.pth", "weights_only"),
        ("mapping_00229-model.pth.tar", "weights_only")]
    torch.save({"mapping": {"w": torch.zeros(2)}, "epoch": 229, "payload": Payload(marker)}, mapping)
    with pytest.raises(KdbenchError, match="did not start"):
        start()
    log = (tmp_path / "w.log").read_text()
    assert f"{os.path.realpath(mapping)}: not unpickled" in log and "--trust-unpinned" in log
    assert not marker.exists()
    ready = start({"KDBENCH_TRUST_UNPINNED": "1"})
    assert marker.read_text() == "ran" and ready["trust_unpinned"] is True
    assert ready["loads"][-1]["mode"] == "full pickle (UNPINNED, --trust-unpinned)"


def test_the_report_names_rows_made_with_unpinned_weights_or_trust_unpinned(tmp_path):
    import json

    from reports.cli import write_report
    from tests.report_fixtures import make_doc, write_run

    runs = {}
    kd = {"weights": {"kdtalker": {"trust": "tofu"}, "kdtalker_norm": {"trust": "pinned"}}}
    sad = {"method_env": {"trust_unpinned": True, "weights": {"sadtalker_256": {"trust": "pinned"},
                                                              "sadtalker_mapping_00229": {"trust": "unverified"}}}}
    for method, env in (("real", {}), ("kdtalker", kd), ("sadtalker", sad)):
        doc = make_doc(method, {"cpbd": {"cpbd": [0.3, 0.31, 0.32]}})
        runs[method] = write_run(tmp_path / method, doc)
        (runs[method] / "env.json").write_text(json.dumps({**doc["env"], **env}))
    write_report(list(runs.values()), tmp_path / "out", formats=["md"], figures=False)
    md = (tmp_path / "out" / "table.md").read_text()
    notes = [x for x in md.splitlines() if x.startswith("- ")]  # the rows are labelled by their paper row
    assert notes == [
        "- KDTalker: produced with weights not pinned to a published checksum: kdtalker (tofu)",
        "- SadTalker: produced with weights not pinned to a published checksum: sadtalker_mapping_00229 (unverified)",
        "- SadTalker: run with --trust-unpinned (checkpoints without a published pin could be unpickled fully; see "
        "method_env.worker.loads in its env.json)"]


def test_verify_says_which_baseline_weights_are_needed_always_and_which_only_for_some_options(tmp_path, capsys,
                                                                                             monkeypatch):
    monkeypatch.setenv("KDBENCH_HOME", str(tmp_path))
    monkeypatch.delenv("KDBENCH_WEIGHTS_MANIFEST", raising=False)
    from kdbench.errors import WeightsMissing

    def absent(self, name):
        raise WeightsMissing(name)

    monkeypatch.setattr("kdbench.weights.WeightsManager.verify", absent)  # nothing present, packaged files included
    assert main(["weights", "verify"]) == 0
    out = capsys.readouterr().out.splitlines()
    i = out.index("sadtalker:")
    assert out[i + 1] == ("  not fetched (4), needed for sadtalker: `kdbench weights fetch facexlib_alignment_wflw "
                          "facexlib_detection_resnet50 sadtalker_256 sadtalker_mapping_00229`")
    assert out[i + 2] == ("  not fetched (4), needed only for some sadtalker options (see the README): `kdbench "
                          "weights fetch facexlib_parsenet gfpgan_v1_4 sadtalker_512 sadtalker_mapping_00109`")


def test_the_refusal_says_why_each_kind_of_file_is_not_unpickled_fully():
    from kdbench.runtime.compat import _unpinned_reason

    assert _unpinned_reason(None) == "it is not a manifest file verified by kdbench"
    assert _unpinned_reason({"trust": "tofu"}) == "it is trusted on first use (no published checksum)"
    assert _unpinned_reason({"trust": "unverified", "pin_full": False}) == (
        "it differs from its pin (used under KDBENCH_ALLOW_UNVERIFIED)")
    assert _unpinned_reason({"trust": "pinned", "pin_full": False}) == "its pin is only a sha256 prefix"
    assert _unpinned_reason({"trust": "pinned", "pin_full": True}) == (
        "its size, mtime or inode changed after kdbench verified it")
