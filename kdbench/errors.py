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
