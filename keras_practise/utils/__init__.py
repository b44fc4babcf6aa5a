"""Shared helpers: argument validation and text tables."""
