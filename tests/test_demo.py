"""`make demo` (kdbench/demo.py): the offline path, and the online path against a loopback weights mirror.

Online, the real weights would come from the internet; here :mod:`tests.weights_mirror` serves random weights
in the official formats from 127.0.0.1 (``KDBENCH_WEIGHTS_MIRROR``) with a manifest pinning their sha256
(``KDBENCH_WEIGHTS_MANIFEST``), so fetch -> checksum verification -> scoring runs as it would for a user. The
scores are those of random networks: they prove the chain, not any value.
"""

from __future__ import annotations

import hashlib
import json
import math
import socket
from pathlib import Path

import numpy as np
import pytest

from kdbench import demo
from kdbench.errors import WeightsChecksumError
from kdbench.weights import WeightsManager
from tests import weights_mirror

NETWORK_METRICS = ("lse", "diversity", "fid", "csim")
FETCH_ALL = "kdbench weights fetch syncnet_v2 sfd_face hopenet_robust_alpha1 pt_inception buffalo_l"


def _metrics(out: Path, method: str) -> dict:
    return json.loads((out / "runs" / method / "metrics.json").read_text())["metrics"]


def test_offline_demo_scores_what_needs_no_download_and_says_how_to_get_the_rest(tiny_dataset, tmp_path,
                                                                                   monkeypatch, capsys):
    monkeypatch.setenv("KDBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KDBENCH_OFFLINE", "1")
    monkeypatch.delenv("KDBENCH_WEIGHTS_MIRROR", raising=False)
    out = tmp_path / "demo_out"
    assert demo.main(["--out", str(out), "--dataset", str(tiny_dataset), "--kdtalker", "yes", "-q"]) == 0
    text = capsys.readouterr().out
    for method in ("real", "static"):
        m = _metrics(out, method)
        for name in NETWORK_METRICS:
            assert m[name]["status"] == "skipped" and "kdbench weights fetch" in m[name]["skip_reason"], name
        assert m["cpbd"]["status"] == "ok" and m["cpbd"]["aggregate"]["cpbd"]["n"] == 2 + (method == "static")
    assert _metrics(out, "static")["fps"]["status"] == "skipped"  # a copy of the image: no FPS
    # the demo options were used, are printed with the table and saved next to it
    assert _metrics(out, "static")["diversity"]["options"]["max_frames"] == 8
    saved = (out / "report" / "demo_options.md").read_text()
    assert "`--set diversity.max_frames=8` (protocol: max_frames=200)" in saved and saved in text
    main_part = demo.main_table(out / "report" / "table.md")
    assert "| Static image" in main_part and main_part in text
    assert "weights for the network metrics: 5 of 5 missing, not downloading (KDBENCH_OFFLINE=1)" in text
    assert ("FVD (StyleGAN-V protocol, other outputs of the report, not in the paper's table): real —, static — "
            "(weights 'i3d_torchscript' (i3d_torchscript.pt) are missing: run `kdbench weights fetch i3d_torchscript`)"
            ) in text
    other = (out / "report" / "table.md").read_text().partition("**Outputs not in the paper's Table 1")[2]
    assert "| fvd.fvd" in other and "kdbench weights fetch i3d_torchscript" in other
    assert "KDTalker not run: weights kdtalker, kdtalker_norm, wav2lip" in text
    assert "kdbench run --method kdtalker --dataset" in text
    last = text.strip().splitlines()[-1]
    assert last.startswith("Not the full table: CSIM, Diversity, FID, LSE-C/D skipped (KDBENCH_OFFLINE=1)")
    assert "unset KDBENCH_OFFLINE" in last and last.endswith(FETCH_ALL + "`.")
    assert not (tmp_path / "home" / "weights").exists()  # nothing downloaded


# --- online: a loopback mirror ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("mirror")
    manifest, pins = weights_mirror.build_mirror(root)
    return root, manifest, pins


