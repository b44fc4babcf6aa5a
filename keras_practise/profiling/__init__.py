"""Counting MACs and parameters; measuring latency."""
