"""KDTalker baseline."""
