"""`kdbench report` end to end: files, self-contained HTML, parquet, figures and their arrays."""

from __future__ import annotations

import argparse
import importlib.machinery
import re
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from report_fixtures import standard_runs, write_run

from reports.cli import add_check_parser, add_report_parser, main, write_report
from reports.figures import distribution_data, fps_data, heatmap_figures, plot_distributions, plot_fps
from reports.runs import load_run


@pytest.fixture()
def run_dirs(tmp_path: Path) -> list[Path]:
    return [write_run(tmp_path / "runs" / name, doc) for name, doc in standard_runs().items()]


@pytest.fixture(scope="module")
def full_report(tmp_path_factory) -> tuple[Path, str]:
    """One full report (every format, paper comparison), written once through the CLI."""
    root = tmp_path_factory.mktemp("full")
    dirs = [write_run(root / "runs" / name, doc) for name, doc in standard_runs().items()]
    out = root / "report"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["report", *map(str, dirs), "--out", str(out), "--compare-paper"])
    assert rc == 0
    return out, buf.getvalue()


def _png_ok(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_distribution_arrays_are_the_per_clip_inputs(run_dirs, tmp_path):
    runs = [load_run(d) for d in run_dirs]
    data = distribution_data(runs)
    inputs = standard_runs()
    # KDTalker LSE-C: the two clips that did not fail, in order
    sel = (data["row"] == "KDTalker") & (data["column"] == "LSE-C")
    assert data["clip_id"][sel].tolist() == ["WDA_A_000", "WDA_B_000"]
    assert data["value"][sel].tolist() == [7.2, 7.4]
    sel = (data["row"] == "Real Video") & (data["column"] == "Diversity")
    per_clip = inputs["real"]["metrics"]["diversity"]["per_clip"]
    expected = [r["pose_std_kdtalker_compat"] for r in per_clip.values()]
    assert data["value"][sel].tolist() == expected
    assert not ((data["row"] == "SadTalker") & (data["column"] == "Diversity")).any()  # skipped
    assert list(dict.fromkeys(data["row"].tolist())) == ["Real Video", "KDTalker", "SadTalker"]
    assert list(dict.fromkeys(data["column"].tolist())) == ["LSE-C", "LSE-D", "Diversity", "CPBD", "FPS"]

    fig = plot_distributions(runs, tmp_path / "figs")
    saved = np.load(fig.npz)
    for key in ("row", "column", "clip_id", "value"):
        np.testing.assert_array_equal(saved[key], data[key])
    w, h = _png_ok(fig.png)
    assert w > 800 and h > 300


def test_fps_arrays_are_the_aggregates_and_clips(run_dirs, tmp_path):
    runs = [load_run(d) for d in run_dirs]
    data = fps_data(runs)
    assert data["row"].tolist() == ["KDTalker", "SadTalker"]  # GT's 25 fps is the video rate: left out
    np.testing.assert_allclose(data["mean"], [22.0, 21.0])
    np.testing.assert_allclose(data["std"], [1.0, 1.0])
    assert data["n"].tolist() == [3, 3]
    np.testing.assert_allclose(data["paper"], [21.678, 21.277])
    assert data["clip_value"][data["clip_row"] == "SadTalker"].tolist() == [20.0, 21.0, 22.0]
    assert "Real Video" not in fps_data(runs, include_gt=True)["row"].tolist()  # `real` copies its input
    gt = load_run(run_dirs[0])
    gt.doc["run"]["copies_input"] = False  # a GT row that does not copy its input (as recorded) is kept
    assert fps_data([gt, *runs[1:]], include_gt=True)["row"].tolist()[0] == "Real Video"
    fig = plot_fps(runs, tmp_path / "figs", compare_paper=True)
    saved = np.load(fig.npz)
    np.testing.assert_array_equal(saved["mean"], data["mean"])
    np.testing.assert_array_equal(saved["clip_value"], data["clip_value"])
    _png_ok(fig.png)


def test_report_writes_every_format(full_report):
    out, stdout = full_report
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {"table.md", "table.tex", "table.csv", "paper_comparison.csv", "report.html", "per_clip.parquet",
            "figures/per_clip_distributions.png", "figures/per_clip_distributions.npz", "figures/fps.png",
            "figures/fps.npz"} <= names
    assert str(out / "report.html") in stdout.split()

    md = (out / "table.md").read_text()
    assert md.index("| Real Video") < md.index("| KDTalker") < md.index("| SadTalker")
    assert "Comparison with the paper" in md and "![FPS per method](figures/fps.png)" in md
    assert "\\bottomrule" in (out / "table.tex").read_text()

    cmp = pd.read_csv(out / "paper_comparison.csv", index_col=0)
    assert cmp.loc["KDTalker", "FPS paper"] == 21.678
    assert cmp.loc["KDTalker", "FPS delta"] == pytest.approx(22.0 - 21.678)

    other = pd.read_csv(out / "other_outputs.csv", index_col=0)
    assert other.loc["KDTalker", "diversity.pose_std_deg"] == pytest.approx(6.0)
    assert other.loc["KDTalker", "diversity.pose_std_deg n"] == 3

    pq = pd.read_parquet(out / "per_clip.parquet")
    sad = pq[(pq.row == "SadTalker") & (pq.output == "cpbd")]
    assert sad.value.tolist() == [0.30, 0.28, 0.29]


def test_html_is_self_contained_and_embeds_the_figures(full_report):
    out, _ = full_report
    page = (out / "report.html").read_text()
    srcs = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert len(srcs) == 2  # distributions + FPS (no heatmap module here)
    # the CLI's default: value [95% bootstrap CI over clips, 10,000 resamples, seed 0]
    from reports.stats import bootstrap_ci

    iv = bootstrap_ci([7.4, 7.5, 7.6], 10_000, 0)
    assert 7.4 <= iv.lo < 7.5 < iv.hi <= 7.6
    assert f"<strong>7.500 [{iv.lo:.3f}, {iv.hi:.3f}] (n=3)</strong>" in page
    assert "95% CI: percentile bootstrap over clips, 10,000 resamples, seed 0" in page
    assert "gallery: no run folder has videos" in page  # no videos in these runs: said, not hidden
    assert "KDTalker: Δ" in page and "manifest_id 3f2a9c0d1e4b5a6c" in page
    assert "motion heatmaps" in page  # the missing heatmap is said, not hidden


def test_report_without_figures_and_selected_formats(run_dirs, tmp_path):
    out = tmp_path / "r"
    written = write_report(run_dirs[:1], out, formats=["csv", "html"], figures=False)
    assert sorted(p.name for p in written) == ["other_outputs.csv", "per_clip.parquet", "report.html",
                                               "table.csv"]
    assert "data:image" not in (out / "report.html").read_text()
    assert not (out / "figures").exists()


def test_default_out_dir_is_inside_a_single_run(run_dirs):
    assert main(["report", str(run_dirs[0]), "--format", "md", "--no-figures"]) == 0
    assert (run_dirs[0] / "report" / "table.md").is_file()


def test_report_on_a_missing_folder_is_a_user_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "no metrics.json" in capsys.readouterr().err


def test_parsers_register_subcommands_with_help_and_examples():
    parser = argparse.ArgumentParser(prog="kdbench")
    sub = parser.add_subparsers(dest="command")
    rp, cp = add_report_parser(sub), add_check_parser(sub)
    for p, words in ((rp, ["examples:", "--compare-paper", "table.tex"]),
                     (cp, ["examples:", "exit status", "--tolerance", "[lse.lse_d]"])):
        text = p.format_help()
        for w in words:
            assert w in text
    args = parser.parse_args(["report", "a", "b", "--format", "md,latex"])
    assert args.format == ["md", "tex"] and args.run_dirs == ["a", "b"] and callable(args.func)
    with pytest.raises(SystemExit):
        parser.parse_args(["report", "a", "--format", "docx"])
    args = parser.parse_args(["check", "r", "--baseline", "b", "--per-clip", "--json"])
    assert args.per_clip and args.json and callable(args.func)


def _fake_heatmap_module(monkeypatch, fn):
    mod = types.ModuleType("reports.heatmap")
    mod.__spec__ = importlib.machinery.ModuleSpec("reports.heatmap", None)
    mod.draw_heatmaps = fn
    monkeypatch.setitem(sys.modules, "reports.heatmap", mod)


def test_heatmap_module_is_called_when_present(run_dirs, tmp_path, monkeypatch):
    calls = {}

    def draw_heatmaps(dirs, out_dir, **options):
        calls["dirs"], calls["options"] = dirs, options
        out_dir.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 30), (200, 0, 0)).save(out_dir / "heatmap_pose.png")
        np.savez(out_dir / "heatmap_pose.npz", hist=np.ones((3, 3)))
        return [out_dir / "heatmap_pose.png"]

    _fake_heatmap_module(monkeypatch, draw_heatmaps)
    out = tmp_path / "r"
    write_report(run_dirs, out, formats=["html", "md"], heatmap_options={"kind": "pose"})
    assert calls["options"] == {"kind": "pose"}
    assert [Path(d).name for d in calls["dirs"]] == ["real", "kdtalker", "sadtalker"]
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "heatmap_pose.npz" in page
    assert "![Motion heatmap](figures/heatmap_pose.png)" in (out / "table.md").read_text()


