"""Where kdbench keeps its files (``$KDBENCH_HOME``) and how it downloads one; used by the weights manager, the
built-in datasets and the method environments alike."""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path


def kdbench_home() -> Path:
    """``$KDBENCH_HOME``, default ``~/.cache/kdbench``: weights, datasets, method environments, caches."""
    return Path(os.environ.get("KDBENCH_HOME") or Path.home() / ".cache" / "kdbench")


def download_url(url: str, dest: Path, progress: bool) -> None:
    """Stream ``url`` into ``dest`` with a tqdm progress bar (used for weights and for hdtf-mini)."""
    from tqdm import tqdm

    req = urllib.request.Request(url, headers={"User-Agent": "kdbench"})
    with urllib.request.urlopen(req, timeout=60) as r, open(dest, "wb") as f:
        total = int(r.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name.removesuffix(".part"),
                  disable=not progress) as bar:
            while block := r.read(1 << 20):
                f.write(block)
                bar.update(len(block))
