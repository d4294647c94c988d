"""kdbench: evaluation and benchmark suite for audio-driven talking-portrait generation.

Importing this package is cheap: it never imports torch. Heavy work lives in ``metrics/`` and
``baselines/`` and is loaded lazily through the registries in :mod:`kdbench.registry`.
"""

__version__ = "0.1.0"

FPS = 25
"""Frame rate of every evaluated video (frames per second)."""

SAMPLE_RATE = 16000
"""Sample rate of every canonical audio track (Hz, mono, int16)."""