def test_a_failing_heatmap_module_becomes_a_note(run_dirs, tmp_path, monkeypatch):
    def draw_heatmaps(dirs, out_dir, **options):
        raise RuntimeError("no pose data")

    _fake_heatmap_module(monkeypatch, draw_heatmaps)
    figs, notes = heatmap_figures([load_run(d) for d in run_dirs], tmp_path)
    assert figs == [] and notes == ["motion heatmaps failed: RuntimeError: no pose data"]


def test_heatmap_pose_api_gets_the_per_frame_angles_of_each_run(tmp_path, monkeypatch):
    """reports.heatmap as written by the diversity work: angles_from_metrics + write_pose_heatmaps."""
    from report_fixtures import make_doc, metric_entry

    rng = np.random.default_rng(0)
    inputs, dirs = {}, []
    for method in ("kdtalker", "real", "static"):
        yaw, pitch = rng.normal(0, 5, (2, 6)), rng.normal(0, 3, (2, 6))
        pc = {c: {"pose_std_deg": 1.0, "yaw_deg": yaw[i].tolist(), "pitch_deg": pitch[i].tolist(),
                  "roll_deg": [0.0] * 6} for i, c in enumerate(("a", "b"))}
        doc = make_doc(method, {"cpbd": {"cpbd": [0.3, 0.2]}}, clips=["a", "b"])
        if method != "static":  # static has no pose metric: left out of the heatmap
            doc["metrics"]["pose_offline"] = metric_entry("diversity", pc)
            inputs[doc["run"]["paper_row"]] = np.stack([yaw, pitch], axis=-1)
        dirs.append(write_run(tmp_path / method, doc))
    calls = {}

    def angles_from_metrics(doc, metric="diversity"):
        pcs = doc["metrics"][metric]["per_clip"]
        return [np.stack([pcs[c][f"{k}_deg"] for k in ("yaw", "pitch", "roll")], axis=1) for c in sorted(pcs)]

    def write_pose_heatmaps(angles_by_method, out_png, gt=None, **kw):
        calls.update(angles=angles_by_method, gt=gt, kw=kw)
        Image.new("RGB", (60, 20)).save(out_png)
        np.savez(Path(out_png).with_suffix(".npz"), methods=np.array(list(angles_by_method)))

    mod = types.ModuleType("reports.heatmap")
    mod.__spec__ = importlib.machinery.ModuleSpec("reports.heatmap", None)
    mod.angles_from_metrics, mod.write_pose_heatmaps = angles_from_metrics, write_pose_heatmaps
    monkeypatch.setitem(sys.modules, "reports.heatmap", mod)

    figs, notes = heatmap_figures([load_run(d) for d in dirs], tmp_path / "figs", kind="pose")
    assert notes == [] and [f.name for f in figs] == ["motion_heatmap"]
    assert list(calls["angles"]) == ["Real Video", "KDTalker"] and calls["gt"] == "Real Video"
    assert calls["kw"] == {"title": "Head motion; pose estimator: dlib 68 landmarks + solvePnP (pose_offline "
                                     "metric)"}
    for row, arr in inputs.items():
        got = np.stack(calls["angles"][row])[..., :2]
        np.testing.assert_array_equal(got, arr)
    assert "pose_offline metric" in figs[0].caption and figs[0].npz is not None
    figs, notes = heatmap_figures([load_run(d) for d in dirs], tmp_path / "figs", kind="pixel")
    assert figs == [] and "pose heatmaps only" in notes[0]
    figs, notes = heatmap_figures([load_run(dirs[2])], tmp_path / "figs2")
    assert figs == [] and "no run has per-frame head poses" in notes[0]