@pytest.fixture
def served(mirror, monkeypatch):
    root, manifest, pins = mirror
    with weights_mirror.serve(root, max_seconds=240) as url:
        monkeypatch.setenv("KDBENCH_WEIGHTS_MIRROR", url)
        monkeypatch.setenv("KDBENCH_WEIGHTS_MANIFEST", str(manifest))
        monkeypatch.delenv("KDBENCH_OFFLINE", raising=False)
        monkeypatch.delenv("KDBENCH_ALLOW_UNVERIFIED", raising=False)
        yield root, pins


@pytest.fixture(scope="module")
def face_dataset(tmp_path_factory) -> Path:
    """One GT clip: the first 40 frames (1.6 s, 512x512) of the real HDTF clip with its audio."""
    from kdbench.audio import read_audio
    from kdbench.video import read_video, write_video
    from tests.lse_fixtures import hdtf_clip_path

    root = tmp_path_factory.mktemp("faces")
    frames, _ = read_video(hdtf_clip_path(), max_frames=40)
    audio = read_audio(hdtf_clip_path())[: 40 * 640]
    write_video(root / "gt" / "WDA_KatieHill_000.mp4", frames, 25, audio=audio)
    return root


def frechet_low_rank(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     k: int = 64) -> float:
    """``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2)`` for a covariance ``S1`` of rank < ``k`` (FID
    of a few frames): ``S1 = Q M Q^T`` on an orthonormal basis ``Q`` of its range, so the trace of the square root
    comes from a ``k x k`` eigenproblem — milliseconds where SciPy's ``sqrtm`` of a singular 2048x2048 product
    takes minutes on 2 cores. ``S1 S2`` is similar to ``S1^1/2 S2 S1^1/2``, so this is the same distance."""
    q, _ = np.linalg.qr(sigma1 @ np.random.default_rng(0).normal(size=(len(sigma1), k)))
    m = q.T @ sigma1 @ q
    assert np.abs(q @ m @ q.T - sigma1).max() <= 1e-9 * max(1.0, np.abs(sigma1).max()), "rank >= k"
    w, v = np.linalg.eigh(m)
    half = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(half @ (q.T @ sigma2 @ q) @ half)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2)
                 - 2 * np.sqrt(np.clip(inner, 0, None)).sum())


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")
@pytest.mark.parametrize("n, dim", [(40, 16), (8, 200)])  # full rank; rank 7 of 200 (as FID of 8 frames)
def test_frechet_low_rank_equals_the_pytorch_fid_formula(n, dim):
    from metrics.fid import frechet_distance

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(n, dim)), rng.normal(1.0, 2.0, size=(n, dim))
    args = (a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert frechet_low_rank(*args) == pytest.approx(frechet_distance(*args), rel=1e-6)


def test_online_demo_fetches_verifies_and_scores_every_metric(served, face_dataset, tmp_path, monkeypatch, capsys):
    root, pins = served
    # FID of 8 frames has a singular covariance, where SciPy's sqrtm takes minutes per call on 2 cores; the same
    # distance in the covariance's range (proven equal above; kdbench's formula is proven against pytorch-fid in
    # tests/test_fid.py) keeps this plumbing test short
    monkeypatch.setattr("metrics.fid.frechet_distance", frechet_low_rank)
    home = tmp_path / "home"
    monkeypatch.setenv("KDBENCH_HOME", str(home))
    out = tmp_path / "demo_out"
    # 40 frames: tracks of more than 12 detections count for LSE (protocol: 100); diversity on 2 frames without
    # the detector's 2x upsampling (the face is large; 4x less detector time, the test's largest cost)
    extra = ["--set", "lse.min_track=12", "--set", "diversity.max_frames=2", "--set", "diversity.upsample=0"]
    assert demo.main(["--out", str(out), "--dataset", str(face_dataset), "-q", *extra]) == 0
    text = capsys.readouterr().out
    total = sum((root / n / WeightsManager().entry(n).file).stat().st_size for n in weights_mirror.METRIC_WEIGHTS)
    assert f"downloading 5 files, {demo.human_size(total)}, into {home / 'weights'}" in text
    assert "weights for FVD (not in the paper's table): downloading 1 files" in text
    wm = WeightsManager()
    for name, sha in pins.items():  # each download landed in the cache and matches its pin
        assert hashlib.sha256(wm.cache_path(name).read_bytes()).hexdigest() == sha
    for method in ("real", "static"):
        doc = json.loads((out / "runs" / method / "metrics.json").read_text())
        m = doc["metrics"]
        for name in NETWORK_METRICS:
            assert m[name]["status"] == "ok" and m[name]["failures"] == {}, (method, name, m[name])
            assert m[name]["per_clip"], (method, name)
        for key in ("lse_c", "lse_d", "diversity", "fid", "csim"):
            agg = next(a for r in m.values() for k, a in r["aggregate"].items() if k == key)
            assert math.isfinite(agg["mean"]), (method, key)
        assert m["diversity"]["options"]["max_frames"] == 2  # the explicit --set wins over the demo's 8
        assert m["fid"]["options"]["stride"] == 5 and m["csim"]["options"]["frame_stride"] == 5
    assert _metrics(out, "real")["fid"]["aggregate"]["fid"]["mean"] < 1e-3  # the GT scored against itself
    fvd = {m: _metrics(out, m)["fvd"]["aggregate"]["fvd"]["mean"] for m in ("real", "static")}
    assert abs(fvd["real"]) < 1e-3 < fvd["static"]  # one 16-frame window of the GT clip per side
    assert (f"FVD (StyleGAN-V protocol, other outputs of the report, not in the paper's table): "
            f"real {fvd['real']:.3f}, static {fvd['static']:.3f}\n") in text
    weights = json.dumps(doc)
    for name in ("syncnet_v2", "sfd_face", "hopenet_robust_alpha1", "pt_inception", "buffalo_l", "i3d_torchscript"):
        assert pins[name] in weights, name  # results record the verified checksums
    saved = (out / "report" / "demo_options.md").read_text()
    assert "`--set fid.stride=5` (protocol: stride=1)" in saved and "`--set lse.min_track=12`" in saved
    assert "diversity.max_frames=8" not in saved and saved in text
    assert "Not the full table" not in text
    assert "KDTalker not run: no CUDA GPU here" in text and "--device cuda" in text


def test_a_corrupted_file_on_the_mirror_is_refused_and_not_kept(mirror, tmp_path, monkeypatch, capsys):
    root, manifest, pins = mirror
    bad = tmp_path / "bad_mirror"
    (bad / "syncnet_v2").mkdir(parents=True)
    good = (root / "syncnet_v2" / "syncnet_v2.model").read_bytes()
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF  # one byte changed on the server
    (bad / "syncnet_v2" / "syncnet_v2.model").write_bytes(bytes(flipped))
    monkeypatch.setenv("KDBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KDBENCH_WEIGHTS_MANIFEST", str(manifest))
    monkeypatch.delenv("KDBENCH_OFFLINE", raising=False)
    monkeypatch.delenv("KDBENCH_ALLOW_UNVERIFIED", raising=False)
    with weights_mirror.serve(bad, max_seconds=60) as url:
        monkeypatch.setenv("KDBENCH_WEIGHTS_MIRROR", url)
        wm = WeightsManager()
        with pytest.raises(WeightsChecksumError, match=f"!= pinned {pins['syncnet_v2']}.*was deleted"):
            wm.fetch("syncnet_v2", progress=False)
        assert not wm.cache_path("syncnet_v2").exists() and not wm.available("syncnet_v2")
        have, why = demo.fetch_missing(wm, ["syncnet_v2"], "LSE", progress=False)
    assert have == [] and why is None
    assert "syncnet_v2: not fetched: " in capsys.readouterr().out


def test_no_reachable_source_is_offline(tmp_path, monkeypatch, capsys):
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("KDBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KDBENCH_WEIGHTS_MIRROR", f"http://127.0.0.1:{port}/")
    monkeypatch.delenv("KDBENCH_OFFLINE", raising=False)
    monkeypatch.delenv("KDBENCH_WEIGHTS_MANIFEST", raising=False)
    have, why = demo.fetch_missing(WeightsManager(), list(demo.METRIC_WEIGHTS), "the metrics", progress=False)
    assert have == [] and why.startswith(f"no weights source answered; http://127.0.0.1:{port}/syncnet_v2/")
    assert "not downloading" in capsys.readouterr().out
    assert not (tmp_path / "home" / "weights").exists()


def test_size_note_and_probe_urls(monkeypatch):
    monkeypatch.delenv("KDBENCH_WEIGHTS_MIRROR", raising=False)
    wm = WeightsManager()
    assert demo.download_url_of(wm.entry("kdtalker")) == \
        "https://huggingface.co/ChaolongYang/KDTalker/resolve/main/ckpts/KDTalker.pth"
    assert demo.download_url_of(wm.entry("syncnet_v2")) == wm.entry("syncnet_v2").url
    assert demo.download_url_of(wm.entry("shape_predictor_68")) is None  # packaged: pip, not a download
    monkeypatch.setenv("KDBENCH_WEIGHTS_MIRROR", "http://127.0.0.1:9/base")
    assert demo.download_url_of(wm.entry("hopenet_robust_alpha1")) == \
        "http://127.0.0.1:9/base/hopenet_robust_alpha1/hopenet_robust_alpha1.pkl"
    probes = [demo.Probe("a", "u", True, 54_600_000), demo.Probe("b", "u", True, None),
              demo.Probe("c", "u", True, 289_000_000)]
    assert demo.size_note(probes) == "343.6 MB + b (size not announced by the server)"
    assert demo.human_size(np.int64(999)) == "999 B" and demo.human_size(1_234_567_890) == "1.2 GB"


def test_main_table_stops_before_the_paper_comparison(tmp_path):
    p = tmp_path / "table.md"
    p.write_text("**hdtf-mini**\n\n| Method | FID |\n| x | 1 |\n\n[1] note\n\n**Comparison with the paper.** ...\n"
                 "| Real Video: paper |\n")
    assert demo.main_table(p) == f"**hdtf-mini**\n\n| Method | FID |\n| x | 1 |\n\n[1] note\n\n(full tables: {p})"
    p.write_text("| Method |\n")  # no comparison part: everything
    assert demo.main_table(p).startswith("| Method |\n\n(full tables:")
    assert demo.main_table(tmp_path / "none.md") == "(no none.md written)"


def test_fetch_deletes_a_bad_download_but_not_a_file_that_was_already_there(tmp_path, monkeypatch):
    from kdbench.weights import WeightEntry

    monkeypatch.delenv("KDBENCH_ALLOW_UNVERIFIED", raising=False)
    monkeypatch.delenv("KDBENCH_WEIGHTS_MIRROR", raising=False)
    monkeypatch.delenv("KDBENCH_OFFLINE", raising=False)
    src = tmp_path / "upstream.bin"
    src.write_bytes(b"changed upstream")
    entry = WeightEntry(name="toy", file="toy.bin", url=src.as_uri(), sha256=hashlib.sha256(b"good").hexdigest())
    wm = WeightsManager(home=tmp_path / "home", manifest={"toy": entry})
    with pytest.raises(WeightsChecksumError, match="was deleted"):
        wm.fetch("toy", progress=False)
    assert not wm.cache_path("toy").exists()
    wm.cache_path("toy").write_bytes(b"placed by hand")  # present but wrong: refused, and left for the user
    with pytest.raises(WeightsChecksumError, match="Delete the file"):
        WeightsManager(home=tmp_path / "home", manifest={"toy": entry}).fetch("toy", progress=False)
    assert wm.cache_path("toy").read_bytes() == b"placed by hand"
