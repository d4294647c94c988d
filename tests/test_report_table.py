"""Tables of `kdbench report`: ordering, bolding, cells, footnotes, formats, paper comparison, sweeps."""

from __future__ import annotations

import copy
import io
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from report_fixtures import make_doc, metric_entry, standard_runs

from reports import paper
from reports.paper_table import comparison_display, comparison_latex, comparison_markdown, paper_comparison
from reports.sweep_table import sweep_comparison, sweep_markdown, sweep_table, sweep_value
from reports.table import build_table, per_clip_frame

SHARED_PAPER = Path(__file__).resolve().parents[1] / ".." / "shared" / "paper"


def full_doc(method: str, base: float, clips: int = 4) -> dict:
    """All seven Table 1 metrics, values offset by ``base``; fid set-level (no per-clip values)."""
    ids = [f"WDA_X{i}_000" for i in range(clips)]
    spread = np.linspace(-0.1, 0.1, clips)
    doc = make_doc(method, {
        "fps": {"fps": list(20 + base + spread)},
        "csim": {"csim": list(0.9 + base / 100 + spread / 10)},
        "lse": {"lse_c": list(7 + base + spread), "lse_d": list(8 - base + spread)},
        "cpbd": {"cpbd": list(0.3 + base / 100 + spread / 10)},
        "diversity": {"pose_std_kdtalker_compat": list(0.5 + base / 10 + spread),
                      "pose_std_deg": list(4 + spread)},
    }, clips=ids)
    fid = {"fid": {"mean": 12.0 - base, "std": None, "n": clips}}
    doc["metrics"]["fid"] = metric_entry("fid", aggregate=fid)
    return doc


# ---------------------------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------------------------
def test_gt_row_first_then_input_order_and_table1_column_order():
    docs = [full_doc("sadtalker", 0.1), full_doc("kdtalker", 0.3), full_doc("real", 1.0)]
    t = build_table(docs)
    assert t.rows == ["Real Video", "SadTalker", "KDTalker"]
    # metrics were inserted in a scrambled order (fps first, fid last): columns follow Table 1
    assert t.columns == list(paper.TABLE1_COLUMNS)
    assert list(t.display("md").columns) == ["LSE-C ↑", "LSE-D ↓", "Diversity ↑", "FID ↓", "CPBD ↑",
                                             "CSIM ↑", "FPS ↑"]
    assert list(t.frame.index) == t.rows
    assert list(t.frame.columns.get_level_values(0).unique()) == t.columns


def test_only_evaluated_columns_are_shown_in_paper_order():
    t = build_table(list(standard_runs().values()))
    assert t.columns == ["LSE-C", "LSE-D", "Diversity", "CPBD", "FPS"]


def test_cells_hold_mean_std_n_and_failures_of_the_inputs():
    runs = standard_runs()
    t = build_table(list(runs.values()))
    f = t.frame
    assert f.loc["KDTalker", ("LSE-C", "mean")] == pytest.approx(np.mean([7.2, 7.4]))
    assert f.loc["KDTalker", ("LSE-C", "std")] == pytest.approx(np.std([7.2, 7.4], ddof=1))
    assert f.loc["KDTalker", ("LSE-C", "n")] == 2
    assert f.loc["KDTalker", ("LSE-C", "failed")] == 1
    assert f.loc["SadTalker", ("CPBD", "mean")] == pytest.approx(0.29)
    assert math.isnan(f.loc["SadTalker", ("Diversity", "mean")])
    # [1] is Real Video's FPS: `real` copies its input (the GT video), so no FPS is shown
    assert t.cell_text("Real Video", "FPS") == "— [1]"
    assert t.footnotes()[1][0].startswith("Real Video, fps: skipped: copies its input")
    assert math.isnan(f.loc["Real Video", ("FPS", "mean")])
    assert t.cell_text("KDTalker", "LSE-D") == "7.600 ± 0.141 (n=2, 1 failed) [2]"
    assert t.cell_text("Real Video", "LSE-C") == "8.200 ± 0.100 (n=3)"


