"""kdbench.memory: large freed blocks are re-used by the next batch instead of page-faulted in anew."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import resource
from kdbench.memory import reuse_freed_memory

print("applied", reuse_freed_memory())

def faults_of_one_batch():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = bytearray(64 << 20)  # malloc + zero fill of 64 MiB, above glibc's largest mmap threshold (32 MiB)
    del a  # (not numpy: it asks the kernel for huge pages, which hides the faults this counts)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

faults_of_one_batch()
print("faults", faults_of_one_batch())
"""


def _probe(reuse: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(KDBENCH_REUSE_MEMORY=reuse, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return dict(line.split(" ", 1) for line in out.stdout.splitlines())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings: Linux only")
def test_second_batch_reuses_the_first_batchs_memory():
    on, off = _probe("1"), _probe("0")
    assert on["applied"] == "True" and off["applied"] == "False"
    pages = (64 << 20) // 4096
    assert int(off["faults"]) > pages // 2  # the default: every 64 MiB block mmap-ed and zero-filled anew
    assert int(on["faults"]) < pages // 20  # re-used: (almost) no page touched for the first time


def test_processes_started_later_get_the_same_settings(monkeypatch):
    import kdbench.memory as mem

    for name in mem.SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(mem, "_applied", None)
    monkeypatch.setenv("KDBENCH_REUSE_MEMORY", "1")
    if not mem.reuse_freed_memory():
        pytest.skip("not glibc: reuse_freed_memory() does nothing here")
    assert {name: os.environ[name] for name in mem.SETTINGS} == {
        "MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**31 - 1), "MALLOC_TOP_PAD_": str(64 << 20)}
    assert mem.reuse_freed_memory() is True  # once per process: a second call changes nothing
