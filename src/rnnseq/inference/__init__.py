"""Inference: search algorithms and the string-in, string-out translator."""
