"""SIGTERM handled as SIGINT is: worker processes ended, finished work kept, exit 143 (SIGINT: 130).

A scheduler, ``timeout``, a container stop or some shells send SIGTERM, and only to kdbench's own process. With
Python's default (die at once) the worker processes of CPBD's and dlib's process pools, and multiprocessing's
resource tracker, outlived kdbench and kept its stdout open: ``kdbench eval … | cat`` waited for minutes.

While a command runs (:func:`handled`), SIGTERM and SIGINT first end this process's multiprocessing children
(:func:`end_child_processes`: SIGTERM, then SIGKILL after a grace period), then raise in the main thread —
:class:`Terminated` for SIGTERM, a subclass of :class:`KeyboardInterrupt`, so every clean-up written for Ctrl-C
runs (Ray actors killed and ``ray.shutdown`` at exit, method workers closed, ``metrics.json`` left as it was:
it is replaced atomically only once complete). The resource tracker then sees its last user go and ends.
Ray's ``ray.init`` installs its own SIGTERM handler (``sys.exit``); :func:`reinstall` puts this one back.

Pool workers also end when the thread that started them ends, even by SIGKILL (:func:`die_with_parent`), and a
signal that arrives while a pool is being started waits for it, then ends it (:func:`starting_processes`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

log = logging.getLogger("kdbench")

EXIT_SIGINT = 128 + signal.SIGINT  # 130
EXIT_SIGTERM = 128 + signal.SIGTERM  # 143


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM; caught wherever :class:`KeyboardInterrupt` is."""


_active = 0
"""Depth of :func:`handled` blocks (the handlers are installed while it is > 0)."""
_stopping = False
_received: int | None = None
_spawn_lock = threading.RLock()
"""Held while a thread starts worker processes, and by the signal handler while it ends them: a signal that
arrives during a start waits for the new processes to exist, then ends them too."""


def stopping() -> bool:
    """True once SIGTERM or SIGINT arrived (until the command ends): a worker thread whose process pool was just
    ended should stop quietly instead of reporting the broken pool as a failure."""
    return _stopping


def end_child_processes(grace: float = 3.0) -> list[int]:
    """Terminate this process's multiprocessing children (process-pool workers); returns their pids.

    SIGTERM first, SIGKILL for any still alive after ``grace`` seconds; each one is reaped."""
    import multiprocessing

    try:
        children = multiprocessing.active_children()
    except Exception:  # noqa: BLE001 - a signal can arrive while a child is being started
        return []
    for p in children:
        with contextlib.suppress(Exception):
            p.terminate()
    deadline = time.monotonic() + grace
    for p in children:
        with contextlib.suppress(Exception):
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join(1.0)
    return [p.pid for p in children if p.pid is not None]


@contextlib.contextmanager
def starting_processes() -> Iterator[None]:
    """Wrap the code that starts worker processes (creating a process pool and submitting to it): once SIGTERM
    or SIGINT arrived it raises :class:`~kdbench.errors.KdbenchError` instead of starting any, and a signal that
    arrives meanwhile ends the new processes as well."""
    with _spawn_lock:
        if _stopping:
            from .errors import KdbenchError

            raise KdbenchError("interrupted: no new worker processes are started")
        yield


def die_with_parent(parent_pid: int | None = None) -> None:
    """Process-pool ``initializer``: on Linux the kernel sends this worker SIGTERM when the thread that started it
    ends, even when its process is killed outright (SIGKILL, a Ray actor killed by ``ray.kill``), so a pool never
    outlives its user; a worker whose parent is already gone exits. Elsewhere it does nothing."""
    if sys.platform != "linux":
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(0)


def pool_kwargs() -> dict:
    """``ProcessPoolExecutor`` arguments for kdbench's worker pools: spawned (not forked: torch's thread pools),
    each worker ending with its parent (:func:`die_with_parent`)."""
    import multiprocessing

    return {"mp_context": multiprocessing.get_context("spawn"), "initializer": die_with_parent,
            "initargs": (os.getpid(),)}


def received() -> int | None:
    """The signal (SIGTERM or SIGINT) that ended the last :func:`handled` block, None if none did. Libraries may turn
    :class:`Terminated` into a plain KeyboardInterrupt on its way up (Ray does): this tells them apart."""
    return _received


def terminated() -> bool:
    """True when SIGTERM ended the last :func:`handled` block (then exit :data:`EXIT_SIGTERM`)."""
    return _received == signal.SIGTERM


def _on_signal(signum: int, frame) -> None:
    global _stopping, _received
    _stopping = True
    _received = _received or signum
    with _spawn_lock:  # a thread starting processes finishes first, then they are ended with the others
        ended = end_child_processes()
    if ended:
        log.info("signal %d: ended worker processes %s", signum, ended)
    if signum == signal.SIGTERM:
        raise Terminated()
    raise KeyboardInterrupt()


def _install() -> None:
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)


def reinstall() -> None:
    """Put the handlers back inside a :func:`handled` block (after a library, e.g. Ray, replaced them)."""
    if _active and threading.current_thread() is threading.main_thread():
        _install()


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` and SIGINT :class:`KeyboardInterrupt`, each after
    ending the worker processes; the previous handlers come back afterwards. Outside the main thread (where
    Python delivers no signal) it does nothing."""
    global _active, _stopping, _received
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received = None
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    _install()
    _active += 1
    try:
        yield
    finally:
        _active -= 1
        _stopping = False
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
