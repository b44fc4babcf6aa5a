"""Recovering a pruned network (recipes) and folding its adaptors away."""
