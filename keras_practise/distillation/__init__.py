"""Adaptors and the feature-mimicking engine shared by selection and recovery."""
