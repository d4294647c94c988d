"""Exceptions with messages that tell the user what to do."""


class KdbenchError(Exception):
    """Base class: a user-facing error. The CLI prints its message without a traceback."""


class ClipFailure(KdbenchError):
    """One clip cannot be processed (no face, too-short audio, ...).

    Raised inside a method or metric for a single clip; the caller records it as a per-clip
    failure with ``reason`` and goes on with the next clip.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class WeightsMissing(KdbenchError):
    """A weight file is not in the cache and cannot be downloaded here."""


class WeightsChecksumError(KdbenchError):
    """A weight file is present but its checksum differs from the manifest."""


class DatasetError(KdbenchError):
    """A dataset folder or manifest is missing, malformed or does not verify."""


class NotApplicable(ClipFailure):
    """A clip the method or metric does not apply to (e.g. ``real`` or FID on a clip without a GT video).

    Recorded as *not applicable*, counted apart from failures.
    """


def generic_reason(clip_id: str, reason: str) -> str:
    """``reason`` with the clip's own id (as a whole token, e.g. in a file name) written ``<clip>``, so that
    failures with the same cause group together across clips."""
    import re

    return re.sub(rf"(?<![A-Za-z0-9]){re.escape(str(clip_id))}(?![A-Za-z0-9])", "<clip>", str(reason))
