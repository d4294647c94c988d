"""Starts a method's persistent worker in its own environment and talks to it (JSON lines over pipes).

A worker that dies (crash, killed for memory) turns the current clip into a :class:`~kdbench.errors.ClipFailure`
carrying the last lines of its log; the next request starts a fresh worker. So does a worker that takes longer
than ``clip_timeout`` seconds on one clip (a hung upstream call): it is killed, never waited on forever.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ClipFailure, KdbenchError

KDBENCH_ROOT = Path(__file__).resolve().parents[2]
"""The folder holding the ``kdbench`` and ``baselines`` packages (put on the worker's ``PYTHONPATH``)."""


def log_tail(path: Path, n: int = 20) -> str:
    """The last ``n`` lines of a log file ('' when absent)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


class WorkerClient:
    """One worker process: ``start`` (loads the models), ``request`` per clip, ``close``.

    ``python``: the method environment's interpreter; ``hooks``: ``"module:Class"``; ``log_path``: where the
    worker's stderr is appended (one file across restarts, each start marked with a header line).
    """

    def __init__(self, python: Path, source: Path, hooks: str, *, device: str = "cpu",
                 options: dict[str, Any] | None = None, compat: Sequence[str] = (), links: Sequence[str] = (),
                 log_path: Path, scratch: Path | None = None, env: dict[str, str] | None = None,
                 clip_timeout: float | None = None):
        self.python = Path(python)
        self.source = Path(source)
        self.hooks = hooks
        self.device = device
        self.options = options or {}
        self.compat = tuple(compat)
        self.links = tuple(links)
        self.log_path = Path(log_path)
        self.scratch = scratch
        self.extra_env = env or {}
        self.clip_timeout = clip_timeout if clip_timeout and clip_timeout > 0 else None
        self.proc: subprocess.Popen | None = None
        self.ready: dict[str, Any] | None = None
        self.starts = 0
        self._next_id = 0

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self) -> list[str]:
        cmd = [str(self.python), "-u", "-m", "kdbench.runtime.worker", "--hooks", self.hooks,
               "--source", str(self.source), "--device", self.device, "--options", json.dumps(self.options)]
        if self.compat:
            cmd += ["--compat", ",".join(self.compat)]
        if self.links:
            cmd += ["--links", ",".join(self.links)]
        if self.scratch is not None:
            cmd += ["--scratch", str(self.scratch)]
        return cmd

    def start(self) -> dict[str, Any]:
        """Start the worker and wait until its models are loaded; returns its ``ready`` message."""
        self.close()
        env = {**os.environ, **self.extra_env}
        env["PYTHONPATH"] = os.pathsep.join([str(KDBENCH_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH")
                                                                     else []))
        env.pop("PYTHONHOME", None)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a") as log:
            log.write(f"\n==== kdbench worker start {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(self.command())}\n")
            log.flush()
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                         cwd=self.source, env=env, text=True, bufsize=1)
        self.starts += 1
        msg = self._read()
        if msg is None or msg.get("event") != "ready":
            code = self.proc.wait() if self.proc else None
            self.proc = None
            raise KdbenchError(f"the {self.hooks} worker did not start (exit code {code}); last lines of "
                               f"{self.log_path}:\n{log_tail(self.log_path)}")
        self.ready = msg
        return msg

    def _read(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The worker's next message; None when it ended. Past ``timeout`` seconds the worker is killed and
        :class:`TimeoutError` raised."""
        assert self.proc is not None and self.proc.stdout is not None
        if timeout is None:
            line = self.proc.stdout.readline()
        else:
            lines: queue.Queue[str] = queue.Queue()
            threading.Thread(target=lambda out: lines.put(out.readline()), args=(self.proc.stdout,),
                             daemon=True).start()
            try:
                line = lines.get(timeout=timeout)
            except queue.Empty:
                self.proc.kill()  # the reader thread then sees the end of the pipe and ends
                self.proc.wait()
                raise TimeoutError(timeout) from None
        return json.loads(line) if line else None

    def request(self, image: Path, audio: Path, output: Path, seed: int) -> dict[str, Any]:
        """Generate one clip. Raises ClipFailure when the method fails or the worker dies (then restarted lazily)."""
        if not self.alive:
            self.start()
        assert self.proc is not None and self.proc.stdin is not None
        self._next_id += 1
        req = {"id": self._next_id, "image": str(image), "audio": str(audio), "output": str(output), "seed": seed}
        try:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            reply = self._read(self.clip_timeout)
        except TimeoutError:
            self.proc = None
            raise ClipFailure(f"the worker took longer than clip_timeout={self.clip_timeout:g} s on this clip and "
                              f"was killed (a fresh one starts for the next clip; raise the limit with --set "
                              f"clip_timeout=SECONDS, 0 = none); last lines of {self.log_path}:\n"
                              f"{log_tail(self.log_path)}") from None
        except (BrokenPipeError, OSError, json.JSONDecodeError):
            reply = None
        if reply is None:
            code = self.proc.wait()
            self.proc = None
            raise ClipFailure(f"the worker died (exit code {code}); last lines of {self.log_path}:\n"
                              f"{log_tail(self.log_path)}")
        if not reply.get("ok"):
            raise ClipFailure(f"{reply.get('error')} (traceback in {self.log_path})")
        return reply

    def close(self) -> None:
        """End the worker (closing its stdin ends its loop; killed after 10 s)."""
        if self.proc is None:
            return
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (subprocess.TimeoutExpired, OSError):
            self.proc.kill()
            self.proc.wait()
        finally:
            if self.proc.stdout:
                self.proc.stdout.close()
            self.proc = None
