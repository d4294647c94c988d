"""Bootstrap CIs over clips and paired comparisons: known answers, coverage, scipy's Wilcoxon."""

from __future__ import annotations

import copy
import io
import math

import numpy as np
import pandas as pd
import pytest
from report_fixtures import make_doc, metric_entry, standard_runs, write_run
from scipy import stats as sps

from kdbench.errors import KdbenchError
from reports import stats
from reports.cli import main
from reports.compare import compare_pair, pair_display
from reports.figures import fps_data
from reports.runs import RunResult, load_run
from reports.table import build_table
from reports.timing_table import timing_frame


# ---------------------------------------------------------------------------------------------
# CIs
# ---------------------------------------------------------------------------------------------
def test_constant_values_give_a_zero_width_interval():
    iv = stats.bootstrap_ci(np.full(17, 0.25), resamples=500, seed=3)
    assert (iv.estimate, iv.lo, iv.hi, iv.n) == (0.25, 0.25, 0.25, 17)
    one = stats.bootstrap_ci([7.0, math.nan], resamples=500)
    assert (one.estimate, one.lo, one.hi, one.n) == (7.0, 7.0, 7.0, 1)  # NaN dropped; nothing to resample
    assert math.isnan(stats.bootstrap_ci([], 100).estimate)


def test_the_interval_is_the_percentiles_of_resampled_means_with_the_stated_seed():
    x = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0])
    iv = stats.bootstrap_ci(x, resamples=4000, seed=11, level=0.9)
    idx = np.random.default_rng(11).integers(0, len(x), size=(4000, len(x)))
    lo, hi = np.quantile(x[idx].mean(axis=1), [0.05, 0.95])
    assert (iv.lo, iv.hi) == (lo, hi) and iv.estimate == x.mean()
    assert stats.bootstrap_ci(x, 4000, seed=11, level=0.9) == iv  # seeded: reproducible
    assert stats.bootstrap_ci(x, 4000, seed=12, level=0.9) != iv
    assert iv.as_text(2) == f"{x.mean():.2f} [{lo:.2f}, {hi:.2f}]"


def test_chunked_resampling_equals_one_draw(monkeypatch):
    x = np.random.default_rng(0).normal(size=50)
    whole = stats.bootstrap_stats((x,), stats.mean_stat, 1000, seed=5)
    monkeypatch.setattr(stats, "MAX_CELLS", 50 * 7)  # chunks of 7 resamples
    assert np.array_equal(stats.bootstrap_stats((x,), stats.mean_stat, 1000, seed=5), whole)


def test_a_normal_samples_interval_covers_the_mean_at_about_the_stated_rate():
    """400 samples of 40 clips from N(5, 2): the 95% percentile-bootstrap CI should cover 5 in ~93-95%
    of them (the percentile interval is a little narrow at small n). Binomial sd at 400 trials: 1.1%."""
    rng = np.random.default_rng(2024)
    samples = rng.normal(5.0, 2.0, size=(400, 40))
    covered = 0
    for i, x in enumerate(samples):
        iv = stats.bootstrap_ci(x, resamples=1000, seed=i)
        covered += iv.lo <= 5.0 <= iv.hi
    assert 0.90 <= covered / 400 <= 0.98
    # and the width matches the normal theory: 2 * 1.96 * sigma / sqrt(n) ~ 1.24
    widths = [np.subtract(*stats.percentile_interval(
        stats.bootstrap_stats((x,), stats.mean_stat, 1000, i))[::-1]) for i, x in enumerate(samples[:50])]
    assert np.mean(widths) == pytest.approx(2 * 1.96 * 2.0 / np.sqrt(40), rel=0.1)


def test_pooled_ratio_interval_for_fps():
    frames = np.array([200.0, 100.0, 50.0, 400.0])
    iv = stats.bootstrap_ratio_ci(frames, frames / 20.0, resamples=500)  # every clip at 20 fps
    assert (iv.estimate, iv.lo, iv.hi) == pytest.approx((20.0, 20.0, 20.0))
    sec = np.array([10.0, 4.0, 5.0, 10.0])
    iv = stats.bootstrap_ratio_ci(frames, sec, resamples=2000, seed=1)
    assert iv.estimate == pytest.approx(750 / 29)
    assert (frames / sec).min() <= iv.lo < iv.estimate < iv.hi <= (frames / sec).max()


