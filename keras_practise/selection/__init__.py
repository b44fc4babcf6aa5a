"""Choosing blocks: recoverability scores and the choice of a set."""
