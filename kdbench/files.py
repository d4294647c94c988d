"""File helpers shared by the run store, datasets, weights and video/audio writers."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def git_blob_sha1(path: str | os.PathLike) -> str:
    """The git blob id of a file: sha1 of ``b"blob <size>\\0" + content``."""
    size = os.path.getsize(path)
    h = hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO})
"""Errors of the disk rather than of the data: full, over quota, file too large, read-only, I/O error."""


def storage_error(e: BaseException) -> bool:
    """Whether ``e`` is an :class:`OSError` of the disk (:data:`STORAGE_ERRNOS`), e.g. "No space left on device"."""
    return isinstance(e, OSError) and e.errno in STORAGE_ERRNOS


def naming(e: OSError, path: str | os.PathLike) -> OSError:
    """``e`` as a plain :class:`OSError` naming ``path`` (writes that fail at ``write``/``close``/``fsync`` carry no
    file name, and a temporary name says less than the file being written)."""
    return OSError(e.errno, e.strerror or os.strerror(e.errno or 0), str(path))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; rename it onto ``path`` only if the block succeeds.

    A crash or an exception never leaves a half-written ``path`` (the temporary file is removed).
    The temporary name keeps the suffix, so writers that pick a format from it (``.mp4``) still work.
    A full disk (or another :data:`STORAGE_ERRNOS` error) is raised as an :class:`OSError` naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        if storage_error(e):
            raise naming(e, path) from e
        raise
    finally:
        if tmp.exists():
            tmp.unlink()