def test_n_moves_to_the_caption_when_every_cell_has_the_same_n_and_nothing_failed():
    t = build_table([full_doc("real", 1.0), full_doc("kdtalker", 0.3)])
    assert not t.show_n
    std = np.std(np.linspace(-0.1, 0.1, 4), ddof=1)
    assert t.cell_text("KDTalker", "LSE-C") == f"7.300 ± {std:.3f}"
    assert "n=4 clips" in t.caption
    # set-level FID: no std, just the value
    assert t.cell_text("KDTalker", "FID") == "11.700"


def test_best_value_per_column_is_bold_using_higher_is_better_and_gt_is_excluded():
    t = build_table(list(standard_runs().values()))
    # LSE-C higher is better: KDTalker 7.3 > SadTalker 7.1 (Real Video 8.2 excluded)
    assert t.best_rows("LSE-C") == {"KDTalker"}
    # LSE-D lower is better: SadTalker 7.5 < KDTalker 7.6 (Real Video 6.9 excluded)
    assert t.best_rows("LSE-D") == {"SadTalker"}
    assert t.best_rows("CPBD") == {"SadTalker"}
    md = t.to_markdown()
    assert "**7.300 ± 0.141 (n=2, 1 failed)**" in md
    assert "**7.500 ± 0.100 (n=3)**" in md
    assert "**8.200" not in md and "**6.900" not in md
    html = t.to_html()
    assert "<strong>7.500 ± 0.100 (n=3)</strong>" in html


def test_bolding_follows_the_metric_metadata_not_the_column_name():
    runs = standard_runs()
    for doc in runs.values():
        doc["metrics"]["lse"]["info"]["outputs"]["lse_c"]["higher_is_better"] = False
    t = build_table(list(runs.values()))
    assert t.best_rows("LSE-C") == {"SadTalker"}
    assert t.header("LSE-C") == "LSE-C ↓"


def test_ties_at_display_precision_are_all_bold_and_single_candidates_are_not():
    a, b = full_doc("kdtalker", 0.3), full_doc("sadtalker", 0.3)
    b["metrics"]["cpbd"]["aggregate"]["cpbd"]["mean"] += 1e-5  # same at 3 decimals
    t = build_table([a, b])
    assert t.best_rows("CPBD") == {"KDTalker", "SadTalker"}
    assert build_table([full_doc("real", 1), a]).best_rows("CPBD") == set()


def test_skipped_error_and_missing_metrics_show_a_dash_with_footnotes():
    runs = standard_runs()
    kd = runs["kdtalker"]
    kd["metrics"]["cpbd"] = metric_entry("cpbd", status="error", skip_reason="decoder crashed")
    del runs["real"]["metrics"]["fps"]
    t = build_table(list(runs.values()))
    marks, notes = t.footnotes()
    assert t.cell_text("SadTalker", "Diversity") == f"— [{marks[('SadTalker', 'Diversity')]}]"
    assert "SadTalker, diversity: skipped: weights hopenet missing" in notes
    assert "KDTalker, cpbd: error: decoder crashed" in notes
    assert "KDTalker, lse: 1 clip(s) failed: no face detected (1)" in notes
    assert t.cell_text("Real Video", "FPS") == "—"
    md = t.to_markdown()
    assert "— not evaluated in that run." in md
    for i, text in enumerate(notes, 1):
        assert f"[{i}] {text}" in md
    assert t.best_rows("CPBD") == set()  # only SadTalker has a value left


def test_duplicate_paper_columns_keep_the_primary_metric_and_add_an_extra_column():
    doc = make_doc("kdtalker", {"csim_dlib": {"csim": [0.8, 0.9]}, "csim": {"csim": [0.93, 0.95]}},
                   clips=["a", "b"])
    t = build_table([doc])
    assert t.columns == ["CSIM", "CSIM (csim_dlib.csim)"]
    assert t.frame.loc["KDTalker", ("CSIM", "mean")] == pytest.approx(0.94)
    assert t.frame.loc["KDTalker", ("CSIM (csim_dlib.csim)", "mean")] == pytest.approx(0.85)


