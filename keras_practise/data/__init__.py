"""Tiny sets: loading, sampling, augmentation, synthesis and photographs."""
