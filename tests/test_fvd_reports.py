"""FVD end to end: ``kdbench eval`` on a run folder, the report (among the outputs that are not in Table 1; ``—`` with
the fetch command when the weights are missing) and ``kdbench check`` (drift, tolerance, changed weights)."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="FVD's I3D needs torch (a metrics dependency)")

from test_fvd import i3d_module, one_torch_thread  # noqa: E402, F401 - the fixture is used by name

from kdbench.dataset import load_dataset  # noqa: E402
from kdbench.evaluate import evaluate_run  # noqa: E402
from kdbench.runner import run_method  # noqa: E402
from kdbench.weights import WeightsManager  # noqa: E402
from reports.check import run_check  # noqa: E402
from reports.cli import write_report  # noqa: E402


@pytest.fixture
def real_run(tiny_dataset, tmp_path, monkeypatch) -> Path:
    """The ``real`` method on the tiny dataset (2 clips with a GT video of 50 frames, 64x64)."""
    monkeypatch.setenv("KDBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KDBENCH_OFFLINE", raising=False)
    out = tmp_path / "runs" / "real"
    run_method("real", load_dataset(tiny_dataset), out, progress=False, warmup=0)
    return out


def _install_tiny_i3d() -> str:
    """A tiny random I3D where the weights manager looks for ``i3d_torchscript.pt``; returns its sha256."""
    wm = WeightsManager()
    i3d_module().save_random_i3d(wm.cache_path("i3d_torchscript"), 1 / 16, 0, 64)
    return wm.verify("i3d_torchscript")["sha256"]


def test_eval_report_and_check(real_run, tmp_path, one_torch_thread):  # noqa: F811
    sha = _install_tiny_i3d()
    doc = evaluate_run(real_run, ["fvd"], {"fvd.count": None, "fvd.stride": 8}, progress=False)
    m = doc["metrics"]["fvd"]
    assert m["status"] == "ok", m.get("skip_reason")
    assert sorted(m["per_clip"]) == ["A_clip_000", "B_clip_000"]
    assert m["per_clip"]["A_clip_000"]["window_starts"] == [0, 8, 16, 24, 32]  # 50 frames: 32 + 15 = 47 fits
    agg = m["aggregate"]["fvd"]
    assert abs(agg["mean"]) < 1e-3  # `real` replays the GT (re-encoded): FVD ~0 (a rank-9 sqrtm's error)
    assert agg["n_windows_gen"] == agg["n_windows_gt"] == 10 and agg["n_not_applicable"] == 1  # C: no GT video
    assert agg["protocol"]["windows"]["starts_in_a_200_frame_clip"] == list(range(0, 185, 8))
    assert doc["weights"]["i3d_torchscript"]["sha256"] == sha and doc["weights"]["i3d_torchscript"]["trust"] == "tofu"
    assert m["evaluated"]["weights_sha256"] == {"i3d_torchscript": sha}

    # report: FVD is among the outputs that are not in Table 1
    written = write_report([real_run], tmp_path / "report", formats=("md",), figures=False, gallery=False)
    table = next(p for p in written if p.name == "table.md").read_text()
    main, _, other = table.partition("**Outputs not in the paper's Table 1")
    assert "fvd" not in main.lower() and "fvd.fvd ↓" in other
    row = next(line for line in other.splitlines() if line.startswith("| fvd.fvd"))
    assert f"{agg['mean']:.3f}" in row and "n=2" in row

    # check: identical -> 0; FVD moved beyond atol 0.01 + rtol 1e-3 -> 1 (drift named); other I3D weights -> 2
    base = tmp_path / "baseline.json"
    base.write_text(json.dumps(doc))
    buf = io.StringIO()
    assert run_check(real_run, base, out=buf) == 0, buf.getvalue()
    drift = copy.deepcopy(doc)
    drift["metrics"]["fvd"]["aggregate"]["fvd"]["mean"] = 0.02
    base.write_text(json.dumps(drift))
    buf = io.StringIO()
    assert run_check(real_run, base, out=buf) == 1 and "exit 1: DRIFT in 1 value(s): fvd.fvd" in buf.getvalue()
    near = copy.deepcopy(doc)
    near["metrics"]["fvd"]["aggregate"]["fvd"]["mean"] = 0.009
    base.write_text(json.dumps(near))
    assert run_check(real_run, base, out=io.StringIO()) == 0
    other_weights = copy.deepcopy(doc)
    other_weights["weights"]["i3d_torchscript"]["sha256"] = "0" * 64
    base.write_text(json.dumps(other_weights))
    buf = io.StringIO()
    assert run_check(real_run, base, out=buf) == 2 and "weights i3d_torchscript: sha256" in buf.getvalue()


def test_missing_weights_show_a_dash_and_the_fetch_command(real_run, tmp_path, monkeypatch):
    monkeypatch.setenv("KDBENCH_OFFLINE", "1")
    doc = evaluate_run(real_run, ["fvd", "cpbd"], {"cpbd.size": None}, progress=False)
    m = doc["metrics"]["fvd"]
    assert m["status"] == "skipped" and m["fetch"] == "kdbench weights fetch i3d_torchscript"
    assert m["skip_reason"] == ("weights 'i3d_torchscript' (i3d_torchscript.pt) are missing: run "
                                "`kdbench weights fetch i3d_torchscript`")
    written = write_report([real_run], tmp_path / "report", formats=("md",), figures=False, gallery=False)
    table = next(p for p in written if p.name == "table.md").read_text()
    main, _, other = table.partition("**Outputs not in the paper's Table 1")
    assert "fvd" not in main.lower()
    row = next(line for line in other.splitlines() if line.startswith("| fvd.fvd"))
    assert "— [" in row
    assert "fvd: skipped: weights 'i3d_torchscript' (i3d_torchscript.pt) are missing: run `kdbench weights fetch " \
           "i3d_torchscript`" in other
