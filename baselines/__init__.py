"""Talking-portrait methods kdbench can run (one module per method, registered lazily)."""
