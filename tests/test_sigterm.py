"""SIGTERM to `kdbench eval` is handled as SIGINT is: CPBD's worker processes and multiprocessing's resource
tracker end with it, it exits 143, its stdout closes at once (a `| cat` pipeline finishes), metrics.json is left
as it was. A real subprocess on a small generated dataset, signalled the way `timeout` or a scheduler does it:
SIGTERM to kdbench's own pid only."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import tone

from kdbench.cli import main

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process trees from /proc")


def _ppid_map() -> dict[int, int]:
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
                out[int(d.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    return out


def _descendants(pid: int) -> set[int]:
    parents = _ppid_map()
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        kids = {c for c, pp in parents.items() if pp == p}
        todo += sorted(kids - found)
        found |= kids
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # ended meanwhile
        return b""


def _pool_workers(pid: int) -> set[int]:
    return {k for k in _descendants(pid) if b"spawn_main" in _cmdline(k)}


def _alive(pids: set[int]) -> set[int]:
    """The pids that still run (zombies and reused pids whose start differs are not counted by the caller)."""
    alive = set()
    for p in pids:
        try:
            state = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        if state[state.rindex(")") + 2] != "Z":
            alive.add(p)
    return alive


@pytest.fixture(scope="module")
def textured_run(tmp_path_factory):
    """A static run of 2 clips of 8 s on 512x512 textured reference images (CPBD works on every frame), with a
    metrics.json from a quick first eval. Each test leaves it as it was."""
    from PIL import Image

    from kdbench.audio import write_wav

    tmp_path = tmp_path_factory.mktemp("sigterm")
    root = tmp_path / "ds"
    (root / "ref").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        img = np.kron(rng.integers(0, 256, (64, 64, 3)), np.ones((8, 8, 1))).astype(np.uint8)
        Image.fromarray(img).save(root / "ref" / f"T_clip_{i:03d}.png")
        write_wav(root / "audio" / f"T_clip_{i:03d}.wav", tone(8.0, 300 + 50 * i))
    run = tmp_path / "run"
    assert main(["run", "--method", "static", "--dataset", str(root), "--out", str(run), "-q", "--warmup", "0"]) == 0
    assert main(["eval", str(run), "--metrics", "cpbd", "--set", "cpbd.max_frames=1", "--set", "cpbd.workers=1",
                 "-q"]) == 0
    return run


def _start(argv: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "kdbench", *argv], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_workers(proc: subprocess.Popen, n: int, timeout: float = 120) -> set[int]:
    """Wait until ``proc`` has ``n`` spawned pool workers running; returns all its descendants then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"kdbench ended before it was signalled: {proc.communicate()}"
        if len(_pool_workers(proc.pid)) >= n:
            time.sleep(1.0)  # the workers are scoring frames now
            return _descendants(proc.pid)
        time.sleep(0.1)
    pytest.fail("CPBD's worker processes never started")


def _signal_and_collect(proc: subprocess.Popen, sig: int) -> tuple[int, str, str, float]:
    """Send ``sig`` to kdbench's pid only; returns (exit code, stdout, stderr, seconds until stdout closed)."""
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)
    reader.start()
    t0 = time.monotonic()
    proc.send_signal(sig)
    reader.join(timeout=60)  # EOF only once every process holding kdbench's stdout has ended
    closed_after = time.monotonic() - t0
    assert not reader.is_alive(), "kdbench's stdout is still open 60 s after the signal"
    rc = proc.wait(timeout=30)
    return rc, out[0], proc.stderr.read(), closed_after


@pytest.mark.parametrize("sig, code, said", [(signal.SIGTERM, 143, "terminated (SIGTERM): finished clips are kept"),
                                             (signal.SIGINT, 130, "interrupted: finished clips are kept")])
def test_a_signal_during_eval_ends_the_worker_processes_and_keeps_metrics_json(textured_run, sig, code, said):
    before = (textured_run / "metrics.json").read_bytes()
    files_before = sorted(p.name for p in textured_run.iterdir())
    proc = _start(["eval", str(textured_run), "--metrics", "cpbd", "--set", "cpbd.workers=2", "-q"])
    try:
        kids = _wait_for_workers(proc, 2)
        rc, _, err, closed_after = _signal_and_collect(proc, sig)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == code, err
    assert said in err and "Traceback" not in err
    assert closed_after < 20, f"stdout closed {closed_after:.1f} s after the signal"
    time.sleep(1.0)
    assert not _alive(kids), f"processes outlived kdbench: {sorted(_alive(kids))}"
    assert (textured_run / "metrics.json").read_bytes() == before  # untouched, still valid
    json.loads(before)
    assert sorted(p.name for p in textured_run.iterdir()) == files_before  # no temporary file left behind