def test_caption_names_dataset_clips_manifest_and_device_and_spells_out_differences():
    runs = standard_runs()
    t = build_table(list(runs.values()))
    assert t.caption == ("hdtf-mini, N=3 clips, manifest_id 3f2a9c0d1e4b5a6c, "
                         "device: cuda (NVIDIA H100 80GB HBM3).")
    runs["sadtalker"]["dataset"]["manifest_id"] = "ffff"
    runs["sadtalker"]["env"] = {"device": "cpu", "gpu": None}
    cap = build_table(list(runs.values())).caption
    assert "manifest_id DIFFERS between runs" in cap and "SadTalker: ffff" in cap
    assert "SadTalker: cpu" in cap


def test_duplicate_methods_get_distinct_row_labels(tmp_path):
    a, b = standard_runs()["kdtalker"], copy.deepcopy(standard_runs()["kdtalker"])
    from report_fixtures import write_run

    t = build_table([write_run(tmp_path / "steps5", a), write_run(tmp_path / "steps50", b)])
    assert t.rows == ["KDTalker (steps5)", "KDTalker (steps50)"]


# ---------------------------------------------------------------------------------------------
# Formats
# ---------------------------------------------------------------------------------------------
def test_latex_uses_booktabs_bold_caption_and_footnotes():
    t = build_table(list(standard_runs().values()))
    tex = t.to_latex()
    for token in ("\\toprule", "\\midrule", "\\bottomrule", "\\begin{tabular}{lccccc}"):
        assert token in tex
    assert "\\caption{hdtf-mini, N=3 clips, manifest\\_id 3f2a9c0d1e4b5a6c" in tex
    assert "\\bfseries 7.500 $\\pm$ 0.100 (n=3)" in tex  # LSE-D best
    assert "\\bfseries 8.200" not in tex
    assert "LSE-D $\\downarrow$" in tex and "LSE-C $\\uparrow$" in tex
    assert "---$^{3}$" in tex and "\\textsuperscript{3}SadTalker, diversity: skipped" in tex
    # rows in order
    assert tex.index("Real Video &") < tex.index("KDTalker &") < tex.index("SadTalker &")


def test_csv_round_trips_the_numbers():
    t = build_table(list(standard_runs().values()))
    df = pd.read_csv(io.StringIO(t.to_csv()), index_col=0)
    assert list(df.index) == t.rows
    assert df.loc["KDTalker", "LSE-C"] == pytest.approx(7.3)
    assert df.loc["KDTalker", "LSE-C n"] == 2 and df.loc["KDTalker", "LSE-C failed"] == 1
    assert df.loc["SadTalker", "CPBD std"] == pytest.approx(0.01)
    assert np.isnan(df.loc["SadTalker", "Diversity"])
    assert df.loc["SadTalker", "method_id"] == "sadtalker"


def test_per_clip_frame_holds_every_value_and_failure():
    runs = standard_runs()
    df = per_clip_frame(list(runs.values()))
    kd = df[(df.row == "KDTalker") & (df.output == "lse_c")].set_index("clip_id")
    assert kd.loc["WDA_A_000", "value"] == 7.2 and kd.loc["WDA_B_000", "value"] == 7.4
    assert np.isnan(kd.loc["WDA_C_000", "value"]) and kd.loc["WDA_C_000", "failure"] == "no face detected"
    real = df[(df.row == "Real Video") & (df.output == "pose_std_deg")]
    assert real.value.tolist() == [3.0, 4.0, 5.0] and set(real.column) == {""}
    # every finite input value appears exactly once
    n_inputs = sum(len(e["per_clip"]) * len(e["info"]["outputs"]) for d in runs.values()
                   for e in d["metrics"].values())
    assert df.value.notna().sum() == n_inputs


