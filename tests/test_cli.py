"""The command line: help everywhere, cheap imports, and a full run → eval round trip."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kdbench.cli import build_parser, main


def _subcommands(parser):
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            yield from action.choices.items()


def test_every_subcommand_has_help_with_examples():
    top = build_parser()
    names = []
    for name, sub in _subcommands(top):
        names.append(name)
        assert sub.epilog and "kdbench" in sub.epilog, name
        for inner_name, inner in _subcommands(sub):
            assert inner.epilog and "kdbench" in inner.epilog, f"{name} {inner_name}"
    assert {"ls", "data", "run", "eval", "sweep", "weights"} <= set(names)


def test_importing_kdbench_and_listing_do_not_import_torch():
    code = ("import sys, kdbench, kdbench.cli, kdbench.runner, kdbench.evaluate\n"
            "from kdbench.cli import main\n"
            "main(['ls', 'methods']); main(['ls', 'metrics']); main(['ls', 'datasets'])\n"
            "assert not {'torch', 'cv2', 'dlib', 'insightface'} & set(sys.modules), 'heavy import'\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "real" in r.stdout and "hdtf-mini" in r.stdout


def test_user_errors_exit_2_with_a_message(capsys):
    assert main(["run", "--method", "nope", "--dataset", "hdtf-mini"]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
    assert main(["eval"]) == 2
    assert "RUN_DIR" in capsys.readouterr().err


def test_set_parsing_and_scoping():
    from kdbench.config import parse_sets, split_scoped
    from kdbench.errors import KdbenchError

    sets = parse_sets(["ddim_steps=5", "lse.protocol=full", "flag=true", "name=abc"])
    assert sets == {"ddim_steps": 5, "lse.protocol": "full", "flag": True, "name": "abc"}
    assert split_scoped(sets) == ({"ddim_steps": 5, "flag": True, "name": "abc"}, {"lse": {"protocol": "full"}})
    with pytest.raises(KdbenchError):
        parse_sets(["novalue"])


def test_run_then_eval_writes_metrics_json(tiny_dataset, tmp_path, capsys):
    import tests.ray_plugin  # noqa: F401 - registers _ray_slow, a generating test double (static copies its input)

    out = tmp_path / "run"
    assert main(["run", "--method", "_ray_slow", "--set", "delay=0", "--dataset", str(tiny_dataset), "--out", str(out),
                 "-q"]) == 0
    assert main(["eval", str(out), "--metrics", "fps", "-q"]) == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["schema"] == "kdbench.metrics/1" and doc["run"]["method"] == "_ray_slow"
    fps = doc["metrics"]["fps"]
    assert fps["status"] == "ok" and fps["info"]["outputs"]["fps"]["higher_is_better"] is True
    assert set(fps["per_clip"]) == {"A_clip_000", "B_clip_000", "C_clip_000"}
    events = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    frames = sum(e["n_generated"] for e in events if e.get("clip_id"))
    seconds = sum(e["seconds"] for e in events if e.get("clip_id"))
    assert fps["aggregate"]["fps"]["mean"] == pytest.approx(frames / seconds)
    assert doc["dataset"]["manifest_id"] and doc["env"]["python"]


def test_eval_external_videos_folder(tiny_dataset, tmp_path, make_video):
    vids = tmp_path / "theirs"
    vids.mkdir()
    make_video("A_clip_000.mp4", 60, fps=30, size=(40, 40)).rename(vids / "A_clip_000.mp4")
    out = tmp_path / "ext"
    assert main(["eval", "--videos", str(vids), "--dataset", str(tiny_dataset), "--out", str(out),
                 "--metrics", "fps", "-q"]) == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["run"]["method"] == "external:theirs"
    assert doc["metrics"]["fps"]["status"] == "skipped"  # no timing for videos made elsewhere
    from kdbench.runstore import RunStore
    from kdbench.video import probe_video

    ev = RunStore(out).clip_events()
    assert ev["A_clip_000"]["status"] == "ok" and "no video B_clip_000.mp4" in ev["B_clip_000"]["error"]
    info = probe_video(out / "videos" / "A_clip_000.mp4")
    assert (info.fps, info.n_frames, info.width) == (25.0, 50, 64)  # normalised to the dataset


def test_metrics_with_missing_weights_are_skipped_with_the_fetch_command(tiny_dataset, tmp_path, monkeypatch):
    from kdbench.metric import Metric, MetricInfo, Output
    from kdbench.scoring import instantiate_metric
    from kdbench.weights import WeightsManager

    class NeedsWeights(Metric):
        info = MetricInfo(name="toy", version="1", description="", outputs={"v": Output(True)},
                          weights=("syncnet_v2",))

        def __init__(self, **kw):
            super().__init__(**kw)
            self.path = self.weights.path("syncnet_v2")

        def score_clip(self, clip):
            return {"v": 1.0}

    from kdbench.registry import METRICS

    METRICS.register("_toy_needs_weights")(NeedsWeights)
    metric, skipped = instantiate_metric("_toy_needs_weights", {}, "cpu", WeightsManager(home=tmp_path), {})
    assert metric is None and skipped["status"] == "skipped"
    assert "`kdbench weights fetch syncnet_v2`" in skipped["skip_reason"]


def test_metric_finding_weights_missing_while_scoring_is_skipped_not_failed(tiny_dataset, tmp_path, monkeypatch):
    from kdbench.evaluate import evaluate_run
    from kdbench.metric import Metric, MetricInfo, Output
    from kdbench.registry import METRICS
    from kdbench.runner import run_method

    class LazyWeights(Metric):
        info = MetricInfo(name="_lazy", version="1", description="", outputs={"v": Output(True)})

        def score_clip(self, clip):
            self.weights.path("pt_inception")  # looked up on first use, as FID does
            return {"v": 1.0}

    METRICS.register("_lazy_weights")(LazyWeights)
    monkeypatch.setenv("KDBENCH_HOME", str(tmp_path / "home"))
    from kdbench.dataset import load_dataset

    run_method("static", load_dataset(tiny_dataset), tmp_path / "r",
               progress=False, limit=1)
    doc = evaluate_run(tmp_path / "r", ["_lazy_weights"], progress=False)
    rec = doc["metrics"]["_lazy_weights"]
    assert rec["status"] == "skipped" and rec["failures"] == {}
    assert "`kdbench weights fetch pt_inception`" in rec["skip_reason"]
    assert "_lazy_weights" not in doc["timing"]["metrics"]  # its time is not charged to a metric that never ran


def test_eval_of_a_copying_method_without_weights_or_gt_says_why_per_metric(tmp_path, monkeypatch, capsys):
    """``static`` on clips without a GT video, in a home without weights: FPS is not shown (it would time a
    copy), FID says its weights are missing (not "not applicable"), "1 clip" in the singular."""
    import numpy as np
    from PIL import Image

    from kdbench.audio import write_wav

    monkeypatch.setenv("KDBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KDBENCH_OFFLINE", "1")
    root = tmp_path / "ds"
    (root / "ref").mkdir(parents=True)
    (root / "audio").mkdir()
    Image.fromarray(np.full((32, 32, 3), 120, np.uint8)).save(root / "ref" / "a.png")
    write_wav(root / "audio" / "a.wav", (np.random.default_rng(0).standard_normal(16000) * 3000).astype(np.int16))
    assert main(["run", "--method", "static", "--dataset", str(root), "--out", str(tmp_path / "r"), "-q"]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "r"), "--metrics", "fps,fid", "-q"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("static on ds (1 clip, manifest_id ")
    assert out[1].startswith("  fps           skipped: the method copies its input")
    assert out[2] == ("  fid           skipped: weights 'pt_inception' (pt_inception-2015-12-05-6726825d.pth) are "
                      "missing: run `kdbench weights fetch pt_inception`")
    doc = json.loads((tmp_path / "r" / "metrics.json").read_text())
    fid = doc["metrics"]["fid"]
    assert fid["status"] == "skipped" and fid["fetch"] == "kdbench weights fetch pt_inception"
    assert list(fid["not_applicable"]) == ["a"]  # why it applied to no clip is kept too


def test_every_option_of_every_subcommand_has_a_description():
    """`--help` teaches: no option is listed bare (e.g. sweep's were)."""
    missing = []
    for name, sub in _subcommands(build_parser()):
        subs = list(_subcommands(sub)) or [(None, sub)]
        for inner_name, parser in subs:
            for action in parser._actions:
                if action.option_strings and action.help is None:
                    missing.append(f"{name} {inner_name or ''} {action.option_strings[-1]}")
    assert not missing, missing
