"""`kdbench check`: every exit code (0 within tolerance, 1 drift, 2 incomparable), tolerances, JSON."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import pytest
from report_fixtures import metric_entry, standard_runs, write_run

from kdbench.errors import KdbenchError
from reports.check import DEFAULT_TOLERANCES, Tolerances, check, run_check, within
from reports.cli import main


@pytest.fixture()
def base_doc() -> dict:
    return standard_runs()["kdtalker"]


def _check(tmp_path: Path, base: dict, res: dict, tol: str | None = None, per_clip: bool = False,
           as_json: bool = False) -> tuple[int, str]:
    b = write_run(tmp_path / "baseline", base)
    r = write_run(tmp_path / "results", res)
    tol_path = None
    if tol is not None:
        tol_path = tmp_path / "tol.toml"
        tol_path.write_text(tol)
    buf = io.StringIO()
    rc = run_check(r, b / "metrics.json", tol_path, per_clip=per_clip, as_json=as_json, out=buf)
    return rc, buf.getvalue()


def _shift(doc: dict, metric: str, output: str, delta: float) -> dict:
    doc = copy.deepcopy(doc)
    doc["metrics"][metric]["aggregate"][output]["mean"] += delta
    return doc


# ---------------------------------------------------------------------------------------------
# exit 0
# ---------------------------------------------------------------------------------------------
def test_identical_results_pass(tmp_path, base_doc):
    rc, text = _check(tmp_path, base_doc, copy.deepcopy(base_doc))
    assert rc == 0
    assert "exit 0: all 6 compared value(s) within tolerance." in text
    assert any(line.startswith("| lse ") and "| lse_c " in line and line.rstrip().endswith("| ok       |")
               for line in text.splitlines())


def test_float_noise_within_default_tolerance_passes(tmp_path, base_doc):
    res = _shift(base_doc, "lse", "lse_c", 5e-4)  # atol 1e-3 + rtol 1e-3 * 7.3
    assert _check(tmp_path, base_doc, res)[0] == 0


def test_fps_tolerance_is_loose_by_default(tmp_path, base_doc):
    res = _shift(base_doc, "fps", "fps", -22.0 * 0.4)  # 40 % slower: within rtol 0.5
    assert _check(tmp_path, base_doc, res)[0] == 0
    res = _shift(base_doc, "fps", "fps", -22.0 * 0.6)
    assert _check(tmp_path, base_doc, res)[0] == 1


# ---------------------------------------------------------------------------------------------
# exit 1
# ---------------------------------------------------------------------------------------------
def test_a_value_beyond_tolerance_is_drift_and_named(tmp_path, base_doc):
    res = _shift(base_doc, "lse", "lse_d", 0.05)
    rc, text = _check(tmp_path, base_doc, res)
    assert rc == 1
    assert "exit 1: DRIFT in 1 value(s): lse.lse_d" in text
    row = next(line for line in text.splitlines() if "| lse_d" in line)
    assert "7.6" in row and "7.65" in row and "+0.05" in row and "DRIFT" in row


def test_a_changed_failure_count_is_drift(tmp_path, base_doc):
    res = copy.deepcopy(base_doc)
    res["metrics"]["cpbd"]["failures"] = {"WDA_B_000": "blank frame"}
    rc, text = _check(tmp_path, base_doc, res)
    assert rc == 1
    assert "newly failing: WDA_B_000 (blank frame)" in text and "cpbd.failures" in text
    # ... and a clip that no longer fails too
    rc, text = _check(tmp_path, res, base_doc)
    assert rc == 1 and "no longer failing: WDA_B_000" in text


@pytest.mark.parametrize("how", ["skipped", "absent"])
def test_a_metric_missing_from_the_results_is_drift(tmp_path, base_doc, how):
    res = copy.deepcopy(base_doc)
    if how == "skipped":
        res["metrics"]["diversity"] = metric_entry("diversity", status="skipped", skip_reason="no weights")
    else:
        del res["metrics"]["diversity"]
    rc, text = _check(tmp_path, base_doc, res)
    assert rc == 1
    assert "missing (results " + ("skipped: no weights" if how == "skipped" else "absent") in text


def test_a_new_metric_in_the_results_is_reported_but_not_drift(tmp_path, base_doc):
    base = copy.deepcopy(base_doc)
    del base["metrics"]["cpbd"]
    rc, text = _check(tmp_path, base, base_doc)
    assert rc == 0 and "new (metric not in the baseline)" in text


def test_per_clip_drift_is_caught_only_with_per_clip(tmp_path, base_doc):
    res = copy.deepcopy(base_doc)
    pc = res["metrics"]["cpbd"]["per_clip"]
    pc["WDA_A_000"]["cpbd"], pc["WDA_C_000"]["cpbd"] = pc["WDA_C_000"]["cpbd"], pc["WDA_A_000"]["cpbd"]
    assert _check(tmp_path, base_doc, res)[0] == 0  # same mean
    rc, text = _check(tmp_path, base_doc, res, per_clip=True)
    assert rc == 1
    assert "cpbd.cpbd[WDA_A_000]" in text and "cpbd.cpbd[WDA_C_000]" in text
    assert "per-clip:" in text  # the clips that agree are counted, not listed


# ---------------------------------------------------------------------------------------------
# tolerance file
# ---------------------------------------------------------------------------------------------
def test_tolerance_file_loosens_and_tightens(tmp_path, base_doc):
    res = _shift(base_doc, "lse", "lse_d", 0.05)
    assert _check(tmp_path, base_doc, res, tol="[lse]\natol = 0.1\n")[0] == 0
    assert _check(tmp_path, base_doc, res, tol="[lse.lse_d]\natol = 0.06\nrtol = 0\n")[0] == 0
    # output-level beats metric-level
    assert _check(tmp_path, base_doc, res, tol="[lse]\natol = 0.1\n[lse.lse_d]\natol = 0.01\n")[0] == 1
    # check = false: shown, not judged
    rc, text = _check(tmp_path, base_doc, res, tol="[lse.lse_d]\ncheck = false\n")
    assert rc == 0 and "unchecked" in text
    # tighter default makes float noise drift
    res2 = _shift(base_doc, "cpbd", "cpbd", 1e-4)
    assert _check(tmp_path, base_doc, res2)[0] == 0
    assert _check(tmp_path, base_doc, res2, tol="[default]\natol = 1e-6\nrtol = 0\n")[0] == 1


def test_tolerance_resolution_and_validation():
    t = Tolerances({"lse": {"atol": 0.5, "lse_d": {"rtol": 0.2}}, "default": {"rtol": 0.0}})
    assert t.get("lse", "lse_d") == {"atol": 0.5, "rtol": 0.2, "check": True, "clip_atol": 0.5,
                                     "clip_rtol": 0.2}
    assert t.get("lse", "lse_c")["rtol"] == 0.0
    assert t.get("cpbd", "cpbd")["atol"] == DEFAULT_TOLERANCES["default"]["atol"]
    assert t.get("fps", "fps")["rtol"] == 0.5
    assert t.get("fps", "load_s")["check"] is False
    assert Tolerances({"fps": {"load_s": {"check": True}}}).get("fps", "load_s")["check"] is True
    for bad in ({"lse": {"atl": 1}}, {"lse": {"atol": -1}}, {"lse": {"check": "no"}}, {"lse": 3}):
        with pytest.raises(KdbenchError):
            Tolerances(bad)
    assert within(1.0, 1.1, 0.0, 0.1) and not within(1.0, 1.1, 0.0, 0.05)


# ---------------------------------------------------------------------------------------------
# exit 2
# ---------------------------------------------------------------------------------------------
def _versioned(doc: dict, metric: str, version: str) -> dict:
    doc = copy.deepcopy(doc)
    doc["metrics"][metric]["info"]["version"] = version
    return doc


def _protocol(doc: dict, metric: str, protocol: str) -> dict:
    doc = copy.deepcopy(doc)
    doc["metrics"][metric]["options"]["protocol"] = protocol
    return doc


def _weights(doc: dict, name: str) -> dict:
    doc = copy.deepcopy(doc)
    doc["weights"][name]["sha256"] = "ab" * 32
    return doc


def _manifest(doc: dict) -> dict:
    doc = copy.deepcopy(doc)
    doc["dataset"]["manifest_id"] = "0000deadbeef"
    return doc


@pytest.mark.parametrize("mutate, named", [
    (_manifest, "manifest_id: baseline '3f2a9c0d1e4b5a6c', results '0000deadbeef'"),
    (lambda d: _versioned(d, "lse", "2"), "metric lse: version: baseline '1', results '2'"),
    (lambda d: _protocol(d, "diversity", "degrees"), "metric diversity: protocol: baseline 'kdtalker', "
                                                     "results 'degrees'"),
    (lambda d: _weights(d, "syncnet_v2"), "weights syncnet_v2: sha256: baseline "),
])
def test_incomparable_inputs_exit_2_and_are_named(tmp_path, base_doc, mutate, named):
    rc, text = _check(tmp_path, base_doc, mutate(base_doc))
    assert rc == 2
    assert f"  - {named}" in text
    assert "exit 2: inputs not comparable" in text


def test_every_reason_is_listed_and_wins_over_drift(tmp_path, base_doc):
    res = _shift(_weights(_versioned(_manifest(base_doc), "cpbd", "9"), "hopenet_robust_alpha1"), "lse",
                 "lse_c", 1.0)
    report = check(write_run(tmp_path / "r", res), write_run(tmp_path / "b", base_doc))
    assert report.exit_code == 2 and report.status == "incomparable"
    assert len(report.incomparable) == 3
    assert [r.metric for r in report.drift] == ["lse"]  # drift still shown


def test_a_different_method_is_incomparable(tmp_path):
    runs = standard_runs()
    rc, text = _check(tmp_path, runs["kdtalker"], runs["sadtalker"])
    assert rc == 2 and "method: baseline 'kdtalker', results 'sadtalker'" in text


def test_unreadable_inputs_and_bad_tolerance_files_exit_2(tmp_path, base_doc):
    write_run(tmp_path / "b", base_doc)
    buf = io.StringIO()
    assert run_check(tmp_path / "missing", tmp_path / "b", out=buf) == 2
    assert "no metrics.json" in buf.getvalue()
    (tmp_path / "broken.json").write_text("{not json")
    assert check(tmp_path / "broken.json", tmp_path / "b").exit_code == 2
    rc, text = _check(tmp_path, base_doc, base_doc, tol="[lse\natol=")
    assert rc == 2 and "not valid TOML" in text


def test_option_and_device_differences_are_notes_not_failures(tmp_path, base_doc):
    res = copy.deepcopy(base_doc)
    res["metrics"]["cpbd"]["options"]["edge_threshold"] = 0.1
    res["env"] = {"device": "cpu"}
    rc, text = _check(tmp_path, base_doc, res)
    assert rc == 0
    assert "note: metric cpbd: option edge_threshold: baseline None, results 0.1" in text
    assert "note: device: baseline cuda (NVIDIA H100 80GB HBM3), results cpu" in text


# ---------------------------------------------------------------------------------------------
# JSON and CLI
# ---------------------------------------------------------------------------------------------
def test_json_output(tmp_path, base_doc):
    rc, text = _check(tmp_path, base_doc, _shift(base_doc, "lse", "lse_c", 0.2), per_clip=True, as_json=True)
    data = json.loads(text)
    assert rc == 1 and data["exit_code"] == 1 and data["status"] == "drift"
    assert data["n_drift"] == 1 and data["incomparable"] == []
    row = next(r for r in data["rows"]
               if r["metric"] == "lse" and r["output"] == "lse_c" and r["clip"] is None)
    assert row["status"] == "DRIFT"
    assert row["delta"] == pytest.approx(0.2) and row["rel_delta"] == pytest.approx(0.2 / 7.3)
    clips = [r for r in data["rows"] if r["clip"] is not None]
    assert {r["clip"] for r in clips} == {"WDA_A_000", "WDA_B_000", "WDA_C_000"}


def test_cli_exit_codes(tmp_path, base_doc, capsys):
    b = write_run(tmp_path / "b", base_doc)
    ok = write_run(tmp_path / "ok", copy.deepcopy(base_doc))
    drift = write_run(tmp_path / "drift", _shift(base_doc, "cpbd", "cpbd", 0.05))
    other = write_run(tmp_path / "other", _manifest(base_doc))
    assert main(["check", str(ok), "--baseline", str(b)]) == 0
    assert main(["check", str(drift), "--baseline", str(b / "metrics.json")]) == 1
    assert main(["check", str(other), "--baseline", str(b), "--json"]) == 2
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{"):])["incomparable"][0].startswith("manifest_id")


def test_the_example_tolerance_file_and_workflow_agree(tmp_path, base_doc):
    root = Path(__file__).resolve().parents[1]
    tol = Tolerances.from_file(root / "examples" / "kdbench-tolerance.toml")
    assert tol.get("fps", "fps")["check"] is False and tol.get("cpbd", "cpbd")["atol"] == 1e-4
    workflow = (root / "examples" / "github-workflow-kdbench-check.yml").read_text()
    assert "TOLERANCE: examples/kdbench-tolerance.toml" in workflow
    assert 'kdbench check runs/ci --baseline "$BASELINE" --tolerance "$TOLERANCE"' in workflow
    # with that file, an FPS collapse on a loaded runner does not fail the job, a CPBD change does
    text = (root / "examples" / "kdbench-tolerance.toml").read_text()
    assert _check(tmp_path, base_doc, _shift(base_doc, "fps", "fps", -20.0), tol=text)[0] == 0
    assert _check(tmp_path, base_doc, _shift(base_doc, "cpbd", "cpbd", 5e-4), tol=text)[0] == 1


def test_a_changed_n_is_drift_even_when_the_mean_agrees(tmp_path, base_doc):
    res = copy.deepcopy(base_doc)
    res["metrics"]["cpbd"]["aggregate"]["cpbd"]["n"] = 2  # e.g. one clip scored NaN, not recorded as failed
    rc, text = _check(tmp_path, base_doc, res)
    assert rc == 1 and "DRIFT (n 3 -> 2)" in text