# ---------------------------------------------------------------------------------------------
# Paper
# ---------------------------------------------------------------------------------------------
def test_paper_tables_are_the_published_numbers():
    t1 = paper.paper_table1()
    assert list(t1.index) == ["Real Video", "SadTalker", "Real3DPortrait", "AniTalker", "AniPortrait",
                              "KDTalker"]
    assert t1.loc["KDTalker", ["LSE-C", "LSE-D", "Diversity", "FID", "CPBD", "CSIM", "FPS"]].tolist() == [
        7.326, 7.548, 0.760, 9.756, 0.277, 0.949, 21.678]
    assert t1.loc["AniPortrait", "Venue"] == "ArXiv'24"
    t6 = paper.paper_table6()
    assert list(t6.index) == [1, 5, 10, 20, 50, 100, 200]
    assert t6.loc[50].tolist() == [7.326, 7.548, 9.756, 0.277, 0.949]  # = Table 1's KDTalker row
    assert t6.loc[1, "fid"] == 19.058


@pytest.mark.skipif(not SHARED_PAPER.is_dir(),
                    reason="../shared/paper (the transcription) is not next to this checkout")
def test_package_copy_matches_the_shared_transcription():
    root = Path(__file__).resolve().parents[1] / "reports" / "data"
    for ours, theirs in (("paper_table1_hdtf.csv", "table1_hdtf.csv"),
                         ("paper_table6_ddim_steps.csv", "table6_ddim_steps.csv")):
        assert (root / ours).read_text() == (SHARED_PAPER / theirs).read_text()


def test_paper_comparison_puts_paper_measured_and_delta_side_by_side():
    runs = standard_runs()
    static = make_doc("static", {"cpbd": {"cpbd": [0.1, 0.2, 0.3]}})
    t = build_table([*runs.values(), static])
    cmp = paper_comparison(t)
    assert cmp.loc["KDTalker", ("LSE-C", "paper")] == 7.326
    assert cmp.loc["KDTalker", ("LSE-C", "measured")] == pytest.approx(7.3)
    assert cmp.loc["KDTalker", ("LSE-C", "delta")] == pytest.approx(7.3 - 7.326)
    assert cmp.loc["SadTalker", ("LSE-D", "delta")] == pytest.approx(7.5 - 7.813)
    assert np.isnan(cmp.loc["SadTalker", ("Diversity", "measured")])  # skipped
    assert cmp.loc["static", ("paper row", "")] == ""
    assert np.isnan(cmp.loc["static", ("CPBD", "paper")])
    disp = comparison_display(cmp)
    assert disp.loc["KDTalker: Δ", "LSE-C"] == "-0.026"
    assert disp.loc["KDTalker: paper", "FPS"] == "21.678"
    assert disp.loc["SadTalker: ours", "Diversity"] == "—"
    md = comparison_markdown(t)
    assert "| KDTalker: Δ " in md and "349 clips" in md
    tex = comparison_latex(t)
    assert "KDTalker: $\\Delta$ & -0.026" in tex and "\\toprule" in tex


def test_paper_row_falls_back_to_the_method_name():
    doc = make_doc("aniportrait", {"cpbd": {"cpbd": [0.4, 0.41, 0.39]}})
    doc["run"].pop("paper_row")
    cmp = paper_comparison(build_table([doc]))
    assert cmp.loc["aniportrait", ("CPBD", "paper")] == 0.401


# ---------------------------------------------------------------------------------------------
# Sweep (Table 6 layout)
# ---------------------------------------------------------------------------------------------
def _sweep_doc(steps: int, **vals: float) -> dict:
    ids = ["a", "b"]
    doc = make_doc("kdtalker", {
        "lse": {"lse_c": [vals["lse_c"] - 0.1, vals["lse_c"] + 0.1], "lse_d": [vals["lse_d"]] * 2},
        "cpbd": {"cpbd": [vals["cpbd"]] * 2}, "csim": {"csim": [vals["csim"]] * 2},
    }, clips=ids, run_extra={"config": {"method": "kdtalker", "options": {"ddim_steps": steps}}})
    doc["metrics"]["fid"] = metric_entry("fid", aggregate={"fid": {"mean": vals["fid"], "std": None, "n": 2}})
    return doc