# ---------------------------------------------------------------------------------------------
# Paired tests
# ---------------------------------------------------------------------------------------------
def test_paired_mean_matches_scipy_wilcoxon_and_the_bootstrap_of_the_differences():
    rng = np.random.default_rng(7)
    b = rng.normal(7.0, 0.5, 25)
    a = b + rng.normal(0.2, 0.3, 25)
    res = stats.paired_mean(a, b, resamples=3000, seed=2)
    ref = sps.wilcoxon(a - b)
    assert res.test == "wilcoxon" and res.n == 25
    assert res.statistic == ref.statistic and res.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    d = stats.bootstrap_ci(a - b, 3000, 2)
    assert (res.diff, res.lo, res.hi) == pytest.approx((d.estimate, d.lo, d.hi))
    assert (res.mean_a, res.mean_b) == pytest.approx((a.mean(), b.mean()))
    # NaN pairs are dropped from both sides
    a2, b2 = np.append(a, np.nan), np.append(b, 1.0)
    assert stats.paired_mean(a2, b2, 3000, 2) == res
    # identical runs: zero difference, p = 1
    same = stats.paired_mean(b, b, 500)
    assert (same.diff, same.lo, same.hi, same.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_paired_ratio_uses_the_same_clips_for_both_runs():
    fa, sa = np.array([100.0, 200, 300, 400, 500]), np.array([5.0, 9, 16, 19, 26])
    fb, sb = fa, sa * 2  # B exactly half as fast on every clip
    res = stats.paired_ratio(fa, sa, fb, sb, resamples=1000, seed=0)
    ra = fa.sum() / sa.sum()
    assert res.diff == pytest.approx(ra / 2) and res.mean_b == pytest.approx(ra / 2)
    boot = stats.bootstrap_stats((fa, sa), stats.ratio_stat, 1000, 0) / 2  # paired: the same resamples
    assert (res.lo, res.hi) == pytest.approx(stats.percentile_interval(boot))
    ref = sps.wilcoxon(fa / sa - fb / sb)
    assert res.p_value == pytest.approx(ref.pvalue)


def test_bootstrap_p_value():
    assert stats.bootstrap_p_value(np.array([1.0, 2.0, 3.0])) == 0.0
    assert stats.bootstrap_p_value(np.array([-1.0, 1.0, 2.0, 3.0])) == 0.5
    assert stats.bootstrap_p_value(np.array([-1.0, 1.0])) == 1.0


# ---------------------------------------------------------------------------------------------
# In the report
# ---------------------------------------------------------------------------------------------
def test_table_cells_carry_the_ci_of_their_statistic():
    runs = standard_runs()
    t = build_table(list(runs.values()), ci=2000, seed=4)
    c = t.cells[("SadTalker", "LSE-D")]
    iv = stats.bootstrap_ci([7.4, 7.5, 7.6], 2000, 4)
    assert (c.ci_lo, c.ci_hi) == (iv.lo, iv.hi)
    assert t.cell_text("SadTalker", "LSE-D") == f"**7.500 [{iv.lo:.3f}, {iv.hi:.3f}] (n=3)**"
    assert t.cell_text("SadTalker", "LSE-D", "tex") == f"7.500 {{\\scriptsize [{iv.lo:.3f}, {iv.hi:.3f}]}} (n=3)"
    # FPS: the pooled frames/seconds statistic (fixture records have no frames/seconds: clip-mean fallback)
    fps = t.cells[("KDTalker", "FPS")]
    assert (fps.ci_lo, fps.ci_hi) == (stats.bootstrap_ci([21.0, 22.0, 23.0], 2000, 4).lo,
                                      stats.bootstrap_ci([21.0, 22.0, 23.0], 2000, 4).hi)
    df = pd.read_csv(io.StringIO(t.to_csv()), index_col=0)
    assert df.loc["SadTalker", "LSE-D ci_lo"] == pytest.approx(iv.lo)
    assert df.loc["SadTalker", "LSE-D ci_hi"] == pytest.approx(iv.hi)
    assert df.loc["SadTalker", "LSE-D [95% CI]"] == f"7.500 [{iv.lo:.3f}, {iv.hi:.3f}]"  # as md/html show it
    assert "2,000 resamples, seed 4" in t.caption
    # no CIs: the table is mean ± std as before
    assert build_table(list(runs.values())).cell_text("SadTalker", "LSE-D") == "**7.500 ± 0.100 (n=3)**"


def test_no_ci_when_the_aggregate_is_not_the_clip_statistic():
    doc = make_doc("kdtalker", {"cpbd": {"cpbd": [0.1, 0.2, 0.3]}})
    doc["metrics"]["cpbd"]["aggregate"]["cpbd"]["mean"] = 0.25  # e.g. a median or a pooled value
    t = build_table([doc], ci=500)
    assert t.cells[("KDTalker", "CPBD")].ci_lo is None
    assert t.cell_text("KDTalker", "CPBD") == "0.250 ± 0.100"


def test_fps_ci_is_the_pooled_ratio_when_frames_and_seconds_are_recorded():
    clips = ["a", "b", "c", "d"]
    recs = {c: {"fps": f / s, "frames": f, "seconds": s}
            for c, f, s in zip(clips, [200, 100, 50, 400], [10.0, 4.0, 5.0, 10.0], strict=True)}
    entry = metric_entry("fps", recs, aggregate={"fps": {"mean": 750 / 29, "std": 5.0, "n": 4}})
    t = build_table([make_doc("kdtalker", {"fps": entry}, clips=clips)], ci=1000, seed=0)
    c = t.cells[("KDTalker", "FPS")]
    iv = stats.bootstrap_ratio_ci([200, 100, 50, 400], [10.0, 4.0, 5.0, 10.0], 1000, 0)
    assert (c.ci_lo, c.ci_hi) == (iv.lo, iv.hi)


def test_rows_that_copy_their_input_show_no_fps_and_leave_the_fps_chart():
    static = make_doc("static", {"fps": {"fps": [3.1e6, 2.8e6, 3.3e6]}, "cpbd": {"cpbd": [0.2, 0.3, 0.25]}})
    kd = standard_runs()["kdtalker"]
    t = build_table([static, kd])
    assert t.cell_text("static", "FPS") == "— [1]"
    assert "static, fps: skipped: copies its input" in t.footnotes()[1][0]
    assert "3100000" not in t.to_markdown() and "3.1e" not in t.to_markdown()
    assert fps_data([static, kd])["row"].tolist() == ["KDTalker"]
    # the flag recorded in metrics.json wins over the method's registered metadata
    flagged = copy.deepcopy(kd)
    flagged["run"]["copies_input"] = True
    assert RunResult(flagged).copies_input and not RunResult(kd).copies_input
    assert RunResult(static).copies_input  # old metrics.json without the key: from the registry


def test_compare_pair_uses_shared_clips_and_scipy(tmp_path):
    runs = standard_runs()
    kd, sad = RunResult(runs["kdtalker"]), RunResult(runs["sadtalker"])
    df = compare_pair(kd, sad, resamples=2000, seed=0).set_index("metric")
    # KDTalker LSE-C failed on WDA_C_000: 2 shared clips
    assert df.loc["LSE-C", "n"] == 2
    d = np.array([7.2, 7.4]) - np.array([7.0, 7.1])
    assert df.loc["LSE-C", "A - B"] == pytest.approx(d.mean())
    assert df.loc["LSE-C", "p"] == pytest.approx(sps.wilcoxon(d).pvalue)
    assert df.loc["CPBD", "n"] == 3
    assert df.loc["Diversity", "test"] == "skipped in SadTalker"
    assert df.loc["FPS", "A - B"] == pytest.approx(1.0)
    assert df.loc["LSE-C", "better"] == "KDTalker"  # CI of +0.25 ± 0.05 excludes 0, higher is better
    disp = pair_display(df.reset_index())
    assert disp.loc[0, "Metric"] == "LSE-C" and disp.loc[0, "clips"] == "2"
    other = copy.deepcopy(runs["sadtalker"])
    other["dataset"]["manifest_id"] = "ffff"
    with pytest.raises(KdbenchError, match="different clip sets \\(manifest_id '3f2a9c0d1e4b5a6c' vs 'ffff'\\)"):
        compare_pair(kd, RunResult(other))


def test_cli_compare_and_baseline_write_the_paired_tables(tmp_path, capsys):
    dirs = {n: write_run(tmp_path / "runs" / n, d) for n, d in standard_runs().items()}
    out = tmp_path / "cmp"
    assert main(["report", "--compare", str(dirs["kdtalker"]), str(dirs["sadtalker"]), "--out", str(out),
                 "--ci", "1000", "--no-figures", "--format", "md,csv,html,tex"]) == 0
    cmp = pd.read_csv(out / "comparison.csv")
    assert set(cmp["A run"]) == {"KDTalker"} and set(cmp["B run"]) == {"SadTalker"}
    assert "Paired comparison, A = KDTalker, B = SadTalker" in (out / "table.md").read_text()
    assert "Paired comparison" in (out / "report.html").read_text()
    assert "\\begin{tabular}" in (out / "table.tex").read_text().split("Paired comparison")[-1]
    out2 = tmp_path / "base"
    assert main(["report", *map(str, dirs.values()), "--baseline", "sadtalker", "--out", str(out2),
                 "--ci", "none", "--no-figures", "--format", "csv,md"]) == 0
    cmp = pd.read_csv(out2 / "comparison.csv")
    assert sorted(set(cmp["A run"])) == ["KDTalker", "Real Video"]
    assert "± 0.100" in (out2 / "table.md").read_text()  # --ci none: mean ± std
    bad = copy.deepcopy(standard_runs()["sadtalker"])
    bad["dataset"]["manifest_id"] = "0000"
    other = write_run(tmp_path / "runs" / "other", bad)
    assert main(["report", "--compare", str(dirs["kdtalker"]), str(other), "--out", str(tmp_path / "x")]) == 2
    assert "the runs were scored on different datasets" in capsys.readouterr().err  # no table across datasets
    assert main(["report", "--compare", str(dirs["kdtalker"]), str(other), "--out", str(tmp_path / "x"),
                 "--allow-mixed"]) == 2
    assert "different clip sets" in capsys.readouterr().err  # and never a paired comparison
    assert main(["report", str(dirs["kdtalker"]), "--baseline", "nope", "--out", str(tmp_path / "y")]) == 2
    assert "no run 'nope'" in capsys.readouterr().err


def test_timing_table_reads_either_layout(tmp_path):
    a = standard_runs()["kdtalker"]
    a["timing"] = {"decode_s": 1.5, "metrics": {"lse": 20.25, "cpbd": {"seconds": 3.0}}}
    a["eval_seconds"] = 30.0
    b = standard_runs()["sadtalker"]
    b["metrics"]["lse"]["seconds"] = 18.0
    b["metrics"]["diversity"]["seconds"] = "n/a"  # not a number: left out
    c = standard_runs()["real"]  # records nothing
    t = build_table([a, b, c])
    df = timing_frame(t)
    assert list(df.columns) == ["decode", "lse", "cpbd", "total"]
    assert df.loc["KDTalker"].tolist() == [1.5, 20.25, 3.0, 30.0]
    assert df.loc["SadTalker", "lse"] == 18.0 and math.isnan(df.loc["SadTalker", "total"])
    assert df.loc["Real Video"].isna().all()
    assert timing_frame(build_table([c])) is None
    out = tmp_path / "r"
    dirs = [write_run(tmp_path / n, d) for n, d in (("kdtalker", a), ("sadtalker", b))]
    assert main(["report", *map(str, dirs), "--out", str(out), "--no-figures", "--ci", "none"]) == 0
    assert "Evaluation time in seconds" in (out / "table.md").read_text()
    assert pd.read_csv(out / "timing.csv", index_col=0).loc["KDTalker", "lse"] == 20.25
    assert load_run(dirs[0]).timing["decode"] == 1.5


def test_eval_records_copies_input_and_the_report_hides_static_fps(tmp_path, tiny_dataset):
    """`kdbench run --method static` + `kdbench eval --metrics fps`: FPS is not measured (it would time a copy of
    the image), metrics.json records copies_input, and the report shows "—" instead of millions of FPS."""
    from kdbench.cli import main as kdbench_main

    run = tmp_path / "static"
    assert kdbench_main(["run", "--method", "static", "--dataset", str(tiny_dataset), "--out", str(run), "-q"]) == 0
    assert kdbench_main(["eval", str(run), "--metrics", "fps", "-q"]) == 0
    r = load_run(run)
    assert r.doc["run"]["copies_input"] is True and r.metrics["fps"]["status"] == "skipped"
    assert "copies its input" in r.metrics["fps"]["skip_reason"] and not r.metrics["fps"]["aggregate"]
    t = build_table([r], ci=200)
    assert t.cells[("Static image", "FPS")].status == "skipped"
    assert t.cell_text("Static image", "FPS") == "— [1]" and "copies its input" in t.footnotes()[1][0]


def test_one_shared_clip_gives_a_difference_but_no_interval_or_verdict():
    a = make_doc("kdtalker", {"cpbd": {"cpbd": [0.5]}}, clips=["x"])
    b = make_doc("sadtalker", {"cpbd": {"cpbd": [0.3, 0.2]}}, clips=["x", "y"])
    row = compare_pair(RunResult(a), RunResult(b), resamples=100).set_index("metric").loc["CPBD"]
    assert row["n"] == 1 and row["A - B"] == pytest.approx(0.2)
    assert math.isnan(row["ci_lo"]) and math.isnan(row["p"]) and row["better"] == ""
    assert row["test"] == "1 shared clip: no CI, no test"
    assert pair_display(compare_pair(RunResult(a), RunResult(b), 100)).loc[0, "A − B [95% CI]"] == "+0.200"


def test_ci_option_parsing():
    import argparse

    from reports.cli import add_report_parser

    sub = argparse.ArgumentParser(prog="kdbench").add_subparsers()
    p = add_report_parser(sub)
    assert p.parse_args(["r"]).ci == stats.DEFAULT_RESAMPLES == 10_000
    assert p.parse_args(["r", "--ci", "none"]).ci is None and p.parse_args(["r", "--ci", "2500"]).ci == 2500
    for bad in ("50", "many"):
        with pytest.raises(SystemExit):
            p.parse_args(["r", "--ci", bad])
    args = p.parse_args(["--compare", "a", "b"])
    assert args.compare == ["a", "b"] and args.run_dirs == []
