"""Synthetic drone-view road scenes with exact per-pixel ground truth (demo and test data)."""

from roadparse.synth.scene import render_frame, render_tile

__all__ = ["render_frame", "render_tile"]