def test_sweep_table_has_table6_layout_and_compares_with_the_paper():
    t6 = paper.paper_table6()
    steps = [50, 1, 200, 5]  # unsorted on purpose
    offsets = {1: 0.5, 5: -0.02, 50: 0.0, 200: 0.1}
    results = [_sweep_doc(s, **{c: t6.loc[s, c] + offsets[s] for c in t6.columns}) for s in steps]
    df = sweep_table(results, "ddim_steps")
    assert df.index.name == "ddim_steps" and list(df.index) == [1, 5, 50, 200]
    assert list(df.columns) == ["lse_c", "lse_d", "fid", "cpbd", "csim"]
    np.testing.assert_allclose(df.loc[5].to_numpy(), t6.loc[5].to_numpy() - 0.02)
    cmp = sweep_comparison(df)
    assert list(cmp.index) == [1, 5, 10, 20, 50, 100, 200]
    assert cmp.loc[1, ("fid", "paper")] == 19.058
    assert cmp.loc[1, ("fid", "delta")] == pytest.approx(0.5)
    assert cmp.loc[50, ("lse_c", "delta")] == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(cmp.loc[10, ("csim", "measured")])
    md = sweep_markdown(df)
    assert "**7.435**" in md  # best LSE-C at 5 steps: 7.455 - 0.02
    assert "| FID ↓" in md and "Table 6" in md


def test_sweep_value_lookup_and_errors():
    doc = _sweep_doc(10, lse_c=7, lse_d=7, fid=9, cpbd=0.3, csim=0.9)
    assert sweep_value(doc, "ddim_steps") == 10
    assert sweep_value({"value": 20, "metrics": doc}, "ddim_steps") == 20
    doc2 = copy.deepcopy(doc)
    doc2["run"]["sweep"] = {"ddim_steps": 7}
    assert sweep_value(doc2, "ddim_steps") == 7
    from kdbench.errors import KdbenchError

    with pytest.raises(KdbenchError, match="seed"):
        sweep_value(doc, "seed")
    with pytest.raises(KdbenchError, match="two results"):
        sweep_table([doc, copy.deepcopy(doc)], "ddim_steps")
    assert sweep_comparison(sweep_table([doc], "ddim_steps").rename_axis("seed")) is None