def test_sigterm_in_a_pipeline_lets_it_finish(textured_run):
    """`kdbench eval … | cat`: the pipeline ends as soon as kdbench does."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = f"exec {sys.executable} -m kdbench eval {textured_run} --metrics cpbd --set cpbd.workers=2 -q | cat"
    shell = subprocess.Popen(["bash", "-c", cmd], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        kd = None
        while kd is None and time.monotonic() < deadline:
            for k in _descendants(shell.pid):
                if b"-m\x00kdbench\x00eval" in _cmdline(k):  # python itself, not a subshell on its way to exec
                    kd = k
            time.sleep(0.1)
        assert kd is not None
        while len(_pool_workers(kd)) < 2:
            assert time.monotonic() < deadline and shell.poll() is None, shell.communicate()
            time.sleep(0.1)
        time.sleep(1.0)
        t0 = time.monotonic()
        os.kill(kd, signal.SIGTERM)
        shell.wait(timeout=30)
        assert time.monotonic() - t0 < 20
    finally:
        if shell.poll() is None:
            os.killpg(shell.pid, signal.SIGKILL)
    assert b"terminated (SIGTERM)" in shell.stderr.read()


@pytest.mark.slow
def test_sigterm_during_a_ray_eval_ends_the_actors_and_their_pools(textured_run):
    """The same on Ray: the actor's CPBD pool, the actor and the embedded Ray instance all end, exit 143."""
    pytest.importorskip("ray", reason="--executor ray needs Ray")
    before = (textured_run / "metrics.json").read_bytes()
    proc = _start(["eval", str(textured_run), "--metrics", "cpbd", "--set", "cpbd.workers=2", "-q",
                   "--executor", "ray", "--workers", "1"])
    try:
        kids = _wait_for_workers(proc, 2, timeout=240)  # the actor's pool workers are kdbench's descendants too
        rc, _, err, closed_after = _signal_and_collect(proc, signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 143, err
    assert "terminated (SIGTERM): finished clips are kept" in err and "Traceback" not in err
    assert closed_after < 30, f"stdout closed {closed_after:.1f} s after the signal"
    deadline = time.monotonic() + 15
    while _alive(kids) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _alive(kids), f"processes outlived kdbench: {[_cmdline(k)[:80] for k in _alive(kids)]}"
    assert (textured_run / "metrics.json").read_bytes() == before


def test_sigterm_during_run_keeps_the_finished_clips(tmp_path):
    """`kdbench run` is ended the same way: exit 143, the clips finished before the signal are kept (a re-run
    resumes them), no clip is recorded as failed because of the signal."""
    from PIL import Image

    from kdbench.audio import write_wav
    from kdbench.runstore import RunStore

    root = tmp_path / "ds"
    (root / "ref").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((32, 32, 3), 60 * i, np.uint8)).save(root / "ref" / f"S_clip_{i:03d}.png")
        write_wav(root / "audio" / f"S_clip_{i:03d}.wav", tone(1.0))
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "KDBENCH_PLUGINS": "tests.ray_plugin"}
    proc = subprocess.Popen([sys.executable, "-m", "kdbench", "run", "--method", "_ray_slow", "--dataset", str(root),
                             "--out", str(out), "--set", "delay=3", "--warmup", "0", "-q"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store = RunStore(out)
    deadline = time.monotonic() + 120
    try:
        while not any(e.get("status") == "ok" for e in store.events()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        rc, _, err, _ = _signal_and_collect(proc, signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 143 and "terminated (SIGTERM): finished clips are kept" in err, err
    statuses = [e.get("status") for e in store.events() if "clip_id" in e]
    assert statuses.count("ok") >= 1 and "failed" not in statuses


def test_the_handlers_are_put_back_after_a_command():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    assert main(["ls", "datasets"]) == 0
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
