"""``kdbench reproduce``: the plan names every Table 1 row with its readiness (the one of ``kdbench ls methods``)
and the complete commands that run it or fix it; a reproduction runs the rows that are ready, skips the others
without creating their folders, and writes the report with the skipped rows footnoted; exit codes as documented."""

from __future__ import annotations

import dataclasses
import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest

from kdbench.cli import build_parser, main
from kdbench.reproduce import EXIT_CODES, TABLE1_ROWS, plan, reproduce

FAKE = Path(__file__).with_name("fake_upstream")


def printed_commands(text: str) -> list[list[str]]:
    """Every ``kdbench …`` command after ``run:``, ``eval:`` or ``fix:`` in ``text`` (``&&`` chains split)."""
    cmds = []
    for line in text.splitlines():
        m = re.match(r"\s*(?:run|eval|fix):\s+(kdbench .*)$", line)
        if m:
            cmds += [shlex.split(part) for part in m.group(1).split(" && ")]
    return cmds


def check_commands(text: str, dataset: str, seed: int, out: Path) -> dict[str, list]:
    """Parse every printed command with the real parser; the runs and evals must target ``dataset``/``seed``
    and folders under ``out``. Returns the parsed namespaces by subcommand."""
    parser = build_parser()
    parsed: dict[str, list] = {}
    for argv in printed_commands(text):
        assert argv[0] == "kdbench"
        args = parser.parse_args(argv[1:])  # SystemExit (a failed test) if it does not parse
        parsed.setdefault(args.command, []).append(args)
        if args.command == "run":
            assert (args.dataset, args.seed) == (dataset, seed), argv
            assert Path(args.out) == out / args.method or Path(args.out).parent == out / "table6", argv
        elif args.command == "eval":
            assert Path(args.run_dir).parent in (out, out / "table6"), argv
    return parsed


