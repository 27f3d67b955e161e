"""Metrics of the paper (design.md metrics table); pixel-LAM metrics live in metrics/pixel.py."""