def test_figures_leave_out_the_fps_of_rows_that_copy_their_input(tmp_path):
    from report_fixtures import make_doc

    static = make_doc("static", {"fps": {"fps": [3.1e6, 2.8e6, 3.3e6]}, "cpbd": {"cpbd": [0.2, 0.3, 0.25]}})
    kd = standard_runs()["kdtalker"]
    data = distribution_data([static, kd])
    assert not ((data["row"] == "static") & (data["column"] == "FPS")).any()
    assert data["value"][(data["row"] == "static") & (data["column"] == "CPBD")].tolist() == [0.2, 0.3, 0.25]
    assert data["value"].max() < 100
    fig = plot_fps([static, kd], tmp_path)
    saved = np.load(fig.npz)
    assert saved["row"].tolist() == ["KDTalker"] and saved["clip_value"].max() < 30  # the 25 FPS line is in view
    assert plot_fps([static], tmp_path / "none") is None


def test_heatmap_panels_count_clips_and_name_the_pose_estimator(tmp_path):
    from report_fixtures import make_doc, metric_entry

    from reports import heatmap

    hist = heatmap.pose_histograms({"real": [np.zeros((5, 3))], "static": [np.zeros((4, 3))] * 3 + [np.zeros((0, 3))]})
    assert hist["n_clips"].tolist() == [1, 3] and hist["n_frames"].tolist() == [5, 12]
    dirs = []
    for method, n in (("real", 1), ("kdtalker", 3)):
        clips = [f"c{i}" for i in range(n)]
        pc = {c: {"pose_std_deg": 1.0, "yaw_deg": [0.0, 1.0, 2.0], "pitch_deg": [0.0] * 3, "roll_deg": [0.0] * 3,
                  "frame_index": [0, 1, 2]} for c in clips}
        doc = make_doc(method, {"cpbd": {"cpbd": [0.3] * n}}, clips=clips)
        doc["metrics"]["diversity"] = metric_entry("diversity", pc)
        dirs.append(write_run(tmp_path / method, doc))
    figs, notes = heatmap_figures([load_run(d) for d in dirs], tmp_path / "figs")
    assert notes == [] and "Hopenet" in figs[0].caption
    saved = np.load(figs[0].npz)
    assert saved["methods"].tolist() == ["Real Video", "KDTalker"]
    assert saved["n_clips"].tolist() == [1, 3] and saved["n_frames"].tolist() == [3, 9]


def _title_clear_of_the_edges(png) -> bool:
    """True when the top quarter of ``png`` (the titles) leaves its outermost pixel columns background: a title
    wider than the figure is cut there, and then its glyphs touch both edges."""
    from PIL import Image

    img = np.asarray(Image.open(png).convert("L"))
    top = img[: img.shape[0] // 4]
    return bool((top[:, :3] > 240).all() and (top[:, -3:] > 240).all())


def test_one_panel_figures_keep_their_whole_title(tmp_path):
    """A one-panel figure (one metric; one run's heatmap) is narrower than its title: the title wraps instead of
    being cut on both sides."""
    from report_fixtures import make_doc

    from reports.heatmap import write_pose_heatmaps

    doc = make_doc("real", {"cpbd": {"cpbd": [0.3, 0.4, 0.35]}})
    fig = plot_distributions([doc], tmp_path / "figs")
    assert _title_clear_of_the_edges(fig.png)
    rng = np.random.default_rng(0)
    png = tmp_path / "heat.png"
    write_pose_heatmaps({"KDTalker": [rng.normal(0, 5, (50, 3))]}, png,
                        title="Head motion; pose estimator: Hopenet (robust, alpha 1) on dlib MMOD crops")
    assert _title_clear_of_the_edges(png)