def test_dry_run_lists_plan_and_missing_pieces(hdtf_mini, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KDBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KDBENCH_OFFLINE", "1")
    out = tmp_path / "t1"
    assert main(["reproduce", "--dataset", str(hdtf_mini), "--out", str(out), "--dry-run", "--table6", "--seed", "7",
                 "--metrics", "cpbd,fid", "--set", "cpbd.max_frames=2", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    rows = [r for r, _ in TABLE1_ROWS]
    firsts = [next(i for i, ln in enumerate(lines) if ln.startswith(r + " ")) for r in rows]
    assert firsts == sorted(firsts)  # the paper's row order
    assert (f"run:  kdbench run --method real --dataset {hdtf_mini} --seed 7 --device cpu --out {out / 'real'}"
            in text)
    assert f"eval: kdbench eval {out / 'real'} --device cpu --metrics cpbd,fid --set cpbd.max_frames=2" in text
    assert "missing: metric weights: pt_inception" in text and "fix: kdbench weights fetch pt_inception" in text
    assert "fix: kdbench weights fetch kdtalker kdtalker_norm wav2lip" in text
    assert "missing: not set up\n" in text and "fix: kdbench setup sadtalker" in text  # same check as ls methods
    assert "fix: kdbench setup anitalker" in text
    assert not out.exists()  # a dry run creates nothing
    parsed = check_commands(text, str(hdtf_mini), 7, out)
    assert [a.method for a in parsed["run"]] == ["real"] and parsed["setup"][0].method == "sadtalker"
    assert {tuple(a.names) for a in parsed["weights"]} >= {("pt_inception",)}

    runs, shared = plan(str(hdtf_mini), out, methods=["real", "kdtalker"])
    assert [r.method for r in runs] == ["real", "kdtalker"]
    assert runs[0].status == "to run" and runs[0].total == 4
    assert runs[1].status == "needs set-up" and runs[1].missing[0][1].startswith("kdbench weights fetch kdtalker")


def test_printed_commands_repeat_the_request_exactly(hdtf_mini, tmp_path, monkeypatch, capsys):
    """Pasting a printed command targets the same dataset, seed, device, executor and folder (never defaults)."""
    monkeypatch.setenv("KDBENCH_HOME", str(tmp_path / "home"))
    out = tmp_path / "my out"  # a space: quoted in the printed commands
    assert main(["reproduce", "--dataset", str(hdtf_mini), "--out", str(out), "--dry-run", "--methods", "real",
                 "--table6", "--seed", "3", "--device", "cpu", "--executor", "ray", "--workers", "2"]) == 0
    text = capsys.readouterr().out
    parsed = check_commands(text, str(hdtf_mini), 3, out)
    run = parsed["run"][0]
    assert (run.device, run.executor, run.workers) == ("cpu", "ray", 2)
    assert parsed["eval"][0].executor == "ray" and parsed["eval"][0].metrics is None


def test_reproduce_runs_evaluates_and_reports(hdtf_mini, tmp_path, monkeypatch):
    monkeypatch.setenv("KDBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KDBENCH_OFFLINE", "1")
    out = tmp_path / "t1"
    res = reproduce(str(hdtf_mini), out, methods=["real", "kdtalker"], metrics=["cpbd"],
                    sets={"cpbd.max_frames": 2}, fetch=False, progress=False)
    assert res["ran"] == ["Real Video"] and res["exit"] == 3
    why, fix = res["skipped"]["KDTalker"]
    assert why.startswith("weights missing: kdtalker, ") and fix.startswith("kdbench weights fetch kdtalker ")
    assert not (out / "kdtalker").exists()  # a row that never started has no run folder
    assert (out / "real" / "metrics.json").is_file()
    cmp = (out / "report" / "paper_comparison.csv").read_text()
    assert "0.353" in cmp  # the paper's Real Video CPBD next to the measured one
    assert all(p.exists() for p in res["written"])
    again, _ = plan(str(hdtf_mini), out, methods=["real"])
    assert again[0].status == "evaluated, 3 not applicable" and again[0].done == 1  # the 3 clips without GT


def test_strict_and_bad_requests_run_nothing(hdtf_mini, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KDBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KDBENCH_OFFLINE", "1")
    out = tmp_path / "t1"
    base = ["reproduce", "--dataset", str(hdtf_mini), "--out", str(out), "--no-fetch", "-q", "--device", "cpu"]
    assert main([*base, "--methods", "real,sadtalker", "--strict"]) == 1
    cap = capsys.readouterr()
    assert "--strict: nothing was run: 1 row(s) not ready: SadTalker" in cap.err
    assert "fix: kdbench setup sadtalker" in cap.out and not out.exists()
    assert main([*base, "--methods", "real,sadtalker", "--strict", "--dry-run"]) == 1
    assert main([*base, "--methods", "real,nope"]) == 2
    assert "--methods: nope are not Table 1 rows" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main([*base, "--metrics", "cpbd,nope"])
    assert e.value.code == 2 and "unknown metric(s) nope" in capsys.readouterr().err
    assert main([*base, "--dataset", str(tmp_path / "no_such_dataset")]) == 2
    assert "cannot reproduce without the dataset" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(SystemExit):
        main(["reproduce", "--help"])
    help_text = capsys.readouterr().out
    for code, what in EXIT_CODES.items():  # the exit codes are documented in --help
        assert f"  {code}  {what}" in help_text


def _fake_upstream_home(tmp_path: Path, name: str):
    """KDBENCH_HOME with Table 1 baseline ``name`` set up from the fake upstream tree (numpy only, as in
    tests/test_runtime.py), and the method class that runs it."""
    from kdbench.runtime.method import upstream_method
    from kdbench.runtime.spec import UpstreamSpec
    from tests.baseline_fixtures import set_up_fake_method

    repo = tmp_path / "upstream"
    repo.mkdir()
    for f in ("fake_talker.py", "infer.py"):
        (repo / f).write_text((FAKE / f).read_text())
    ckpt = tmp_path / "model.npy"
    np.save(ckpt, np.array([10.0, 20.0, 30.0]))
    spec = UpstreamSpec(name=name, description=f"fake {name}", repo="example/fake", commit="0" * 40,
                        python=sys.executable, requirements=(), hooks="tests.fake_upstream.hooks:FakeHooks",
                        weights={"fake_ckpt": "ckpt/model.npy"}, paper_row="AniTalker")
    home = set_up_fake_method(spec, repo, tmp_path / "home", {"fake_ckpt": ckpt})
    from tests.baseline_fixtures import git

    return home, upstream_method(dataclasses.replace(spec, commit=git(repo, "rev-parse", "HEAD")))


def test_one_baseline_set_up_and_one_not_gives_a_report_with_both_rows(tmp_path, monkeypatch, capsys):
    """End to end with a fake upstream: AniTalker is set up, SadTalker is not. AniTalker runs and is scored,
    SadTalker is skipped (no folder) and footnoted with its fix; exit 3; everything announced exists."""
    from PIL import Image

    from kdbench.audio import write_wav
    from kdbench.registry import METHODS
    from tests.baseline_fixtures import one_clip_dataset

    home, cls = _fake_upstream_home(tmp_path, "anitalker")
    monkeypatch.setitem(METHODS._entries, "anitalker", cls)
    monkeypatch.setenv("KDBENCH_HOME", str(home))
    monkeypatch.setenv("KDBENCH_WEIGHTS_MANIFEST", str(home / "weights.toml"))  # the fake weights, pinned
    monkeypatch.setenv("KDBENCH_OFFLINE", "1")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(tmp_path / "ref.png")
    write_wav(tmp_path / "a.wav", (rng.standard_normal(19200) * 3000).astype(np.int16))
    ds_root = tmp_path / "ds"
    one_clip_dataset(ds_root, tmp_path / "ref.png", tmp_path / "a.wav")
    out = tmp_path / "t1"

    code = main(["reproduce", "--dataset", str(ds_root), "--out", str(out), "--methods", "anitalker,sadtalker",
                 "--metrics", "cpbd", "--set", "cpbd.max_frames=2", "--set", "cpbd.workers=1", "--no-fetch", "-q",
                 "--device", "cpu"])
    text = capsys.readouterr().out
    assert code == 3, text
    assert not (out / "sadtalker").exists()
    assert (out / "anitalker" / "metrics.json").is_file()
    table = (out / "report" / "table1.md").read_text()
    row = next(ln for ln in table.splitlines() if ln.startswith("| AniTalker"))
    assert re.match(r"\| AniTalker +\| \d\.\d{3} \(paper 0\.\d{3}\)", row), row
    assert re.search(r"\| SadTalker +\| — \[1\]", table)
    assert "[1] SadTalker: not run: not set up; fix: `kdbench setup sadtalker`." in table
    assert table in text  # the table is printed
    after = text[text.index("after the run:"):]
    assert re.search(r"AniTalker +evaluated\n", after) and re.search(r"SadTalker +needs set-up\n", after)
    check_commands(text, str(ds_root), 0, out)
    wrote = next(ln for ln in text.splitlines() if ln.startswith("wrote "))
    folder, _, names = wrote[len("wrote "):].partition("/: ")
    assert Path(folder) == out / "report"
    listed = [n.strip() for n in names.split(" and ")[0].split(",")]
    assert "table1.md" in listed and "paper_comparison.csv" in listed
    assert all((out / "report" / n).is_file() for n in listed)
    note = "SadTalker: not run (not set up); fix: `kdbench setup sadtalker`"
    assert note in (out / "report" / "table.md").read_text()
