"""User-facing errors for media files that FFmpeg (PyAV) cannot read, shared by the video and audio readers."""

from __future__ import annotations

import os

import av

from .errors import KdbenchError


def media_error(path: str | os.PathLike, e: Exception, what: str = "video") -> KdbenchError:
    """A user-facing error for an FFmpeg/OS failure on ``path``, without FFmpeg's errno noise.

    ``[Errno 1094995529] Invalid data found when processing input`` becomes "damaged, truncated or not
    a valid {what} file"; an early end of file becomes "truncated".
    """
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        why = "the file is empty (0 bytes)"
    elif isinstance(e, EOFError) or "End of file" in str(e):
        why = "the file is truncated (it ends before its index or its last frame)"
    elif isinstance(e, av.error.InvalidDataError) or "Invalid data" in str(e):
        why = f"the file is damaged, truncated or not a valid {what} file"
    else:
        why = getattr(e, "strerror", None) or str(e)
    return KdbenchError(f"cannot read {what} {path}: {why}")
