"""Metric implementations, one module per metric, registered lazily in :mod:`kdbench.registry`."""
