"""Baseline methods (KDTalker) re-implemented for kdbench."""
