"""Bring-your-own-video workflows (issue "own video"): `exolam train | label | diagnose` on any LeRobot
dataset. Layer: above train/, metrics/, models/ and data/ (like experiments/), below cli.py."""
