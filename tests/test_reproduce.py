"""``kdbench reproduce``: the plan names every Table 1 row with what is missing and the command that fixes it;
a real (small) reproduction runs, evaluates and writes the report with the paper's values."""

from __future__ import annotations

from kdbench.cli import main
from kdbench.reproduce import TABLE1_ROWS, plan, reproduce


def test_dry_run_lists_plan_and_missing_pieces(hdtf_mini, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KDBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KDBENCH_OFFLINE", "1")
    out = tmp_path / "t1"
    assert main(["reproduce", "--dataset", str(hdtf_mini), "--out", str(out), "--dry-run", "--table6"]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    rows = [r for r, _ in TABLE1_ROWS]
    firsts = [next(i for i, ln in enumerate(lines) if ln.startswith(r + " ")) for r in rows]
    assert firsts == sorted(firsts)  # the paper's row order
    assert f"kdbench run --method real --out {out / 'real'}" in text
    assert "missing: metric weights: syncnet_v2" in text and "fix: kdbench weights fetch syncnet_v2" in text
    assert "fix: kdbench weights fetch kdtalker kdtalker_norm wav2lip" in text
    assert f"--set ddim_steps=200 --out {out / 'table6' / 'ddim_steps=200'}" in text
    assert not out.exists()  # a dry run creates nothing

    runs, shared = plan(str(hdtf_mini), out, methods=["real", "kdtalker"])
    assert [r.method for r in runs] == ["real", "kdtalker"]
    assert runs[0].status == "to run" and runs[0].total == 4
    assert runs[1].status == "needs set-up" and runs[1].missing[0][1].startswith("kdbench weights fetch kdtalker")


def test_reproduce_runs_evaluates_and_reports(hdtf_mini, tmp_path, monkeypatch):
    monkeypatch.setenv("KDBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KDBENCH_OFFLINE", "1")
    out = tmp_path / "t1"
    res = reproduce(str(hdtf_mini), out, methods=["real", "kdtalker"], metrics=["cpbd"],
                    sets={"cpbd.max_frames": 2}, fetch=False, progress=False)
    assert res["ran"] == ["Real Video"]
    assert "weights: kdtalker" in res["skipped"]["KDTalker"]
    assert (out / "real" / "metrics.json").is_file()
    cmp = (out / "report" / "paper_comparison.csv").read_text()
    assert "0.353" in cmp  # the paper's Real Video CPBD next to the measured one
    again, _ = plan(str(hdtf_mini), out, methods=["real"])
    assert again[0].status == "evaluated, 3 failed" and again[0].done == 1  # the 3 clips without a GT video
