"""Every ``kdbench …`` example in README.md and docs/**/*.md parses with the real argument parser, so that a pasted
example never fails with "the following arguments are required" or "unrecognized arguments".

Checked: each ``kdbench`` command on a line of a fenced code block (``&&``/``;``/``|`` chains split, ``#``
comments dropped), and each inline code span ``\\`kdbench …\\``` that gives a value or positional argument (a span
that only names a command or one of its options, e.g. ``\\`kdbench run --overlap-writes\\```, is a reference, not
an example; a usage synopsis with ``[`` or ``<`` is skipped)."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from kdbench.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SHELL_OPS = {"&&", "||", ";", "|"}


def split_commands(text: str) -> list[list[str]]:
    """The ``kdbench`` commands in one shell line: argv lists starting after ``kdbench``."""
    tokens = shlex.split(text, comments=True)
    out, cur = [], []
    for t in [*tokens, ";"]:
        if t in SHELL_OPS:
            if "kdbench" in cur:
                out.append(cur[cur.index("kdbench") + 1:])
            cur = []
        else:
            cur.append(t)
    return out


def code_block_lines(text: str):
    inside = False
    for n, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            inside = not inside
        elif inside and re.search(r"(^|[\s;&|])kdbench\s", line):
            yield n, line


def is_example(argv: list[str]) -> bool:
    """An inline span that gives a value or positional beyond the command path (``data verify``,
    ``data prepare hdtf``)."""
    parser = build_parser()
    path = []
    for t in argv:
        if t.startswith("-"):
            break
        path.append(t)
    sub = parser._subparsers._group_actions[0].choices  # the subcommands
    depth = 1 if path and path[0] in sub else 0
    if depth and path[0] == "data" and len(path) > 1:
        depth = 3 if path[1] == "prepare" else 2  # `data prepare hdtf` names the command
    rest = argv[depth:]
    return any(not t.startswith("-") for t in rest)


def examples() -> list[tuple[str, list[str]]]:
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for n, line in code_block_lines(text):
            found += [(f"{doc.name}:{n}", argv) for argv in split_commands(line)]
        for n, line in enumerate(text.splitlines(), 1):
            for span in re.findall(r"`(kdbench [^`]*)`", line):
                if "[" in span or "<" in span:
                    continue
                found += [(f"{doc.name}:{n}", argv) for argv in split_commands(span) if is_example(argv)]
    return found


EXAMPLES = examples()


def test_the_docs_have_examples():
    assert len(EXAMPLES) > 60  # the extraction finds them (a broken regex would make the test below vacuous)
    assert any(argv[:2] == ["reproduce", "--dataset"] for _, argv in EXAMPLES)


@pytest.mark.parametrize("where,argv", EXAMPLES, ids=[f"{w}:{' '.join(a)[:60]}" for w, a in EXAMPLES])
def test_example_parses(where, argv):
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(argv)
    except SystemExit as e:
        assert not e.code, f"{where}: `kdbench {shlex.join(argv)}` does not parse: {err.getvalue().strip()}"


def test_a_broken_example_is_caught():
    """The checks above can fail: the README's old examples are refused."""
    for bad in ("kdbench run aniportrait --dataset hdtf --seed 42", "kdbench run -m kdtalker"):
        (argv,) = split_commands(bad)
        assert is_example(argv)
        with pytest.raises(SystemExit) as e, contextlib.redirect_stderr(io.StringIO()):
            build_parser().parse_args(argv)
        assert e.value.code == 2
    assert not is_example(["run", "--overlap-writes"]) and not is_example(["data", "verify"])


def test_the_readme_states_sadtalkers_real_defaults():
    """The README's list of SadTalker's default options is the spec's (no enhancer unless asked for)."""
    from baselines.sadtalker.spec import SPEC

    text = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    listed = re.search(r"`kdbench run --method sadtalker`; default options `([^`]*)`", text).group(1)
    stated = dict(kv.split("=", 1) for kv in listed.split())
    assert stated == {k: "none" if v is None else str(v).lower() for k, v in SPEC.options.items()}