def test_importing_reports_imports_neither_torch_nor_matplotlib():
    code = ("import sys, reports, reports.table, reports.check, reports.cli, reports.figures, reports.html, "
            "reports.paper, reports.cells, reports.paper_table, reports.sweep_table, reports.timing_table; "
            "reports.build_table; "
            "bad = [m for m in ('torch', 'matplotlib', 'cv2') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_a_reason_shared_by_several_rows_is_one_footnote():
    runs = standard_runs()
    for doc in runs.values():
        doc["metrics"]["fid"] = metric_entry("fid", status="skipped",
                                             skip_reason="weights 'pt_inception' missing")
    t = build_table(list(runs.values()))
    marks, notes = t.footnotes()
    shared = "Real Video, KDTalker, SadTalker, fid: skipped: weights 'pt_inception' missing"
    assert shared in notes
    assert {marks[(r, "FID")] for r in t.rows} == {notes.index(shared) + 1}


def test_metrics_recorded_without_metadata_still_get_their_column():
    # what the evaluator records when a metric module cannot be imported
    doc = make_doc("kdtalker", {"cpbd": {"cpbd": [0.3, 0.2, 0.25]}})
    for name in ("lse", "pose_offline"):
        doc["metrics"][name] = {"info": {"name": name}, "options": {}, "status": "skipped",
                                "aggregate": {}, "failures": {}, "per_clip": {},
                                "skip_reason": f"cannot import metrics.{name}"}
    t = build_table([doc])
    assert t.columns == ["LSE-C", "LSE-D", "CPBD"]
    assert t.cell_text("KDTalker", "LSE-C") == "— [1]"
    other = build_table([doc], other=True)
    assert other.columns == ["pose_offline"]
    assert other.footnotes()[1] == ["KDTalker, pose_offline: skipped: cannot import metrics.pose_offline"]


def test_other_outputs_table_lists_outputs_without_a_paper_column():
    t = build_table(list(standard_runs().values()), other=True)
    assert t.columns == ["diversity.pose_std_deg"]
    # n always shown here (outputs such as fps.load_s are not per-clip); one candidate: no bold
    assert t.cell_text("KDTalker", "diversity.pose_std_deg") == "6.000 ± 1.000 (n=3)"
    assert t.caption.startswith("Outputs not in the paper's Table 1. hdtf-mini, N=3 clips")
    assert t.cell_text("SadTalker", "diversity.pose_std_deg") == "— [1]"


def test_comparison_display_leaves_out_rows_without_a_published_counterpart():
    static = make_doc("static", {"cpbd": {"cpbd": [0.1, 0.2, 0.3]}})
    disp = comparison_display(paper_comparison(build_table([standard_runs()["kdtalker"], static])))
    assert list(disp.index) == ["KDTalker: paper", "KDTalker: ours", "KDTalker: Δ"]


def test_other_outputs_are_displayed_transposed_with_bold_in_the_right_cell():
    docs = [full_doc("real", 1.0), full_doc("kdtalker", 0.3), full_doc("sadtalker", 0.1)]
    docs[2]["metrics"]["diversity"]["aggregate"]["pose_std_deg"]["mean"] = 9.0
    t = build_table(docs, other=True)
    disp = t.display("md")
    assert list(disp.columns) == ["Real Video", "KDTalker", "SadTalker"]
    assert list(disp.index) == ["diversity.pose_std_deg ↑"]
    assert disp.loc["diversity.pose_std_deg ↑", "SadTalker"].startswith("**9.000 ± ")
    assert not disp.loc["diversity.pose_std_deg ↑", "KDTalker"].startswith("**")
    tex = t.to_latex()
    row = next(line for line in tex.splitlines() if line.startswith("diversity.pose"))
    cells = row.rstrip(" \\").split(" & ")
    assert cells[0] == "diversity.pose\\_std\\_deg $\\uparrow$"
    assert [c.startswith("\\bfseries") for c in cells[1:]] == [False, False, True]
    assert "<th>Output</th><th>Real Video</th>" in t.to_html()


def test_protocol_options_are_the_metrics_defaults():
    """The caption's notion of "the paper's protocol" is each metric's default options (no drift between them)."""
    pytest.importorskip("torch", reason="the metric classes import torch (kdbench[metrics])")
    from kdbench.registry import METRICS
    from reports.table import PROTOCOL_OPTIONS

    for name, protocol in PROTOCOL_OPTIONS.items():
        defaults = METRICS.get(name).default_options
        assert {k: defaults[k] for k in protocol} == protocol, name


def test_a_table_from_shortened_options_says_so_in_its_caption():
    def doc(method, **cpbd_options):
        d = make_doc(method, {"cpbd": {"cpbd": [0.3, 0.2, 0.25]}})
        d["metrics"]["cpbd"]["options"] = {"size": 512, "stride": 1, "max_frames": None, "workers": 2,
                                           **cpbd_options}
        return d

    assert "protocol" not in build_table([doc("real"), doc("kdtalker")]).caption  # workers: speed only
    cap = build_table([doc("real", max_frames=2), doc("kdtalker", max_frames=2, stride=5)]).caption
    assert cap.endswith(". NOT the paper's protocol: cpbd.max_frames=2 (protocol None); "
                        "cpbd.stride=5 (protocol 1) for KDTalker.")
    md = build_table([doc("real", max_frames=2)]).to_markdown()
    assert "NOT the paper's protocol: cpbd.max_frames=2 (protocol None)" in md.splitlines()[0]
